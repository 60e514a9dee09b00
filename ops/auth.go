package ops

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/outcome"
)

// Every route but /healthz, /readyz, /metrics, /oauth/token and
// /.well-known/jwks.json needs a bearer token with the route's scope
// (handle). The token's client is the actor of every change it makes.

type principalKey struct{}

// principalOf is who r's token speaks for; handle put it there.
func principalOf(r *http.Request) *oauth.Principal {
	p, _ := r.Context().Value(principalKey{}).(*oauth.Principal)
	return p
}

// handle registers h at pattern behind a bearer-token check for scope.
func (s *Server) handle(pattern, scope string, h http.HandlerFunc) {
	if scope == "" {
		panic("ops: route " + pattern + " without a scope")
	}
	s.scopes[pattern] = scope
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		p, err := s.auth.Check(r)
		if err == nil && !p.Has(scope) {
			err = fmt.Errorf("%w: this call needs scope %s", oauth.ErrInsufficientScope, scope)
		}
		if err != nil {
			s.refuse(w, r, err, scope)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// handleOpen registers a route that needs no token.
func (s *Server) handleOpen(pattern string, h http.HandlerFunc) {
	s.scopes[pattern] = ""
	s.mux.HandleFunc(pattern, h)
}

// refuse answers a failed bearer check: the problem from outcome's table
// and the WWW-Authenticate challenge of RFC 6750 §3.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, err error, scope string) {
	code := "invalid_token"
	switch {
	case errors.Is(err, oauth.ErrNoToken):
		code = ""
	case errors.Is(err, oauth.ErrInsufficientScope):
		code = "insufficient_scope"
	}
	ch := `Bearer realm="switchd"`
	if code != "" {
		ch += fmt.Sprintf(`, error="%s"`, code)
	}
	if code == "insufficient_scope" {
		ch += fmt.Sprintf(`, scope="%s"`, scope)
	}
	w.Header().Set("WWW-Authenticate", ch)
	s.log.Info("ops: request refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr,
		"problem", outcome.Of(err).Problem)
	answer(w, err)
}

// Scopes lists every route and the scope it needs ("" for open routes):
// docs and a test that no route is left open by mistake read it.
func (s *Server) Scopes() map[string]string {
	out := make(map[string]string, len(s.scopes))
	for k, v := range s.scopes {
		out[k] = v
	}
	return out
}

// actorOf is the client r's token speaks for.
func actorOf(r *http.Request) (string, error) {
	p := principalOf(r)
	if p == nil || !validActor(p.ClientID) {
		return "", fmt.Errorf("%w: no authenticated client", outcome.ErrActorRequired)
	}
	return p.ClientID, nil
}

// scopeList is how a scope list prints in errors.
func scopeList(s []string) string { return strings.Join(s, " ") }
