package sim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Every refused control request leaves the behaviour as it was.
func TestControlRefusals(t *testing.T) {
	s := startIssuer(t, nil)
	ctl, err := StartIssuerControl(ControlConfig{Listen: "127.0.0.1:0"}, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	base := "http://" + ctl.Addr()
	for _, tc := range []struct {
		name, body string
		status     int
	}{
		{"unknown mode", `{"mode":"flaky"}`, http.StatusBadRequest},
		{"unknown field", `{"mode":"decline","speed":3}`, http.StatusBadRequest},
		{"not JSON", `mode=timeout`, http.StatusBadRequest},
		{"two objects", `{"mode":"decline"}{"mode":"timeout"}`, http.StatusBadRequest},
		{"ratio above 1", `{"decline_ratio":1.5}`, http.StatusBadRequest},
		{"ratios sum above 1", `{"decline_ratio":0.6,"timeout_ratio":0.6}`, http.StatusBadRequest},
		{"latency as number", `{"latency":250}`, http.StatusBadRequest},
		{"latency unparsable", `{"latency":"soon"}`, http.StatusBadRequest},
		{"latency too long", `{"latency":"2h"}`, http.StatusBadRequest},
		{"late delay zero", `{"late_delay":"0s"}`, http.StatusBadRequest},
		{"body too large", `{"mode":"decline","pad":"` + strings.Repeat("x", controlBodyBytesMax) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, base+"/mode", tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if b := s.Behavior(); b != DefaultBehavior() {
				t.Fatalf("behaviour changed to %+v", b)
			}
		})
	}
	// A browser's request (it carries Origin) is refused on every route.
	for _, path := range []string{"/mode", "/reset"} {
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(`{"mode":"down"}`))
		req.Header.Set("Origin", "http://evil.example")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s with Origin: %d, want 403", path, resp.StatusCode)
		}
	}
	if s.Behavior().Mode != ModeApprove {
		t.Fatal("a browser's request changed the mode")
	}
	// A patch keeps what it does not name.
	post(t, base+"/mode", `{"latency":"5ms","decline_ratio":0.25}`)
	post(t, base+"/mode", `{"mode":"late"}`)
	var b Behavior
	getJSON(t, base+"/mode", &b)
	if b.Mode != ModeLate || b.Latency != Duration(5*time.Millisecond) || b.DeclineRatio != 0.25 {
		t.Fatalf("behaviour %+v", b)
	}
}

func TestControlConfigRefusals(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:9090", "10.1.2.3:9090", ":9090", "example.com:9090", "nohost"} {
		err := ControlConfig{Listen: addr}.Validate()
		if err == nil {
			t.Fatalf("control on %s accepted", addr)
		}
		if addr != "nohost" && !errors.Is(err, ErrControlRemote) {
			t.Fatalf("control on %s: %v, want ErrControlRemote", addr, err)
		}
		if _, err := StartIssuerControl(ControlConfig{Listen: addr}, nil, nil); err == nil {
			t.Fatalf("control on %s started", addr)
		}
	}
	for _, addr := range []string{"127.0.0.1:9090", "[::1]:9090", "localhost:9090"} {
		if err := (ControlConfig{Listen: addr}).Validate(); err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
	}
	if err := (ControlConfig{Listen: "0.0.0.0:9090", AllowRemote: true}).Validate(); err != nil {
		t.Fatal(err)
	}
}

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate.
type testPKI struct {
	dir                string
	ca                 *x509.Certificate
	caKey              *ecdsa.PrivateKey
	pool               *x509.CertPool
	client             tls.Certificate
	serverCert, srvKey string
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	p.caKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sim-ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.ca)
	p.write(t, "ca.pem", "CERTIFICATE", der)
	p.serverCert, p.srvKey = p.issue(t, "server", 2, x509.ExtKeyUsageServerAuth)
	cc, ck := p.issue(t, "client", 3, x509.ExtKeyUsageClientAuth)
	if p.client, err = tls.LoadX509KeyPair(cc, ck); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *testPKI) issue(t *testing.T, name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		KeyUsage: x509.KeyUsageDigitalSignature, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &k.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(k)
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+".key", "EC PRIVATE KEY", kder)
}

func (p *testPKI) write(t *testing.T, name, typ string, der []byte) string {
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// With a client CA the issuer is mTLS: a client without a certificate is
// refused at the handshake and nothing is counted; one with a certificate
// is answered.
func TestIssuerMutualTLS(t *testing.T) {
	p := newPKI(t)
	s := startIssuer(t, func(c *IssuerConfig) {
		c.TLS = &TLSFiles{CertFile: p.serverCert, KeyFile: p.srvKey, ClientCAFile: filepath.Join(p.dir, "ca.pem")}
	})
	anon, err := tls.Dial("tcp", s.Addr(), &tls.Config{RootCAs: p.pool})
	if err == nil {
		// TLS 1.3 reports the missing certificate on the first read.
		c := wrapConn(t, anon)
		c.send(network("000001", "301"))
		_, err = c.recv()
		anon.Close()
	}
	if err == nil {
		t.Fatal("a client without a certificate was answered")
	}
	if st := s.Stats(); len(st.Messages) != 0 {
		t.Fatalf("refused client's message counted: %v", st.Messages)
	}
	conn, err := tls.Dial("tcp", s.Addr(), &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{p.client}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	wantCode(t, wrapConn(t, conn).roundTrip(financial("0200", "000002")), "0210", "00")
}
