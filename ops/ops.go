// Package ops is the operators' HTTP API: health, readiness, Prometheus
// metrics and read-only JSON views of the ledger. Writes (later: day close,
// membership) go through the cluster like every other command.
package ops

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/httptls"
	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
)

// Limits on the API.
const (
	// pageLimitMax bounds one list response: a client wanting more pages on.
	pageLimitMax     = 1000
	pageLimitDefault = 100
	// headerBytesMax and the timeouts keep a slow or hostile client from
	// holding a connection (Slowloris).
	headerBytesMax    = 16 << 10
	bodyBytesMax      = 64 << 10 // an account or admin command is small
	writeTimeoutMax   = 15 * time.Second
	accountIDBytesMax = 64
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
)

// ErrConfig is wrapped by every Validate error.
var ErrConfig = errors.New("ops: invalid config")

// Config is the ops listener's configuration.
type Config struct {
	Listen string `yaml:"listen"`
	// Pprof serves /debug/pprof/ for profiling (scope cluster:admin). Off
	// by default: profiles show code paths and timings.
	Pprof bool `yaml:"pprof"`
	// TLS, when set, makes the ops listener HTTPS. With client_ca_file,
	// a client may show a certificate: tls_client_auth clients must, and
	// their tokens are bound to it.
	TLS *TLSConfig `yaml:"tls"`
	// HealthListen, when set, is a second, plain-HTTP listener with only
	// /healthz, /readyz and /metrics, for load balancers and Prometheus;
	// the main listener then serves /metrics only with scope ops:read.
	HealthListen string `yaml:"health_listen"`
	// Auth is the OAuth2 authorization server every route but health,
	// readiness, metrics, the token endpoint and the JWK set is behind.
	Auth oauth.Config `yaml:"auth"`
}

// TLSConfig is the ops listener's certificate and, optionally, the CAs
// that sign clients' certificates (RFC 8705 tls_client_auth).
type TLSConfig struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// DefaultConfig listens on loopback only: ops is not for the internet.
func DefaultConfig() Config { return Config{Listen: "127.0.0.1:8080", Auth: oauth.DefaultConfig()} }

// Validate checks the listen addresses, TLS files and auth settings.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("%w: listen %q: %v", ErrConfig, c.Listen, err)
	}
	if c.HealthListen != "" {
		if _, _, err := net.SplitHostPort(c.HealthListen); err != nil {
			return fmt.Errorf("%w: health_listen %q: %v", ErrConfig, c.HealthListen, err)
		}
	}
	if c.TLS != nil && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		return fmt.Errorf("%w: tls needs cert_file and key_file", ErrConfig)
	}
	if err := c.Auth.Validate(); err != nil {
		return fmt.Errorf("%w: auth: %v", ErrConfig, err)
	}
	return nil
}

// Ledger is what ops reads.
type Ledger interface {
	Account(id string) (store.Account, error)
	Accounts(after string, limit int) ([]store.Account, error)
	Transfers(f store.TransferFilter) ([]store.Transfer, error)
	StateHash() (uint64, [32]byte, error)
	AdminLedger
}

// Admin is the write side: every write is a command through the cluster.
type Admin interface {
	CreateAccount(ctx context.Context, s payment.AccountSeed, admin *store.Admin) (created bool, err error)
}

// Node is what ops reports of the cluster and changes in it (cluster.go).
type Node interface {
	Ready() bool
	Status() cluster.Status
	Membership
	Proposer
}

// Server is the ops HTTP server.
type Server struct {
	cfg    Config
	ledger Ledger
	admin  Admin
	node   Node
	log    *slog.Logger
	srv    *http.Server
	mux    *http.ServeMux // routes; HandleSettlement adds its own before Start
	ln     net.Listener
	done   chan struct{}
	once   sync.Once
	auth   *oauth.Server
	scopes map[string]string // route pattern → scope ("": open)
	health *http.Server      // HealthListen's server, when set
	hln    net.Listener
	hdone  chan struct{}
}

// New builds the server; gatherer serves /metrics and auth checks every
// call's token.
func New(cfg Config, ledger Ledger, admin Admin, node Node, auth *oauth.Server, gatherer prometheus.Gatherer, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if auth == nil {
		return nil, fmt.Errorf("%w: an authorization server is required", ErrConfig)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, ledger: ledger, admin: admin, node: node, log: logger, done: make(chan struct{}),
		auth: auth, scopes: map[string]string{}}
	mux := http.NewServeMux()
	s.mux = mux
	healthz := func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}
	// The agents' cash-limit gauges are read from the ledger on scrape.
	own := prometheus.NewRegistry()
	own.MustRegister(newAgentCollector(ledger))
	metrics := promhttp.HandlerFor(prometheus.Gatherers{gatherer, own}, promhttp.HandlerOpts{})
	s.handleOpen("GET /healthz", healthz)
	s.handleOpen("GET /readyz", s.readyz)
	if cfg.HealthListen != "" {
		s.handle("GET /metrics", oauth.ScopeOpsRead, metrics.ServeHTTP)
		hm := http.NewServeMux()
		hm.HandleFunc("GET /healthz", healthz)
		hm.HandleFunc("GET /readyz", s.readyz)
		hm.Handle("GET /metrics", metrics)
		s.health = s.httpServer(hm)
		s.hdone = make(chan struct{})
	} else {
		s.handleOpen("GET /metrics", metrics.ServeHTTP)
	}
	s.handleOpen("POST /oauth/token", auth.HandleToken)
	s.handleOpen("GET /.well-known/jwks.json", auth.HandleJWKS)
	s.registerClients()
	s.handle("GET /v1/accounts", oauth.ScopeOpsRead, s.accounts)
	s.handle("GET /v1/accounts/{id}", oauth.ScopeOpsRead, s.account)
	s.handle("POST /v1/accounts", oauth.ScopeOpsWrite, s.createAccount)
	s.handle("GET /v1/transfers", oauth.ScopeOpsRead, s.transfers)
	s.registerCluster(mux)
	s.registerAdmin(mux)
	if cfg.Pprof {
		s.handle("GET /debug/pprof/", oauth.ScopeClusterAdmin, pprof.Index)
		s.handle("GET /debug/pprof/profile", oauth.ScopeClusterAdmin, pprof.Profile)
		s.handle("GET /debug/pprof/trace", oauth.ScopeClusterAdmin, pprof.Trace)
		s.handle("GET /debug/pprof/symbol", oauth.ScopeClusterAdmin, pprof.Symbol)
	}
	s.srv = s.httpServer(mux)
	if cfg.TLS != nil {
		tc, err := cfg.TLS.serverConfig()
		if err != nil {
			return nil, err
		}
		s.srv.TLSConfig = tc
	}
	return s, nil
}

func (s *Server) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    headerBytesMax,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// serverConfig is TLS 1.2+ with the listener's certificate; with a client
// CA bundle, clients may show a certificate, verified against it.
func (c *TLSConfig) serverConfig() (*tls.Config, error) {
	tc, err := httptls.ServerConfig(c.CertFile, c.KeyFile, c.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return tc, nil
}

// Start listens and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("ops: %w", err)
	}
	if s.health != nil {
		hln, err := net.Listen("tcp", s.cfg.HealthListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("ops: health_listen: %w", err)
		}
		s.hln = hln
		go func() {
			defer close(s.hdone)
			if err := s.health.Serve(hln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("ops health server stopped", "err", err)
			}
		}()
		s.log.Info("ops health listening", "addr", hln.Addr().String())
	}
	s.ln = ln
	// Read before Serve: it writes TLSConfig (HTTP/2 setup).
	useTLS := s.srv.TLSConfig != nil
	go func() {
		defer close(s.done)
		var err error
		if useTLS {
			err = s.srv.ServeTLS(ln, "", "")
		} else {
			err = s.srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("ops server stopped", "err", err)
		}
	}()
	s.log.Info("ops listening", "addr", ln.Addr().String(), "tls", useTLS)
	return nil
}

// Addr is the listening address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// HealthAddr is the health listener's address (nil without one).
func (s *Server) HealthAddr() net.Addr {
	if s.hln == nil {
		return nil
	}
	return s.hln.Addr()
}

// Close shuts the server down, letting requests in flight finish.
func (s *Server) Close(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		err = s.srv.Shutdown(ctx)
		if s.ln != nil {
			<-s.done
		}
		if s.health != nil {
			if herr := s.health.Shutdown(ctx); err == nil {
				err = herr
			}
			if s.hln != nil {
				<-s.hdone
			}
		}
	})
	return err
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if !s.node.Ready() {
		answer(w, fmt.Errorf("%w: the node is not the leader or has not applied the log yet", outcome.ErrNotReady))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// accountView is an account as ops sees it: balances derived, PAN masked,
// no lookup hash.
type accountView struct {
	ID        string `json:"id"`
	Kind      string `json:"kind"`
	Currency  string `json:"currency"`
	Partner   string `json:"partner,omitempty"`
	MaskedPAN string `json:"masked_pan,omitempty"`
	Posted    int64  `json:"posted"`
	Pending   int64  `json:"pending"`
	Available int64  `json:"available"`
	Floor     *int64 `json:"floor,omitempty"`
}

func viewOf(a store.Account) accountView {
	v := accountView{
		ID: a.ID, Kind: string(a.Kind), Currency: a.Currency, Partner: a.Partner,
		MaskedPAN: a.MaskedPAN, Posted: a.Posted(), Pending: a.DebitsPending, Available: a.Available(),
	}
	if !a.Unlimited {
		f := a.Floor
		v.Floor = &f
	}
	return v
}

func (s *Server) accounts(w http.ResponseWriter, r *http.Request) {
	if !s.caughtUp(w, r) {
		return
	}
	limit, err := pageLimit(r)
	if err != nil {
		answer(w, badRequest(err.Error()))
		return
	}
	accts, err := s.ledger.Accounts(r.URL.Query().Get("after"), limit)
	if err != nil {
		s.fail(w, err)
		return
	}
	out := make([]accountView, 0, len(accts))
	for _, a := range accts {
		out = append(out, viewOf(a))
	}
	writeJSON(w, http.StatusOK, map[string]any{"accounts": out})
}

func (s *Server) account(w http.ResponseWriter, r *http.Request) {
	if !s.caughtUp(w, r) {
		return
	}
	a, err := s.ledger.Account(r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, viewOf(a))
}

// accountRequest is the body of POST /v1/accounts. The PAN is used once to
// compute the lookup hash and masked form; it is never stored or echoed.
type accountRequest struct {
	ID        string `json:"id"`
	Kind      string `json:"kind"`
	Currency  string `json:"currency"`
	Partner   string `json:"partner"`
	PAN       string `json:"pan"`
	Opening   string `json:"opening"`
	FundedBy  string `json:"funded_by"`
	Floor     int64  `json:"floor"`
	Unlimited bool   `json:"unlimited"`
}

func validAccountID(id string) bool {
	if len(id) < 1 || len(id) > accountIDBytesMax {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func (s *Server) createAccount(w http.ResponseWriter, r *http.Request) {
	adm, ok := s.requireActor(w, r)
	if !ok {
		return
	}
	var req accountRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, bodyBytesMax))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		// The decoder's message could quote the body (a PAN): say only where.
		answer(w, badRequest("body must be one JSON account object with known fields"))
		return
	}
	if !validAccountID(req.ID) {
		answer(w, badRequest(fmt.Sprintf("id must be 1-%d characters of [A-Za-z0-9._-]", accountIDBytesMax)))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeoutMax)
	defer cancel()
	created, err := s.admin.CreateAccount(ctx, payment.AccountSeed{
		ID: req.ID, Kind: store.AccountKind(req.Kind), Currency: req.Currency, Partner: req.Partner,
		PAN: req.PAN, Opening: req.Opening, FundedBy: req.FundedBy, Floor: req.Floor, Unlimited: req.Unlimited,
	}, adm)
	if err != nil {
		s.fail(w, err)
		return
	}
	if !s.caughtUp(w, r) {
		return
	}
	a, err := s.ledger.Account(req.ID)
	if err != nil {
		s.fail(w, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, viewOf(a))
}

func (s *Server) transfers(w http.ResponseWriter, r *http.Request) {
	if !s.caughtUp(w, r) {
		return
	}
	limit, err := pageLimit(r)
	if err != nil {
		answer(w, badRequest(err.Error()))
		return
	}
	q := r.URL.Query()
	f := store.TransferFilter{
		Account: q.Get("account"), Partner: q.Get("partner"), BusinessDay: q.Get("day"),
		Status: store.TransferStatus(q.Get("status")), Limit: limit, After: q.Get("after"), PayerType: q.Get("payer_type"),
	}
	if f.BusinessDay != "" {
		if _, err := time.Parse(time.DateOnly, f.BusinessDay); err != nil {
			answer(w, badRequest("day must be YYYY-MM-DD"))
			return
		}
	}
	switch f.Status {
	case "", store.TransferPending, store.TransferPosted, store.TransferVoided, store.TransferExpired, store.TransferCompleted:
	default:
		answer(w, badRequest("unknown status"))
		return
	}
	ts, err := s.ledger.Transfers(f)
	if err != nil {
		s.fail(w, err)
		return
	}
	if ts == nil {
		ts = []store.Transfer{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"transfers": ts})
}

func pageLimit(r *http.Request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return pageLimitDefault, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > pageLimitMax {
		return 0, fmt.Errorf("limit must be in [1, %d]", pageLimitMax)
	}
	return n, nil
}

// fail answers err through the outcome table.
// fail answers err with its problem from the one table (outcome): its
// status, type and title, its text as the detail where the table says it
// is safe to show, and Retry-After where it says so.
func (s *Server) fail(w http.ResponseWriter, err error) {
	o := outcome.Of(err)
	if o.HTTPStatus >= 500 && o.RetryAfter == 0 {
		s.log.Error("ops request failed", "err", err)
	}
	answer(w, err)
}

// answer writes err's problem document, as outcome's table says: every
// problem the ops API answers comes from there.
func answer(w http.ResponseWriter, err error) {
	o := outcome.Of(err)
	detail := ""
	if o.Detail {
		detail = err.Error()
	}
	if o.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(o.RetryAfter.Seconds())))
	}
	doc := map[string]any{
		"type": "https://switchd.dev/problems/" + o.Problem, "title": o.Title, "status": o.HTTPStatus, "detail": detail,
	}
	var ce *store.ChangeError
	if errors.As(err, &ce) && ce.Field != "" {
		doc["field"] = ce.Field // which field of the change is at fault
	}
	problemMembers(err, doc)
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(o.HTTPStatus)
	json.NewEncoder(w).Encode(doc)
}

// badRequest is the error of a request that does not parse.
func badRequest(detail string) error { return fmt.Errorf("%w: %s", outcome.ErrBadRequest, detail) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
