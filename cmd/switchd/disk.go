package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/config"
	"github.com/switchd/switchd/disk"
)

// startDiskGuard watches the ledger and raft directories (issue 9 item 2).
// It starts before the store opens: a node that starts short of space
// first gets its ballast back, so it can replay its raft log.
func startDiskGuard(cfg config.File, log *slog.Logger, reg prometheus.Registerer) (*disk.Guard, error) {
	vols := []disk.Volume{{Name: "ledger", Path: cfg.Store.Dir}, {Name: "raft", Path: cfg.Cluster.Dir}}
	for _, v := range vols {
		if err := os.MkdirAll(v.Path, 0o750); err != nil {
			return nil, fmt.Errorf("disk guard: %w", err)
		}
	}
	return disk.New(cfg.Disk, vols, cfg.DataDir, nil, log.With("component", "disk"), reg)
}

// A leader short of disk hands leadership over: every write of the cluster
// is appended to the leader's raft log and applied to its ledger, so a
// leader below its reserve would spend it on everyone's traffic (and its
// own lane refuses writes), while a follower's reserve only has to cover
// what it replicates. handOverCheck is how often the leader looks;
// handOverRetry spaces attempts (a transfer that failed, or a cluster
// whose voters are all short, must not churn elections).
const (
	handOverCheck = time.Second
	handOverRetry = 15 * time.Second
)

// handOverWhenShort starts the watcher; the returned func stops it and
// waits for it.
func handOverWhenShort(guard *disk.Guard, node *cluster.Node, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(handOverCheck)
		defer t.Stop()
		var last time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if !guard.Refusing() || !node.Leading() || time.Since(last) < handOverRetry {
				continue
			}
			last = time.Now()
			tctx, tcancel := context.WithTimeout(ctx, handOverRetry)
			err := node.TransferLeadership(tctx, "")
			tcancel()
			switch {
			case err == nil:
				log.Warn("short of disk: handed leadership to another voter")
			case errors.Is(err, cluster.ErrNoOtherVoter):
				log.Debug("short of disk, and no other voter to lead", "err", err)
			default:
				log.Warn("short of disk: leadership transfer failed; retrying", "err", err, "retry_in", handOverRetry)
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}
