package api

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/switchd/switchd/httptls"
	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
)

// The partner API's scopes are oauth.PartnerScopes.
const (
	ScopePaymentsWrite = oauth.ScopePaymentsWrite
	ScopePaymentsRead  = oauth.ScopePaymentsRead
	ScopeAccountsRead  = oauth.ScopeAccountsRead
)

// Ledger is what the API reads: transfers, accounts, payment batches,
// statement jobs and idempotency records (store.Store), after the
// core's decision or a ReadIndex; and what it proposes itself, batches
// and statement jobs (cluster.Node's Propose and Leading).
type Ledger interface {
	Transfer(id string) (store.Transfer, error)
	Transfers(f store.TransferFilter) ([]store.Transfer, error)
	Account(id string) (store.Account, error)
	Directory() *store.Directory
	ReadIndex(ctx context.Context) error
	// Authorization is an authorization awaiting (or past) SCA;
	// TransferByOriginal the hold one reserved (sca.go).
	Authorization(id string) (store.Authorization, error)
	TransferByOriginal(ref string) (store.Transfer, error)
	// ReversedByHost says whether the destination's host took back
	// transfer id (store/hostreversal.go).
	ReversedByHost(id string) (bool, error)
	Replay(key, fingerprint string) (store.Result, bool, error)
	Batch(partner, id string) (store.Batch, error)
	BatchItems(partner, id string, from, n int) ([]store.BatchItem, error)
	OpenBatches(after store.BatchRef, limit int) ([]store.BatchRef, error)
	StatementJobOf(partner, id string) (store.StatementJob, error)
	Propose(ctx context.Context, cmd store.Command) (store.Result, error)
	// Leading reports whether this node leads: only the leader makes
	// batches' items.
	Leading() bool
}

// Server is the partner API.
type Server struct {
	cfg    Config
	core   *payment.Core
	ledger Ledger
	auth   *oauth.Server
	log    *slog.Logger
	api    huma.API
	mux    *http.ServeMux
	srv    *http.Server
	ln     net.Listener
	done   chan struct{}
	// batches makes payment batches' items (batches.go).
	batches *batchPool
	stmts   *statements // HandleStatements; nil: no statements served
	hooks   *Webhooks   // HandleWebhooks; nil: webhook routes answer 404
}

// New builds the API over core; auth checks every call's token.
func New(cfg Config, core *payment.Core, ledger Ledger, auth *oauth.Server, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TLS == nil {
		return nil, fmt.Errorf("%w: tls is required (the partner API is HTTPS only)", ErrConfig)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	installErrors()
	logger.Info("partner API", "lane", cfg.Lane, "sca_amount_threshold", cfg.SCA.AmountThresholdMinor, "sca_partners", len(cfg.SCA.Partners),
		"sca_risk_flags", cfg.SCA.RiskFlags, "sca_authentication_ttl", cfg.SCA.ttl(), "sca_return_url_prefixes", len(cfg.SCA.ReturnURLPrefixes),
		"sca_allow_loopback_http", cfg.SCA.AllowLoopbackHTTP, "public_url", publicURL(cfg))
	s := &Server{cfg: cfg, core: core, ledger: ledger, auth: auth, log: logger, mux: http.NewServeMux(), done: make(chan struct{})}
	hc := huma.DefaultConfig("switchd partner API", "1.0.0")
	hc.Info.Description = "Payments, bill payments and funds checks on switchd's exactly-once core. " +
		"Money is a decimal string with the currency's exponent (\"12.34\" USD, \"1000\" JPY), never a JSON number. " +
		"Every state-changing call needs an Idempotency-Key: the same key and body get the stored answer " +
		"(Idempotent-Replayed: true), the same key with another body a 409. Errors are RFC 9457 problems."
	hc.OpenAPIPath = "/v1/openapi"
	hc.DocsPath = "" // the reference page loads its renderer from a CDN; we serve our own (docs.go)
	hc.SchemasPath = "/v1/schemas"
	// No $schema member and Link header: they name the host a request came
	// to, and a replay on another node must be the same bytes.
	hc.CreateHooks = nil
	hc.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"oauth2": {Type: "oauth2", Description: "Client credentials (RFC 6749 §4.4) at /oauth/token",
			Flows: &huma.OAuthFlows{ClientCredentials: &huma.OAuthFlow{TokenURL: "/oauth/token", Scopes: map[string]string{
				ScopePaymentsWrite: "make payments, bill payments and refunds",
				ScopePaymentsRead:  "read payments",
				ScopeAccountsRead:  "check funds, read funds blocks and statements",
				ScopeWebhooksWrite: "register, change, rotate and delete webhook endpoints",
				ScopeWebhooksRead:  "read webhook endpoints and their deliveries"}}}},
	}
	s.api = humago.New(s.mux, hc)
	s.api.UseMiddleware(s.authenticate)
	s.registerPayments()
	s.registerAuthorizations()
	s.registerBatches()
	s.registerStatements()
	s.registerBlocks()
	s.registerTransactions()
	s.registerWebhooks()
	s.mux.HandleFunc("POST /oauth/token", auth.HandleToken)
	s.mux.HandleFunc("GET /.well-known/jwks.json", auth.HandleJWKS)
	s.mux.HandleFunc("GET /v1/docs", s.docs)
	tc, err := serverTLS(cfg.TLS)
	if err != nil {
		return nil, err
	}
	s.srv = &http.Server{
		Handler: http.MaxBytesHandler(s.mux, bodyBytesHardMax), TLSConfig: tc,
		ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout, WriteTimeout: writeTimeout,
		IdleTimeout: idleTimeout, MaxHeaderBytes: headerBytesMax,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

func serverTLS(c *TLSConfig) (*tls.Config, error) {
	tc, err := httptls.ServerConfig(c.CertFile, c.KeyFile, c.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return tc, nil
}

// OpenAPI is the API's document (tests, tools).
func (s *Server) OpenAPI() *huma.OpenAPI { return s.api.OpenAPI() }

// Handler is the API's handler, without TLS (tests).
func (s *Server) Handler() http.Handler { return s.srv.Handler }

// Start listens and serves HTTPS in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	s.ln = ln
	go func() {
		defer close(s.done)
		if err := s.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("partner API stopped", "err", err)
		}
	}()
	s.log.Info("partner API listening", "addr", ln.Addr().String())
	return nil
}

// Addr is the listening address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server, letting calls in flight finish, then the
// batch workers (a batch's items not made by then stay pending).
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if s.ln != nil {
		<-s.done
	}
	s.batches.close()
	return err
}

// caller is who a call comes from: the token's client, the partner it
// is, and the origin the core checks (lane, source, certificate pin).
type caller struct {
	principal *oauth.Principal
	partner   *store.Partner
	origin    payment.Origin
}

type callerKey struct{}

func callerOf(ctx context.Context) *caller {
	c, _ := ctx.Value(callerKey{}).(*caller)
	return c
}

// authenticate checks the bearer token of every operation that names a
// scope (Metadata "scope"), and finds the partner the token's client is.
// A client that is no partner is refused 403: a partner is the token's
// client, never a field of a body.
func (s *Server) authenticate(ctx huma.Context, next func(huma.Context)) {
	scope, _ := ctx.Operation().Metadata["scope"].(string)
	if scope == "" {
		next(ctx)
		return
	}
	r, _ := humago.Unwrap(ctx)
	p, err := s.auth.Check(r)
	if err == nil && !p.Has(scope) {
		err = fmt.Errorf("%w: this call needs scope %s", oauth.ErrInsufficientScope, scope)
	}
	var partner *store.Partner
	if err == nil {
		var ok bool
		if partner, ok = s.ledger.Directory().Partner(p.ClientID); !ok || len(partner.AcquirerIDs) == 0 {
			err = fmt.Errorf("%w: client %q is no partner", outcome.ErrUnknownPartner, p.ClientID)
		}
	}
	if err != nil {
		writeProblem(ctx, problemOf(err))
		return
	}
	o := payment.Origin{Lane: s.cfg.Lane}
	if ap, perr := netip.ParseAddrPort(r.RemoteAddr); perr == nil {
		o.Source = ap.Addr().Unmap()
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		// The same pin a TLS lane computes (SHA-256 of the SPKI, hex).
		sum := sha256.Sum256(r.TLS.PeerCertificates[0].RawSubjectPublicKeyInfo)
		o.CertPin, o.CertAt = hex.EncodeToString(sum[:]), time.Now()
	}
	next(huma.WithValue(ctx, callerKey{}, &caller{principal: p, partner: partner, origin: o}))
}

// writeProblem answers p outside a handler (the middleware).
func writeProblem(ctx huma.Context, p *Problem) {
	for k, vs := range p.GetHeaders() {
		for _, v := range vs {
			ctx.AppendHeader(k, v)
		}
	}
	ctx.SetHeader("Content-Type", "application/problem+json")
	ctx.SetStatus(p.Status)
	_ = json.NewEncoder(ctx.BodyWriter()).Encode(p)
}
