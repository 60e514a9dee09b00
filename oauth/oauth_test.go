package oauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/goleak"

	"github.com/switchd/switchd/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// dirOf is a directory holding clients, as the FSM would store them.
type dirOf struct {
	mu sync.Mutex
	d  *store.Directory
}

func (d *dirOf) get() *store.Directory {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.d
}

func keyFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "k.pem")
	if made, err := GenerateKeyFile(p); err != nil || !made {
		t.Fatal(made, err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %s", st.Mode().Perm())
	}
	return p
}

func newTestServer(t *testing.T, clients []store.Client, keys ...string) (*Server, *dirOf) {
	t.Helper()
	if len(keys) == 0 {
		keys = []string{keyFile(t)}
	}
	ks, err := LoadKeys(keys)
	if err != nil {
		t.Fatal(err)
	}
	d := &dirOf{d: store.NewDirectoryWithClients(clients)}
	s, err := NewServer(DefaultConfig(), ks, d.get, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, d
}

func hashed(t *testing.T, secret string) store.ClientSecret {
	t.Helper()
	h, err := HashSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h, secret) {
		t.Fatal("the hash contains the secret")
	}
	return store.ClientSecret{Hash: h}
}

// tokenReq posts a token request to s's handler.
func tokenReq(t *testing.T, s *Server, form url.Values, basic []string, tlsState *tls.ConnectionState) (int, map[string]any, http.Header) {
	t.Helper()
	req := httptest.NewRequest("POST", "/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic != nil {
		req.SetBasicAuth(url.QueryEscape(basic[0]), url.QueryEscape(basic[1]))
	}
	req.TLS = tlsState
	w := httptest.NewRecorder()
	s.HandleToken(w, req)
	var out map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out, w.Header()
}

func check(s *Server, tok string, tlsState *tls.ConnectionState) (*Principal, error) {
	req := httptest.NewRequest("GET", "/v1/accounts", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.TLS = tlsState
	return s.Check(req)
}

var cc = url.Values{"grant_type": {"client_credentials"}}

func TestTokenEndpointClientSecret(t *testing.T) {
	secret, _ := NewSecret()
	s, _ := newTestServer(t, []store.Client{
		{ID: "ops", Scopes: []string{ScopeOpsRead, ScopeRoutesWrite}, Secrets: []store.ClientSecret{hashed(t, secret)}},
		{ID: "off", Scopes: []string{ScopeOpsRead}, Secrets: []store.ClientSecret{hashed(t, secret)}, Disabled: true},
	})
	code, out, hdr := tokenReq(t, s, cc, []string{"ops", secret}, nil)
	if code != 200 || out["token_type"] != "Bearer" || out["scope"] != "ops:read routes:write" || out["expires_in"].(float64) != 900 {
		t.Fatalf("token: %d %v", code, out)
	}
	if _, ok := out["refresh_token"]; ok {
		t.Error("a refresh token for client credentials (RFC 6749 §4.4.3 says none)")
	}
	if hdr.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", hdr.Get("Cache-Control"))
	}
	p, err := check(s, out["access_token"].(string), nil)
	if err != nil || p.ClientID != "ops" || !p.Has(ScopeRoutesWrite) || p.Has(ScopeClusterAdmin) {
		t.Fatalf("check: %+v %v", p, err)
	}
	// client_secret_post works too, and a narrower scope is honoured.
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"ops"}, "client_secret": {secret}, "scope": {"ops:read"}}
	if code, out, _ := tokenReq(t, s, form, nil, nil); code != 200 || out["scope"] != "ops:read" {
		t.Fatalf("post: %d %v", code, out)
	}

	for _, c := range []struct {
		name  string
		form  url.Values
		basic []string
		code  int
		err   string
	}{
		{"wrong secret", cc, []string{"ops", secret + "x"}, 401, "invalid_client"},
		{"unknown client", cc, []string{"nobody", secret}, 401, "invalid_client"},
		{"disabled client", cc, []string{"off", secret}, 401, "invalid_client"},
		{"no client", cc, nil, 401, "invalid_client"},
		{"password grant", url.Values{"grant_type": {"password"}}, []string{"ops", secret}, 400, "unsupported_grant_type"},
		{"no grant", url.Values{}, []string{"ops", secret}, 400, "unsupported_grant_type"},
		{"scope not granted", url.Values{"grant_type": {"client_credentials"}, "scope": {"cluster:admin"}}, []string{"ops", secret}, 400, "invalid_scope"},
		{"two methods", url.Values{"grant_type": {"client_credentials"}, "client_secret": {secret}}, []string{"ops", secret}, 400, "invalid_request"},
		{"repeated parameter", url.Values{"grant_type": {"client_credentials", "client_credentials"}}, []string{"ops", secret}, 400, "invalid_request"},
	} {
		code, out, hdr := tokenReq(t, s, c.form, c.basic, nil)
		if code != c.code || out["error"] != c.err || out["access_token"] != nil {
			t.Errorf("%s: %d %v, want %d %s", c.name, code, out, c.code, c.err)
		}
		if code == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%s: WWW-Authenticate %q", c.name, hdr.Get("WWW-Authenticate"))
		}
		if strings.Contains(out["error_description"].(string), secret) {
			t.Errorf("%s: the answer shows the secret", c.name)
		}
	}
	// Not a form: refused.
	req := httptest.NewRequest("POST", "/oauth/token", strings.NewReader(`{"grant_type":"client_credentials"}`))
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	s.HandleToken(w, req)
	if w.Code != 400 {
		t.Errorf("JSON body: %d", w.Code)
	}
}

// The token is a JWT an independent verifier accepts with only the JWK
// set: ES256, at+jwt, our issuer and audience, 15 minutes.
func TestTokenVerifiesAgainstJWKS(t *testing.T) {
	secret, _ := NewSecret()
	s, _ := newTestServer(t, []store.Client{{ID: "ops", Scopes: []string{ScopeOpsRead}, Secrets: []store.ClientSecret{hashed(t, secret)}}})
	_, out, _ := tokenReq(t, s, cc, []string{"ops", secret}, nil)
	raw := out["access_token"].(string)
	w := httptest.NewRecorder()
	s.HandleJWKS(w, httptest.NewRequest("GET", "/.well-known/jwks.json", nil))
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(w.Body.Bytes(), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("jwks: %v %s", err, w.Body.String())
	}
	if !set.Keys[0].IsPublic() || strings.Contains(w.Body.String(), `"d"`) {
		t.Fatal("the JWK set holds a private key")
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if tok.Headers[0].KeyID != set.Keys[0].KeyID || tok.Headers[0].ExtraHeaders["typ"] != "at+jwt" {
		t.Fatalf("header %+v", tok.Headers[0])
	}
	var std jwt.Claims
	var extra map[string]any
	if err := tok.Claims(set.Keys[0].Key, &std, &extra); err != nil {
		t.Fatal(err)
	}
	if err := std.Validate(jwt.Expected{Issuer: "switchd", AnyAudience: jwt.Audience{"switchd-ops"}, Subject: "ops"}); err != nil {
		t.Fatal(err)
	}
	if d := std.Expiry.Time().Sub(std.IssuedAt.Time()); d != 15*time.Minute {
		t.Errorf("lifetime %s", d)
	}
	if extra["client_id"] != "ops" || extra["scope"] != "ops:read" || std.ID == "" {
		t.Errorf("claims %v", extra)
	}
}

// A token signed "none", or by HS256 with the public key as secret, or
// with a typ other than at+jwt, is refused.
func TestCheckRefusesAlgorithmTricks(t *testing.T) {
	s, _ := newTestServer(t, []store.Client{{ID: "ops", Scopes: []string{ScopeOpsRead}, Certs: []store.ClientCert{{Thumbprint: strings.Repeat("A", 43)}}}})
	claims := map[string]any{"iss": "switchd", "aud": "switchd-ops", "sub": "ops", "client_id": "ops", "scope": "ops:read",
		"exp": time.Now().Add(time.Minute).Unix(), "iat": time.Now().Unix()}
	hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: s.keys.JWKS()}, (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", s.keys.KeyID()))
	hsTok, err := jwt.Signed(hs).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	noneTok := "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0." + strings.Split(hsTok, ".")[1] + "."
	idTok, _ := jwt.Signed(func() jose.Signer {
		sg, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: mustKey(t, s), KeyID: s.keys.KeyID()}}, (&jose.SignerOptions{}).WithType("JWT"))
		return sg
	}()).Claims(claims).Serialize()
	for name, tok := range map[string]string{"HS256": hsTok, "none": noneTok, "typ JWT": idTok} {
		if _, err := check(s, tok, nil); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: %v, want invalid token", name, err)
		}
	}
}

// mustKey is s's signing key (the test shares the package).
func mustKey(t *testing.T, s *Server) *ecdsa.PrivateKey {
	t.Helper()
	return s.keys.private
}

// Rotation of the signing key with overlap: the new key signs, tokens of
// the old one keep verifying while it is listed.
func TestSigningKeyRotation(t *testing.T) {
	oldKey, newKey := keyFile(t), keyFile(t)
	clients := []store.Client{{ID: "ops", Scopes: []string{ScopeOpsRead}, Certs: []store.ClientCert{{Thumbprint: strings.Repeat("A", 43)}}}}
	before, _ := newTestServer(t, clients, oldKey)
	old, err := before.Issue("ops", []string{ScopeOpsRead}, "")
	if err != nil {
		t.Fatal(err)
	}
	during, _ := newTestServer(t, clients, newKey, oldKey)
	fresh, _ := during.Issue("ops", []string{ScopeOpsRead}, "")
	for name, tok := range map[string]string{"old": old.Token, "new": fresh.Token} {
		if _, err := check(during, tok, nil); err != nil {
			t.Errorf("%s token during the overlap: %v", name, err)
		}
	}
	if strings.Count(string(during.keys.JWKS()), `"kid"`) != 2 {
		t.Errorf("JWKS during the overlap: %s", during.keys.JWKS())
	}
	after, _ := newTestServer(t, clients, newKey)
	if _, err := check(after, old.Token, nil); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("old token after the old key is gone: %v", err)
	}
	if _, err := check(after, fresh.Token, nil); err != nil {
		t.Errorf("new token: %v", err)
	}
}

// selfSigned is a client certificate and its TLS state as a server sees it.
func selfSigned(t *testing.T, cn string) (*x509.Certificate, *tls.ConnectionState) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}}
}

// RFC 8705: a client authenticates with its certificate alone, its token
// is bound to the certificate (cnf.x5t#S256), and the token is refused on
// a connection with another certificate or none.
func TestTLSClientAuthAndBinding(t *testing.T) {
	cert, state := selfSigned(t, "partner-a")
	_, otherState := selfSigned(t, "partner-b")
	s, _ := newTestServer(t, []store.Client{{ID: "gw", Scopes: []string{ScopeOpsRead}, Certs: []store.ClientCert{{Thumbprint: Thumbprint(cert)}}}})
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"gw"}}
	code, out, _ := tokenReq(t, s, form, nil, state)
	if code != 200 {
		t.Fatalf("tls_client_auth: %d %v", code, out)
	}
	tok := out["access_token"].(string)
	if p, err := check(s, tok, state); err != nil || p.CertBound != Thumbprint(cert) {
		t.Fatalf("bound token with its certificate: %+v %v", p, err)
	}
	for name, st := range map[string]*tls.ConnectionState{"another certificate": otherState, "no TLS": nil, "TLS without a certificate": {}} {
		if _, err := check(s, tok, st); !errors.Is(err, ErrCertBinding) {
			t.Errorf("%s: %v, want the binding refused", name, err)
		}
	}
	// The wrong certificate, or none, gets no token.
	for name, st := range map[string]*tls.ConnectionState{"another certificate": otherState, "none": nil} {
		if code, out, _ := tokenReq(t, s, form, nil, st); code != 401 || out["error"] != "invalid_client" {
			t.Errorf("tls_client_auth with %s: %d %v", name, code, out)
		}
	}
}

// Secret rotation with overlap: both secrets work until the old one's
// not-after, then only the new one.
func TestSecretOverlap(t *testing.T) {
	oldS, _ := NewSecret()
	newS, _ := NewSecret()
	now := time.Now()
	s, _ := newTestServer(t, []store.Client{{ID: "ops", Scopes: []string{ScopeOpsRead},
		Secrets: []store.ClientSecret{{Hash: hashed(t, oldS).Hash, NotAfter: now.Add(time.Hour).UnixNano()}, hashed(t, newS)}}})
	for _, sec := range []string{oldS, newS} {
		if code, out, _ := tokenReq(t, s, cc, []string{"ops", sec}, nil); code != 200 {
			t.Errorf("during the overlap: %d %v", code, out)
		}
	}
	s.SetClock(func() time.Time { return now.Add(2 * time.Hour) })
	if code, _, _ := tokenReq(t, s, cc, []string{"ops", oldS}, nil); code != 401 {
		t.Errorf("old secret after the overlap: %d", code)
	}
	if code, _, _ := tokenReq(t, s, cc, []string{"ops", newS}, nil); code != 200 {
		t.Errorf("new secret after the overlap: %d", code)
	}
}

// Expired, another audience, a disabled client, a scope taken from the
// client after the token was issued.
func TestCheckRefusals(t *testing.T) {
	thumb := strings.Repeat("A", 43)
	s, d := newTestServer(t, []store.Client{{ID: "ops", Scopes: []string{ScopeOpsRead, ScopeRoutesWrite}, Certs: []store.ClientCert{{Thumbprint: thumb}}}})
	iss, _ := s.Issue("ops", []string{ScopeOpsRead, ScopeRoutesWrite}, "")
	s.SetClock(func() time.Time { return time.Now().Add(16 * time.Minute) })
	if _, err := check(s, iss.Token, nil); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("after 16 minutes: %v", err)
	}
	s.SetClock(time.Now)
	other, _ := NewServer(Config{Issuer: "switchd", Audience: "elsewhere", TokenTTL: time.Minute}, s.keys, d.get, nil, nil)
	o, _ := other.Issue("ops", []string{ScopeOpsRead}, "")
	if _, err := check(s, o.Token, nil); !errors.Is(err, ErrWrongAudience) {
		t.Errorf("another audience: %v", err)
	}
	d.mu.Lock()
	d.d = store.NewDirectoryWithClients([]store.Client{{ID: "ops", Scopes: []string{ScopeOpsRead}, Certs: []store.ClientCert{{Thumbprint: thumb}}}})
	d.mu.Unlock()
	if p, err := check(s, iss.Token, nil); err != nil || p.Has(ScopeRoutesWrite) {
		t.Errorf("scope taken away: %+v %v", p, err)
	}
	d.mu.Lock()
	d.d = store.NewDirectoryWithClients([]store.Client{{ID: "ops", Scopes: []string{ScopeOpsRead}, Certs: []store.ClientCert{{Thumbprint: thumb}}, Disabled: true}})
	d.mu.Unlock()
	if _, err := check(s, iss.Token, nil); !errors.Is(err, ErrClientDisabled) {
		t.Errorf("disabled: %v", err)
	}
}

// Bootstrap makes one admin client and its 0600 credentials file; a
// second node's attempt finds it and writes nothing.
func TestBootstrap(t *testing.T) {
	d := &dirOf{d: store.NewDirectoryWithClients(nil)}
	var cmds []store.Command
	propose := func(_ context.Context, c store.Command) (store.Result, error) {
		cmds = append(cmds, c)
		if len(d.get().Clients()) > 0 {
			return store.Result{Status: store.StatusExists}, nil
		}
		d.mu.Lock()
		d.d = store.NewDirectoryWithClients([]store.Client{c.Admin.ClientChange.Client})
		d.mu.Unlock()
		return store.Result{Status: store.StatusOK}, nil
	}
	path := filepath.Join(t.TempDir(), "creds.json")
	log := slog.New(slog.DiscardHandler)
	if err := Bootstrap(context.Background(), path, d.get, propose, log); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", st, err)
	}
	creds, err := ReadCredentials(path)
	if err != nil || creds.ClientID != BootstrapClientID || !strings.HasPrefix(creds.ClientSecret, SecretPrefix) {
		t.Fatalf("credentials: %+v %v", creds, err)
	}
	b, _ := json.Marshal(cmds[0])
	if strings.Contains(string(b), creds.ClientSecret) {
		t.Fatal("the secret is in the command")
	}
	c, _ := d.get().Client(BootstrapClientID)
	if ok, _ := checkSecret(c.Secrets[0].Hash, creds.ClientSecret); !ok {
		t.Fatal("the stored hash does not match the file's secret")
	}
	// The racing node: the cluster has a client when it looks.
	path2 := filepath.Join(t.TempDir(), "creds.json")
	d2 := &dirOf{d: store.NewDirectoryWithClients(nil)}
	if err := Bootstrap(context.Background(), path2, d2.get, propose, log); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path2)); len(ents) != 0 {
		t.Fatalf("the losing node left files: %v", ents)
	}
	// A world-readable credentials file is refused.
	os.Chmod(path, 0o644)
	if _, err := ReadCredentials(path); err == nil {
		t.Error("a 0644 credentials file was read")
	}
}

// The token endpoint over a real TLS connection: a client certificate
// authenticates, FetchToken gets the token, and it works only with it.
func TestFetchTokenOverMutualTLS(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "cli"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	cert, _ := x509.ParseCertificate(der)
	s, _ := newTestServer(t, []store.Client{{ID: "cli", Scopes: []string{ScopeOpsRead}, Certs: []store.ClientCert{{Thumbprint: Thumbprint(cert)}}}})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/token", s.HandleToken)
	mux.HandleFunc("GET /who", func(w http.ResponseWriter, r *http.Request) {
		p, err := s.Check(r)
		if err != nil {
			http.Error(w, err.Error(), 401)
			return
		}
		io.WriteString(w, p.ClientID)
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	defer srv.Close()
	hc := srv.Client()
	hc.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: k}}
	defer hc.CloseIdleConnections()
	tok, err := FetchToken(context.Background(), hc, srv.URL+"/oauth/token", Credentials{ClientID: "cli"}, "")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/who", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "cli" {
		t.Fatalf("with its certificate: %d %s", resp.StatusCode, b)
	}
	// The same token from a client without the certificate: replayed, refused.
	tc := hc.Transport.(*http.Transport).TLSClientConfig.Clone()
	tc.Certificates = nil
	plain := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	defer plain.CloseIdleConnections()
	resp, err = plain.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("replayed without the certificate: %d", resp.StatusCode)
	}
	var te *TokenError
	if _, err := FetchToken(context.Background(), plain, srv.URL+"/oauth/token", Credentials{ClientID: "cli"}, ""); !errors.As(err, &te) || te.Code != "invalid_client" {
		t.Fatalf("token without the certificate: %v", err)
	}
}

// BenchmarkCheck is the cost of the bearer check every ops call pays
// (ES256 verify, claims, directory lookup); BenchmarkTokenEndpoint that
// of one token request with a secret (Argon2id dominates).
func BenchmarkCheck(b *testing.B) {
	s, _ := newBenchServer(b)
	iss, err := s.Issue("ops", []string{ScopeOpsRead}, "")
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/v1/accounts", nil)
	req.Header.Set("Authorization", "Bearer "+iss.Token)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Check(req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTokenEndpoint(b *testing.B) {
	s, secret := newBenchServer(b)
	body := cc.Encode()
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/oauth/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("ops", secret)
		w := httptest.NewRecorder()
		s.HandleToken(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}

func newBenchServer(b *testing.B) (*Server, string) {
	p := filepath.Join(b.TempDir(), "k.pem")
	if _, err := GenerateKeyFile(p); err != nil {
		b.Fatal(err)
	}
	ks, err := LoadKeys([]string{p})
	if err != nil {
		b.Fatal(err)
	}
	secret, _ := NewSecret()
	h, _ := HashSecret(secret)
	d := store.NewDirectoryWithClients([]store.Client{{ID: "ops", Scopes: []string{ScopeOpsRead}, Secrets: []store.ClientSecret{{Hash: h}}}})
	s, err := NewServer(DefaultConfig(), ks, func() *store.Directory { return d }, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	return s, secret
}
