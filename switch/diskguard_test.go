package switching_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/switchd/switchd/disk"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
)

// fakeGuard refuses while low is set, as disk.Guard does below its reserve.
type fakeGuard struct{ low atomic.Bool }

func (g *fakeGuard) Check() error {
	if g.low.Load() {
		return fmt.Errorf("%w: volume ledger has 1 bytes free", disk.ErrLowSpace)
	}
	return nil
}

// Issue 9 item 2: while the disk guard refuses, every state-changing
// request is declined with 96 and changes nothing; balance inquiries,
// network management and repeats of stored answers are answered as
// before; when the guard clears, approvals resume.
func TestDiskGuardRefusesStateChangesOnly(t *testing.T) {
	h := newHarness(t, nil)
	g := &fakeGuard{}
	h.core.GuardDisk(g, h.st)
	purchase := func(mti string, stan int) string {
		return fmt.Sprintf("%s 2=4111111111111111 3=000000 4=000000000100 7=1121120000 11=%06d 32=100001 37=%012d 49=840", mti, stan, stan)
	}
	rc := func(line string) (code, auth string) {
		t.Helper()
		m, closed := h.send(line)
		if closed {
			t.Fatalf("%s: connection closed instead of an answer", line)
		}
		return m.Get(39), m.Get(38)
	}
	code, auth := rc(purchase("0200", 1))
	if code != "00" {
		t.Fatalf("purchase with space: %s", code)
	}
	before := h.account("card-4111")

	g.low.Store(true)
	if code, _ := rc(purchase("0200", 2)); code != "96" {
		t.Fatalf("purchase while short of disk: %s, want 96", code)
	}
	if code, _ := rc("0100 2=4111111111111111 3=000000 4=000000002500 7=1121120100 11=000003 32=100001 37=000000000003 49=840"); code != "96" {
		t.Fatalf("authorization while short of disk: %s, want 96", code)
	}
	if code, got := rc(purchase("0201", 1)); code != "00" || got != auth {
		t.Fatalf("repeat of a stored approval while short of disk: %s %s, want 00 %s", code, got, auth)
	}
	if code, _ := rc(purchase("0200", 1)); code != "00" {
		t.Fatalf("resend (same key) of a stored approval while short of disk: %s", code)
	}
	if code, _ := rc(purchase("0201", 2)); code != "96" {
		t.Fatalf("repeat of a refused request: %s, want 96 (nothing stored)", code)
	}
	m, _ := h.send("0100 2=4111111111111111 3=310000 4=000000000000 7=1121120200 11=000004 32=100001 37=000000000004 49=840")
	if m.Get(39) != "00" || m.Get(54) == "" {
		t.Fatalf("balance inquiry while short of disk: %s (54=%q)", m.Get(39), m.Get(54))
	}
	if m, _ := h.send("0800 7=1121120000 11=000005 70=301"); m.Get(39) != "00" {
		t.Fatalf("echo while short of disk: %s", m.Get(39))
	}
	if _, err := h.core.CreateAccount(context.Background(), payment.AccountSeed{ID: "new-acct", Kind: store.KindFunding, Currency: "USD"}, nil); !errors.Is(err, disk.ErrLowSpace) {
		t.Fatalf("ops account create while short of disk: %v, want disk.ErrLowSpace", err)
	}
	if _, err := h.st.Account("new-acct"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refused account exists: %v", err)
	}
	if after := h.account("card-4111"); after != before {
		t.Fatalf("refused requests changed the ledger: %s, then %s", before, after)
	}

	g.low.Store(false)
	if code, _ := rc(purchase("0200", 2)); code != "00" {
		t.Fatalf("purchase after the space came back: %s", code)
	}
	if got := h.ledgerSums(); got != "USD posted=0 pending=0" {
		t.Fatalf("ledger sums: %s", got)
	}
}
