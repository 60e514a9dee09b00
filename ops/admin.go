package ops

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/store"
)

// The write side shared by every admin route (routes.go, partners.go,
// agents.go, audit.go, clients.go) and by the older writes (accounts, day
// close, breaks, membership): who asks (the token's client), an idempotency key and a
// fingerprint for safe retries through the cluster, and problems that name
// the field at fault.

const (
	// actorBytesMax is the FSM's bound on Admin.Actor and Admin.Remote.
	actorBytesMax = 128
	// idempotencyKeyBytesMax bounds a client's Idempotency-Key; the store
	// key it becomes (a prefix and an object id before it) stays inside
	// storeKeyBytesMax.
	idempotencyKeyBytesMax = 64
	// storeKeyBytesMax is the FSM's bound on Command.Key.
	storeKeyBytesMax = 256
	// routesBodyBytesMax bounds a bulk replace of the routing table: a
	// rule is about 150 bytes of JSON, so 10,000 rules are ~1.5 MiB; every
	// other body stays at bodyBytesMax.
	routesBodyBytesMax = 4 << 20
)

// AdminLedger is what the admin routes read: the directory (routes,
// partners), agents and the audit chain (store.Store).
type AdminLedger interface {
	Directory() *store.Directory
	Agent(id string) (store.Agent, error)
	Agents(after string, limit int) ([]store.Agent, error)
	Audit(f store.AuditFilter) ([]store.AuditRecord, error)
	VerifyAudit() (store.AuditVerdict, error)
}

// Proposer submits a command through the cluster (cluster.Node): the only
// way ops changes replicated state.
type Proposer interface {
	Propose(ctx context.Context, cmd store.Command) (store.Result, error)
}

// registerAdmin adds the routes of routes.go, partners.go, agents.go and
// audit.go.
func (s *Server) registerAdmin(mux *http.ServeMux) {
	s.handle("GET /v1/routes", oauth.ScopeOpsRead, s.listRoutes)
	s.handle("PUT /v1/routes", oauth.ScopeRoutesWrite, s.replaceRoutes)
	s.handle("GET /v1/routes/explain", oauth.ScopeOpsRead, s.explainRoute)
	s.handle("GET /v1/routes/{id}", oauth.ScopeOpsRead, s.getRoute)
	s.handle("PUT /v1/routes/{id}", oauth.ScopeRoutesWrite, s.putRoute)
	s.handle("DELETE /v1/routes/{id}", oauth.ScopeRoutesWrite, s.deleteRoute)
	s.handle("GET /v1/partners", oauth.ScopeOpsRead, s.listPartners)
	s.handle("GET /v1/partners/{id}", oauth.ScopeOpsRead, s.getPartner)
	s.handle("PUT /v1/partners/{id}", oauth.ScopeRoutesWrite, s.putPartner)
	s.handle("POST /v1/partners/{id}/suspend", oauth.ScopeRoutesWrite, s.suspendPartner(true))
	s.handle("POST /v1/partners/{id}/resume", oauth.ScopeRoutesWrite, s.suspendPartner(false))
	s.handle("GET /v1/agents", oauth.ScopeOpsRead, s.listAgents)
	s.handle("GET /v1/agents/{id}", oauth.ScopeOpsRead, s.getAgent)
	s.handle("PUT /v1/agents/{id}", oauth.ScopeRoutesWrite, s.putAgent)
	s.handle("POST /v1/agents/{id}/settlements", oauth.ScopeRoutesWrite, s.settleAgent)
	s.handle("GET /v1/audit", oauth.ScopeAuditRead, s.audit)
	s.handle("GET /v1/audit/verify", oauth.ScopeAuditRead, s.verifyAudit)
	s.registerDestinations() // destinations.go
}

// validActor: 1 to actorBytesMax characters of an RFC 9110 token, plus '@'
// and ':' so that e-mail style names and "node:n2" work.
func validActor(s string) bool {
	if s == "" || len(s) > actorBytesMax {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~@:", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// adminOf is who asks for the change r makes: the client its token
// speaks for and the address it called from, with reason. Without one it
// returns an error wrapping outcome.ErrActorRequired, and the caller
// proposes nothing (handle lets no request without a token this far).
func adminOf(r *http.Request, reason string) (*store.Admin, error) {
	actor, err := actorOf(r)
	if err != nil {
		return nil, err
	}
	return &store.Admin{Actor: actor, Remote: remoteOf(r), Reason: reason}, nil
}

// remoteOf is r's address, cut to what the FSM keeps.
func remoteOf(r *http.Request) string {
	remote := r.RemoteAddr
	if len(remote) > actorBytesMax {
		remote = remote[:actorBytesMax]
	}
	return remote
}

// requireActor answers unauthenticated when r has no authenticated caller.
func (s *Server) requireActor(w http.ResponseWriter, r *http.Request) (*store.Admin, bool) {
	a, err := adminOf(r, "")
	if err != nil {
		s.fail(w, err)
		return nil, false
	}
	return a, true
}

// requestKey is the request's idempotency key: the client's
// Idempotency-Key (a retry after a lost answer sends the same one, and
// the FSM answers it from its record), else a random one (crypto/rand:
// every request is a new change). client reports which.
func requestKey(r *http.Request) (key string, client bool, err error) {
	if k := r.Header.Get("Idempotency-Key"); k != "" {
		if len(k) > idempotencyKeyBytesMax || strings.ContainsAny(k, "|\x00") {
			return "", false, fmt.Errorf("Idempotency-Key: at most %d characters, no '|'", idempotencyKeyBytesMax)
		}
		return k, true, nil
	}
	k, err := randomKey()
	return k, false, err
}

// randomKey is a new idempotency key: 128 random bits, hex.
func randomKey() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("ops: random idempotency key: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// fingerprint is SHA-256 of the canonical change: its parts as one JSON
// array (struct fields in declaration order, so the same change always
// gives the same bytes). Who asks and from where are not part of it: a
// retry from another connection is the same change.
func fingerprint(parts ...any) string {
	b, err := json.Marshal(parts)
	if err != nil {
		panic(err) // plain structs: cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// change is one admin command ready to propose.
type change struct {
	op    store.Op
	key   string // store key: prefix, object and the request's key
	fp    string
	admin *store.Admin
}

// propose submits c and turns the FSM's refusal into an error: a
// *store.ChangeError for an invalid change (naming the field), the
// status's sentinel with the FSM's detail otherwise.
func (s *Server) propose(ctx context.Context, c change) (store.Result, error) {
	if len(c.key) > storeKeyBytesMax {
		return store.Result{}, &store.ChangeError{Field: "id", Msg: fmt.Sprintf("object id and key longer than %d bytes together", storeKeyBytesMax)}
	}
	res, err := s.node.Propose(ctx, store.Command{Op: c.op, Key: c.key, Fingerprint: c.fp, Time: time.Now().UnixNano(), Admin: c.admin})
	if err != nil {
		return res, err
	}
	return res, resultErr(res)
}

// resultErr is the error of a refused command, nil for StatusOK.
func resultErr(res store.Result) error {
	err := res.Status.Err()
	if err == nil {
		return nil
	}
	if res.Status == store.StatusInvalidChange {
		field, msg, ok := strings.Cut(res.Detail, ": ")
		if !ok {
			field, msg = "", res.Detail
		}
		return &store.ChangeError{Field: field, Msg: msg}
	}
	if res.Detail != "" {
		return fmt.Errorf("%w: %s", err, res.Detail)
	}
	return err
}

// changeError is a refusal before proposing, in the FSM's own form.
func changeError(field, format string, args ...any) error {
	return &store.ChangeError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// needReason refuses a route or partner change without a reason (the FSM
// refuses it too; this way nothing is proposed).
func needReason(reason string) error {
	if strings.TrimSpace(reason) == "" {
		return changeError("reason", "required for route and partner changes: say why")
	}
	return nil
}

// decodeBody reads one JSON object of known fields, at most maxBytes; an
// empty body decodes as {} when optional.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, maxBytes int64, optional bool) bool {
	if optional && r.ContentLength == 0 {
		return true
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if optional && errors.Is(err, io.EOF) {
			return true // a chunked empty body
		}
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			answer(w, fmt.Errorf("%w: at most %d bytes", outcome.ErrBodyTooLarge, maxBytes))
			return false
		}
		// Admin bodies hold no secrets (no PAN, no key): the decoder's
		// message, which names the field, may be shown.
		answer(w, badRequest("body must be one JSON object with known fields: "+err.Error()))
		return false
	}
	return true
}

// accountLookup finds accounts for CheckRoute and CheckPartner; a read
// error other than "not found" is kept in *err (and the account counted
// as missing, so the check fails closed).
func (s *Server) accountLookup(readErr *error) store.AccountLookup {
	return func(id string) (store.Account, bool) {
		a, err := s.ledger.Account(id)
		if err != nil {
			if !errors.Is(err, store.ErrNotFound) && *readErr == nil {
				*readErr = err
			}
			return store.Account{}, false
		}
		return a, true
	}
}

// writeContext bounds one write (the proposal and reading it back).
func writeContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), writeTimeoutMax)
}

func parseUint(s string) (uint64, error) { return strconv.ParseUint(s, 10, 64) }
