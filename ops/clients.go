package ops

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/store"
)

// OAuth2 clients of this API (store.Client), all behind clients:admin:
//
//	GET  /v1/clients                     {clients}, secrets redacted
//	GET  /v1/clients/{id}                the client
//	POST /v1/clients                     {id, scopes, certs, secret, reason} → 201 {client, client_secret}
//	PUT  /v1/clients/{id}                {scopes, certs, overlap, reason}: change scopes, rotate certificates
//	POST /v1/clients/{id}/rotate-secret  {overlap, reason} → {client, client_secret}
//	POST /v1/clients/{id}/disable        {reason}
//	POST /v1/clients/{id}/enable         {reason}
//
// A secret is made here (256 random bits), shown once in the answer, and
// replicated only as its Argon2id hash. A retry with the same
// Idempotency-Key is answered "replayed" without a secret: the one made
// for the first request is the one stored.

// clientOverlapMax bounds an overlap here as the FSM does.
const clientOverlapMax = 30 * 24 * time.Hour

type clientRequest struct {
	ID     string   `json:"id"`
	Scopes []string `json:"scopes"`
	// Certs are x5t#S256 thumbprints of the client's TLS certificates
	// (tls_client_auth).
	Certs []string `json:"certs"`
	// Secret: give the client a secret (client_secret_basic). Default
	// true for a create; a certificate-only client sets false.
	Secret *bool `json:"secret"`
	// Overlap: how long the replaced secret or certificates stay valid,
	// a Go duration ("24h").
	Overlap string `json:"overlap"`
	Reason  string `json:"reason"`
}

type clientView struct {
	Client store.Client `json:"client"`
	// ClientSecret is shown once, in the answer to the request that made it.
	ClientSecret string `json:"client_secret,omitempty"`
	Replayed     bool   `json:"replayed,omitempty"`
}

func (s *Server) registerClients() {
	s.handle("GET /v1/clients", oauth.ScopeClientsAdmin, s.listClients)
	s.handle("GET /v1/clients/{id}", oauth.ScopeClientsAdmin, s.getClient)
	s.handle("POST /v1/clients", oauth.ScopeClientsAdmin, s.createClient)
	s.handle("PUT /v1/clients/{id}", oauth.ScopeClientsAdmin, s.updateClient)
	s.handle("POST /v1/clients/{id}/rotate-secret", oauth.ScopeClientsAdmin, s.clientAction(store.ClientRotateSecret))
	s.handle("POST /v1/clients/{id}/disable", oauth.ScopeClientsAdmin, s.clientAction(store.ClientDisable))
	s.handle("POST /v1/clients/{id}/enable", oauth.ScopeClientsAdmin, s.clientAction(store.ClientEnable))
}

func noClient(id string) error { return fmt.Errorf("%w: no client %q", store.ErrNotFound, id) }

func (s *Server) listClients(w http.ResponseWriter, r *http.Request) {
	if !s.caughtUp(w, r) {
		return
	}
	cs := s.ledger.Directory().Clients()
	for i := range cs {
		cs[i] = cs[i].Redacted()
	}
	writeJSON(w, http.StatusOK, map[string]any{"clients": cs})
}

func (s *Server) getClient(w http.ResponseWriter, r *http.Request) {
	if !s.caughtUp(w, r) {
		return
	}
	c, ok := s.ledger.Directory().Client(r.PathValue("id"))
	if !ok {
		s.fail(w, noClient(r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, c.Redacted())
}

// checkScopes refuses scopes this API does not have: a typo would give a
// client nothing, silently.
func checkScopes(scopes []string) error {
	if len(scopes) == 0 {
		return changeError("scopes", "at least one of: %s", scopeList(oauth.Scopes))
	}
	for _, sc := range scopes {
		if !slices.Contains(oauth.Scopes, sc) && !slices.Contains(oauth.PartnerScopes, sc) {
			return changeError("scopes", "%q is not a scope of the ops or partner API (%s %s)", sc, scopeList(oauth.Scopes), scopeList(oauth.PartnerScopes))
		}
	}
	return nil
}

func certsOf(ts []string) []store.ClientCert {
	var out []store.ClientCert
	for _, t := range ts {
		out = append(out, store.ClientCert{Thumbprint: t})
	}
	return out
}

func parseOverlap(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > clientOverlapMax {
		return 0, changeError("overlap", "%q: a duration from 0 to %s, e.g. 24h", s, clientOverlapMax)
	}
	return int64(d), nil
}

func (s *Server) createClient(w http.ResponseWriter, r *http.Request) {
	var req clientRequest
	if !decodeBody(w, r, &req, bodyBytesMax, false) {
		return
	}
	if err := checkScopes(req.Scopes); err != nil {
		s.fail(w, err)
		return
	}
	c := store.Client{ID: req.ID, Scopes: req.Scopes, Certs: certsOf(req.Certs)}
	var secret string
	if req.Secret == nil || *req.Secret {
		var err error
		if secret, c.Secrets, err = newSecret(); err != nil {
			s.fail(w, err)
			return
		}
	}
	if err := store.CheckClient(&c); err != nil {
		s.fail(w, err)
		return
	}
	s.writeClient(w, r, &store.ClientChange{Action: store.ClientCreate, Client: c}, req.Reason, secret, http.StatusCreated,
		fingerprint(store.ClientCreate, c.ID, c.Scopes, req.Certs, secret != ""))
}

func (s *Server) updateClient(w http.ResponseWriter, r *http.Request) {
	var req clientRequest
	if !decodeBody(w, r, &req, bodyBytesMax, false) {
		return
	}
	id := r.PathValue("id")
	if req.ID != "" && req.ID != id {
		s.fail(w, changeError("id", "the body's id is not the path's"))
		return
	}
	if err := checkScopes(req.Scopes); err != nil {
		s.fail(w, err)
		return
	}
	overlap, err := parseOverlap(req.Overlap)
	if err != nil {
		s.fail(w, err)
		return
	}
	c := store.Client{ID: id, Scopes: req.Scopes, Certs: certsOf(req.Certs)}
	s.writeClient(w, r, &store.ClientChange{Action: store.ClientUpdate, Client: c, Overlap: overlap}, req.Reason, "", http.StatusOK,
		fingerprint(store.ClientUpdate, id, req.Scopes, req.Certs, overlap))
}

func (s *Server) clientAction(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req clientRequest
		if !decodeBody(w, r, &req, bodyBytesMax, true) {
			return
		}
		overlap, err := parseOverlap(req.Overlap)
		if err != nil {
			s.fail(w, err)
			return
		}
		c := store.Client{ID: r.PathValue("id")}
		var secret string
		if action == store.ClientRotateSecret {
			if secret, c.Secrets, err = newSecret(); err != nil {
				s.fail(w, err)
				return
			}
		}
		s.writeClient(w, r, &store.ClientChange{Action: action, Client: c, Overlap: overlap}, req.Reason, secret, http.StatusOK,
			fingerprint(action, c.ID, overlap))
	}
}

func newSecret() (string, []store.ClientSecret, error) {
	secret, err := oauth.NewSecret()
	if err != nil {
		return "", nil, err
	}
	hash, err := oauth.HashSecret(secret)
	if err != nil {
		return "", nil, err
	}
	return secret, []store.ClientSecret{{Hash: hash}}, nil
}

// writeClient proposes ch and answers with the client as stored, and the
// new secret unless the command was a replay.
func (s *Server) writeClient(w http.ResponseWriter, r *http.Request, ch *store.ClientChange, reason, secret string, status int, fp string) {
	actor, err := actorOf(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	key, _, err := requestKey(r)
	if err != nil {
		answer(w, badRequest(err.Error()))
		return
	}
	adm := &store.Admin{Actor: actor, Remote: remoteOf(r), Reason: reason, ClientChange: ch}
	ctx, cancel := writeContext(r)
	defer cancel()
	// The fingerprint leaves the secret's hash out (a new salt every
	// time), so a retry with the same key is the same change.
	res, err := s.propose(ctx, change{op: store.OpPutClient, key: "client|" + ch.Action + "|" + ch.Client.ID + "|" + key, fp: fp, admin: adm})
	if err != nil {
		s.fail(w, err)
		return
	}
	if !s.caughtUp(w, r) {
		return
	}
	stored, ok := s.ledger.Directory().Client(ch.Client.ID)
	if !ok {
		s.fail(w, noClient(ch.Client.ID))
		return
	}
	v := clientView{Client: stored.Redacted(), ClientSecret: secret, Replayed: res.Replayed}
	if res.Replayed {
		v.ClientSecret, status = "", http.StatusOK
	}
	writeJSON(w, status, v)
}
