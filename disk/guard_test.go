package disk

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeFS is a StatFunc whose free bytes the test sets per path.
type fakeFS struct {
	mu   sync.Mutex // protects free and err
	free map[string]uint64
	err  map[string]error
}

func (f *fakeFS) set(path string, free uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.free[path] = free
}

func (f *fakeFS) stat(path string) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err[path]; err != nil {
		return 0, err
	}
	return f.free[path], nil
}

const mib = 1 << 20

// slowConfig checks once an hour: the tests drive check() themselves, so
// no ticker races with them.
func slowConfig(reserve uint64) Config {
	return Config{ReserveBytes: reserve, CheckInterval: checkIntervalMax}
}

func TestGuardRefusesBelowReserveAndResumesAboveMargin(t *testing.T) {
	fs := &fakeFS{free: map[string]uint64{"/l": 500 * mib, "/r": 500 * mib}}
	reg := prometheus.NewRegistry()
	g, err := New(slowConfig(64*mib), []Volume{{"ledger", "/l"}, {"raft", "/r"}}, "", fs.stat, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Check(); err != nil {
		t.Fatalf("plenty of space: %v", err)
	}

	steps := []struct {
		ledger, raft uint64
		refusing     bool
	}{
		{500 * mib, 64 * mib, false},       // at the reserve: still fine
		{500 * mib, 64*mib - 1, true},      // one byte under, on one volume
		{70 * mib, 500 * mib, true},        // raft freed, ledger under the resume line (72 MiB)
		{500 * mib, 500 * mib, false},      // both clear
		{10 * mib, 500 * mib, true},        // ledger short
		{68 * mib, 500 * mib, true},        // above the reserve, below the margin: still refusing
		{64*mib + 8*mib, 500 * mib, false}, // reserve + reserve/8: resume
	}
	for i, s := range steps {
		fs.set("/l", s.ledger)
		fs.set("/r", s.raft)
		g.check()
		err := g.Check()
		if got := err != nil; got != s.refusing {
			t.Fatalf("step %d (ledger %d MiB, raft %d MiB): refusing %v, want %v (err %v)", i, s.ledger/mib, s.raft/mib, got, s.refusing, err)
		}
		if err != nil && !errors.Is(err, ErrLowSpace) {
			t.Fatalf("step %d: %v does not wrap ErrLowSpace", i, err)
		}
		if g.Refusing() != s.refusing {
			t.Fatalf("step %d: Refusing() = %v", i, g.Refusing())
		}
		if want := map[bool]float64{false: 0, true: 1}[s.refusing]; testutil.ToFloat64(g.m.refusing) != want {
			t.Fatalf("step %d: refusing gauge %v, want %v", i, testutil.ToFloat64(g.m.refusing), want)
		}
	}
	if got := testutil.ToFloat64(g.m.free.WithLabelValues("ledger")); got != 72*mib {
		t.Errorf("free bytes gauge for ledger = %v", got)
	}
	// Refused Checks: steps 1, 2, 4, 5.
	if got := testutil.ToFloat64(g.m.refused); got != 4 {
		t.Errorf("refusals counter = %v, want 4", got)
	}
}

func TestGuardNamesTheShortVolume(t *testing.T) {
	fs := &fakeFS{free: map[string]uint64{"/l": 500 * mib, "/r": 2 * mib}}
	g, err := New(slowConfig(64*mib), []Volume{{"ledger", "/l"}, {"raft", "/r"}}, "", fs.stat, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	// New checked once already: a node that starts short refuses at once.
	err = g.Check()
	if !errors.Is(err, ErrLowSpace) || !strings.Contains(err.Error(), "raft") {
		t.Fatalf("Check = %v, want ErrLowSpace naming the raft volume", err)
	}
}

func TestGuardFailsClosedWhenStatfsFails(t *testing.T) {
	fs := &fakeFS{free: map[string]uint64{"/l": 500 * mib}, err: map[string]error{"/l": errors.New("EIO")}}
	g, err := New(slowConfig(64*mib), []Volume{{"ledger", "/l"}}, "", fs.stat, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Check(); !errors.Is(err, ErrLowSpace) {
		t.Fatalf("Check with an unreadable volume = %v, want ErrLowSpace", err)
	}
	fs.mu.Lock()
	fs.err = nil
	fs.mu.Unlock()
	g.check()
	if err := g.Check(); err != nil {
		t.Fatalf("volume readable again: %v", err)
	}
}

// The ticker alone brings the guard back: no caller has to poke it.
func TestGuardResumesByItself(t *testing.T) {
	fs := &fakeFS{free: map[string]uint64{"/l": 1 * mib}}
	cfg := Config{ReserveBytes: 64 * mib, CheckInterval: checkIntervalMin}
	g, err := New(cfg, []Volume{{"ledger", "/l"}}, "", fs.stat, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if !g.Refusing() {
		t.Fatal("not refusing with 1 MiB free")
	}
	fs.set("/l", 500*mib)
	for deadline := time.Now().Add(10 * time.Second); g.Refusing(); time.Sleep(checkIntervalMin) {
		if time.Now().After(deadline) {
			t.Fatal("still refusing 10 s after the space came back")
		}
	}
}

func TestBallastCreatedWithRoomAndReleasedWhenShortAtStart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ballastName)
	fs := &fakeFS{free: map[string]uint64{dir: 500 * mib}}
	cfg := slowConfig(64 * mib)
	cfg.BallastBytes = 2 * mib
	g, err := New(cfg, []Volume{{"data", dir}}, dir, fs.stat, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != 2*mib {
		t.Fatalf("ballast after a start with room: %v %v", fi, err)
	}

	// A restart short of space gives the ballast back.
	fs.set(dir, 10*mib)
	g, err = New(cfg, []Volume{{"data", dir}}, dir, fs.stat, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ballast still there after a start short of space: %v", err)
	}
	// Space back (above reserve + ballast): it is made again on resume.
	fs.set(dir, 500*mib)
	g.check()
	g.Close()
	if fi, err := os.Stat(path); err != nil || fi.Size() != 2*mib {
		t.Fatalf("ballast after the space came back: %v %v", fi, err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]Config{
		"tiny reserve":   {ReserveBytes: 1, CheckInterval: time.Second},
		"huge reserve":   {ReserveBytes: 1 << 50, CheckInterval: time.Second},
		"fast interval":  {ReserveBytes: 64 * mib, CheckInterval: time.Microsecond},
		"slow interval":  {ReserveBytes: 64 * mib, CheckInterval: time.Hour},
		"huge ballast":   {ReserveBytes: 64 * mib, CheckInterval: time.Second, BallastBytes: 1 << 50},
		"zero everthing": {},
	} {
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Validate = %v", name, err)
		}
	}
}
