// Package sim holds the simulators switchd's outbound paths are tested
// against: an ISO 8583 issuer host (Issuer) and an HTTP biller (Biller).
// Both answer by a Behavior — a mode (approve, decline, timeout, down,
// late), a latency and ratios of declines, time-outs and disconnects drawn
// from a seeded generator — that a small control API (Control) switches
// while they run, so a newcomer can watch a time-out turn into a reversal
// and a test can drive every path on purpose and reproducibly.
//
// The simulators are test equipment, not a switch: they keep their
// counters in memory, hold no ledger and decide nothing but what their
// Behavior says.
package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Mode is what a simulator does with every request.
type Mode string

const (
	// ModeApprove answers every request with an approval (after the latency).
	ModeApprove Mode = "approve"
	// ModeDecline answers every request with the configured decline code.
	ModeDecline Mode = "decline"
	// ModeTimeout reads requests and never answers them.
	ModeTimeout Mode = "timeout"
	// ModeDown stops accepting: the listener is closed (a dial is refused)
	// and open connections are closed.
	ModeDown Mode = "down"
	// ModeLate answers like approve, but only after LateDelay: longer than
	// a caller's time-out, so the answer arrives after it gave up.
	ModeLate Mode = "late"
)

// Limits on a Behavior. Each keeps a typo from parking every answer for
// hours or from making the simulator hold unbounded timers.
const (
	latencyMax   = time.Minute
	lateDelayMax = 10 * time.Minute
	// lateDelayDefault is past switchd's default request timeout and the
	// load generator's answer timeout, so a late answer is late for both.
	lateDelayDefault = 35 * time.Second
)

// ErrBehavior is wrapped by every Behavior.Validate error.
var ErrBehavior = errors.New("sim: invalid behavior")

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("250ms", "35s"), which is what a person types into curl.
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string; a bare number is refused because
// its unit would be a guess.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"250ms\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %v", s, err)
	}
	*d = Duration(v)
	return nil
}

// Behavior is how a simulator answers. Ratios are probabilities in 0..1,
// drawn per request in the order requests arrive; they apply in modes
// approve and late only (decline, timeout and down are already absolute).
type Behavior struct {
	Mode Mode `json:"mode"`
	// Latency delays every answer (approve, decline).
	Latency Duration `json:"latency"`
	// LateDelay is how long mode late waits before answering.
	LateDelay Duration `json:"late_delay"`
	// DeclineRatio of requests are declined, TimeoutRatio never answered,
	// DisconnectRatio answered by closing the connection. Their sum is at
	// most 1.
	DeclineRatio    float64 `json:"decline_ratio"`
	TimeoutRatio    float64 `json:"timeout_ratio"`
	DisconnectRatio float64 `json:"disconnect_ratio"`
}

// DefaultBehavior approves everything at once.
func DefaultBehavior() Behavior {
	return Behavior{Mode: ModeApprove, LateDelay: Duration(lateDelayDefault)}
}

// Validate reports whether b is usable.
func (b Behavior) Validate() error {
	switch b.Mode {
	case ModeApprove, ModeDecline, ModeTimeout, ModeDown, ModeLate:
	default:
		return fmt.Errorf("%w: mode %q (want approve, decline, timeout, down or late)", ErrBehavior, b.Mode)
	}
	if b.Latency < 0 || time.Duration(b.Latency) > latencyMax {
		return fmt.Errorf("%w: latency %v out of range 0..%v", ErrBehavior, time.Duration(b.Latency), latencyMax)
	}
	if b.LateDelay <= 0 || time.Duration(b.LateDelay) > lateDelayMax {
		return fmt.Errorf("%w: late_delay %v out of range (0, %v]", ErrBehavior, time.Duration(b.LateDelay), lateDelayMax)
	}
	sum := 0.0
	for _, r := range []struct {
		name string
		v    float64
	}{{"decline_ratio", b.DeclineRatio}, {"timeout_ratio", b.TimeoutRatio}, {"disconnect_ratio", b.DisconnectRatio}} {
		// NaN fails both comparisons, so it is refused here too.
		if !(r.v >= 0 && r.v <= 1) {
			return fmt.Errorf("%w: %s %v out of range 0..1", ErrBehavior, r.name, r.v)
		}
		sum += r.v
	}
	if sum > 1 {
		return fmt.Errorf("%w: the ratios add up to %v, more than 1", ErrBehavior, sum)
	}
	return nil
}

// action is what one request gets.
type action uint8

const (
	actApprove    action = iota
	actDecline           // answered with a decline code
	actTimeout           // read, never answered
	actDisconnect        // the connection is closed instead of an answer
	actDown              // the simulator is down (a request on a closing connection)
)

// decision is one request's fate: what to do and after how long.
type decision struct {
	act   action
	delay time.Duration
	late  bool // delayed by LateDelay (counted as late)
}

// behaviorState is a simulator's current Behavior and its seeded
// generator. Draws happen in request order under mu, so one client
// sending sequentially sees the same fates for the same seed.
type behaviorState struct {
	mu   sync.Mutex // protects b and rng
	b    Behavior
	seed uint64
	rng  *rand.Rand
}

func newBehaviorState(b Behavior, seed uint64) *behaviorState {
	return &behaviorState{b: b, seed: seed, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (s *behaviorState) get() Behavior {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b
}

func (s *behaviorState) set(b Behavior) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = b
}

// reseed restarts the generator from the seed (POST /reset), so a test
// can replay the same sequence of fates.
func (s *behaviorState) reseed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rng = rand.New(rand.NewPCG(s.seed, s.seed^0x9e3779b97f4a7c15))
}

// decide draws the next request's fate.
func (s *behaviorState) decide() decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.b
	switch b.Mode {
	case ModeDecline:
		return decision{act: actDecline, delay: time.Duration(b.Latency)}
	case ModeTimeout:
		return decision{act: actTimeout}
	case ModeDown:
		return decision{act: actDown}
	}
	d := decision{act: actApprove, delay: time.Duration(b.Latency)}
	if b.Mode == ModeLate {
		d.delay, d.late = time.Duration(b.LateDelay), true
	}
	// One draw per request whatever the ratios are, so changing one ratio
	// does not shift the fates of later requests under the others.
	x := s.rng.Float64()
	switch {
	case x < b.DeclineRatio:
		d.act = actDecline
	case x < b.DeclineRatio+b.TimeoutRatio:
		d.act, d.delay, d.late = actTimeout, 0, false
	case x < b.DeclineRatio+b.TimeoutRatio+b.DisconnectRatio:
		d.act, d.delay, d.late = actDisconnect, 0, false
	}
	return d
}

// modePatch is POST /mode's body: the fields present replace the current
// ones, the others stay.
type modePatch struct {
	Mode            *Mode     `json:"mode"`
	Latency         *Duration `json:"latency"`
	LateDelay       *Duration `json:"late_delay"`
	DeclineRatio    *float64  `json:"decline_ratio"`
	TimeoutRatio    *float64  `json:"timeout_ratio"`
	DisconnectRatio *float64  `json:"disconnect_ratio"`
}

func (p modePatch) apply(b Behavior) Behavior {
	if p.Mode != nil {
		b.Mode = *p.Mode
	}
	if p.Latency != nil {
		b.Latency = *p.Latency
	}
	if p.LateDelay != nil {
		b.LateDelay = *p.LateDelay
	}
	if p.DeclineRatio != nil {
		b.DeclineRatio = *p.DeclineRatio
	}
	if p.TimeoutRatio != nil {
		b.TimeoutRatio = *p.TimeoutRatio
	}
	if p.DisconnectRatio != nil {
		b.DisconnectRatio = *p.DisconnectRatio
	}
	return b
}
