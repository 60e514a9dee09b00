package oauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchd/switchd/store"
)

// Directory is where clients are read: the replicated directory as of the
// last applied entry (store.Store.Directory).
type Directory func() *store.Directory

// Server issues tokens and checks them.
type Server struct {
	cfg  Config
	keys *KeySet
	dir  Directory
	log  *slog.Logger
	now  func() time.Time
	sem  chan struct{}
	m    *metrics

	cacheMu sync.Mutex
	cache   map[string]verifiedToken // raw token → its verified claims
}

type metrics struct {
	tokens *prometheus.CounterVec // result: issued, invalid_client, …
	checks *prometheus.CounterVec // result: ok, invalid_token, …
}

// NewServer builds the server. reg may be nil.
func NewServer(cfg Config, keys *KeySet, dir Directory, logger *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if keys == nil || dir == nil {
		return nil, fmt.Errorf("%w: keys and directory are required", ErrConfig)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &metrics{
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchd_oauth_token_requests_total",
			Help: "Token requests at /oauth/token by result (issued or the RFC 6749 error)."}, []string{"result"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchd_oauth_token_checks_total",
			Help: "Bearer token checks on ops routes by result."}, []string{"result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.tokens, m.checks} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("oauth: metrics: %w", err)
			}
		}
	}
	return &Server{cfg: cfg, keys: keys, dir: dir, log: logger, now: time.Now,
		sem: make(chan struct{}, hashConcurrencyMax), m: m, cache: map[string]verifiedToken{}}, nil
}

// SetClock replaces the clock (tests of expiry).
func (s *Server) SetClock(now func() time.Time) { s.now = now }

// Thumbprint is a certificate's x5t#S256: base64url (no padding) of the
// SHA-256 of its DER (RFC 8705 §3.1).
func Thumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// accessClaims are the token's claims beyond the registered ones (RFC 9068).
type accessClaims struct {
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
	Cnf      *cnf   `json:"cnf,omitempty"`
}

type cnf struct {
	X5t string `json:"x5t#S256"`
}

// Issued is a token and what it carries.
type Issued struct {
	Token   string
	Scopes  []string
	Expires time.Time
}

// Issue signs an access token for client with scopes, bound to the
// certificate thumbprint certBound when it is not empty.
func (s *Server) Issue(client string, scopes []string, certBound string) (Issued, error) {
	now := s.now()
	exp := now.Add(s.cfg.TokenTTL)
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return Issued{}, fmt.Errorf("oauth: token id: %w", err)
	}
	std := jwt.Claims{
		Issuer: s.cfg.Issuer, Subject: client, Audience: jwt.Audience{s.cfg.Audience},
		Expiry: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
		ID: hex.EncodeToString(jti[:]),
	}
	ac := accessClaims{ClientID: client, Scope: strings.Join(scopes, " ")}
	if certBound != "" {
		ac.Cnf = &cnf{X5t: certBound}
	}
	tok, err := jwt.Signed(s.keys.signer).Claims(std).Claims(ac).Serialize()
	if err != nil {
		return Issued{}, fmt.Errorf("oauth: sign token: %w", err)
	}
	return Issued{Token: tok, Scopes: scopes, Expires: exp}, nil
}

// Principal is who a checked token speaks for.
type Principal struct {
	ClientID string
	Scopes   []string
	TokenID  string
	Expires  time.Time
	// CertBound is the thumbprint the token is bound to, if any.
	CertBound string
}

// Has reports whether p holds scope.
func (p *Principal) Has(scope string) bool { return slices.Contains(p.Scopes, scope) }

// Check verifies r's bearer token and returns who it speaks for: signed
// by one of our keys, for our issuer and audience, not expired, its
// client known and enabled, and, when it is bound to a certificate, sent
// over a TLS connection with that client certificate. The scopes are the
// token's that the client still holds (a scope taken from a client takes
// effect at once, not at the token's expiry).
func (s *Server) Check(r *http.Request) (*Principal, error) {
	p, err := s.check(r)
	result := "ok"
	if err != nil {
		result = checkResult(err)
	}
	s.m.checks.WithLabelValues(result).Inc()
	return p, err
}

func checkResult(err error) string {
	for _, e := range []struct {
		err  error
		name string
	}{{ErrNoToken, "no_token"}, {ErrTokenExpired, "expired"}, {ErrWrongAudience, "wrong_audience"},
		{ErrCertBinding, "cert_binding"}, {ErrClientDisabled, "client_disabled"}} {
		if errors.Is(err, e.err) {
			return e.name
		}
	}
	return "invalid_token"
}

func (s *Server) check(r *http.Request) (*Principal, error) {
	raw, err := bearer(r)
	if err != nil {
		return nil, err
	}
	v, err := s.verified(raw)
	if err != nil {
		return nil, err
	}
	std, ac := v.std, v.ac
	err = std.ValidateWithLeeway(jwt.Expected{Issuer: s.cfg.Issuer, AnyAudience: jwt.Audience{s.cfg.Audience}, Time: s.now()}, clockLeeway)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return nil, ErrTokenExpired
	case errors.Is(err, jwt.ErrInvalidAudience):
		return nil, ErrWrongAudience
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if std.Expiry.Time().Sub(std.IssuedAt.Time()) > TokenTTLMax+clockLeeway {
		return nil, fmt.Errorf("%w: lifetime above %s", ErrInvalidToken, TokenTTLMax)
	}
	if std.Subject == "" || ac.ClientID != std.Subject {
		return nil, fmt.Errorf("%w: sub and client_id differ", ErrInvalidToken)
	}
	c, ok := s.dir().Client(std.Subject)
	if !ok || c.Disabled {
		return nil, ErrClientDisabled
	}
	p := &Principal{ClientID: c.ID, TokenID: std.ID, Expires: std.Expiry.Time()}
	if ac.Cnf != nil {
		if ac.Cnf.X5t == "" {
			return nil, fmt.Errorf("%w: empty cnf", ErrInvalidToken)
		}
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || Thumbprint(r.TLS.PeerCertificates[0]) != ac.Cnf.X5t {
			return nil, ErrCertBinding
		}
		p.CertBound = ac.Cnf.X5t
	}
	for _, sc := range strings.Fields(ac.Scope) {
		if c.HasScope(sc) && !slices.Contains(p.Scopes, sc) {
			p.Scopes = append(p.Scopes, sc)
		}
	}
	return p, nil
}

// verifiedToken is what a token's signature vouches for.
type verifiedToken struct {
	std jwt.Claims
	ac  accessClaims
}

// verified parses raw and checks its signature, type and key, once per
// token: the ES256 verify is most of a call's CPU (docs/BENCHMARKS.md),
// and a token's bytes verify the same way every time until it expires
// (the key set does not change while the process runs). What depends on
// the time, the client or the connection (expiry, audience, the client
// still enabled, scopes, the certificate binding) is checked on every call
// by the caller.
func (s *Server) verified(raw string) (verifiedToken, error) {
	s.cacheMu.Lock()
	v, ok := s.cache[raw]
	s.cacheMu.Unlock()
	if ok {
		return v, nil
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || len(tok.Headers) != 1 {
		return v, fmt.Errorf("%w: not a signed JWT", ErrInvalidToken)
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(typ, "at+jwt") {
		// RFC 9068 §4: an access token says so; an ID token or any other
		// JWT signed by the same key is not one.
		return v, fmt.Errorf("%w: typ is not at+jwt", ErrInvalidToken)
	}
	pub, ok := s.keys.public[h.KeyID]
	if !ok {
		return v, fmt.Errorf("%w: unknown key id", ErrInvalidToken)
	}
	if err := tok.Claims(pub, &v.std, &v.ac); err != nil {
		return v, fmt.Errorf("%w: signature", ErrInvalidToken)
	}
	if v.std.Expiry == nil || v.std.IssuedAt == nil {
		return v, fmt.Errorf("%w: exp and iat are required", ErrInvalidToken)
	}
	s.cacheMu.Lock()
	if len(s.cache) >= verifiedCacheMax {
		now := s.now()
		for k, e := range s.cache {
			if !e.std.Expiry.Time().Add(clockLeeway).After(now) {
				delete(s.cache, k)
			}
		}
		if len(s.cache) >= verifiedCacheMax {
			clear(s.cache) // a flood of valid tokens: start over rather than grow
		}
	}
	s.cache[raw] = v
	s.cacheMu.Unlock()
	return v, nil
}

func bearer(r *http.Request) (string, error) {
	hs := r.Header.Values("Authorization")
	if len(hs) == 0 {
		return "", ErrNoToken
	}
	if len(hs) > 1 {
		return "", fmt.Errorf("%w: more than one Authorization header", ErrInvalidToken)
	}
	scheme, tok, ok := strings.Cut(hs[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("%w: Authorization is not a Bearer token", ErrNoToken)
	}
	tok = strings.TrimSpace(tok)
	if tok == "" || len(tok) > tokenBytesMax {
		return "", fmt.Errorf("%w: empty or longer than %d bytes", ErrInvalidToken, tokenBytesMax)
	}
	return tok, nil
}

// HandleJWKS serves the public key set.
func (s *Server) HandleJWKS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "max-age=300")
	_, _ = w.Write(s.keys.JWKS())
}

// tokenError is an RFC 6749 §5.2 error answer.
type tokenError struct {
	status int
	code   string
	desc   string
}

func (e *tokenError) Error() string { return e.code + ": " + e.desc }

func tokenErr(status int, code, desc string) *tokenError {
	return &tokenError{status: status, code: code, desc: desc}
}

// HandleToken serves POST /oauth/token: the client credentials grant
// only, with the client authenticated by exactly one method (RFC 6749
// §2.3): HTTP Basic with a secret (client_secret_basic), client_id and
// client_secret in the form (client_secret_post), or client_id and a TLS
// client certificate registered for it (tls_client_auth). A token issued
// over a connection with a client certificate is bound to it. No refresh
// token (§4.4.3).
func (s *Server) HandleToken(w http.ResponseWriter, r *http.Request) {
	iss, client, err := s.token(r)
	if err != nil {
		var te *tokenError
		if !errors.As(err, &te) {
			te = tokenErr(http.StatusInternalServerError, "server_error", "the token could not be issued")
			s.log.Error("oauth: token", "err", err)
		}
		s.m.tokens.WithLabelValues(te.code).Inc()
		// Who asked, never what secret they showed.
		s.log.Info("oauth: token refused", "client_id", client, "error", te.code, "remote", r.RemoteAddr)
		if te.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="switchd", charset="UTF-8"`)
		}
		writeToken(w, te.status, map[string]string{"error": te.code, "error_description": te.desc})
		return
	}
	s.m.tokens.WithLabelValues("issued").Inc()
	s.log.Info("oauth: token issued", "client_id", client, "scope", strings.Join(iss.Scopes, " "), "remote", r.RemoteAddr)
	writeToken(w, http.StatusOK, map[string]any{
		"access_token": iss.Token, "token_type": "Bearer",
		"expires_in": int64(time.Until(iss.Expires).Round(time.Second) / time.Second),
		"scope":      strings.Join(iss.Scopes, " "),
	})
}

func writeToken(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	// RFC 6749 §5.1: tokens and errors are not cached.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) token(r *http.Request) (Issued, string, error) {
	if r.Method != http.MethodPost {
		return Issued{}, "", tokenErr(http.StatusMethodNotAllowed, "invalid_request", "POST only")
	}
	if ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); !strings.EqualFold(strings.TrimSpace(ct), "application/x-www-form-urlencoded") {
		return Issued{}, "", tokenErr(http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, formBytesMax+1))
	if err != nil || len(buf) > formBytesMax {
		return Issued{}, "", tokenErr(http.StatusBadRequest, "invalid_request", fmt.Sprintf("the body must be at most %d bytes", formBytesMax))
	}
	form, err := url.ParseQuery(string(buf))
	if err != nil {
		return Issued{}, "", tokenErr(http.StatusBadRequest, "invalid_request", "the body is not a valid form")
	}
	for k, v := range form {
		if len(v) > 1 {
			return Issued{}, "", tokenErr(http.StatusBadRequest, "invalid_request", "parameter "+k+" given more than once")
		}
	}
	if form.Get("grant_type") != "client_credentials" {
		return Issued{}, "", tokenErr(http.StatusBadRequest, "unsupported_grant_type", "only client_credentials is supported")
	}
	id, c, certBound, err := s.authenticate(r, form)
	if err != nil {
		return Issued{}, id, err
	}
	scopes := c.Scopes
	if sc := form.Get("scope"); sc != "" {
		scopes = nil
		for _, x := range strings.Fields(sc) {
			if !c.HasScope(x) {
				return Issued{}, id, tokenErr(http.StatusBadRequest, "invalid_scope", fmt.Sprintf("scope %q is not granted to this client", x))
			}
			if !slices.Contains(scopes, x) {
				scopes = append(scopes, x)
			}
		}
	}
	iss, err := s.Issue(c.ID, scopes, certBound)
	return iss, id, err
}

// authenticate finds and authenticates the client of a token request.
func (s *Server) authenticate(r *http.Request, form url.Values) (string, *store.Client, string, error) {
	var cert string
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		cert = Thumbprint(r.TLS.PeerCertificates[0])
	}
	basicID, basicSecret, hasBasic := r.BasicAuth()
	if hasBasic {
		// RFC 6749 §2.3.1: both are form-urlencoded inside Basic.
		var e1, e2 error
		basicID, e1 = url.QueryUnescape(basicID)
		basicSecret, e2 = url.QueryUnescape(basicSecret)
		if e1 != nil || e2 != nil {
			return "", nil, "", tokenErr(http.StatusUnauthorized, "invalid_client", "malformed Basic credentials")
		}
	}
	formID, formSecret := form.Get("client_id"), form.Get("client_secret")
	_, secretInForm := form["client_secret"]
	if hasBasic && (secretInForm || formID != "" && formID != basicID) {
		return basicID, nil, "", tokenErr(http.StatusBadRequest, "invalid_request", "use one client authentication method")
	}
	id, secret := formID, formSecret
	if hasBasic {
		id, secret = basicID, basicSecret
	}
	if id == "" {
		return "", nil, "", tokenErr(http.StatusUnauthorized, "invalid_client", "client authentication required")
	}
	if len(id) > 128 || len(secret) > secretBytesMax {
		return "", nil, "", tokenErr(http.StatusUnauthorized, "invalid_client", "client authentication failed")
	}
	now := s.now().UnixNano()
	c, known := s.dir().Client(id)
	if !hasBasic && !secretInForm {
		// tls_client_auth: the certificate is the credential.
		if !known || c.Disabled || cert == "" || !c.HasCert(cert, now) {
			return id, nil, "", tokenErr(http.StatusUnauthorized, "invalid_client", "client authentication failed")
		}
		return id, c, cert, nil
	}
	ok, err := s.secretMatches(r.Context(), c, known, secret, now)
	if err != nil {
		return id, nil, "", err
	}
	if !ok || c.Disabled {
		return id, nil, "", tokenErr(http.StatusUnauthorized, "invalid_client", "client authentication failed")
	}
	return id, c, cert, nil
}

// secretMatches checks secret against every valid hash of c (a dummy
// hash for an unknown client: the same work either way), at most
// hashConcurrencyMax at a time.
func (s *Server) secretMatches(ctx context.Context, c *store.Client, known bool, secret string, now int64) (bool, error) {
	t := time.NewTimer(hashWaitMax)
	defer t.Stop()
	select {
	case s.sem <- struct{}{}:
	case <-t.C:
		return false, tokenErr(http.StatusServiceUnavailable, "temporarily_unavailable", "too many token requests; retry")
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-s.sem }()
	if !known || len(c.Secrets) == 0 {
		_, _ = checkSecret(dummyHash(), secret)
		return false, nil
	}
	match := false
	for _, h := range c.Secrets {
		ok, err := checkSecret(h.Hash, secret)
		if err == nil && ok && h.Valid(now) {
			match = true
		}
	}
	return match, nil
}
