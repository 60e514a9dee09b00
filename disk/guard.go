// Package disk watches the free space of the volumes that hold a node's
// state (the ledger and the raft log) and says when the node must stop
// taking new state changes: below a reserve, before pebble or the raft log
// hit "no space left on device" (see store/DESIGN.md, "A failed write").
//
// It is its own package because two components with no other link need
// it: the switch's pipeline refuses state-changing requests through it
// (Check), and cmd/switchd owns its lifetime, its volumes and its ballast.
// The store and the cluster stay free of clocks and polling.
package disk

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Bounds of Config. Each says why it is there.
const (
	// reserveBytesMin keeps a reserve that can hold at least a few raft
	// entries and one small pebble flush; less is no protection at all.
	reserveBytesMin = 1 << 20
	// reserveBytesMax is a sanity bound against a unit mistake (a reserve
	// of 2^50 bytes would refuse every write forever).
	reserveBytesMax = 1 << 40
	// checkIntervalMin bounds statfs calls (cheap, but not free);
	// checkIntervalMax bounds how far the disk can fill between two checks:
	// at ~20 MB/s of ledger and raft writes, a minute is over 1 GiB.
	checkIntervalMin = 10 * time.Millisecond
	checkIntervalMax = time.Minute
	// resumeMarginDiv: the node resumes at reserve + reserve/resumeMarginDiv
	// free, not at the reserve itself, so a volume hovering at the line
	// does not flip between refusing and taking writes on every check.
	resumeMarginDiv = 8
	// ballastName is the ballast file in the data dir (CockroachDB's
	// EMERGENCY_BALLAST idea).
	ballastName = "EMERGENCY_BALLAST"
	// ballastChunkBytes is how much the ballast writer writes at a time
	// where fallocate is not supported.
	ballastChunkBytes = 1 << 20
)

// ErrLowSpace is returned by Check while a watched volume has less free
// space than the reserve. Nothing was proposed: the caller declines (96,
// HTTP 507) and the partner may retry later with the same key.
var ErrLowSpace = errors.New("disk: free space below the reserve")

// ErrInvalidConfig is wrapped by every error Validate returns.
var ErrInvalidConfig = errors.New("disk: invalid config")

// Config configures a Guard.
type Config struct {
	// ReserveBytes is the free space each watched volume must keep. Below
	// it the node refuses new state changes; reads, repeats of stored
	// answers and entries already in the raft log go on. It must cover
	// what the node writes without asking: a raft-wal segment created at
	// rotation (cluster.wal_segment_bytes, preallocated in full), a pebble
	// memtable flushed to disk and its WAL, and the compactions after it.
	ReserveBytes uint64 `yaml:"reserve_bytes"`
	// CheckInterval is how often the free space is read.
	CheckInterval time.Duration `yaml:"check_interval"`
	// BallastBytes is the size of a ballast file kept in the data dir (0:
	// none). It occupies space that can be given back in an emergency: a
	// node that starts with less than ReserveBytes free deletes it, so
	// that it can replay its raft log into the ledger and serve reads
	// while an operator makes room; it is created again once the volume
	// has ReserveBytes + BallastBytes free.
	BallastBytes uint64 `yaml:"ballast_bytes"`
}

// DefaultConfig returns the defaults: a 512 MiB reserve (a 64 MiB raft-wal
// segment, a 64 MiB memtable flushed and its WAL, compaction headroom, and
// about a minute of writes at full load), checked every second, no ballast.
func DefaultConfig() Config {
	return Config{
		ReserveBytes:  512 << 20,
		CheckInterval: time.Second,
	}
}

// Validate reports the first field out of bounds.
func (c Config) Validate() error {
	switch {
	case c.ReserveBytes < reserveBytesMin || c.ReserveBytes > reserveBytesMax:
		return fmt.Errorf("%w: reserve_bytes %d not in [%d, %d]", ErrInvalidConfig, c.ReserveBytes, uint64(reserveBytesMin), uint64(reserveBytesMax))
	case c.CheckInterval < checkIntervalMin || c.CheckInterval > checkIntervalMax:
		return fmt.Errorf("%w: check_interval %s not in [%s, %s]", ErrInvalidConfig, c.CheckInterval, checkIntervalMin, checkIntervalMax)
	case c.BallastBytes > reserveBytesMax:
		return fmt.Errorf("%w: ballast_bytes %d above %d", ErrInvalidConfig, c.BallastBytes, uint64(reserveBytesMax))
	}
	return nil
}

// Volume is a directory to watch, named for metrics and log lines.
type Volume struct {
	Name string // e.g. "ledger", "raft"
	Path string
}

// StatFunc returns the bytes available to the process on the volume
// holding path.
type StatFunc func(path string) (uint64, error)

// Statfs is the StatFunc of a real file system: statfs(2)'s f_bavail
// (what an unprivileged writer may still use) times the block size.
func Statfs(path string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// Guard watches volumes. Check is safe for concurrent use and costs one
// atomic load: the free space is read on a ticker, not per request.
type Guard struct {
	cfg     Config
	log     *slog.Logger
	statfs  StatFunc
	vols    []Volume
	ballast string // path of the ballast file ("" when BallastBytes is 0)

	m guardMetrics

	// short is nil while the node takes state changes; while it refuses,
	// it says which volume is short and by how much (for Check's error).
	// Only check stores it, from one goroutine at a time.
	short atomic.Pointer[string]

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type guardMetrics struct {
	free     *prometheus.GaugeVec
	refusing prometheus.Gauge
	refused  prometheus.Counter
}

// New checks the volumes once (so that a node that starts short of space
// refuses from its first request), handles the ballast in dataDir (see
// Config.BallastBytes; dataDir may be "" when BallastBytes is 0), and
// starts the goroutine that checks every CheckInterval until Close. statfs
// nil means Statfs; reg may be nil.
func New(cfg Config, vols []Volume, dataDir string, statfs StatFunc, logger *slog.Logger, reg prometheus.Registerer) (*Guard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(vols) == 0 {
		return nil, fmt.Errorf("%w: no volume to watch", ErrInvalidConfig)
	}
	if cfg.BallastBytes > 0 && dataDir == "" {
		return nil, fmt.Errorf("%w: ballast_bytes without a data dir", ErrInvalidConfig)
	}
	if statfs == nil {
		statfs = Statfs
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Guard{
		cfg: cfg, log: logger, statfs: statfs, vols: vols,
		stop: make(chan struct{}), done: make(chan struct{}),
		m: guardMetrics{
			free: prometheus.NewGaugeVec(prometheus.GaugeOpts{
				Name: "switchd_disk_free_bytes",
				Help: "Bytes available on the volume holding each of the node's directories.",
			}, []string{"volume"}),
			refusing: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "switchd_disk_refusing",
				Help: "1 while a volume is below disk.reserve_bytes and new state changes are refused.",
			}),
			refused: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "switchd_disk_refusals_total",
				Help: "State-changing requests refused because a volume was below disk.reserve_bytes.",
			}),
		},
	}
	if cfg.BallastBytes > 0 {
		g.ballast = filepath.Join(dataDir, ballastName)
	}
	if reg != nil {
		reg.MustRegister(g.m.free, g.m.refusing, g.m.refused)
	}
	g.log.Info("disk guard", "reserve_bytes", cfg.ReserveBytes, "check_interval", cfg.CheckInterval,
		"ballast_bytes", cfg.BallastBytes, "volumes", vols)
	g.startBallast()
	g.check()
	go g.run()
	return g, nil
}

// Check returns nil while every volume has room, else an error wrapping
// ErrLowSpace that names the volume (and counts a refusal).
func (g *Guard) Check() error {
	short := g.short.Load()
	if short == nil {
		return nil
	}
	g.m.refused.Inc()
	return fmt.Errorf("%w: %s", ErrLowSpace, *short)
}

// Refusing reports the current state without counting a refusal.
func (g *Guard) Refusing() bool { return g.short.Load() != nil }

// Close stops the checks. It is safe to call more than once.
func (g *Guard) Close() {
	g.once.Do(func() {
		close(g.stop)
		<-g.done
	})
}

func (g *Guard) run() {
	defer close(g.done)
	t := time.NewTicker(g.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
			g.check()
		}
	}
}

// check reads every volume and changes state when one crosses the line:
// it refuses below the reserve and resumes once all have the reserve plus
// a margin. A volume it cannot read counts as full (fail closed). It logs
// and sets the gauge on each transition only.
func (g *Guard) check() {
	resumeAt := g.cfg.ReserveBytes + g.cfg.ReserveBytes/resumeMarginDiv
	low, allClear := "", true
	for _, v := range g.vols {
		free, err := g.statfs(v.Path)
		if err != nil {
			if low == "" {
				low = fmt.Sprintf("volume %s: %v", v.Name, err)
			}
			allClear = false
			continue
		}
		g.m.free.WithLabelValues(v.Name).Set(float64(free))
		if free < g.cfg.ReserveBytes && low == "" {
			low = fmt.Sprintf("volume %s has %d bytes free, reserve %d", v.Name, free, g.cfg.ReserveBytes)
		}
		if free < resumeAt {
			allClear = false
		}
	}
	was := g.short.Load() != nil
	switch {
	case !was && low != "":
		g.short.Store(&low)
	case was && allClear:
		g.short.Store(nil)
	}
	now := g.short.Load() != nil
	switch {
	case !was && now:
		g.m.refusing.Set(1)
		g.log.Error("disk space low: refusing new state changes (reads and repeats go on)", "cause", low)
	case was && !now:
		g.m.refusing.Set(0)
		g.log.Warn("disk space back above the reserve: taking state changes again",
			"resume_at_bytes", resumeAt)
		g.growBallast()
	}
}

// startBallast releases the ballast when the node starts short of space,
// or creates it when there is room for it.
func (g *Guard) startBallast() {
	if g.ballast == "" {
		return
	}
	free, err := g.minFree()
	if err != nil {
		g.log.Warn("ballast: cannot read free space", "err", err)
		return
	}
	if free < g.cfg.ReserveBytes {
		err := os.Remove(g.ballast)
		switch {
		case err == nil:
			g.log.Warn("disk space low at start: ballast file deleted so the node can replay its log and serve reads",
				"path", g.ballast, "bytes", g.cfg.BallastBytes, "free_bytes", free)
		case !errors.Is(err, os.ErrNotExist):
			g.log.Error("ballast: delete failed", "path", g.ballast, "err", err)
		}
		return
	}
	g.growBallast()
}

// growBallast makes the ballast BallastBytes long when the volume has
// room for it above the reserve.
func (g *Guard) growBallast() {
	if g.ballast == "" {
		return
	}
	var have uint64
	if fi, err := os.Stat(g.ballast); err == nil {
		have = uint64(fi.Size())
	}
	if have >= g.cfg.BallastBytes {
		return
	}
	free, err := g.minFree()
	if err != nil || free < g.cfg.ReserveBytes+g.cfg.BallastBytes-have {
		return // not now: it would eat into the reserve
	}
	if err := writeBallast(g.ballast, int64(g.cfg.BallastBytes)); err != nil {
		g.log.Error("ballast: create failed", "path", g.ballast, "err", err)
		_ = os.Remove(g.ballast)
		return
	}
	g.log.Info("ballast file in place", "path", g.ballast, "bytes", g.cfg.BallastBytes)
}

func (g *Guard) minFree() (uint64, error) {
	var low uint64
	for i, v := range g.vols {
		free, err := g.statfs(v.Path)
		if err != nil {
			return 0, err
		}
		if i == 0 || free < low {
			low = free
		}
	}
	return low, nil
}

// writeBallast makes path size bytes of allocated (not sparse) space:
// fallocate where the file system has it, zeros otherwise.
func writeBallast(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := fallocate(f, size); err != nil {
		buf := make([]byte, ballastChunkBytes)
		for off := int64(0); off < size; off += int64(len(buf)) {
			n := min(int64(len(buf)), size-off)
			if _, err := f.WriteAt(buf[:n], off); err != nil {
				return err
			}
		}
	}
	return f.Sync()
}
