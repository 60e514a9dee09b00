// Package config is switchd's configuration file: the components' Configs
// under one YAML document, with the demo configuration embedded so that a
// fresh checkout runs with nothing else.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/ops"
	"github.com/switchd/switchd/settle"
	"github.com/switchd/switchd/store"
	switching "github.com/switchd/switchd/switch"
)

//go:embed demo.yaml
var demoYAML []byte

// fileBytesMax bounds a config file: a config is not a data file.
const fileBytesMax = 4 << 20

// gcPercentDefault, gcPercentMin and gcPercentMax bound File.GCPercent:
// below 25 the collector runs nearly all the time, above 1000 the heap may
// grow to ten times its live size between collections.
const (
	gcPercentDefault = 200
	gcPercentMin     = 25
	gcPercentMax     = 1000
)

// ErrConfig is wrapped by every error of this package.
var ErrConfig = errors.New("config: invalid config")

// File is the whole configuration.
type File struct {
	// DataDir holds the raft log and snapshots (raft/) and the ledger (ledger/).
	DataDir  string `yaml:"data_dir"`
	LogLevel string `yaml:"log_level"`
	// GCPercent is the Go collector's GOGC. The heap is small (pebble
	// keeps its cache and memtables outside it), so collecting at 3× the
	// live heap instead of 2× costs little memory and saves CPU that a
	// 3-node cluster on few cores needs for requests (docs/BENCHMARKS.md).
	// GOGC in the environment wins.
	GCPercent int            `yaml:"gc_percent"`
	Cluster   cluster.Config `yaml:"cluster"`
	// Store sizes the ledger's memory: the process's resident set levels
	// off near cache_bytes (which includes the memtables) plus the Go heap
	// and the account cache (~300 bytes an account).
	Store    store.Config            `yaml:"store"`
	Ops      ops.Config              `yaml:"ops"`
	Switch   switching.Config        `yaml:"switch"`
	Accounts []switching.AccountSeed `yaml:"accounts"`
	// Settle is the business-day cutover and the settlement file jobs.
	Settle settle.Config `yaml:"settle"`
}

// Demo is the embedded demo configuration over the components' defaults.
func Demo() File {
	f := File{
		GCPercent: gcPercentDefault,
		Cluster:   cluster.DefaultConfig(),
		Store:     store.DefaultConfig(),
		Ops:       ops.DefaultConfig(),
		Switch:    switching.DefaultConfig(),
		Settle:    settle.DefaultConfig(),
	}
	if err := decode(bytes.NewReader(demoYAML), &f); err != nil {
		panic(fmt.Sprintf("config: embedded demo config is broken: %v", err)) // a build defect
	}
	return f
}

// Load reads path over the demo configuration: keys the file sets replace
// the demo's; lists are replaced whole.
func Load(path string) (File, error) {
	f := Demo()
	fh, err := os.Open(path)
	if err != nil {
		return f, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	defer fh.Close()
	if err := decode(io.LimitReader(fh, fileBytesMax), &f); err != nil {
		return f, fmt.Errorf("%w: %s: %w", ErrConfig, path, err)
	}
	return f, nil
}

func decode(r io.Reader, f *File) error {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true) // a typo in a key is an error, not a silent default
	if err := dec.Decode(f); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	for i := range f.Switch.Lanes {
		f.Switch.Lanes[i] = withLaneDefaults(f.Switch.Lanes[i])
	}
	return nil
}

// withLaneDefaults fills the keys a lane entry left out.
func withLaneDefaults(l switching.LaneConfig) switching.LaneConfig {
	d := switching.DefaultLane()
	if l.Dialect == "" {
		l.Dialect = d.Dialect
	}
	if l.Header == "" {
		l.Header = d.Header
	}
	if l.FrameBytesMax == 0 {
		l.FrameBytesMax = d.FrameBytesMax
	}
	if l.ConnsMax == 0 {
		l.ConnsMax = d.ConnsMax
	}
	if l.ConnsPerSourceMax == 0 {
		l.ConnsPerSourceMax = d.ConnsPerSourceMax
	}
	if l.InflightMax == 0 {
		l.InflightMax = d.InflightMax
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = d.IdleTimeout
	}
	if l.WriteTimeout == 0 {
		l.WriteTimeout = d.WriteTimeout
	}
	if l.FirstFrameTimeout == 0 {
		l.FirstFrameTimeout = min(d.FirstFrameTimeout, l.IdleTimeout)
	}
	return l
}

// Finish derives the component directories from DataDir.
func (f *File) Finish() {
	f.Cluster.Dir = filepath.Join(f.DataDir, "raft")
	f.Store.Dir = filepath.Join(f.DataDir, "ledger")
	f.Settle.Dir = filepath.Join(f.DataDir, "settle")
	if f.Settle.Zone == "" {
		f.Settle.Zone = f.Switch.BusinessDayZone
	}
}

// Validate checks every component.
func (f File) Validate() error {
	if f.DataDir == "" {
		return fmt.Errorf("%w: data_dir is empty", ErrConfig)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.LogLevel)); err != nil {
		return fmt.Errorf("%w: log_level %q", ErrConfig, f.LogLevel)
	}
	if f.GCPercent < gcPercentMin || f.GCPercent > gcPercentMax {
		return fmt.Errorf("%w: gc_percent %d not in [%d, %d]", ErrConfig, f.GCPercent, gcPercentMin, gcPercentMax)
	}
	for _, err := range []error{f.Cluster.Validate(), f.Store.Validate(), f.Ops.Validate(), f.Switch.Validate(), f.Settle.Validate()} {
		if err != nil {
			return err
		}
	}
	ids := map[string]bool{}
	for _, a := range f.Accounts {
		if a.ID == "" || ids[a.ID] {
			return fmt.Errorf("%w: account id %q empty or duplicate", ErrConfig, a.ID)
		}
		ids[a.ID] = true
	}
	for _, a := range f.Accounts {
		if a.Opening != "" && a.Opening != "0" && !ids[a.FundedBy] {
			return fmt.Errorf("%w: account %q funded_by unknown account %q", ErrConfig, a.ID, a.FundedBy)
		}
	}
	return nil
}

// Level is the parsed log level.
func (f File) Level() slog.Level {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(f.LogLevel))
	return lvl
}
