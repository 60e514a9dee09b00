package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchd/switchd/store"
)

const (
	// excerptBytesMax is what of a failed answer's body is recorded: a
	// hint for the partner, never a copy of what its server says.
	excerptBytesMax = 128
	// drainBytesMax is read from an answer so that the connection can be
	// reused; the rest is dropped with the connection.
	drainBytesMax = 64 << 10
	// proposeTimeout bounds recording one attempt through the cluster.
	proposeTimeout = 10 * time.Second
)

// Attempt classes (store.WebhookAttempt.Class).
const (
	ClassOK               = "ok"
	ClassHTTPStatus       = "http_status"
	ClassGone             = "gone"
	ClassTimeout          = "timeout"
	ClassConnect          = "connect"
	ClassRefusedAddress   = "refused_address"
	ClassTLS              = "tls"
	ClassEndpointDisabled = "endpoint_disabled"
	ClassSecret           = "secret"
	ClassOther            = "other"
)

// Outbox is what the sender reads: the store.
type Outbox interface {
	WebhookQueue(now int64, due, count int) (store.WebhookQueue, error)
	Directory() *store.Directory
}

// ProposeFunc records a command through the cluster (cluster.Node.Propose).
type ProposeFunc func(ctx context.Context, cmd store.Command) (store.Result, error)

// Sender delivers due outbox entries while this node leads. Delivery is
// at least once: an attempt whose result was not committed (the leader
// lost its office, or crashed, in between) is made again by the next
// leader, with the same webhook-id and body; receivers de-duplicate on
// webhook-id.
type Sender struct {
	cfg     Config
	kek     *KEK
	outbox  Outbox
	propose ProposeFunc
	leading func() bool
	log     *slog.Logger
	client  *http.Client
	tr      *http.Transport
	m       metrics
	// now and jitter are the clock and the jitter source (tests set them
	// before Start); jitter returns a value in [0, 1).
	now    func() time.Time
	jitter func() float64

	jobs   chan store.WebhookDelivery
	ctx    context.Context // cancelled by Close: attempts in flight stop
	cancel context.CancelFunc
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup

	mu sync.Mutex // protects inflight and perEndpoint
	// inflight are the deliveries (endpoint \x00 event) being attempted;
	// perEndpoint counts them by endpoint.
	inflight    map[string]bool
	perEndpoint map[string]int
}

type metrics struct {
	deliveries *prometheus.CounterVec
	depth      prometheus.Gauge
	overdue    prometheus.Gauge
}

// New builds a sender; Start runs it. kek unwraps the endpoints' secrets.
func New(cfg Config, kek *KEK, outbox Outbox, propose ProposeFunc, leading func() bool, logger *slog.Logger, reg prometheus.Registerer) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if kek == nil {
		return nil, ErrNoKEK
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	guard := NewGuard(cfg)
	tr := &http.Transport{
		Proxy:                  nil, // never through an environment proxy: the guard must see the real address
		DialContext:            (&net.Dialer{Timeout: cfg.AttemptTimeout, Control: guard.control}).DialContext,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    cfg.AttemptTimeout,
		ResponseHeaderTimeout:  cfg.AttemptTimeout,
		MaxIdleConnsPerHost:    cfg.InflightPerEndpoint,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	ctx, cancel := context.WithCancel(context.Background())
	var rmu sync.Mutex // protects rng
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x5eed))
	s := &Sender{
		cfg: cfg, kek: kek, outbox: outbox, propose: propose, leading: leading, log: logger, tr: tr,
		client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a redirect is an answer, not a new destination
		}},
		now:    time.Now,
		jitter: func() float64 { rmu.Lock(); defer rmu.Unlock(); return rng.Float64() },
		jobs:   make(chan store.WebhookDelivery, cfg.Workers),
		ctx:    ctx, cancel: cancel, stop: make(chan struct{}),
		inflight: map[string]bool{}, perEndpoint: map[string]int{},
		m: metrics{
			deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchd_webhook_attempts_total",
				Help: "Webhook delivery attempts by result (delivered, retry, failed, gone, unrecorded)."}, []string{"result"}),
			depth: prometheus.NewGauge(prometheus.GaugeOpts{Name: "switchd_webhook_queue_depth",
				Help: "Pending webhook deliveries (counted up to 100000), on the leader."}),
			overdue: prometheus.NewGauge(prometheus.GaugeOpts{Name: "switchd_webhook_oldest_due_seconds",
				Help: "How long the earliest due webhook delivery has waited past its attempt time, on the leader."}),
		},
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.m.deliveries, s.m.depth, s.m.overdue} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// Start runs the workers and the poll loop.
func (s *Sender) Start() {
	for range s.cfg.Workers {
		s.wg.Add(1)
		go s.worker()
	}
	s.wg.Add(1)
	go s.loop()
}

// Close stops polling, cancels the attempts in flight (their results are
// not recorded; the next leader makes them again) and waits for every
// goroutine.
func (s *Sender) Close() {
	s.once.Do(func() {
		close(s.stop)
		s.cancel()
	})
	s.wg.Wait()
	s.tr.CloseIdleConnections()
}

func (s *Sender) loop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if s.leading() {
				if _, err := s.Poll(); err != nil {
					s.log.Warn("webhook outbox not read", "err", err)
				}
			} else {
				s.m.depth.Set(0)
				s.m.overdue.Set(0)
			}
		}
	}
}

// Poll hands the due deliveries to the workers (those not in flight,
// within the per-endpoint bound, as long as a worker is free) and
// returns how many it handed over.
func (s *Sender) Poll() (int, error) {
	now := s.now()
	q, err := s.outbox.WebhookQueue(now.UnixNano(), dueBatchMax, queueCountMax)
	if err != nil {
		return 0, err
	}
	s.m.depth.Set(float64(q.Pending))
	if q.FirstDue != 0 && q.FirstDue < now.UnixNano() {
		s.m.overdue.Set(time.Duration(now.UnixNano() - q.FirstDue).Seconds())
	} else {
		s.m.overdue.Set(0)
	}
	n := 0
	for _, d := range q.Due {
		k := d.Endpoint + "\x00" + d.Event
		// Marked before the hand-over: a worker may finish it before this
		// loop goes on.
		s.mu.Lock()
		busy := s.inflight[k] || s.perEndpoint[d.Endpoint] >= s.cfg.InflightPerEndpoint
		if !busy {
			s.inflight[k] = true
			s.perEndpoint[d.Endpoint]++
		}
		s.mu.Unlock()
		if busy {
			continue
		}
		select {
		case s.jobs <- d:
			n++
		default:
			s.done(d) // every worker busy: the rest wait for the next poll
			return n, nil
		}
	}
	return n, nil
}

func (s *Sender) worker() {
	defer s.wg.Done()
	for {
		select {
		case <-s.stop:
			return
		case d := <-s.jobs:
			s.deliver(d)
			s.done(d)
		}
	}
}

// done takes d out of the in-flight set.
func (s *Sender) done(d store.WebhookDelivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.inflight, d.Endpoint+"\x00"+d.Event)
	if s.perEndpoint[d.Endpoint]--; s.perEndpoint[d.Endpoint] <= 0 {
		delete(s.perEndpoint, d.Endpoint)
	}
}

// deliver makes one attempt of d and records its result.
func (s *Sender) deliver(d store.WebhookDelivery) {
	a := s.attempt(d)
	if s.ctx.Err() != nil {
		return // stopping: the attempt may be cut short; not recorded, made again
	}
	at := s.now().UnixNano()
	result := "failed"
	switch {
	case a.StatusCode >= 200 && a.StatusCode < 300:
		result = "delivered"
	case a.StatusCode == http.StatusGone:
		result = "gone"
	case a.Class == ClassEndpointDisabled:
	default:
		if wait, ok := s.backoff(a.Attempt, a.retryAfter); ok {
			a.NextAt, result = at+int64(wait), "retry"
		}
	}
	ctx, cancel := context.WithTimeout(s.ctx, proposeTimeout)
	defer cancel()
	_, err := s.propose(ctx, store.Command{Op: store.OpWebhookAttempt, Time: at, Webhook: &a.WebhookAttempt})
	if err != nil {
		// At least once: the next poll (here or on the next leader)
		// makes the attempt again, with the same webhook-id.
		s.m.deliveries.WithLabelValues("unrecorded").Inc()
		s.log.Info("webhook attempt not recorded", "endpoint", d.Endpoint, "event", d.Event, "err", err)
		return
	}
	s.m.deliveries.WithLabelValues(result).Inc()
	s.log.Debug("webhook attempt", "endpoint", d.Endpoint, "event", d.Event, "attempt", a.Attempt,
		"status", a.StatusCode, "class", a.Class, "result", result)
}

// backoff is the wait after attempt n failed: the schedule's step n with
// jitter (chosen here, by the proposer, and carried in the command), at
// least what Retry-After asked; ok false when the schedule is done.
func (s *Sender) backoff(n int, retryAfter time.Duration) (time.Duration, bool) {
	if n < 1 || n > len(s.cfg.Schedule) {
		return 0, false
	}
	step := s.cfg.Schedule[n-1]
	wait := step - time.Duration(s.cfg.Jitter*s.jitter()*float64(step))
	wait = max(wait, retryAfter, time.Second)
	return min(wait, stepMax), true
}

type attemptResult struct {
	store.WebhookAttempt
	retryAfter time.Duration
}

// attempt POSTs d's body to its endpoint, signed with every live secret.
func (s *Sender) attempt(d store.WebhookDelivery) attemptResult {
	a := attemptResult{WebhookAttempt: store.WebhookAttempt{Endpoint: d.Endpoint, Event: d.Event, Attempt: len(d.Attempts) + 1}}
	ep, ok := s.outbox.Directory().WebhookEndpoint(d.Endpoint)
	if !ok || ep.Disabled {
		a.Class = ClassEndpointDisabled
		return a
	}
	now := s.now()
	var secrets [][]byte
	defer func() {
		for _, b := range secrets {
			clear(b)
		}
	}()
	for _, sec := range ep.Secrets {
		if !sec.Valid(now.UnixNano()) {
			continue
		}
		raw, err := s.kek.Unwrap(ep.ID, sec)
		if err != nil {
			s.log.Error("webhook secret does not unwrap", "endpoint", ep.ID, "err", err)
			continue
		}
		secrets = append(secrets, raw)
	}
	if len(secrets) == 0 {
		a.Class = ClassSecret
		return a
	}
	body := []byte(d.Body)
	sig, err := Sign(secrets, d.Event, now, body)
	if err != nil {
		a.Class = ClassSecret
		return a
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		a.Class = ClassOther
		return a
	}
	SetHeaders(req.Header, d.Event, now, sig)
	req.Header.Set("User-Agent", "switchd-webhooks/1")
	resp, err := s.client.Do(req)
	if err != nil {
		a.Class = classOf(err)
		return a
	}
	defer resp.Body.Close()
	a.StatusCode = resp.StatusCode
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		a.Class = ClassOK
	case resp.StatusCode == http.StatusGone:
		a.Class = ClassGone
	default:
		a.Class = ClassHTTPStatus
		ex := make([]byte, excerptBytesMax)
		n, _ := io.ReadFull(resp.Body, ex)
		a.Excerpt = excerpt(ex[:n])
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			a.retryAfter = time.Duration(min(secs, int(stepMax/time.Second))) * time.Second
		}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainBytesMax))
	return a
}

// excerpt is b as printable UTF-8 (control bytes as spaces).
func excerpt(b []byte) string {
	s := strings.ToValidUTF8(string(b), "?")
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func classOf(err error) string {
	var ne net.Error
	var tlsErr *tls.CertificateVerificationError
	var rec tls.RecordHeaderError
	switch {
	case errors.Is(err, ErrAddressNotAllowed):
		return ClassRefusedAddress
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return ClassTimeout
	case errors.As(err, &tlsErr) || errors.As(err, &rec):
		return ClassTLS
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return ClassConnect
	}
	return ClassOther
}

// String describes the sender's settings for the start log (no secrets).
func (s *Sender) String() string {
	return fmt.Sprintf("workers=%d inflight_per_endpoint=%d timeout=%s schedule=%v jitter=%v", s.cfg.Workers,
		s.cfg.InflightPerEndpoint, s.cfg.AttemptTimeout, s.cfg.Schedule, s.cfg.Jitter)
}
