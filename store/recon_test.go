package store

import (
	"errors"
	"testing"
)

func breakCmd(key string, u BreakUpdate) Command {
	return Command{Op: OpBreak, Key: key, Fingerprint: "fp-" + key, Time: t0, Break: &u}
}

func TestBreakAssignResolveAudit(t *testing.T) {
	s := openTest(t)
	assign := breakCmd("b1", BreakUpdate{Recon: "R1", Break: "B00001", Action: BreakAssign, Assignee: "alice", Actor: "ops"})
	cases := []struct {
		name string
		c    Command
		want Status
	}{
		{"no payload", Command{Op: OpBreak, Key: "x0", Time: t0}, StatusInvalidCommand},
		{"assign nobody", breakCmd("x1", BreakUpdate{Recon: "R1", Break: "B00001", Action: BreakAssign}), StatusInvalidCommand},
		{"resolve without note", breakCmd("x2", BreakUpdate{Recon: "R1", Break: "B00001", Action: BreakResolve}), StatusInvalidCommand},
		{"unknown action", breakCmd("x3", BreakUpdate{Recon: "R1", Break: "B00001", Action: "delete", Note: "n"}), StatusInvalidCommand},
		{"separator in id", breakCmd("x4", BreakUpdate{Recon: "R\x001", Break: "B00001", Action: BreakAssign, Assignee: "a"}), StatusInvalidCommand},
		{"assign", assign, StatusOK},
		{"repeat", assign, StatusOK},
		{"reassign", breakCmd("b2", BreakUpdate{Recon: "R1", Break: "B00001", Action: BreakAssign, Assignee: "bob"}), StatusOK},
		{"resolve", breakCmd("b3", BreakUpdate{Recon: "R1", Break: "B00001", Action: BreakResolve, Note: "biller re-sent the file", Actor: "bob"}), StatusOK},
		{"resolve again", breakCmd("b4", BreakUpdate{Recon: "R1", Break: "B00001", Action: BreakResolve, Note: "again"}), StatusAlreadyFinal},
		{"other break", breakCmd("b5", BreakUpdate{Recon: "R1", Break: "B00002", Action: BreakResolve, Note: "known"}), StatusOK},
	}
	for _, tc := range cases {
		if r := run1(t, s, tc.c); r.Status != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, r.Status, tc.want)
		}
	}
	st, audit, err := s.BreakHistory("R1", "B00001")
	if err != nil || st.State != "resolved" || st.Assignee != "bob" || st.Note != "biller re-sent the file" || st.Changes != 3 {
		t.Fatalf("state %+v %v", st, err)
	}
	if len(audit) != 3 || audit[0].Assignee != "alice" || audit[0].Actor != "ops" || audit[0].Key != "b1" ||
		audit[2].Action != BreakResolve || audit[2].Seq != 3 {
		t.Errorf("audit %+v", audit)
	}
	all, err := s.Breaks("R1")
	if err != nil || len(all) != 2 || all["B00002"].State != "resolved" {
		t.Errorf("breaks %+v %v", all, err)
	}
	if other, err := s.Breaks("R"); err != nil || len(other) != 0 {
		t.Errorf("a prefix of the recon id matched: %+v", other)
	}
	if _, _, err := s.BreakHistory("R1", "B00009"); !errors.Is(err, ErrNotFound) {
		t.Errorf("untouched break: %v", err)
	}
	s = reopen(t, s)
	if st2, _, _ := s.BreakHistory("R1", "B00001"); st2 != st {
		t.Errorf("after restart %+v", st2)
	}
}

func TestBreakCommandEncoding(t *testing.T) {
	in := breakCmd("k", BreakUpdate{Recon: "R1", Break: "B1", Action: BreakResolve, Note: "n", Actor: "a", Assignee: "x"})
	b, err := EncodeBatch([]Command{in})
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeBatch(b)
	if err != nil || len(out) != 1 || out[0].Break == nil || *out[0].Break != *in.Break || out[0].Key != "k" {
		t.Fatalf("%+v %v", out, err)
	}
}
