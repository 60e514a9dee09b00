package ops

import (
	"context"
	"encoding/json"

	"net/http"
	"time"

	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/store"
)

// The audit chain (store/audit.go): every administrative change, who made
// it, from where, when, why, and the object before and after.
//
//	GET /v1/audit?object=route/r1&from=RFC3339&to=RFC3339&after=SEQ&limit=N
//	GET /v1/audit/verify
//
// verify recomputes the whole chain on this node after a ReadIndex and
// answers 200 either way: the verdict is the answer ({"ok": false, ...}
// names the first bad record and what is wrong), not an error of the
// request; a monitor alerts on ok.

func (s *Server) audit(w http.ResponseWriter, r *http.Request) {
	limit, err := pageLimit(r)
	if err != nil {
		answer(w, badRequest(err.Error()))
		return
	}
	q := r.URL.Query()
	f := store.AuditFilter{Object: q.Get("object"), Limit: limit}
	for _, b := range []struct {
		name string
		into *int64
	}{{"from", &f.From}, {"to", &f.To}} {
		if v := q.Get(b.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				answer(w, badRequest(b.name+" must be RFC 3339, e.g. 2026-03-06T09:00:00Z"))
				return
			}
			*b.into = t.UnixNano()
		}
	}
	if v := q.Get("after"); v != "" {
		if f.After, err = parseUint(v); err != nil {
			answer(w, badRequest("after must be a sequence number"))
			return
		}
	}
	if !s.caughtUp(w, r) {
		return
	}
	recs, err := s.ledger.Audit(f)
	if err != nil {
		s.fail(w, err)
		return
	}
	if recs == nil {
		recs = []store.AuditRecord{}
	}
	out := map[string]any{"records": recs}
	if len(recs) == limit {
		out["next_after"] = recs[len(recs)-1].Seq
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) verifyAudit(w http.ResponseWriter, r *http.Request) {
	if !s.caughtUp(w, r) {
		return
	}
	v, err := s.ledger.VerifyAudit()
	if err != nil {
		s.fail(w, err)
		return
	}
	if !v.OK {
		s.log.Error("audit chain broken", "bad_seq", v.BadSeq, "problem", v.Problem, "applied_index", v.AppliedIndex)
	}
	writeJSON(w, http.StatusOK, v)
}

// auditRetryWait is the pause between tries of a membership audit record
// (an election after a leadership transfer takes about a second).
const auditRetryWait = 200 * time.Millisecond

// auditMembership records a membership change in the chain. Membership
// lives in raft's configuration, not in the FSM, so this is a second raft
// entry right after the change (an OpAudit), not part of the change's own
// entry: a crash between the two loses the record, never the change. The
// same key is proposed until it commits or ctx ends (after a leadership
// transfer the first tries may find no leader yet), so it is recorded at
// most once. It has its own deadline, and a client that hangs up does not
// stop it: the change it records was made. It reports whether the record
// was written.
func (s *Server) auditMembership(reqCtx context.Context, adm *store.Admin, action, node string, after any) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(reqCtx), writeTimeoutMax)
	defer cancel()
	key, err := randomKey()
	if err != nil {
		s.log.Error("membership change not audited", "action", action, "node", node, "err", err)
		return false
	}
	b, _ := json.Marshal(after)
	adm.Event = &store.AuditEvent{Action: action, Object: "node/" + node, After: b}
	c := change{op: store.OpAudit, key: "admin|audit|" + key, fp: fingerprint("audit", adm.Event), admin: adm}
	for {
		_, err = s.propose(ctx, c)
		if err == nil {
			return true
		}
		transient := outcome.Of(err).RetryAfter > 0 // the table's "retry": not leader, overloaded, outcome unknown
		if !transient || ctx.Err() != nil {
			s.log.Error("membership change not audited", "action", action, "node", node, "actor", adm.Actor, "err", err)
			return false
		}
		select {
		case <-ctx.Done():
		case <-time.After(auditRetryWait):
		}
	}
}
