package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"strconv"
	"testing"
)

const scaTTL = int64(15 * 60 * 1e9)

func tokenHash(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

func scaCmd(key, partner string, at int64, ch AuthorizationChange) Command {
	return Command{Op: OpPutAuthorization, Key: partner + "|" + key, Fingerprint: "fp-" + key, Time: at, Partner: partner, Authorization: &ch}
}

func scaCreate(key, id string, at int64) Command {
	return scaCmd(key, "p1", at, AuthorizationChange{Action: AuthCreate, ID: id, TTL: scaTTL, Authorization: &Authorization{
		ID: id, Partner: "p1", Account: "acct-1", Amount: 5000, Currency: "USD", Reference: "ref-" + id}})
}

func scaRedirect(key, id, tok string, at int64) Command {
	return scaCmd(key, "p1", at, AuthorizationChange{Action: AuthRedirect, ID: id, ReturnURL: "https://shop.example/back", TokenHash: tokenHash(tok)})
}

func scaComplete(key, id, tok string, approve bool, at int64) Command {
	return scaCmd(key, "p1", at, AuthorizationChange{Action: AuthComplete, ID: id, TokenHash: tokenHash(tok), Approve: approve})
}

func mustAuth(t *testing.T, s *Store, id string) Authorization {
	t.Helper()
	a, err := s.Authorization(id)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// The happy path: created (required), redirected (started, the token's
// hash kept, never the token), approved (authenticated, token consumed).
func TestAuthorizationApprove(t *testing.T) {
	s := openTest(t)
	mustOK(t, s, scaCreate("c1", "sca-1", t0))
	a := mustAuth(t, s, "sca-1")
	if a.State != AuthRequired || a.Created != t0 || a.Expiry != t0+scaTTL || a.Amount != 5000 || a.TokenHash != "" {
		t.Fatalf("created: %+v", a)
	}
	mustOK(t, s, scaRedirect("r1", "sca-1", "tok-1", t0+1))
	a = mustAuth(t, s, "sca-1")
	if a.State != AuthStarted || a.TokenHash != tokenHash("tok-1") || a.Attempts != 1 || a.ReturnURL != "https://shop.example/back" {
		t.Fatalf("redirected: %+v", a)
	}
	mustOK(t, s, scaComplete("k1", "sca-1", "tok-1", true, t0+2))
	a = mustAuth(t, s, "sca-1")
	if a.State != AuthAuthenticated || a.TokenHash != "" || a.Updated != t0+2 {
		t.Fatalf("approved: %+v", a)
	}
	// Replays by key get the stored answer and change nothing.
	for _, c := range []Command{scaCreate("c1", "sca-1", t0+9), scaRedirect("r1", "sca-1", "tok-1", t0+9), scaComplete("k1", "sca-1", "tok-1", true, t0+9)} {
		if r := run1(t, s, c); r.Status != StatusOK || !r.Replayed {
			t.Fatalf("replay %s: %+v", c.Key, r)
		}
	}
	if b := mustAuth(t, s, "sca-1"); !reflect.DeepEqual(a, b) {
		t.Fatalf("a replay changed the record:\n%+v\n%+v", a, b)
	}
	// Completed: neither redirected again nor completed again.
	if r := run1(t, s, scaRedirect("r2", "sca-1", "tok-2", t0+3)); r.Status != StatusAuthenticationState {
		t.Fatalf("redirect after completion: %v", r.Status)
	}
	if r := run1(t, s, scaComplete("k2", "sca-1", "tok-1", false, t0+3)); r.Status != StatusTokenMismatch {
		t.Fatalf("second completion with the used token: %v", r.Status)
	}
	if b := mustAuth(t, s, "sca-1"); !reflect.DeepEqual(a, b) {
		t.Fatalf("a refused step changed the record:\n%+v\n%+v", a, b)
	}
}

func TestAuthorizationDecline(t *testing.T) {
	s := openTest(t)
	mustOK(t, s, scaCreate("c1", "sca-1", t0), scaRedirect("r1", "sca-1", "tok", t0+1), scaComplete("k1", "sca-1", "tok", false, t0+2))
	if a := mustAuth(t, s, "sca-1"); a.State != AuthFailed || a.TokenHash != "" {
		t.Fatalf("declined: %+v", a)
	}
}

// Refusals: each changes nothing (the state hash is the same), and a
// wrong token leaves not even an idempotency record.
func TestAuthorizationRefusals(t *testing.T) {
	s := openTest(t)
	mustOK(t, s, scaCreate("c1", "sca-1", t0))
	steps := []struct {
		name string
		cmd  Command
		want Status
	}{
		{"complete before any redirect", scaComplete("k0", "sca-1", "tok", true, t0+1), StatusAuthenticationState},
		{"unknown id", scaRedirect("r0", "sca-9", "tok", t0+1), StatusNotFound},
		{"another partner's", Command{Op: OpPutAuthorization, Key: "p2|r", Fingerprint: "f", Time: t0 + 1, Partner: "p2",
			Authorization: &AuthorizationChange{Action: AuthRedirect, ID: "sca-1", ReturnURL: "https://x", TokenHash: tokenHash("t")}}, StatusNotFound},
		{"a second create of the id", scaCreate("c2", "sca-1", t0+1), StatusDuplicateReference},
		{"bad token hash", scaCmd("r1", "p1", t0+1, AuthorizationChange{Action: AuthRedirect, ID: "sca-1", ReturnURL: "https://x", TokenHash: "tok"}), StatusInvalidCommand},
		{"no return url", scaCmd("r2", "p1", t0+1, AuthorizationChange{Action: AuthRedirect, ID: "sca-1", TokenHash: tokenHash("t")}), StatusInvalidCommand},
		{"unknown action", scaCmd("r3", "p1", t0+1, AuthorizationChange{Action: "approve", ID: "sca-1"}), StatusInvalidCommand},
		{"no change", Command{Op: OpPutAuthorization, Key: "p1|r4", Time: t0, Partner: "p1"}, StatusInvalidCommand},
		{"no ttl", scaCmd("c3", "p1", t0, AuthorizationChange{Action: AuthCreate, ID: "sca-2", Authorization: &Authorization{
			ID: "sca-2", Partner: "p1", Account: "a", Amount: 1, Currency: "USD", Reference: "r"}}), StatusInvalidCommand},
		{"create for another partner", scaCmd("c4", "p1", t0, AuthorizationChange{Action: AuthCreate, ID: "sca-2", TTL: scaTTL, Authorization: &Authorization{
			ID: "sca-2", Partner: "p2", Account: "a", Amount: 1, Currency: "USD", Reference: "r"}}), StatusInvalidCommand},
	}
	for _, st := range steps {
		before := mustAuth(t, s, "sca-1")
		if r := run1(t, s, st.cmd); r.Status != st.want {
			t.Errorf("%s: %v, want %v", st.name, r.Status, st.want)
		}
		// A stored decline adds its idempotency record; the authorization
		// is unchanged either way.
		if after := mustAuth(t, s, "sca-1"); !reflect.DeepEqual(before, after) {
			t.Errorf("%s changed the record: %+v", st.name, after)
		}
	}
	if a := mustAuth(t, s, "sca-1"); a.State != AuthRequired || a.Attempts != 0 {
		t.Fatalf("refusals changed the record: %+v", a)
	}
	if _, err := s.Authorization("sca-2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an invalid create was stored: %v", err)
	}

	// A wrong token: refused, no record of the attempt (its key may be
	// used again), the right token still works.
	mustOK(t, s, scaRedirect("r5", "sca-1", "right", t0+2))
	before := mustAuth(t, s, "sca-1")
	if r := run1(t, s, scaComplete("k1", "sca-1", "wrong", true, t0+3)); r.Status != StatusTokenMismatch {
		t.Fatalf("wrong token: %v", r.Status)
	}
	if _, ok, _ := s.Replay("p1|k1", "fp-k1"); ok {
		t.Fatal("a wrong token's attempt left an idempotency record")
	}
	if after := mustAuth(t, s, "sca-1"); !reflect.DeepEqual(before, after) {
		t.Fatalf("a wrong token changed the record:\n%+v\n%+v", before, after)
	}
	// A second redirect replaces the token: the first no longer completes.
	mustOK(t, s, scaRedirect("r6", "sca-1", "newer", t0+4))
	if r := run1(t, s, scaComplete("k2", "sca-1", "right", true, t0+5)); r.Status != StatusTokenMismatch {
		t.Fatalf("replaced token: %v", r.Status)
	}
	mustOK(t, s, scaRedirect("r7", "sca-1", "third", t0+6))
	if a := mustAuth(t, s, "sca-1"); a.Attempts != authRedirectsMax {
		t.Fatalf("attempts %d", a.Attempts)
	}
	if r := run1(t, s, scaRedirect("r8", "sca-1", "fourth", t0+7)); r.Status != StatusAuthenticationState {
		t.Fatalf("a redirect past the limit: %v", r.Status)
	}
	mustOK(t, s, scaComplete("k3", "sca-1", "third", true, t0+8))
}

// Past the time limit (Command.Time, not a clock): a redirect or a
// completion expires the record and is refused; it stays expired.
func TestAuthorizationExpiry(t *testing.T) {
	s := openTest(t)
	mustOK(t, s, scaCreate("c1", "sca-1", t0), scaRedirect("r1", "sca-1", "tok", t0+1), scaCreate("c2", "sca-2", t0))
	if a := mustAuth(t, s, "sca-1"); a.StateAt(t0+scaTTL-1) != AuthStarted || a.StateAt(t0+scaTTL) != AuthExpired {
		t.Fatalf("StateAt: %+v", a)
	}
	if r := run1(t, s, scaComplete("k1", "sca-1", "tok", true, t0+scaTTL)); r.Status != StatusAuthenticationExpired {
		t.Fatalf("completion at the limit: %v", r.Status)
	}
	if a := mustAuth(t, s, "sca-1"); a.State != AuthExpired || a.TokenHash != "" {
		t.Fatalf("after a late completion: %+v", a)
	}
	if r := run1(t, s, scaComplete("k1", "sca-1", "tok", true, t0+scaTTL+5)); r.Status != StatusAuthenticationExpired || !r.Replayed {
		t.Fatalf("its replay: %+v", r)
	}
	if r := run1(t, s, scaRedirect("r2", "sca-2", "tok", t0+scaTTL+1)); r.Status != StatusAuthenticationExpired {
		t.Fatalf("redirect after the limit: %v", r.Status)
	}
	if r := run1(t, s, scaRedirect("r3", "sca-1", "tok2", t0+1)); r.Status != StatusAuthenticationExpired {
		t.Fatalf("an expired record with an earlier command time: %v", r.Status)
	}
}

// Two stores given the same entries hold the same bytes (apply is
// deterministic), and a snapshot carries the records.
func TestAuthorizationDeterministicAndSnapshot(t *testing.T) {
	a, b := openTest(t), openTest(t)
	cmds := []Command{scaCreate("c1", "sca-1", t0), scaRedirect("r1", "sca-1", "tok", t0+1), scaComplete("k1", "sca-1", "bad", true, t0+2),
		scaComplete("k2", "sca-1", "tok", true, t0+3), scaCreate("c2", "sca-2", t0+4)}
	run(t, a, cmds...)
	for _, c := range cmds {
		run(t, b, c) // other entry splits
	}
	// b applied them in more entries (another applied index, so another
	// hash); c in one entry like a.
	c := openTest(t)
	run(t, c, cmds...)
	_, ha, _ := a.StateHash()
	_, hc, _ := c.StateHash()
	if ha != hc {
		t.Fatal("the same entry applied twice gives different state")
	}
	if x, y := mustAuth(t, a, "sca-1"), mustAuth(t, b, "sca-1"); !reflect.DeepEqual(x, y) {
		t.Fatalf("different splits: %+v vs %+v", x, y)
	}
	data := snapshotBytes(t, a)
	d := openTest(t)
	if err := d.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if x, y := mustAuth(t, a, "sca-2"), mustAuth(t, d, "sca-2"); !reflect.DeepEqual(x, y) {
		t.Fatalf("restored: %+v vs %+v", y, x)
	}
	if r := run1(t, d, scaComplete("k2", "sca-1", "tok", true, t0+9)); !r.Replayed {
		t.Fatal("idempotency record of a completion lost in the snapshot")
	}
}

func TestAuthorizationEncoding(t *testing.T) {
	cmds := []Command{scaCreate("c1", "sca-1", t0), scaRedirect("r1", "sca-1", "tok", t0+1), scaComplete("k1", "sca-1", "tok", true, t0+2)}
	data, err := EncodeBatch(cmds)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeBatch(data)
	if err != nil || !reflect.DeepEqual(got, cmds) {
		t.Fatalf("round trip: %v\n%+v\n%+v", err, got, cmds)
	}
	for i := 0; i < len(data); i++ {
		if _, err := DecodeBatch(data[:i]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated at %d: %v", i, err)
		}
	}
	// A change in other JSON bytes (spacing) is refused: one encoding.
	one, _ := EncodeBatch(cmds[2:])
	bad := bytes.Replace(one, []byte(`{"action"`), []byte(`{ "action`), 1)
	if _, err := DecodeBatch(bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("non-canonical change: %v", err)
	}
	if OpPutAuthorization.String() != "put_authorization" || StatusAuthenticationState.String() != "invalid_authentication_state" {
		t.Fatal("names")
	}
	for _, st := range []Status{StatusAuthenticationState, StatusAuthenticationExpired, StatusTokenMismatch} {
		if errors.Is(st.Err(), ErrInvalidCommand) {
			t.Errorf("status %d has no error", st)
		}
	}
}

// BenchmarkAuthorizationSteps: one SCA authorization's three commands
// (create, redirect, approve), each its own raft entry as in a cluster.
//
//	go test ./store -run NONE -bench AuthorizationSteps -benchtime 2000x
func BenchmarkAuthorizationSteps(b *testing.B) {
	s := openTest(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		id := "sca-" + strconv.Itoa(i)
		for _, c := range []Command{scaCreate("c"+id, id, t0), scaRedirect("r"+id, id, "tok", t0+1), scaComplete("k"+id, id, "tok", true, t0+2)} {
			if r := run1(b, s, c); r.Status != StatusOK {
				b.Fatal(r.Status)
			}
		}
	}
}
