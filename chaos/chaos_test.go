package chaos

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	runs     = flag.Int("chaos.runs", 0, "long chaos: number of randomized runs (0: only the short run and the regression seeds)")
	duration = flag.Duration("chaos.duration", 30*time.Second, "long chaos: load under faults per run")
	seed0    = flag.Int64("chaos.seed", 0, "long chaos: first seed (0: from the clock)")
	verbose  = flag.Bool("chaos.log", false, "log the nodes")
	size     = flag.Int("chaos.nodes", 3, "long chaos: cluster size (3 or 5)")
	offUs    = flag.Int("chaos.offus", 4, "long chaos: off-us partners (purchases forwarded to a flaky simulated issuer) in every other run")
)

// regressionSeeds ran into a violation or a harness failure once; each
// runs again in every `make test`.
//   - 778205 (3 nodes, 30 s): with hashicorp/raft-wal v0.4.0 as the raft
//     log, a follower that had truncated its log tail panicked on restart
//     ("sealed segment has no index block", hashicorp/raft-wal#31); fixed
//     by v0.4.2. cluster/logstore_test.go reproduces it exactly.
//
// Before that, with the bolt log: 30 long runs (3 nodes: seeds
// 346095–346102, 2000–2011, 7000–7005; 5 nodes: 5000–5003), 318 faults,
// 1,124,019 operations checked, 0 violations.
var regressionSeeds = []int64{778205}

func runOne(t *testing.T, cfg Config) Report {
	t.Helper()
	cfg.Dir = t.TempDir()
	if *verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("seed %d: harness failed: %v", cfg.Seed, err)
	}
	t.Log(rep.String())
	if len(rep.Violations) > 0 {
		t.Errorf("seed %d: %d violations (add it to regressionSeeds)", cfg.Seed, len(rep.Violations))
	}
	if rep.Approved == 0 || rep.Reads == 0 {
		t.Errorf("seed %d: no load went through (%d approved, %d reads)", cfg.Seed, rep.Approved, rep.Reads)
	}
	return rep
}

// TestChaosShort is the run inside `make test`: one seeded run of a
// 3-node cluster under faults, then every check. The regression seeds run
// on raft-wal; this one keeps its log in bolt so that followers are sent
// snapshots (a reference on the leader, the live state on the wire). The
// faults alone gave one only in about 2 runs of 3 (issue 9 item 7), so
// after them the run forces one (Config.ForceSnapshotInstall) and the
// checks cover the follower that restored it.
func TestChaosShort(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Seed = 1
	cfg.Duration = 12 * time.Second
	cfg.TLS = true
	cfg.LogStore = "bolt"
	cfg.ForceSnapshotInstall = true
	rep := runOne(t, cfg)
	if rep.SnapshotInstalls == 0 {
		t.Error("no follower was sent a snapshot: the run did not test snapshot install")
	}
	if rep.BogusJoins == 0 {
		t.Error("no bogus join was tried: the run did not test join checks")
	}
}

func TestChaosRegressionSeeds(t *testing.T) {
	if len(regressionSeeds) == 0 {
		t.Skip("no seed has failed yet")
	}
	for _, s := range regressionSeeds {
		cfg := DefaultConfig()
		cfg.Seed = s
		cfg.Duration = 8 * time.Second
		runOne(t, cfg)
	}
}

// TestChaosLong is `make chaos`: -chaos.runs randomized runs.
func TestChaosLong(t *testing.T) {
	if *runs == 0 {
		t.Skip("make chaos runs this (-chaos.runs N)")
	}
	s := *seed0
	if s == 0 {
		s = time.Now().UnixNano() % 1_000_000
	}
	var ops, faults, installs, violations int
	for r := 0; r < *runs; r++ {
		cfg := DefaultConfig()
		cfg.Seed = s + int64(r)
		cfg.Duration = *duration
		cfg.TLS = cfg.Seed%2 == 0 // half the runs with node TLS
		cfg.Nodes = *size
		if (cfg.Seed/2)%2 == 1 { // independent of TLS: all four pairings
			cfg.LogStore = "bolt"
		}
		if (cfg.Seed/4)%2 == 1 {
			cfg.OffUsWorkers = *offUs
		}
		rep := runOne(t, cfg)
		ops += rep.Ops
		faults += len(rep.Faults)
		installs += rep.SnapshotInstalls
		violations += len(rep.Violations)
	}
	t.Logf("chaos: %d runs (seeds %d–%d), %d faults injected, %d snapshot installs, %d operations checked, %d violations",
		*runs, s, s+int64(*runs)-1, faults, installs, ops, violations)
}

// TestChaosOffUs is the off-us mix inside `make test` (issue 13): a
// 3-node cluster under faults, on-us debits and purchases forwarded to a
// simulated issuer that declines, drops and leaves unanswered a share of
// them; every check of the on-us run plus the off-us ones (offus.go).
func TestChaosOffUs(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Seed = 13
	cfg.Duration = 12 * time.Second
	cfg.Workers = 6
	cfg.OffUsWorkers = 6
	rep := runOne(t, cfg)
	if rep.OffUsApproved == 0 || rep.OffUsTimedOut == 0 || rep.OffUsDeclined == 0 {
		t.Errorf("the off-us mix did not cover approvals, timeouts and declines: %+v", rep)
	}
	if rep.OffUsAdvices == 0 {
		t.Error("no reversal advice reached the host")
	}
}
