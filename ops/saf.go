package ops

import (
	"fmt"
	"net/http"
	"time"

	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/store"
)

// Forwarding (issue 13):
//
//	GET  /v1/destinations/status   this node's host connections, latency and errors by destination
//	GET  /v1/forwards/{id}         a forwarded request and what became of it
//	GET  /v1/saf?after&limit       the store-and-forward queue, every state
//	POST /v1/saf/{id}/retry        {reason}: back in the queue at once (also after it expired or was dropped)
//	POST /v1/saf/{id}/drop         {reason}: given up by hand (the host confirmed it another way)
//
// Views never carry the sealed card number, only its masked form.

// ForwardLedger is what the forwarding routes read.
type ForwardLedger interface {
	ForwardByID(id string) (store.Forward, error)
	SAFEntry(id string) (store.SAFEntry, error)
	SAFEntries(after string, limit int) ([]store.SAFEntry, error)
}

// HandleForwarding serves the routes above; status is this node's host
// clients' counters.
func (s *Server) HandleForwarding(l ForwardLedger, status func() any) {
	s.handle("GET /v1/destinations/status", oauth.ScopeOpsRead, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"destinations": status()})
	})
	s.handle("GET /v1/forwards/{id}", oauth.ScopeOpsRead, func(w http.ResponseWriter, r *http.Request) {
		if !s.caughtUp(w, r) {
			return
		}
		f, err := l.ForwardByID(r.PathValue("id"))
		if err != nil {
			s.fail(w, fmt.Errorf("%w: forward %q", err, r.PathValue("id")))
			return
		}
		f.PAN = nil
		writeJSON(w, http.StatusOK, f)
	})
	s.handle("GET /v1/saf", oauth.ScopeOpsRead, func(w http.ResponseWriter, r *http.Request) {
		limit, err := pageLimit(r)
		if err != nil {
			answer(w, badRequest(err.Error()))
			return
		}
		if !s.caughtUp(w, r) {
			return
		}
		es, err := l.SAFEntries(r.URL.Query().Get("after"), limit)
		if err != nil {
			s.fail(w, err)
			return
		}
		for i := range es {
			es[i].PAN = nil
		}
		page := map[string]any{"entries": es}
		if len(es) == limit {
			page["next"] = es[len(es)-1].ID
		}
		writeJSON(w, http.StatusOK, page)
	})
	s.handle("POST /v1/saf/{id}/retry", oauth.ScopeOpsWrite, s.safAction(l, store.SAFActionRetry))
	s.handle("POST /v1/saf/{id}/drop", oauth.ScopeOpsWrite, s.safAction(l, store.SAFActionDrop))
}

func (s *Server) safAction(l ForwardLedger, action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		adm, ok := s.requireActor(w, r)
		if !ok {
			return
		}
		var req struct {
			Reason string `json:"reason"`
		}
		if !decodeBody(w, r, &req, bodyBytesMax, false) {
			return
		}
		if err := needReason(req.Reason); err != nil {
			s.fail(w, err)
			return
		}
		key, _, err := requestKey(r)
		if err != nil {
			answer(w, badRequest(err.Error()))
			return
		}
		id := r.PathValue("id")
		adm.Reason = req.Reason
		ctx, cancel := writeContext(r)
		defer cancel()
		res, err := s.node.Propose(ctx, store.Command{Op: store.OpSAFUpdate, Key: "admin|saf." + action + "|" + id + "|" + key,
			Fingerprint: fingerprint("saf."+action, id, req.Reason), Time: time.Now().UnixNano(), Admin: adm,
			Forward: &store.ForwardCommand{SAF: &store.SAFUpdate{ID: id, Action: action}}})
		if err == nil {
			err = resultErr(res)
		}
		if err != nil {
			s.fail(w, err)
			return
		}
		if !s.caughtUp(w, r) {
			return
		}
		e, err := l.SAFEntry(id)
		if err != nil {
			s.fail(w, err)
			return
		}
		e.PAN = nil
		writeJSON(w, http.StatusOK, map[string]any{"entry": e, "replayed": res.Replayed})
	}
}
