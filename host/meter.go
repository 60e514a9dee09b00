package host

import "time"

// Meter is a Client's accounting without its connections, for a
// destination reached another way (an HTTP biller, forward/http.go): the
// same Stats, answer-latency histogram and circuit breaker, so metrics and
// `switchctl destinations status` show every destination alike. Safe for
// concurrent use.
type Meter struct {
	name  string
	kind  string
	now   func() time.Time
	stats counters
	brk   breaker
}

// NewMeter is the meter of destination name of kind (as Stats.Kind
// shows it); failuresMax consecutive failures open the circuit for
// cooldown.
func NewMeter(name, kind string, failuresMax int, cooldown time.Duration, now func() time.Time) *Meter {
	m := &Meter{name: name, kind: kind, now: now}
	m.brk.failuresMax, m.brk.cooldown = failuresMax, cooldown
	return m
}

// Begin reports whether a request may be sent: false while the circuit
// is open (counted as unavailable: the caller answers at once).
func (m *Meter) Begin() bool {
	if !m.brk.allow(m.now()) {
		m.stats.unavailable.Add(1)
		return false
	}
	m.stats.sent.Add(1)
	return true
}

// Answered records a definitive answer that took d.
func (m *Meter) Answered(d time.Duration) {
	m.brk.success()
	m.stats.answered.Add(1)
	m.stats.latency.observe(d)
}

// Timeout records a request sent without a definitive answer (a timeout,
// a lost connection, a busy or broken server): the peer may have acted.
func (m *Meter) Timeout() {
	m.brk.failure(m.now())
	m.stats.timeouts.Add(1)
}

// Unavailable records a request that could not be sent (no connection,
// a refused handshake).
func (m *Meter) Unavailable() {
	m.brk.failure(m.now())
	m.stats.unavailable.Add(1)
	m.stats.dialFailures.Add(1)
}

// Stats returns the destination's counters now. Ready: the circuit is
// closed (there is no connection to hold up).
func (m *Meter) Stats() Stats {
	open, opens := m.brk.state(m.now())
	s := Stats{
		Name: m.name, Kind: m.kind, Ready: !open, CircuitOpen: open, CircuitOpens: opens,
		Sent: m.stats.sent.Load(), Answered: m.stats.answered.Load(), Timeouts: m.stats.timeouts.Load(),
		Unavailable: m.stats.unavailable.Load(), DialFailures: m.stats.dialFailures.Load(),
	}
	m.stats.latency.fill(&s)
	return s
}
