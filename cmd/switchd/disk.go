package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

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
