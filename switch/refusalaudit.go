package switching

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/store"
)

// Lane refusals in the audit chain. Every refusal is counted
// (switchd_lane_connections_rejected_total, …_security_violations_total);
// the security ones — a source outside the allowlist, a failed TLS
// handshake, a certificate or source that does not speak for the partner
// claimed — are also recorded as OpAudit records, aggregated so that a
// flood of refusals is a trickle of raft entries: at most one record per
// (lane, reason, source) per Interval, carrying the count since the last.
// The first refusal of a key is recorded at once, later ones within the
// interval go with the next record (a flush every Interval/4 sends what
// is due). Records wait in a bounded queue for one goroutine that
// proposes them; a full queue leaves the counts pending (the next record
// carries them) and counts the deferral, a full key table drops the
// refusal from the audit (still counted by the lane metrics) and counts
// that.

// Audited refusal reasons: not_allowed and tls_handshake as the lane
// counts them, certificate and source as the security violations.
const (
	auditAction = "lane.refused"
	// auditCausesMax bounds the distinct causes one record carries (a
	// cause may come from partner input: the acquirer id claimed); the
	// rest are counted as "other".
	auditCausesMax = 8
	// auditRetryWait is the pause between proposals of one record while
	// the cluster has no leader.
	auditRetryWait = 200 * time.Millisecond
)

// Bounds of RefusalAuditConfig.
const (
	// auditIntervalMin keeps the aggregation meaningful: below a second a
	// flood from many sources becomes many entries a second.
	auditIntervalMin = time.Second
	auditIntervalMax = time.Hour
	auditQueueMaxMax = 65_536
	auditKeysMaxMax  = 1 << 20
	auditTimeoutMax  = time.Minute
)

// RefusalAuditConfig bounds the refusal audit.
type RefusalAuditConfig struct {
	// Interval is the least time between two records of one (lane,
	// reason, source).
	Interval time.Duration `yaml:"interval"`
	// QueueMax bounds records waiting to be proposed.
	QueueMax int `yaml:"queue_max"`
	// KeysMax bounds the (lane, reason, source) tallies kept; a scan from
	// a whole network beyond it is counted by the lane metrics only.
	KeysMax int `yaml:"keys_max"`
	// ProposeTimeout bounds proposing one record, retries while there is
	// no leader included; at Close, it bounds proposing what is left.
	ProposeTimeout time.Duration `yaml:"propose_timeout"`
}

// DefaultRefusalAuditConfig: one record per key per minute (the issue's
// bound), a queue for a burst from a few hundred sources, a key table for
// a /20 scanning the lane.
func DefaultRefusalAuditConfig() RefusalAuditConfig {
	return RefusalAuditConfig{Interval: time.Minute, QueueMax: 256, KeysMax: 4096, ProposeTimeout: 10 * time.Second}
}

// Validate checks the bounds.
func (c RefusalAuditConfig) Validate() error {
	switch {
	case c.Interval < auditIntervalMin || c.Interval > auditIntervalMax:
		return fmt.Errorf("%w: refusal_audit.interval %s not in [%s, %s]", ErrConfig, c.Interval, auditIntervalMin, auditIntervalMax)
	case c.QueueMax < 1 || c.QueueMax > auditQueueMaxMax:
		return fmt.Errorf("%w: refusal_audit.queue_max %d not in [1, %d]", ErrConfig, c.QueueMax, auditQueueMaxMax)
	case c.KeysMax < 1 || c.KeysMax > auditKeysMaxMax:
		return fmt.Errorf("%w: refusal_audit.keys_max %d not in [1, %d]", ErrConfig, c.KeysMax, auditKeysMaxMax)
	case c.ProposeTimeout <= 0 || c.ProposeTimeout > auditTimeoutMax:
		return fmt.Errorf("%w: refusal_audit.propose_timeout %s not in (0, %s]", ErrConfig, c.ProposeTimeout, auditTimeoutMax)
	}
	return nil
}

// Proposer submits a command through the cluster (cluster.Node).
type Proposer interface {
	Propose(ctx context.Context, cmd store.Command) (store.Result, error)
}

// RefusalEvent is the After of one lane.refused audit record: Count
// refusals of Lane for Reason from Source between First and Last, by
// cause. It holds addresses and reasons, never message content.
type RefusalEvent struct {
	Lane   string           `json:"lane"`
	Reason string           `json:"reason"`
	Source string           `json:"source"`
	Count  int64            `json:"count"`
	First  time.Time        `json:"first"`
	Last   time.Time        `json:"last"`
	Causes map[string]int64 `json:"causes,omitempty"`
}

type refusalKey struct{ lane, reason, source string }

// tally is one key's refusals since its last record.
type tally struct {
	count       int64
	first, last time.Time
	causes      map[string]int64
	sent        time.Time // when its last record was queued (zero: never)
}

// RefusalAudit records lane refusals in the audit chain (see above). It
// is safe for concurrent use; Refused never blocks.
type RefusalAudit struct {
	cfg  RefusalAuditConfig
	prop Proposer
	log  *slog.Logger
	m    *Metrics

	mu      sync.Mutex // protects tallies and closed
	tallies map[refusalKey]*tally
	closed  bool

	queue chan RefusalEvent
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// NewRefusalAudit starts the goroutine that proposes records; Close
// stops it. m is the lanes' metrics (NewMetrics).
func NewRefusalAudit(cfg RefusalAuditConfig, prop Proposer, logger *slog.Logger, m *Metrics) (*RefusalAudit, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	a := &RefusalAudit{cfg: cfg, prop: prop, log: logger, m: m, tallies: map[refusalKey]*tally{},
		queue: make(chan RefusalEvent, cfg.QueueMax), stop: make(chan struct{}), done: make(chan struct{})}
	logger.Info("refusal audit", "interval", cfg.Interval, "queue_max", cfg.QueueMax, "keys_max", cfg.KeysMax,
		"propose_timeout", cfg.ProposeTimeout)
	go a.run()
	return a, nil
}

// Refused notes one refusal of lane for reason from source; cause says
// more (why a handshake failed, the acquirer id claimed), "" for nothing.
// A nil *RefusalAudit notes nothing (a lane without an audit).
func (a *RefusalAudit) Refused(lane, reason string, source netip.Addr, cause string) {
	if a == nil {
		return
	}
	now := time.Now()
	k := refusalKey{lane: lane, reason: reason, source: source.String()}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		a.m.auditDropped.WithLabelValues("closed").Inc()
		return
	}
	t := a.tallies[k]
	if t == nil {
		if len(a.tallies) >= a.cfg.KeysMax {
			a.sweepLocked(now)
		}
		if len(a.tallies) >= a.cfg.KeysMax {
			a.m.auditDropped.WithLabelValues("keys_full").Inc()
			return
		}
		t = &tally{}
		a.tallies[k] = t
	}
	if t.count == 0 {
		t.first = now
	}
	t.count++
	t.last = now
	if cause != "" {
		if t.causes == nil {
			t.causes = map[string]int64{}
		}
		if _, ok := t.causes[cause]; !ok && len(t.causes) >= auditCausesMax-1 {
			cause = "other"
		}
		t.causes[cause]++
	}
	if (t.sent.IsZero() || now.Sub(t.sent) >= a.cfg.Interval) && !a.queueLocked(k, t, now) {
		a.m.auditDropped.WithLabelValues("queue_full").Inc() // deferred: the next record carries the count
	}
}

// queueLocked queues k's record; a full queue leaves the count pending
// and reports false.
func (a *RefusalAudit) queueLocked(k refusalKey, t *tally, now time.Time) bool {
	ev := RefusalEvent{Lane: k.lane, Reason: k.reason, Source: k.source, Count: t.count,
		First: t.first.UTC(), Last: t.last.UTC(), Causes: t.causes}
	select {
	case a.queue <- ev:
		t.count, t.causes, t.sent = 0, nil, now
		return true
	default:
		return false
	}
}

// sweepLocked queues what is due and forgets keys with nothing pending
// whose interval has passed.
func (a *RefusalAudit) sweepLocked(now time.Time) {
	for k, t := range a.tallies {
		if now.Sub(t.sent) < a.cfg.Interval {
			continue
		}
		if t.count == 0 {
			delete(a.tallies, k)
			continue
		}
		if !a.queueLocked(k, t, now) {
			a.m.auditDropped.WithLabelValues("queue_full").Inc()
		}
	}
}

func (a *RefusalAudit) run() {
	defer close(a.done)
	tick := time.NewTicker(a.cfg.Interval / 4)
	defer tick.Stop()
	for {
		select {
		case ev := <-a.queue:
			ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ProposeTimeout)
			a.propose(ctx, ev)
			cancel()
		case now := <-tick.C:
			a.mu.Lock()
			a.sweepLocked(now)
			a.mu.Unlock()
		case <-a.stop:
			// What is queued now is all there will be (Close queued the
			// pending counts): one budget for all of it.
			ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ProposeTimeout)
			defer cancel()
			for {
				select {
				case ev := <-a.queue:
					a.propose(ctx, ev)
				default:
					return
				}
			}
		}
	}
}

// propose writes one record, retrying while the cluster has no leader
// under one idempotency key (so it is recorded at most once) until ctx
// ends.
func (a *RefusalAudit) propose(ctx context.Context, ev RefusalEvent) {
	after, err := json.Marshal(ev)
	if err != nil {
		panic(err) // plain struct: cannot fail
	}
	var rnd [16]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		a.dropped("propose", ev, err)
		return
	}
	fp := sha256.Sum256(after)
	cmd := store.Command{Op: store.OpAudit, Key: "lane|refused|" + hex.EncodeToString(rnd[:]), Fingerprint: hex.EncodeToString(fp[:]),
		Time: time.Now().UnixNano(),
		Admin: &store.Admin{Actor: "lane:" + ev.Lane, Remote: ev.Source,
			Event: &store.AuditEvent{Action: auditAction, Object: "lane/" + ev.Lane, After: after}}}
	for {
		res, err := a.prop.Propose(ctx, cmd)
		if err == nil {
			err = res.Status.Err()
		}
		if err == nil {
			a.m.auditRecords.WithLabelValues(ev.Lane, ev.Reason).Inc()
			return
		}
		if outcome.Of(err).RetryAfter == 0 || ctx.Err() != nil { // not the table's "retry": not leader, overloaded, unknown
			a.dropped("propose", ev, err)
			return
		}
		select {
		case <-ctx.Done():
			a.dropped("propose", ev, ctx.Err())
			return
		case <-time.After(auditRetryWait):
		}
	}
}

func (a *RefusalAudit) dropped(why string, ev RefusalEvent, err error) {
	a.m.auditDropped.WithLabelValues(why).Inc()
	a.log.Error("lane refusals not audited", "lane", ev.Lane, "reason", ev.Reason, "source", ev.Source, "count", ev.Count, "err", err)
}

// Close queues every pending count, proposes what is queued (within
// ProposeTimeout), and stops. Refusals after Close are dropped. Close
// the lanes first, the cluster after.
func (a *RefusalAudit) Close() error {
	a.once.Do(func() {
		a.mu.Lock()
		a.closed = true
		for k, t := range a.tallies {
			if t.count > 0 && !a.queueLocked(k, t, time.Now()) {
				a.m.auditDropped.WithLabelValues("closed").Inc()
			}
		}
		a.mu.Unlock()
		close(a.stop)
		<-a.done
	})
	return nil
}

// handshakeCause says why a TLS handshake failed, in a word for the audit
// record (the error itself may carry a subject name).
func handshakeCause(err error) string {
	var invalid x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	var record tls.RecordHeaderError
	var ne net.Error
	switch {
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "expired"
	case errors.As(err, &invalid):
		return "invalid"
	case errors.As(err, &unknown):
		return "unknown_authority"
	case errors.As(err, &record):
		return "not_tls"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(err.Error(), "didn't provide a certificate"):
		// crypto/tls has no sentinel for it.
		return "no_certificate"
	}
	return "other"
}

// claimCause is the cause of a security violation: the acquirer id the
// message claimed (digits only, else "?": partner input).
func claimCause(acquirer string) string {
	if acquirer == "" || len(acquirer) > 11 || strings.Trim(acquirer, "0123456789") != "" {
		return "acquirer ?"
	}
	return "acquirer " + acquirer
}

// auditMetrics are the refusal audit's series (part of Metrics).
func auditMetrics() (records *prometheus.CounterVec, dropped *prometheus.CounterVec) {
	records = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchd_lane_refusal_audit_records_total",
		Help: "lane.refused audit records written, by lane and reason (each carries the count of refusals it stands for).",
	}, []string{"lane", "reason"})
	dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchd_lane_refusal_audit_dropped_total",
		Help: "Refusal audit records not written at once: queue_full (deferred to the next record), keys_full and closed (refusals left out of the audit), propose (a record lost: no leader within propose_timeout).",
	}, []string{"why"})
	return records, dropped
}
