package settle

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"

	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/store"
)

func TestMain(m *testing.M) {
	code := m.Run()
	benchCleanup()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// ledger is one store fed directly, standing in for the cluster.
type ledger struct {
	*store.Store
	mu       sync.Mutex // serialises Propose
	follower bool
}

func newLedger(t testing.TB) *ledger {
	t.Helper()
	cfg := store.DefaultConfig()
	cfg.Dir = t.TempDir() + "/db"
	cfg.CacheBytes = 64 << 20
	cfg.MemTableBytes = 8 << 20
	st, err := store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &ledger{Store: st}
}

func (l *ledger) Propose(_ context.Context, c store.Command) (store.Result, error) {
	if l.follower {
		return store.Result{}, cluster.ErrNotLeader
	}
	rs, err := l.apply(c)
	if err != nil {
		return store.Result{}, err
	}
	return rs[0], nil
}

func (l *ledger) apply(cmds ...store.Command) ([]store.Result, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	data, err := store.EncodeBatch(cmds)
	if err != nil {
		return nil, err
	}
	out := l.Store.Apply(&raft.Log{Index: l.AppliedIndex() + 1, Term: 1, Type: raft.LogCommand, Data: data})
	rs, ok := out.([]store.Result)
	if !ok {
		return nil, fmt.Errorf("apply: %v", out)
	}
	return rs, nil
}

func (l *ledger) must(t testing.TB, cmds ...store.Command) []store.Result {
	t.Helper()
	rs, err := l.apply(cmds...)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if r.Status != store.StatusOK {
			t.Fatalf("command %d %s %s: %v", i, cmds[i].Op, cmds[i].Key, r.Status)
		}
	}
	return rs
}

var tBase = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// seedAccounts creates a small ledger: a funding account, a partner's
// settlement account, a biller and two cards.
func seedAccounts(t testing.TB, l *ledger) {
	t.Helper()
	mk := func(id string, kind store.AccountKind, partner, card string, unlimited bool) store.Command {
		return store.Command{Op: store.OpCreateAccount, Key: "acct|" + id, Fingerprint: "fp", Time: tBase.UnixNano(),
			Account: &store.Account{ID: id, Kind: kind, Currency: "USD", Partner: partner, CardHash: card, Unlimited: unlimited}}
	}
	l.must(t,
		mk("fund", store.KindFunding, "", "", true),
		mk("acq-settle", store.KindSettlement, "acq", "", true),
		mk("biller", store.KindBiller, "", "", true),
		mk("card1", store.KindCardholder, "", "h1", false),
		mk("card2", store.KindCardholder, "", "h2", false),
	)
}

// txn builds a financial command of partner acq.
func txn(op store.Op, key string, amt int64, at time.Time) store.Command {
	return store.Command{Op: op, Key: key, Fingerprint: "fp-" + key, Time: at.UnixNano(),
		BusinessDay: at.Format(time.DateOnly), Partner: "acq", Amount: amt, Currency: "USD",
		Ref: store.Ref{MTI: "0200", ProcCode: "000000", STAN: key[len(key)-6:], RRN: "RRN" + key[len(key)-6:], Acquirer: "100001"}}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
