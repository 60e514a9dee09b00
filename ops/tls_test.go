package ops_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/ops"
)

// testPKI is a CA, a server certificate for 127.0.0.1 and client
// certificates, all in files.
type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	pool   *x509.CertPool
	serial int64
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir(), serial: 1}
	p.caKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ops-ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.ca)
	p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func (p *testPKI) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue makes a certificate (server: for 127.0.0.1) and returns its files
// and the parsed certificate.
func (p *testPKI) issue(t *testing.T, cn string, server bool) (certFile, keyFile string, cert *x509.Certificate, pair tls.Certificate) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &k.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(k)
	certFile = p.write(t, cn+".pem", "CERTIFICATE", der)
	keyFile = p.write(t, cn+".key", "PRIVATE KEY", kder)
	cert, _ = x509.ParseCertificate(der)
	return certFile, keyFile, cert, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

func (p *testPKI) client(certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.pool, Certificates: certs, MinVersion: tls.VersionTLS12}}}
}

// The ops API over HTTPS with client certificates (RFC 8705): a client
// registered by its certificate gets a token with no secret, bound to the
// certificate; the token works only on a connection with that
// certificate; another certificate of the same CA gets no token.
func TestOpsTLSClientAuth(t *testing.T) {
	pki := newPKI(t)
	srvCert, srvKey, _, _ := pki.issue(t, "ops", true)
	_, _, gwCert, gwPair := pki.issue(t, "gateway", false)
	_, _, _, otherPair := pki.issue(t, "other", false)

	cfg := testConfig(t, "127.0.0.1:0")
	cfg.Ops.TLS = &ops.TLSConfig{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: filepath.Join(pki.dir, "ca.pem")}
	cfg.Finish()
	tn := openTestNode(t, cfg, nil, true)
	if err := tn.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tn.srv.Close(context.Background()) })
	base := "https://" + tn.srv.Addr().String()

	gw, other, anon := pki.client(gwPair), pki.client(otherPair), pki.client()
	defer gw.CloseIdleConnections()
	defer other.CloseIdleConnections()
	defer anon.CloseIdleConnections()
	call := func(hc *http.Client, method, path, tok, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Plain HTTP to the TLS listener gets nowhere.
	if resp, err := http.Get("http://" + tn.srv.Addr().String() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP served on the TLS listener")
		}
	}
	// The admin registers the gateway by its certificate, without a secret.
	admin := tokenFor(t, testActor)
	code, body := call(anon, "POST", "/v1/clients", admin, `{"id":"gw","scopes":["ops:read"],"certs":["`+oauth.Thumbprint(gwCert)+`"],"secret":false,"reason":"partner gateway"}`)
	if code != 201 || strings.Contains(body, "client_secret") {
		t.Fatalf("register: %d %s", code, body)
	}
	ctx := context.Background()
	tok, err := oauth.FetchToken(ctx, gw, base+"/oauth/token", oauth.Credentials{ClientID: "gw"}, "")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q", tok)
	}
	if code, body := call(gw, "GET", "/v1/accounts/card-4111", tok, ""); code != 200 {
		t.Fatalf("with its certificate: %d %s", code, body)
	}
	for name, hc := range map[string]*http.Client{"another certificate": other, "no certificate": anon} {
		code, body := call(hc, "GET", "/v1/accounts/card-4111", tok, "")
		var p struct{ Type string }
		json.Unmarshal([]byte(body), &p)
		if code != 401 || !strings.HasSuffix(p.Type, "/certificate-binding") {
			t.Errorf("token replayed with %s: %d %s", name, code, body)
		}
	}
	var te *oauth.TokenError
	if _, err := oauth.FetchToken(ctx, other, base+"/oauth/token", oauth.Credentials{ClientID: "gw"}, ""); !errors.As(err, &te) || te.Code != "invalid_client" {
		t.Errorf("token for gw with another certificate: %v", err)
	}
	// A token of a read-only client cannot write.
	if code, body := call(gw, "POST", "/v1/accounts", tok, `{"id":"x","kind":"cardholder","currency":"USD"}`); code != 403 {
		t.Errorf("write with ops:read: %d %s", code, body)
	}
}

// With health_listen, health, readiness and metrics are served open on
// their own listener, and /metrics on the main one needs ops:read.
func TestHealthListener(t *testing.T) {
	cfg := testConfig(t, "127.0.0.1:0")
	cfg.Ops.HealthListen = "127.0.0.1:0"
	cfg.Finish()
	tn := openTestNode(t, cfg, nil, true)
	base := tn.start(t)
	defer http.DefaultClient.CloseIdleConnections()
	health := "http://" + tn.srv.HealthAddr().String()
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, body, _ := doWith(t, http.Header{}, "GET", health+p, ""); code != 200 {
			t.Errorf("health listener %s: %d %s", p, code, body)
		}
	}
	if code, _, _ := doWith(t, http.Header{}, "GET", health+"/v1/accounts", ""); code != 404 {
		t.Errorf("the health listener serves the API: %d", code)
	}
	if code, _, _ := doWith(t, http.Header{}, "GET", base+"/metrics", ""); code != 401 {
		t.Errorf("main /metrics without a token: %d", code)
	}
	if code, _, _ := do(t, "GET", base+"/metrics", ""); code != 200 {
		t.Errorf("main /metrics with ops:read: %d", code)
	}
}

// Every route but the open ones names a scope of the API.
func TestEveryRouteHasAScope(t *testing.T) {
	tn := newTestNode(t)
	open := map[string]bool{"GET /healthz": true, "GET /readyz": true, "GET /metrics": true, "POST /oauth/token": true, "GET /.well-known/jwks.json": true}
	for route, scope := range tn.srv.Scopes() {
		switch {
		case open[route] && scope != "":
			t.Errorf("%s should be open, needs %s", route, scope)
		case !open[route] && !slices.Contains(oauth.Scopes, scope):
			t.Errorf("%s: scope %q", route, scope)
		}
	}
}
