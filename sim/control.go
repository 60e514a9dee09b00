package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Control API limits.
const (
	// controlBodyBytesMax bounds a control request body: a mode change or
	// a reversal request is a few hundred bytes.
	controlBodyBytesMax      = 4096
	controlReadHeaderTimeout = 5 * time.Second
	controlShutdownTimeout   = 5 * time.Second
	defaultControlListen     = "127.0.0.1:9090"
)

// ErrControlRemote: a control address that is not loopback without
// AllowRemote. The control API has no authentication — it is test
// equipment — so by default only this machine may reach it.
var ErrControlRemote = errors.New("sim: control API must listen on loopback")

// ControlConfig is the control API's configuration.
type ControlConfig struct {
	// Listen is the HTTP address of the control API.
	Listen string
	// AllowRemote lets Listen be a non-loopback address. The API is
	// unauthenticated: anyone who reaches it can take the simulator down.
	AllowRemote bool
}

// DefaultControlConfig listens on 127.0.0.1:9090.
func DefaultControlConfig() ControlConfig { return ControlConfig{Listen: defaultControlListen} }

// Validate reports whether c is usable.
func (c ControlConfig) Validate() error {
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("%w: control listen %q: %v", ErrConfig, c.Listen, err)
	}
	if c.AllowRemote {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %q (set AllowRemote to expose it)", ErrControlRemote, c.Listen)
	}
	return nil
}

// controlled is what the control API drives: either simulator.
type controlled interface {
	Behavior() Behavior
	SetBehavior(Behavior) error
	Reset()
	statsJSON() any
}

// Control is a running control API.
type Control struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{} // closed when Serve returned
	log  *slog.Logger
}

// controlMux serves POST /mode, GET /mode, GET /stats and POST /reset for
// sim; callers add their own routes.
func controlMux(sim controlled) *http.ServeMux {
	var mu sync.Mutex // serializes read-modify-write of the behaviour
	mux := http.NewServeMux()
	mux.HandleFunc("GET /mode", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, sim.Behavior())
	})
	mux.HandleFunc("POST /mode", func(w http.ResponseWriter, r *http.Request) {
		var p modePatch
		if !readJSON(w, r, &p) {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		b := p.apply(sim.Behavior())
		if err := sim.SetBehavior(b); err != nil {
			if errors.Is(err, ErrBehavior) {
				writeProblem(w, http.StatusBadRequest, "invalid-behavior", err.Error())
				return
			}
			writeProblem(w, http.StatusServiceUnavailable, "cannot-switch", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, b)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, sim.statsJSON())
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		sim.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// refuseBrowsers refuses any request that carries an Origin header: the
// API is unauthenticated and on loopback, so the one caller that could
// reach it unasked is a web page in a local browser (a cross-site POST
// needs no preflight with a text/plain body). curl and tests send none.
func refuseBrowsers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") != "" {
			writeProblem(w, http.StatusForbidden, "browser-refused", "the control API does not serve browsers")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// startControl serves h on cfg.Listen.
func startControl(cfg ControlConfig, h http.Handler, logger *slog.Logger) (*Control, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("sim: control listen %s: %w", cfg.Listen, err)
	}
	c := &Control{
		srv: &http.Server{Handler: refuseBrowsers(h), ReadHeaderTimeout: controlReadHeaderTimeout,
			ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)},
		ln: ln, done: make(chan struct{}), log: logger,
	}
	go func() {
		defer close(c.done)
		c.srv.Serve(ln)
	}()
	logger.Info("simulator control API listening", "addr", ln.Addr().String(), "allow_remote", cfg.AllowRemote)
	return c, nil
}

// StartIssuerControl serves the control API of s.
func StartIssuerControl(cfg ControlConfig, s *Issuer, logger *slog.Logger) (*Control, error) {
	mux := controlMux(s)
	// POST /reverse {"rrn"}: the issuer takes back a request it approved
	// (an 0420 to the switch on one of its connections).
	mux.HandleFunc("POST /reverse", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			RRN string `json:"rrn"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		switch err := s.SendReversal(req.RRN); {
		case err == nil:
			writeJSON(w, http.StatusAccepted, map[string]string{"rrn": req.RRN})
		case errors.Is(err, ErrBehavior):
			writeProblem(w, http.StatusBadRequest, "bad-request", err.Error())
		case errors.Is(err, ErrNoConnection):
			writeProblem(w, http.StatusConflict, "no-connection", err.Error())
		default:
			writeProblem(w, http.StatusInternalServerError, "internal", "cannot send the reversal")
		}
	})
	return startControl(cfg, mux, logger)
}

// Addr is the control API's bound address.
func (c *Control) Addr() string { return c.ln.Addr().String() }

// Close stops the control API, letting requests in progress finish for a
// short while.
func (c *Control) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), controlShutdownTimeout)
	defer cancel()
	err := c.srv.Shutdown(ctx)
	if err != nil {
		c.srv.Close()
	}
	<-c.done
	return err
}

// readJSON decodes one JSON object of at most controlBodyBytesMax into v,
// refusing unknown fields and trailing data; on failure it has answered.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	return decodeBody(w, r, v, controlBodyBytesMax)
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any, limit int64) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeProblem(w, http.StatusRequestEntityTooLarge, "body-too-large", fmt.Sprintf("the body is limited to %d bytes", limit))
			return false
		}
		writeProblem(w, http.StatusBadRequest, "bad-request", "body: "+err.Error())
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		writeProblem(w, http.StatusBadRequest, "bad-request", "body: one JSON object expected, found more")
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// problem is an RFC 9457 problem document.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

func writeProblem(w http.ResponseWriter, status int, kind, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(problem{Type: "https://switchd.dev/problems/sim/" + kind, Title: http.StatusText(status), Status: status, Detail: detail})
}
