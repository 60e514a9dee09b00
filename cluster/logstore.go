package cluster

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	walmetrics "github.com/hashicorp/raft-wal/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"
)

// Raft log stores. Both keep raft's log and its stable values (term, vote).
const (
	// LogStoreWAL is hashicorp/raft-wal (v0.4.2 at least: v0.4.0 left a
	// sealed segment without its index after a tail truncation, and the
	// node then panicked on restart; our chaos suite found it, upstream
	// fixed it as hashicorp/raft-wal#31): append-only segment files, one
	// fsync per append. On this machine an append costs a third of bolt's
	// CPU and wall time (docs/BENCHMARKS.md), and the raft log is on the
	// critical path of every approval on the leader and on a follower.
	LogStoreWAL = "wal"
	// LogStoreBolt is raft-boltdb/v2: a copy-on-write B+tree, two fsyncs
	// per append. Kept for data dirs created before the WAL.
	LogStoreBolt = "bolt"
)

const (
	boltFile = "raft.db"
	walDir   = "wal"
)

// ErrLogStoreMismatch: the data dir holds a raft log of another kind than
// the config names. Switching would start from an empty log and forget
// the node's term, vote and entries, so it is refused.
var ErrLogStoreMismatch = errors.New("cluster: data dir holds a different raft log store")

// logStore is the raft log and stable store under one Close.
type logStore interface {
	raft.LogStore
	raft.StableStore
	io.Closer
}

// testLogStore, when set by a test, wraps the log store a node opens (to
// inject append failures: a full raft volume).
var testLogStore func(logStore) logStore

// detectLogStore says which store dir already holds ("" when none).
func detectLogStore(dir string) (string, error) {
	var found []string
	for kind, name := range map[string]string{LogStoreBolt: boltFile, LogStoreWAL: walDir} {
		_, err := os.Stat(filepath.Join(dir, name))
		switch {
		case err == nil:
			found = append(found, kind)
		case !errors.Is(err, fs.ErrNotExist):
			return "", fmt.Errorf("cluster: raft log: %w", err)
		}
	}
	if len(found) > 1 {
		return "", fmt.Errorf("%w: both %s and %s/ in %s", ErrLogStoreMismatch, boltFile, walDir, dir)
	}
	if len(found) == 1 {
		return found[0], nil
	}
	return "", nil
}

// openLogStore opens (or creates) the raft log named by kind under dir; an
// empty kind takes whatever dir holds, and the WAL for a new dir.
// segmentBytes is raft-wal's segment size (Config.WALSegmentBytes).
func openLogStore(dir, kind string, segmentBytes int, logger hclog.Logger, reg prometheus.Registerer) (logStore, string, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	have, err := detectLogStore(dir)
	if err != nil {
		return nil, "", err
	}
	switch {
	case kind == "" && have != "":
		kind = have
	case kind == "":
		kind = LogStoreWAL
	case have != "" && have != kind:
		return nil, "", fmt.Errorf("%w: %s has a %s log but log_store is %q", ErrLogStoreMismatch, dir, have, kind)
	}
	switch kind {
	case LogStoreBolt:
		s, err := raftboltdb.New(raftboltdb.Options{
			Path: filepath.Join(dir, boltFile),
			// Not syncing bolt's freelist halves what each commit writes;
			// bolt rebuilds the freelist by a scan on open (Consul does the same).
			BoltOptions: &bbolt.Options{NoFreelistSync: true, FreelistType: bbolt.FreelistMapType, Timeout: time.Second},
		})
		if err != nil {
			return nil, "", fmt.Errorf("cluster: raft log (bolt): %w", err)
		}
		return s, kind, nil
	case LogStoreWAL:
		d := filepath.Join(dir, walDir)
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, "", fmt.Errorf("cluster: raft log (wal): %w", err)
		}
		w, err := wal.Open(d,
			wal.WithLogger(logger.Named("wal")),
			wal.WithSegmentSize(segmentBytes),
			wal.WithMetricsCollector(newWALMetrics(reg)))
		if err != nil {
			return nil, "", fmt.Errorf("cluster: raft log (wal): %w", err)
		}
		return w, kind, nil
	default:
		return nil, "", fmt.Errorf("%w: log_store %q", ErrConfig, kind)
	}
}

// walMetrics exports raft-wal's counters and gauges to prometheus as
// switchd_raft_wal_<name>.
// The maps are filled once, before raft-wal sees the collector, and only
// read afterwards.
type walMetrics struct {
	counters map[string]prometheus.Counter
	gauges   map[string]prometheus.Gauge
}

var _ walmetrics.Collector = (*walMetrics)(nil)

func newWALMetrics(reg prometheus.Registerer) *walMetrics {
	m := &walMetrics{counters: map[string]prometheus.Counter{}, gauges: map[string]prometheus.Gauge{}}
	for _, d := range wal.MetricDefinitions.Counters {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: "switchd_raft_wal_" + d.Name, Help: d.Desc})
		m.counters[d.Name] = c
		if reg != nil {
			reg.MustRegister(c)
		}
	}
	for _, d := range wal.MetricDefinitions.Gauges {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "switchd_raft_wal_" + d.Name, Help: d.Desc})
		m.gauges[d.Name] = g
		if reg != nil {
			reg.MustRegister(g)
		}
	}
	return m
}

func (m *walMetrics) IncrementCounter(name string, delta uint64) {
	if c := m.counters[name]; c != nil {
		c.Add(float64(delta))
	}
}

func (m *walMetrics) SetGauge(name string, val uint64) {
	if g := m.gauges[name]; g != nil {
		g.Set(float64(val))
	}
}
