package store

import (
	"fmt"
	"testing"
)

// The model's reconciliation breaks: assign (needs an assignee) and
// resolve (needs a note) until resolved.

func (m *model) breakOp(c Command) Result {
	u := c.Break
	if u == nil || !validID(u.Recon) || !validID(u.Break) || len(u.Note) > breakNoteBytesMax ||
		(u.Action != BreakAssign || u.Assignee == "") && (u.Action != BreakResolve || u.Note == "") {
		return Result{Status: StatusInvalidCommand}
	}
	if m.breaks == nil {
		m.breaks = map[string]BreakState{}
	}
	k := u.Recon + "\x00" + u.Break
	st, ok := m.breaks[k]
	if !ok {
		st = BreakState{Recon: u.Recon, Break: u.Break, State: "open"}
	}
	if st.State == "resolved" {
		return Result{Status: StatusAlreadyFinal}
	}
	if u.Action == BreakAssign {
		st.State, st.Assignee = "assigned", u.Assignee
	} else {
		st.State, st.Note = "resolved", u.Note
	}
	st.Updated = c.Time
	st.Changes++
	m.breaks[k] = st
	return Result{}
}

// breakUpdate makes a random assign or resolve, sometimes invalid.
func (g *gen) breakUpdate() *BreakUpdate {
	u := &BreakUpdate{Recon: fmt.Sprintf("R%d", g.rng.IntN(2)), Break: fmt.Sprintf("B%d", g.rng.IntN(6)), Actor: "ops"}
	switch g.rng.IntN(5) {
	case 0, 1:
		u.Action, u.Assignee = BreakAssign, fmt.Sprintf("user%d", g.rng.IntN(3))
	case 2, 3:
		u.Action, u.Note = BreakResolve, "explained"
	default:
		u.Action = BreakResolve // no note: invalid
	}
	return u
}

func compareBreaks(t *testing.T, s *Store, m *model) {
	t.Helper()
	n := 0
	for _, recon := range []string{"R0", "R1"} {
		got, err := s.Breaks(recon)
		if err != nil {
			t.Fatal(err)
		}
		for id, st := range got {
			if want := m.breaks[recon+"\x00"+id]; st != want {
				t.Errorf("break %s/%s: store %+v, model %+v", recon, id, st, want)
			}
			_, audit, err := s.BreakHistory(recon, id)
			if err != nil || uint64(len(audit)) != st.Changes {
				t.Errorf("break %s/%s: %d audit entries for %d changes (%v)", recon, id, len(audit), st.Changes, err)
			}
			n++
		}
	}
	if n != len(m.breaks) {
		t.Errorf("store has %d breaks, model %d", n, len(m.breaks))
	}
}
