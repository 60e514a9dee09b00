package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchd/switchd/internal/switchdtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// A short closed-loop run against a real switch: approvals happen, every
// repeat gets its original answer, and every card's balances moved by
// exactly what the approvals imply. A second, open-loop run reuses the
// cards (setup is idempotent) and verifies again; a third runs cards dry.
func TestLoadAgainstSwitchd(t *testing.T) {
	sw := switchdtest.Start(t, switchdtest.Build(t))
	cfg := DefaultConfig()
	cfg.Addr, cfg.Ops, cfg.Credentials = sw.LaneAddr, sw.OpsURL, sw.Credentials
	cfg.Duration = 3 * time.Second
	cfg.Conns, cfg.Inflight = 4, 32
	cfg.Cards = 20
	cfg.Quiet = true
	cfg.Seed = 7

	ctx := context.Background()
	sum, err := run(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	checkRun(t, sum, cfg.Cards)
	if sum.Setup.Created != cfg.Cards {
		t.Errorf("first run created %d cards, want %d", sum.Setup.Created, cfg.Cards)
	}
	for _, k := range []string{"purchase", "auth", "completion", "reversal", "repeat", "balance"} {
		if sum.ByKind[k] == 0 {
			t.Errorf("no %s answered: %v", k, sum.ByKind)
		}
	}

	cfg.Rate, cfg.Duration = 500, 2*time.Second
	sum, err = run(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	checkRun(t, sum, cfg.Cards)
	if sum.Setup.Existing != cfg.Cards {
		t.Errorf("second run found %d existing cards, want %d", sum.Setup.Existing, cfg.Cards)
	}
	if sum.Scheduled < 900 || sum.Scheduled > 1000 {
		t.Errorf("open loop at 500/s for 2s scheduled %d requests", sum.Scheduled)
	}
	if sum.BacklogUnsent > 50 || sum.Sent < 950 {
		t.Errorf("open loop at 500/s for 2s sent %d, %d never sent", sum.Sent, sum.BacklogUnsent)
	}

	// Cards that run out of money: declines (51) must leave balances
	// alone, and their repeats must replay the decline.
	cfg.Rate, cfg.Duration = 0, time.Second
	cfg.BIN, cfg.Opening, cfg.Cards = "999997", "50.00", 5
	sum, err = run(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	checkRun(t, sum, cfg.Cards)
	if sum.ByRC["51"] == 0 {
		t.Errorf("no insufficient-funds declines with 50.00 per card: %v", sum.ByRC)
	}
}

func checkRun(t *testing.T, sum *Summary, cards int) {
	t.Helper()
	defer func() {
		if t.Failed() {
			var b strings.Builder
			sum.writeJSON(&b)
			t.Logf("summary:\n%s", b.String())
		}
	}()
	if !sum.OK {
		t.Errorf("run not OK: repeats %+v, balances %+v, verification %+v", sum.Repeats, sum.Balances, sum.Verification)
	}
	if sum.Approved == 0 || sum.ByRC["00"] == 0 {
		t.Errorf("no approvals: %v", sum.ByRC)
	}
	if sum.Answered != sum.Sent || sum.Unresolved != 0 {
		t.Errorf("sent %d, answered %d, unresolved %d", sum.Sent, sum.Answered, sum.Unresolved)
	}
	if sum.Repeats.Checked == 0 || sum.Repeats.Mismatches != 0 {
		t.Errorf("repeats: %+v", sum.Repeats)
	}
	v := sum.Verification
	if v == nil || v.AccountsChecked != cards || len(v.Mismatches) != 0 {
		t.Errorf("verification: %+v", v)
	}
}
