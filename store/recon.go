package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Reconciliation breaks are worked by people: assigned to someone and
// resolved with a note. Those decisions are replicated (every node shows
// the same state) and audited (every change is kept, in order). The break
// list itself is computed from files and the ledger, outside the FSM; the
// FSM keeps only what people decided about a break, by (recon id, break
// id).

// OpBreak changes a reconciliation break as Command.Break says. It needs a
// Key like every op with an effect on people's work.
const OpBreak Op = 9

// BreakAction is what OpBreak does.
type BreakAction string

const (
	// BreakAssign (re)assigns an open break to Assignee.
	BreakAssign BreakAction = "assign"
	// BreakResolve closes a break; Note says why. A resolved break stays
	// resolved (StatusAlreadyFinal).
	BreakResolve BreakAction = "resolve"
)

// Limits of a break update.
const (
	breakNoteBytesMax = 1000
	breakAuditMax     = 1 << 20 // audit entries per break: far beyond any real back-and-forth
)

// BreakUpdate is the payload of OpBreak.
type BreakUpdate struct {
	Recon    string      `json:"recon"`
	Break    string      `json:"break"`
	Action   BreakAction `json:"action"`
	Assignee string      `json:"assignee,omitempty"`
	Note     string      `json:"note,omitempty"`
	// Actor is who asked (the ops user), for the audit trail.
	Actor string `json:"actor,omitempty"`
}

// BreakState is what people decided about a break so far.
type BreakState struct {
	Recon    string `json:"recon"`
	Break    string `json:"break"`
	State    string `json:"state"` // open, assigned, resolved
	Assignee string `json:"assignee,omitempty"`
	Note     string `json:"note,omitempty"`
	Updated  int64  `json:"updated"`
	// Changes is how many audit entries the break has.
	Changes uint64 `json:"changes"`
}

// BreakAudit is one change of a break.
type BreakAudit struct {
	Seq      uint64      `json:"seq"`
	Time     int64       `json:"time"`
	Action   BreakAction `json:"action"`
	Assignee string      `json:"assignee,omitempty"`
	Note     string      `json:"note,omitempty"`
	Actor    string      `json:"actor,omitempty"`
	// Key is the idempotency key of the command that made the change.
	Key string `json:"key"`
}

const (
	pfxBreak      = 'b' // b<recon>\x00<break> → break state
	pfxBreakAudit = 'B' // B<recon>\x00<break>\x00<seq u64 BE> → audit entry
)

func (e *enc) breakUpdate(b *BreakUpdate) {
	e.str(b.Recon)
	e.str(b.Break)
	e.str(string(b.Action))
	e.str(b.Assignee)
	e.str(b.Note)
	e.str(b.Actor)
}

func (d *dec) breakUpdate(b *BreakUpdate) {
	b.Recon = d.str()
	b.Break = d.str()
	b.Action = BreakAction(d.str())
	b.Assignee = d.str()
	b.Note = d.str()
	b.Actor = d.str()
}

func appendBreakState(dst []byte, s *BreakState) []byte {
	e := enc{b: dst}
	e.byte(recordVersion)
	e.str(s.State)
	e.str(s.Assignee)
	e.str(s.Note)
	e.svar(s.Updated)
	e.uvar(s.Changes)
	return e.b
}

func decodeBreakState(recon, id string, b []byte) (BreakState, error) {
	d := newDec(b)
	s := BreakState{Recon: recon, Break: id}
	if v := d.byte(); v != recordVersion {
		d.fail("break record version")
	}
	s.State = d.str()
	s.Assignee = d.str()
	s.Note = d.str()
	s.Updated = d.svar()
	s.Changes = d.uvar()
	return s, d.done()
}

func appendBreakAudit(dst []byte, a *BreakAudit) []byte {
	e := enc{b: dst}
	e.byte(recordVersion)
	e.svar(a.Time)
	e.str(string(a.Action))
	e.str(a.Assignee)
	e.str(a.Note)
	e.str(a.Actor)
	e.str(a.Key)
	return e.b
}

func decodeBreakAudit(seq uint64, b []byte) (BreakAudit, error) {
	d := newDec(b)
	a := BreakAudit{Seq: seq}
	if v := d.byte(); v != recordVersion {
		d.fail("break audit version")
	}
	a.Time = d.svar()
	a.Action = BreakAction(d.str())
	a.Assignee = d.str()
	a.Note = d.str()
	a.Actor = d.str()
	a.Key = d.str()
	return a, d.done()
}

func breakAuditKey(recon, id string, seq uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	return skeyIndex3(pfxBreakAudit, recon, id, string(b[:]))
}

// breakOp applies OpBreak (after the idempotency check).
func (t *txn) breakOp(c *Command) Result {
	u := c.Break
	if u == nil || !validID(u.Recon) || !validID(u.Break) || !validOptional(u.Assignee, idBytesMax) ||
		len(u.Note) > breakNoteBytesMax || len(u.Actor) > idBytesMax {
		return invalid()
	}
	switch {
	case u.Action == BreakAssign && u.Assignee != "":
	case u.Action == BreakResolve && u.Note != "":
	default:
		return invalid() // an assignment names someone; a resolution says why
	}
	k := skeyIndex2(pfxBreak, u.Recon, u.Break)
	st := BreakState{Recon: u.Recon, Break: u.Break, State: "open"}
	if v, ok := t.get(k); ok {
		var err error
		st, err = decodeBreakState(u.Recon, u.Break, v)
		mustDecode(err)
	}
	if st.State == "resolved" {
		return Result{Status: StatusAlreadyFinal}
	}
	if st.Changes >= breakAuditMax {
		return invalid()
	}
	before := st
	switch u.Action {
	case BreakAssign:
		st.State, st.Assignee = "assigned", u.Assignee
	case BreakResolve:
		st.State, st.Note = "resolved", u.Note
	}
	st.Updated = c.Time
	st.Changes++
	t.set(k, appendBreakState(nil, &st))
	t.set(breakAuditKey(u.Recon, u.Break, st.Changes), appendBreakAudit(nil, &BreakAudit{
		Time: c.Time, Action: u.Action, Assignee: u.Assignee, Note: u.Note, Actor: u.Actor, Key: c.Key}))
	t.appendAudit(c, "break."+string(u.Action), "break/"+u.Recon+"/"+u.Break, mustJSON(&before), mustJSON(&st))
	return Result{Status: StatusOK}
}

// Breaks returns the decided state of every break of a reconciliation
// that people changed, by break id (breaks nobody touched are absent).
func (s *Store) Breaks(recon string) (map[string]BreakState, error) {
	out := map[string]BreakState{}
	err := s.read(func(db *pebble.DB) error {
		p := append(keyIndex(pfxBreak, recon), sep)
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok; ok = it.Next() {
			id := string(it.Key()[len(p):])
			st, err := decodeBreakState(recon, id, it.Value())
			if err != nil {
				return err
			}
			out[id] = st
		}
		return it.Error()
	})
	return out, err
}

// BreakHistory returns a break's state and its audit trail, oldest first,
// or ErrNotFound when nobody changed it.
func (s *Store) BreakHistory(recon, id string) (BreakState, []BreakAudit, error) {
	var st BreakState
	var audit []BreakAudit
	err := s.read(func(db *pebble.DB) error {
		snap := db.NewSnapshot()
		defer snap.Close()
		var err error
		st, err = getRecord(snap, keyIndex(pfxBreak, recon, id), func(b []byte) (BreakState, error) {
			return decodeBreakState(recon, id, b)
		})
		if err != nil {
			return err
		}
		p := append(keyIndex(pfxBreakAudit, recon, id), sep)
		it, err := snap.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok; ok = it.Next() {
			k := it.Key()[len(p):]
			if len(k) != 8 {
				return fmt.Errorf("%w: break audit key", ErrCorrupt)
			}
			a, err := decodeBreakAudit(binary.BigEndian.Uint64(k), it.Value())
			if err != nil {
				return err
			}
			audit = append(audit, a)
		}
		return it.Error()
	})
	if errors.Is(err, ErrNotFound) {
		return BreakState{}, nil, fmt.Errorf("break %s/%s: %w", recon, id, ErrNotFound)
	}
	return st, audit, err
}
