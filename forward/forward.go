// Package forward sends requests routed off-us to their ISO 8583 hosts
// and HTTP billers (issue 13): it records each one in the replicated
// state before it leaves (store.OpForward), sends it over the
// destination's persistent connections (package host) or POSTs it
// (http.go), and records the answer (OpForwardResult), which on a timeout
// queues the reversal advice (or the biller follow-up) in the same raft
// command. Hosts and billers that take back a payment they approved are
// handled in reversal.go (store.OpHostReversal).
// On the leader it also sweeps forwards whose node died between the two
// commands: past their deadline they are timed out, so their reversal is
// queued too.
package forward

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/host"
	"github.com/switchd/switchd/mac"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
)

// Config tunes the forwarder.
type Config struct {
	// DeadlineMargin is added to a destination's timeout to make a
	// forward's deadline: past it, a forward still pending belongs to a
	// node that died, and the sweeper times it out.
	DeadlineMargin time.Duration `yaml:"deadline_margin"`
	// SweepInterval is how often the leader looks for such forwards.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// SAFExpiry is how long a reversal advice is retried before it
	// expires (with an alarm and a reconciliation break).
	SAFExpiry time.Duration `yaml:"saf_expiry"`
	// SyncInterval is how often the destinations in the replicated state
	// are compared with the clients this node runs.
	SyncInterval time.Duration `yaml:"sync_interval"`
	// SAF is the reversal-advice sender (saf.go).
	SAF SAFConfig `yaml:"saf"`
	// BillerBreakerFailures consecutive failures of an http biller (not
	// sent, no definitive answer) open its circuit for
	// BillerBreakerCooldown: its payments are declined 91 at once, with
	// nothing sent, until one probe gets an answer (http.go).
	BillerBreakerFailures int           `yaml:"biller_breaker_failures"`
	BillerBreakerCooldown time.Duration `yaml:"biller_breaker_cooldown"`
	// BillerTLSCheck is how often an http biller's TLS files are read
	// (and hashed) to see whether they were rotated (http.go).
	BillerTLSCheck time.Duration `yaml:"biller_tls_check"`
	// OrphanCheck is how often the leader looks for advices queued for a
	// destination the directory no longer has, or one disabled, that are
	// past their expiry (orphans.go).
	OrphanCheck time.Duration `yaml:"orphan_check"`
}

// Limits.
const (
	marginMax     = 10 * time.Minute
	safExpiryMax  = 30 * 24 * time.Hour
	sweepBatchMax = 500
	// breakerFailuresMax and breakerCooldownMax bound a biller's circuit:
	// one that never opens, or stays open for hours, is a misconfiguration.
	breakerFailuresMax = 1000
	breakerCooldownMax = 10 * time.Minute
	// sweepTimeout bounds one sweep: its results are proposed until
	// known, and a node that lost leadership (or is closing) must not
	// retry for ever; the next leader sweeps what is left.
	sweepTimeout   = 10 * time.Second
	replayPollStep = 20 * time.Millisecond
	// resultRetryStep paces the repeats of a result whose proposal
	// failed (a leader change).
	resultRetryStep = 30 * time.Millisecond
)

// ErrConfig is a configuration that cannot work.
var ErrConfig = errors.New("forward: invalid config")

// DefaultConfig: a 5 s margin, a sweep every second, advices retried for
// three days.
func DefaultConfig() Config {
	return Config{DeadlineMargin: 5 * time.Second, SweepInterval: time.Second, SAFExpiry: 72 * time.Hour, SyncInterval: 500 * time.Millisecond,
		SAF: DefaultSAFConfig(), BillerBreakerFailures: 5, BillerBreakerCooldown: 5 * time.Second, BillerTLSCheck: 10 * time.Second,
		OrphanCheck: time.Minute}
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.DeadlineMargin <= 0 || c.DeadlineMargin > marginMax:
		return fmt.Errorf("%w: deadline_margin %s out of (0, %s]", ErrConfig, c.DeadlineMargin, marginMax)
	case c.SweepInterval <= 0 || c.SweepInterval > time.Minute:
		return fmt.Errorf("%w: sweep_interval %s out of (0, 1m]", ErrConfig, c.SweepInterval)
	case c.SAFExpiry < time.Minute || c.SAFExpiry > safExpiryMax:
		return fmt.Errorf("%w: saf_expiry %s out of [1m, %s]", ErrConfig, c.SAFExpiry, safExpiryMax)
	case c.SyncInterval <= 0 || c.SyncInterval > time.Minute:
		return fmt.Errorf("%w: sync_interval %s out of (0, 1m]", ErrConfig, c.SyncInterval)
	case c.BillerBreakerFailures < 1 || c.BillerBreakerFailures > breakerFailuresMax:
		return fmt.Errorf("%w: biller_breaker_failures %d out of 1..%d", ErrConfig, c.BillerBreakerFailures, breakerFailuresMax)
	case c.BillerBreakerCooldown <= 0 || c.BillerBreakerCooldown > breakerCooldownMax:
		return fmt.Errorf("%w: biller_breaker_cooldown %s out of (0, %s]", ErrConfig, c.BillerBreakerCooldown, breakerCooldownMax)
	case c.BillerTLSCheck <= 0 || c.BillerTLSCheck > time.Hour:
		return fmt.Errorf("%w: biller_tls_check %s out of (0, 1h]", ErrConfig, c.BillerTLSCheck)
	case c.OrphanCheck < time.Second || c.OrphanCheck > 24*time.Hour:
		return fmt.Errorf("%w: orphan_check %s out of [1s, 24h]", ErrConfig, c.OrphanCheck)
	}
	return c.SAF.Validate()
}

// Ledger is what the forwarder reads and proposes to (cluster.Node over
// store.Store).
type Ledger interface {
	Propose(ctx context.Context, cmd store.Command) (store.Result, error)
	ReadIndex(ctx context.Context) error
	Forward(key string) (store.Forward, error)
	ForwardByID(id string) (store.Forward, error)
	DueForwards(now int64, limit int) ([]store.Forward, error)
	Directory() *store.Directory
}

// Options are the forwarder's collaborators.
type Options struct {
	Logger *slog.Logger
	// Leading reports whether this node leads (sweeper and SAF sender).
	Leading func() bool
	Now     func() time.Time
	// Dial replaces TCP for the host clients (tests).
	HostOptions host.Options
}

// Forwarder implements payment.Forwarder.
type Forwarder struct {
	cfg    Config
	ledger Ledger
	// safLedger reads the SAF queues (the store; nil: no sender).
	safLedger SAFLedger
	kek       *mac.KEK
	opt       Options
	log       *slog.Logger
	// http sends bill payments to http destinations (http.go).
	http *http.Client

	mu      sync.Mutex
	clients map[string]*destClient
	// orphans: the leader's last check of SAF queues whose destination
	// is gone (orphans.go).
	orphans orphans
	// stages times each stage of a forward (stages.go).
	stages *prometheus.HistogramVec
	// billers are the HTTP clients of http destinations with TLS
	// settings of their own, meters every http destination's requests
	// and circuit (http.go); both under httpMu, never under mu: a SAF
	// sender's follow-up call takes httpMu, and mu is held while a sender
	// is stopped and waited for (destClient.close). Order: mu, then httpMu.
	httpMu  sync.Mutex
	billers map[string]*billerClient
	meters  map[string]*host.Meter
	// strays are host reversals being recorded (reversal.go).
	strays sync.WaitGroup

	stop chan struct{}
	done chan struct{}
	// ctx is cancelled by Close: work of run's in flight (a sweep's
	// retries) gives up.
	ctx    context.Context
	cancel context.CancelFunc
}

type destClient struct {
	dest   *store.Destination // the record the client was made from
	client *host.Client       // nil for an http destination
	saf    *safSender
}

func (dc *destClient) close() {
	dc.saf.close() // it sends through the client
	if dc.client != nil {
		dc.client.Close()
	}
}

// New starts the forwarder: it runs a client for every iso8583
// destination and, on the leader, the sweeper. kek seals card numbers in
// the replicated state; without one nothing is forwarded (91).
func New(cfg Config, ledger Ledger, kek *mac.KEK, opt Options) (*Forwarder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Leading == nil {
		opt.Leading = func() bool { return false }
	}
	f := &Forwarder{cfg: cfg, ledger: ledger, kek: kek, opt: opt, log: opt.Logger, clients: map[string]*destClient{},
		http: newHTTPClient(), stages: newStages(), stop: make(chan struct{}), done: make(chan struct{})}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.safLedger, _ = ledger.(SAFLedger)
	f.sync()
	go f.run()
	return f, nil
}

// Close stops the sweeper and every host connection.
func (f *Forwarder) Close() {
	select {
	case <-f.stop:
		return
	default:
	}
	close(f.stop)
	f.cancel()
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, dc := range f.clients {
		dc.close()
		delete(f.clients, id)
	}
	f.http.CloseIdleConnections()
	f.httpMu.Lock()
	for id, b := range f.billers {
		b.client.CloseIdleConnections()
		delete(f.billers, id)
	}
	f.httpMu.Unlock()
	f.strays.Wait() // after the connections: none brings more
}

func (f *Forwarder) run() {
	defer close(f.done)
	syncT := time.NewTicker(f.cfg.SyncInterval)
	defer syncT.Stop()
	sweepT := time.NewTicker(f.cfg.SweepInterval)
	defer sweepT.Stop()
	orphanT := time.NewTicker(f.cfg.OrphanCheck)
	defer orphanT.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-syncT.C:
			f.sync()
		case <-sweepT.C:
			if f.opt.Leading() {
				sctx, scancel := context.WithTimeout(f.ctx, sweepTimeout)
				n, err := f.Sweep(sctx)
				scancel()
				if err != nil {
					f.log.Warn("forward sweep", "err", err)
				} else if n > 0 {
					f.log.Warn("forwards past their deadline timed out (a node died mid-request); reversals queued", "forwards", n)
				}
			}
		case <-orphanT.C:
			if f.opt.Leading() {
				octx, ocancel := context.WithTimeout(f.ctx, sweepTimeout)
				f.CheckOrphans(octx) // orphans.go
				ocancel()
			} else {
				f.orphans.set(nil) // the leader's gauge, not a follower's
			}
		}
	}
}

// sync makes this node's clients match the iso8583 destinations in the
// replicated state: new ones started, changed ones restarted, removed
// ones stopped. Records are replaced on every change, never changed in
// place, so a pointer compare finds the changed ones.
func (f *Forwarder) sync() {
	want := map[string]*store.Destination{}
	d := f.ledger.Directory()
	for _, x := range d.Destinations() {
		if (x.Kind == store.DestinationKindISO8583 || x.Kind == store.DestinationKindHTTP) && !x.Disabled {
			p, _ := d.Destination(x.ID)
			want[x.ID] = p
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, dc := range f.clients {
		if w, ok := want[id]; !ok || w != dc.dest {
			dc.close()
			delete(f.clients, id)
		}
	}
	for id, x := range want {
		if _, ok := f.clients[id]; ok {
			continue
		}
		if x.Kind == store.DestinationKindHTTP {
			// No connection of its own to keep: only its follow-ups.
			f.clients[id] = &destClient{dest: x, saf: f.startSAF(id, f.httpFollowUp(id))}
			continue
		}
		cfg, err := host.FromDestination(x)
		if err != nil {
			f.log.Error("destination cannot be connected on this node", "destination", id, "err", err)
			continue
		}
		opt := f.opt.HostOptions
		opt.Logger = f.log
		opt.OnStray = f.onStray(id)
		c, err := host.New(cfg, opt)
		if err != nil {
			f.log.Error("destination cannot be connected on this node", "destination", id, "err", err)
			continue
		}
		f.clients[id] = &destClient{dest: x, client: c, saf: f.startSAF(id, f.isoAdvice(c))}
	}
}

func (f *Forwarder) client(id string) *host.Client {
	f.mu.Lock()
	defer f.mu.Unlock()
	if dc, ok := f.clients[id]; ok {
		return dc.client
	}
	return nil
}

// Client is destination id's host client on this node (metrics, status,
// the SAF sender); nil when it has none.
func (f *Forwarder) Client(id string) *host.Client { return f.client(id) }

// Stats are the host clients' counters on this node, by destination.
func (f *Forwarder) Stats() []host.Stats {
	f.mu.Lock()
	cs := make([]*host.Client, 0, len(f.clients))
	for _, dc := range f.clients {
		if dc.client != nil {
			cs = append(cs, dc.client)
		}
	}
	f.mu.Unlock()
	d := f.ledger.Directory()
	f.httpMu.Lock()
	for id := range f.meters {
		if _, ok := d.Destination(id); !ok {
			delete(f.meters, id) // deleted: its counters go with it
		}
	}
	ms := make([]*host.Meter, 0, len(f.meters))
	for _, x := range d.Destinations() {
		if x.Kind == store.DestinationKindHTTP {
			ms = append(ms, f.meterLocked(x.ID)) // listed before its first call too
		}
	}
	f.httpMu.Unlock()
	out := make([]host.Stats, 0, len(cs)+len(ms))
	for _, c := range cs {
		out = append(out, c.Stats())
	}
	for _, m := range ms {
		out = append(out, m.Stats())
	}
	return out
}

// onStray records a host's late answer on its forward (it is never
// posted: the timeout queued a reversal) so reconciliation shows it.
func (f *Forwarder) onStray(dest string) func(host.Stray) {
	return func(s host.Stray) {
		if s.Kind == host.StrayRequest && (s.Message.MTI == "0420" || s.Message.MTI == "0421") {
			// Off the connection's read loop: recording it is a raft
			// round trip.
			f.strays.Add(1)
			go func() {
				defer f.strays.Done()
				f.hostReverse(dest, s) // reversal.go
			}()
			return
		}
		if s.Kind != host.StrayLate || len(s.Message.MTI) != 4 || s.Message.MTI[:2] != "02" {
			return
		}
		// Our RRN toward the host is the forward number's last twelve
		// digits: the forward's id.
		rrn := s.Message.Get(37)
		if len(rrn) != 12 {
			return
		}
		id := "F00" + rrn
		f.strays.Add(1) // Close waits for it
		go func() {
			defer f.strays.Done()
			f.recordLate(dest, id, s.Message.Get(39), s.Message.Get(38))
		}()
	}
}

func (f *Forwarder) recordLate(dest, id, rc, auth string) {
	// Cancelled by Close too: Close waits for this, not for the timeout.
	ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer cancel()
	fw, err := f.ledger.ForwardByID(id)
	if err != nil || fw.Destination != dest {
		f.log.Warn("late answer for no forward of this destination", "destination", dest, "forward", id)
		return
	}
	out := store.OutcomeDeclined
	if rc == outcome.Approved {
		out = store.OutcomeApproved
	}
	if _, err := f.proposeResult(ctx, fw.Key, out, rc, auth, "late"); err != nil {
		f.log.Warn("recording a late answer", "forward", id, "err", err)
	}
}

// Forward is payment.Forwarder.
func (f *Forwarder) Forward(ctx context.Context, req payment.ForwardRequest) (payment.ForwardAnswer, error) {
	dest := req.Destination
	if dest.Kind == store.DestinationKindHTTP {
		return f.forwardHTTP(ctx, req) // http.go
	}
	timeoutCode := dest.ISO8583.TimeoutCode
	if timeoutCode == "" {
		timeoutCode = outcome.IssuerUnavailable
	}
	cmd := req.Command
	cl := f.client(dest.ID)
	if cl == nil || !cl.Ready() || f.kek == nil {
		// A repeat of a request already forwarded gets its recorded
		// answer even while the host is down. With the host up, the
		// OpForward's apply finds the repeat (record): a lookup here
		// for every request, nearly always of an absent key, cost 7 %
		// of an off-us purchase's CPU (docs/BENCHMARKS.md).
		if fw, err := f.ledger.Forward(cmd.Key); err == nil {
			return f.answer(ctx, fw, timeoutCode, true)
		}
		why := "no connection up"
		if f.kek == nil {
			why = "no key-encryption key on this node to seal the card number"
		}
		return payment.ForwardAnswer{}, fmt.Errorf("%w: %s: %s", outcome.ErrDestinationUnavailable, dest.ID, why)
	}
	fields, sealed, err := f.outbound(req)
	if err != nil {
		return payment.ForwardAnswer{}, err
	}
	mti := "0200"
	if req.Kind == payment.KindAuthorize {
		// The issuer holds the cardholder's funds; its approval places
		// the ledger's hold on its settlement account (store.holdFor).
		mti = "0100"
	}
	timeout := time.Duration(dest.ISO8583.TimeoutMs) * time.Millisecond
	// The issuer owes a purchase or a withdrawal (its settlement account
	// is debited, the partner's credited); a refund runs the other way:
	// the partner's merchant gives the money back to the issuer's
	// cardholder.
	debit, credit := dest.SettlementAccount, req.Credit
	if req.Kind == payment.KindRefund {
		debit, credit = req.Credit, dest.SettlementAccount
	}
	cmd.Op = store.OpForward
	// The core names the card by its hash (Command.Card); the forward
	// keeps it so a completion or reversal must name the same card.
	cardHash := cmd.Card
	cmd.Card, cmd.Debit, cmd.Credit, cmd.CreditCard, cmd.OriginalRef = "", "", "", false, ""
	if mti != "0100" {
		cmd.HoldExpiry = 0
	}
	cmd.Forward = &store.ForwardCommand{Request: &store.ForwardRequest{
		Destination: dest.ID, Route: req.Route, Debit: debit, Credit: credit,
		MTI: mti, Fields: fields, PAN: sealed, MaskedPAN: req.PAN.Masked(),
		TimeoutAt:   cmd.Time + int64(timeout+f.cfg.DeadlineMargin),
		OriginalRef: req.Command.OriginalRef, CardHash: cardHash,
	}}
	start := time.Now()
	id, replay, err := f.record(ctx, cmd, timeoutCode)
	if err != nil || replay != nil {
		return deref(replay), err
	}
	f.observe(dest.ID, StageRecord, start)
	// The hop counts building the host's message too: all the forward
	// adds between its two raft commands.
	start = time.Now()
	fw := store.Forward{ID: id, MTI: mti, Fields: fields}
	msg := Request(&fw, req.PAN.Digits())
	ans, err := cl.Send(ctx, msg)
	f.observe(dest.ID, StageHop, start)
	outc, rc, auth, reason := store.OutcomeDeclined, "", "", ""
	switch {
	case err == nil:
		rc, auth = ans.Get(39), ans.Get(38)
		if rc == outcome.Approved {
			outc = store.OutcomeApproved
		}
	case errors.Is(err, host.ErrTimeout):
		outc, reason = store.OutcomeTimeout, "timeout"
	case errors.Is(err, host.ErrConnectionLost):
		outc, reason = store.OutcomeTimeout, "connection_lost"
	default:
		// Never sent (no connection by now, the circuit opened, a
		// correlation key in flight): nothing to reverse.
		outc, rc, reason = store.OutcomeDeclined, outcome.IssuerUnavailable, "not_sent"
		f.log.Warn("forward not sent", "destination", dest.ID, "forward", fw.ID, "err", err)
	}
	defer f.observe(dest.ID, StageAnswer, time.Now())
	return f.decide(ctx, cmd.Key, outc, rc, auth, reason, timeout, timeoutCode)
}

// record proposes OpForward cmd and returns the forward's id; replay is
// the recorded answer when the request had been forwarded before.
func (f *Forwarder) record(ctx context.Context, cmd store.Command, timeoutCode string) (string, *payment.ForwardAnswer, error) {
	res, err := f.ledger.Propose(ctx, cmd)
	if err != nil {
		return "", nil, err
	}
	if err := res.Status.Err(); err != nil {
		return "", nil, err
	}
	if res.Replayed {
		fw, err := f.readForward(ctx, cmd.Key)
		if err != nil {
			return "", nil, err
		}
		a, err := f.answer(ctx, fw, timeoutCode, true)
		return "", &a, err
	}
	return res.TransferID, nil, nil
}

func deref(a *payment.ForwardAnswer) payment.ForwardAnswer {
	if a == nil {
		return payment.ForwardAnswer{}
	}
	return *a
}

// decide records the destination's answer to forward key and answers the
// partner from the record. The result is recorded whatever became of the
// partner's context: the destination may have acted.
func (f *Forwarder) decide(ctx context.Context, key, outc, rc, auth, reason string, timeout time.Duration, timeoutCode string) (payment.ForwardAnswer, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout+f.cfg.DeadlineMargin)
	defer cancel()
	res, err := f.proposeResult(rctx, key, outc, rc, auth, reason)
	if err != nil {
		return payment.ForwardAnswer{}, err
	}
	if res.ForwardState != "" {
		// The apply said what the record holds now.
		fw := store.Forward{State: res.ForwardState, RC: res.ForwardRC, AuthCode: res.AuthCode, TransferID: res.TransferID}
		return f.answer(ctx, fw, timeoutCode, false)
	}
	final, err := f.ledger.Forward(key)
	if err != nil || final.State == store.ForwardPending {
		// Applied on the leader, not here yet.
		if final, err = f.readForward(rctx, key); err != nil {
			return payment.ForwardAnswer{}, err
		}
	}
	return f.answer(ctx, final, timeoutCode, false)
}

// outbound is what a request to req's host is made of: its fields but 2,
// 11 and 37 (ours, from the forward number), and the card number sealed
// under the nodes' KEK for the command's key.
func (f *Forwarder) outbound(req payment.ForwardRequest) (map[int]string, []byte, error) {
	cmd := req.Command
	ccy, err := currency.ByCode(cmd.Currency)
	if err != nil {
		return nil, nil, err
	}
	sealed, err := f.kek.Seal("pan", cmd.Key, []byte(req.PAN.Digits()))
	if err != nil {
		return nil, nil, err
	}
	in := req.Intent
	proc := "000000"
	switch req.Kind {
	case payment.KindCashWithdrawal:
		proc = "010000"
	case payment.KindRefund:
		proc = "200000"
	}
	if len(in.Ref.ProcCode) == 6 {
		proc = in.Ref.ProcCode
	}
	at := time.Unix(0, cmd.Time).UTC()
	fields := map[int]string{3: proc, 4: fmt.Sprintf("%012d", cmd.Amount), 7: at.Format("0102150405"),
		12: at.Format("150405"), 13: at.Format("0102"), 49: ccy.Numeric}
	if in.Acquirer != "" {
		fields[32] = in.Acquirer
	}
	if in.Terminal != "" {
		fields[41] = in.Terminal
	}
	if in.Merchant != "" {
		fields[42] = in.Merchant
	}
	return fields, sealed, nil
}

// Advise is payment.Forwarder's: it takes a partner's advice for req's
// destination (store.OpForwardAdvice: posted, recorded and queued for the
// SAF sender in one command) whether the host is up or not — holding it
// for the host is the point. It needs the node's KEK to seal the card
// number (else 91, nothing recorded). A repeat is answered from the
// record.
func (f *Forwarder) Advise(ctx context.Context, req payment.ForwardRequest) (payment.ForwardAnswer, error) {
	if f.kek == nil {
		return payment.ForwardAnswer{}, fmt.Errorf("%w: %s: no key-encryption key on this node to seal the card number",
			outcome.ErrDestinationUnavailable, req.Destination.ID)
	}
	fields, sealed, err := f.outbound(req)
	if err != nil {
		return payment.ForwardAnswer{}, err
	}
	mti := "0220"
	if strings.HasPrefix(req.Intent.Ref.MTI, "012") {
		mti = "0120" // an authorization advice goes on as one
	}
	cmd := req.Command
	cmd.Op = store.OpForwardAdvice
	cmd.Card, cmd.Debit, cmd.Credit = "", "", ""
	cmd.Forward = &store.ForwardCommand{Request: &store.ForwardRequest{
		Destination: req.Destination.ID, Route: req.Route, Debit: req.Destination.SettlementAccount, Credit: req.Credit,
		MTI: mti, Fields: fields, PAN: sealed, MaskedPAN: req.PAN.Masked(),
		TimeoutAt: cmd.Time + int64(f.cfg.SAFExpiry),
	}}
	res, err := f.ledger.Propose(ctx, cmd)
	if err != nil {
		return payment.ForwardAnswer{}, err
	}
	if err := res.Status.Err(); err != nil {
		return payment.ForwardAnswer{}, err
	}
	return payment.ForwardAnswer{Approved: true, TransferID: res.TransferID, AuthCode: res.AuthCode, Replayed: res.Replayed}, nil
}

// proposeResult records the answer to forward key. Each outcome has its
// own idempotency key, so a sweeper's timeout and a host's answer racing
// each other both apply: the first decides, the second is kept as late.
func (f *Forwarder) proposeResult(ctx context.Context, key, outc, rc, auth, reason string) (store.Result, error) {
	sum := sha256.Sum256([]byte(outc + "\x00" + rc + "\x00" + auth))
	var res store.Result
	var err error
	// Until the outcome is known: the command is idempotent, and a
	// result lost to a leader change must not leave the partner with a
	// decline while the host's approval is posted (or never recorded).
	for {
		now := f.opt.Now()
		res, err = f.ledger.Propose(ctx, store.Command{
			Op: store.OpForwardResult, Key: "fwd|" + outc + "|" + key, Fingerprint: hex.EncodeToString(sum[:]), Time: now.UnixNano(),
			Forward: &store.ForwardCommand{Result: &store.ForwardResult{Key: key, Outcome: outc, RC: rc, AuthCode: auth, Reason: reason,
				SAFExpiresAt: now.Add(f.cfg.SAFExpiry).UnixNano()}},
		})
		if err == nil || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(resultRetryStep):
		}
	}
	if err == nil && res.Status == store.StatusFingerprintMismatch {
		// The same outcome recorded with another code (a late answer after
		// a sweep): the first stands.
		return res, nil
	}
	if err == nil {
		err = res.Status.Err()
	}
	return res, err
}

// readForward reads forward key after a ReadIndex.
func (f *Forwarder) readForward(ctx context.Context, key string) (store.Forward, error) {
	if err := f.ledger.ReadIndex(ctx); err != nil {
		return store.Forward{}, err
	}
	return f.ledger.Forward(key)
}

// answer is what the partner gets for fw; a pending one (a repeat while
// the first is still out) is waited for until its deadline.
func (f *Forwarder) answer(ctx context.Context, fw store.Forward, timeoutCode string, replayed bool) (payment.ForwardAnswer, error) {
	for fw.State == store.ForwardPending {
		if f.opt.Now().UnixNano() > fw.TimeoutAt {
			// Past its deadline its node is gone or late: record the
			// timeout (the first result wins) and answer what was
			// recorded, never an answer the record may contradict.
			if _, err := f.proposeResult(ctx, fw.Key, store.OutcomeTimeout, "", "", "deadline"); err != nil {
				return payment.ForwardAnswer{}, err
			}
		} else {
			select {
			case <-ctx.Done():
				return payment.ForwardAnswer{}, fmt.Errorf("%w: %v", outcome.ErrDestinationUnavailable, ctx.Err())
			case <-time.After(replayPollStep):
			}
		}
		next, err := f.readForward(ctx, fw.Key)
		if err != nil {
			return payment.ForwardAnswer{}, err
		}
		fw = next
	}
	a := payment.ForwardAnswer{RC: fw.RC, AuthCode: fw.AuthCode, TransferID: fw.TransferID, Replayed: replayed}
	switch fw.State {
	case store.ForwardApproved:
		a.Approved = true
	case store.ForwardTimedOut:
		a.RC, a.TimedOut = timeoutCode, true
	}
	return a, nil
}

// Sweep times out the forwards past their deadline (their node died
// between recording and answering): each one's reversal is queued. Only
// the leader sweeps; it returns how many it timed out.
func (f *Forwarder) Sweep(ctx context.Context) (int, error) {
	due, err := f.ledger.DueForwards(f.opt.Now().UnixNano(), sweepBatchMax)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, fw := range due {
		if _, err := f.proposeResult(ctx, fw.Key, store.OutcomeTimeout, "", "", "deadline"); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Request is the message forward fw sends to its host: its recorded
// fields, the card number, and its own STAN and RRN.
func Request(fw *store.Forward, pan string) *codec.Message {
	m := &codec.Message{MTI: fw.MTI}
	for id, v := range fw.Fields {
		m.Set(id, v)
	}
	m.Set(2, pan)
	m.Set(11, fw.STAN())
	m.Set(37, fw.RRN())
	return m
}

// Advice is the message SAF entry e sends: 0420 the first time, 0421
// (a repeat) after.
func Advice(e *store.SAFEntry, pan string) *codec.Message {
	m := &codec.Message{MTI: e.MTI}
	if e.Sends > 0 && m.MTI[3] == '0' {
		m.MTI = m.MTI[:3] + "1"
	}
	for id, v := range e.Fields {
		m.Set(id, v)
	}
	if pan != "" {
		m.Set(2, pan)
	}
	return m
}

// OpenPAN unseals the card number of forward key.
func (f *Forwarder) OpenPAN(key string, sealed []byte) (string, error) {
	if f.kek == nil {
		return "", mac.ErrNoKEK
	}
	b, err := f.kek.Open("pan", key, sealed)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

var _ payment.Forwarder = (*Forwarder)(nil)
