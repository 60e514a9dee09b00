package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/currency"
)

// Engine tuning.
const (
	// setupWorkers bounds concurrent ops API calls for setup and
	// verification: enough to hide round trips, few enough not to crowd
	// the switch's own traffic.
	setupWorkers = 8
	// drainSlack is added to the longest a request can take (--timeout
	// times sendsMax) when waiting for the last answers.
	drainSlack = 2 * time.Second
	// verifyRereads: a mismatch is read again this often (after
	// verifyRereadPause) before it counts, in case ops reads from a node
	// still applying the last entries.
	verifyRereads     = 3
	verifyRereadPause = 500 * time.Millisecond
	// runIDChars is the length of the run id at the front of every RRN.
	runIDChars = 5
	// drainPoll is how often the drain checks for the last answers.
	drainPoll = 10 * time.Millisecond
	// postRunTimeout bounds verification and the metrics read, which run
	// even after an interrupt so that a partial run still gets its summary.
	postRunTimeout = 2 * time.Minute
)

// engine is one load run: setup, traffic, drain, verification.
type engine struct {
	cfg    Config
	addrs  []string // the lanes of --addr; see laneAddr
	codec  *codec.Codec
	framer codec.Framer
	ccy    currency.Currency
	ops    *opsClient
	book   *book
	stats  *stats
	stderr io.Writer
	logMu  sync.Mutex // serialises lines on stderr
	quiet  bool
}

// logf writes one diagnostic line to stderr (not with --quiet).
func (e *engine) logf(format string, args ...any) {
	if e.quiet {
		return
	}
	e.logMu.Lock()
	defer e.logMu.Unlock()
	fmt.Fprintf(e.stderr, "switchload: "+format+"\n", args...)
}

// finish takes a request's final answer.
func (e *engine) finish(r *request, msg *codec.Message, now time.Time) {
	rc := msg.Get(39)
	v := e.book.settle(r, rc, msg.Get(38), msg.Get(54))
	e.stats.answer(r, rc, now.Sub(r.intended), v)
}

// unknown takes a request whose outcome stays unknown.
func (e *engine) unknown(r *request) {
	e.book.unknown(r)
	e.stats.add(&e.stats.unresolved, 1)
}

// newRunID returns runIDChars random upper-case letters and digits, so
// that RRNs differ between runs even when STAN and field 7 repeat, and a
// random STAN base.
func newRunID() (string, uint64) {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	var b [runIDChars + 8]byte
	rand.Read(b[:])
	id := make([]byte, runIDChars)
	for i := range id {
		id[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(id), binary.BigEndian.Uint64(b[runIDChars:])
}

// run performs one load run and returns its summary. An error means the
// run could not be carried out (setup failed, switch unreachable); problems
// found by the run are in the summary (Summary.OK).
func run(ctx context.Context, cfg Config, stderr io.Writer) (*Summary, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Seed == 0 {
		cfg.Seed = time.Now().UnixNano()
	}
	c, err := codec.Load(cfg.Dialect)
	if err != nil {
		return nil, err
	}
	ccy, _ := currency.ByCode(cfg.Currency) // checked by Validate
	addrs, _ := parseAddrs(cfg.Addr)        // checked by Validate
	e := &engine{
		cfg:    cfg,
		addrs:  addrs,
		codec:  c,
		framer: codec.Framer{Header: cfg.Header, FrameBytesMax: codec.FrameBytesMaxLimit},
		ccy:    ccy,
		ops:    newOpsClient(cfg.Ops, cfg.Credentials, setupWorkers),
		stats:  newStats(),
		stderr: stderr,
		quiet:  cfg.Quiet,
	}
	defer e.ops.close()

	setupStart := time.Now()
	cards, setup, err := e.setupCards(ctx)
	if err != nil {
		return nil, err
	}
	e.logf("%d cards ready in %s (%d created, %d existing)", len(cards), time.Since(setupStart).Round(time.Millisecond), setup.Created, setup.Existing)
	var before map[string]accountView
	if cfg.Verify {
		if before, err = e.readAccounts(ctx, cards); err != nil {
			return nil, fmt.Errorf("reading balances before the run: %w", err)
		}
	}
	runID, stanBase := newRunID()
	e.book = newBook(cfg, ccy, cards, runID, stanBase, cfg.Seed)

	sum, err := e.load(ctx)
	if err != nil {
		return nil, err
	}
	sum.RunID = runID
	sum.Config = cfg.view()
	sum.Setup = setup
	// Every outcome is settled now: verify even after an interrupt (a
	// second signal kills the process).
	post, cancel := context.WithTimeout(context.WithoutCancel(ctx), postRunTimeout)
	defer cancel()
	if cfg.Verify {
		v, err := e.verify(post, cards, before)
		if err != nil {
			return nil, fmt.Errorf("reading balances after the run: %w", err)
		}
		sum.Verification = v
	}
	// The switch's memory after the run, when its metrics expose it.
	if rss, ok, err := e.ops.rss(post); err != nil {
		e.logf("reading switch metrics: %v", err)
	} else if ok {
		sum.SwitchRSSBytes = &rss
	}
	sum.finish()
	return sum, nil
}

// load dials, offers load for the duration, drains and summarises the
// traffic.
func (e *engine) load(ctx context.Context) (*Summary, error) {
	cfg := e.cfg
	conns := make([]*conn, cfg.Conns)
	ncs := make([]net.Conn, cfg.Conns)
	for i := range conns {
		conns[i] = newConn(i, e)
		nc, err := net.DialTimeout("tcp", conns[i].addr, dialTimeout)
		if err != nil {
			for _, c := range ncs[:i] {
				c.Close()
			}
			return nil, fmt.Errorf("connecting to the switch at %s (--addr): %w", conns[i].addr, err)
		}
		ncs[i] = nc
	}

	// Field 90 names an original by MTI, STAN, field 7 and acquirer — not
	// RRN — so two requests of one acquirer with the same STAN in the same
	// second make a later completion or reversal ambiguous (the switch
	// resolves it to the first). Starting on a fresh second guarantees that
	// a run never shares a field 7 second with the run before it; the
	// random STAN base makes it unlikely for runs side by side.
	if err := sleepToNextSecond(ctx); err != nil {
		for _, c := range ncs {
			c.Close()
		}
		return nil, err
	}
	start := time.Now()
	end := start.Add(cfg.Duration)
	stopNew := make(chan struct{}) // closed at the end of the load phase
	done := make(chan struct{})    // closed when draining is over
	var wg sync.WaitGroup
	var tickets chan time.Time
	var scheduled int64
	if cfg.Rate > 0 {
		tickets = make(chan time.Time, cfg.Conns)
		wg.Add(1)
		go func() {
			defer wg.Done()
			scheduled = schedule(start, end, cfg.Rate, tickets, stopNew)
		}()
	}
	for i, c := range conns {
		wg.Add(2)
		go func() {
			defer wg.Done()
			c.run(ncs[i], tickets, stopNew, done)
		}()
		go func() {
			defer wg.Done()
			c.watch(done)
		}()
	}
	outstanding := func() int {
		n := 0
		for _, c := range conns {
			n += c.outstanding()
		}
		return n
	}

	// Progress once a second until the load phase ends.
	prog := &progress{start: start, last: start}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	report := func(now time.Time) {
		if !e.quiet {
			e.logMu.Lock()
			prog.line(e.stderr, e.stats, now, outstanding())
			e.logMu.Unlock()
		}
	}
	timer := time.NewTimer(cfg.Duration)
	defer timer.Stop()
	interrupted := false
loop:
	for {
		select {
		case now := <-tick.C:
			report(now)
		case <-timer.C:
			break loop
		case <-ctx.Done():
			interrupted = true
			break loop
		}
	}
	loadEnd := time.Now()
	close(stopNew)

	// Drain: every request gets its final answer, or is repeated until it
	// runs out of sends; whatever is left then is given up as unknown.
	drainEnd := time.Now().Add(time.Duration(sendsMax)*cfg.Timeout + drainSlack)
	for outstanding() > 0 && time.Now().Before(drainEnd) {
		select {
		case now := <-tick.C:
			report(now)
		case <-time.After(drainPoll):
		}
	}
	close(done)
	wg.Wait()
	for _, c := range conns {
		c.abandon()
	}
	sum := e.summarize(start, loadEnd, time.Now(), scheduled)
	sum.Interrupted = interrupted
	return sum, nil
}

// ticketsIn is how many tickets schedule hands out in window at rate:
// those with i/rate < window. Whole seconds and the rest are counted
// apart so that 24 h at a million per second cannot overflow.
func ticketsIn(window time.Duration, rate int) int64 {
	secs, rest := int64(window/time.Second), int64(window%time.Second)
	return secs*int64(rate) + (rest*int64(rate)+int64(time.Second)-1)/int64(time.Second)
}

func sleepToNextSecond(ctx context.Context) error {
	t := time.NewTimer(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// summarize turns the counters into the traffic part of the summary.
func (e *engine) summarize(start, loadEnd, finished time.Time, scheduled int64) *Summary {
	s := e.stats
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := &Summary{
		LoadSeconds:    loadEnd.Sub(start).Seconds(),
		ElapsedSeconds: finished.Sub(start).Seconds(),
		Sent:           s.sent,
		Resent:         s.resent,
		Answered:       s.answered,
		Approved:       s.approved,
		Latency:        latencyOf(&s.lat),
		ByMTI:          s.byMTI,
		ByRC:           s.byRC,
		ByKind:         map[string]int64{},
		Timeouts:       s.timeouts,
		RC96Repeated:   s.rc96,
		Unresolved:     s.unresolved,
		LateAnswers:    s.late,
		BadAnswers:     s.badAnswers,
		ConnLost:       s.connLost,
		PackErrors:     s.packErrors,
		Fallbacks:      e.book.fallbacks(),
		Repeats: RepeatReport{
			Checked: s.repeatChecked, Mismatches: s.repeatMismatch, Examples: s.repeatExamples,
		},
		Balances: BalanceReport{Checked: s.balanceChecked, Errors: s.balanceErrors, Example: s.balanceExample},
	}
	for k, n := range s.byKind {
		if n > 0 {
			sum.ByKind[kind(k).String()] = n
		}
	}
	if e.cfg.Rate > 0 {
		// Tickets fall at start + i/rate for every i with a time inside
		// the window: the duration, or less when interrupted.
		window := min(loadEnd.Sub(start), e.cfg.Duration)
		offered := ticketsIn(window, e.cfg.Rate)
		sum.Scheduled = scheduled
		// Requests the schedule wanted sent in the window that never went
		// out because every slot was busy: the switch fell behind the
		// offered rate by this much.
		sum.BacklogUnsent = max(0, offered-s.sent)
	}
	return sum
}

// schedule hands out intended send times at rate per second from start
// until end. The time of ticket i is fixed in advance (start + i/rate),
// whenever a connection takes it: when the switch falls behind, the
// latency of what is sent late counts from when it should have gone out,
// so a slow switch cannot hide its queueing (no coordinated omission).
func schedule(start, end time.Time, rate int, tickets chan<- time.Time, stop <-chan struct{}) int64 {
	var n int64
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		at := start.Add(time.Duration(n * int64(time.Second) / int64(rate)))
		if !at.Before(end) {
			return n
		}
		if d := time.Until(at); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-stop:
				return n
			}
		}
		select {
		case tickets <- at:
			n++
		case <-stop:
			return n
		}
	}
}

// setupCards creates the load cards through the ops API, or finds them
// from an earlier run (POST /v1/accounts is idempotent).
func (e *engine) setupCards(ctx context.Context) ([]*card, SetupReport, error) {
	cards := make([]*card, e.cfg.Cards)
	for i := range cards {
		seq := i + 1
		pan := testPAN(e.cfg.BIN, seq)
		p, err := codec.ParsePAN(pan)
		if err != nil {
			return nil, SetupReport{}, fmt.Errorf("generated card %d: %w", seq, err) // a bug in testPAN
		}
		cards[i] = &card{id: cardID(e.cfg.BIN, seq), pan: pan, masked: p.Masked()}
	}
	var mu sync.Mutex // protects rep
	var rep SetupReport
	err := forEach(ctx, cards, func(ctx context.Context, c *card) error {
		st, v, err := e.ops.createAccount(ctx, accountRequest{
			ID: c.id, Kind: "cardholder", Currency: e.cfg.Currency, PAN: c.pan,
			Opening: e.cfg.Opening, FundedBy: e.cfg.Funding,
		})
		created := st == 201
		if st == 409 {
			// It exists with other settings (another --opening, say): it
			// is still ours if it carries our card.
			if v, err = e.ops.account(ctx, c.id); err != nil {
				return fmt.Errorf("creating account %s: exists with other settings, and reading it failed: %w", c.id, err)
			}
		} else if err != nil {
			return fmt.Errorf("creating account %s: %w", c.id, err)
		}
		if v.MaskedPAN != c.masked || v.Currency != e.cfg.Currency {
			return fmt.Errorf("account %s exists for another card or currency (%s %s)", c.id, v.MaskedPAN, v.Currency)
		}
		mu.Lock()
		if created {
			rep.Created++
		} else {
			rep.Existing++
		}
		mu.Unlock()
		return nil
	})
	return cards, rep, err
}

// readAccounts reads every card's account.
func (e *engine) readAccounts(ctx context.Context, cards []*card) (map[string]accountView, error) {
	var mu sync.Mutex // protects out
	out := make(map[string]accountView, len(cards))
	err := forEach(ctx, cards, func(ctx context.Context, c *card) error {
		v, err := e.ops.account(ctx, c.id)
		if err != nil {
			return err
		}
		mu.Lock()
		out[c.id] = v
		mu.Unlock()
		return nil
	})
	return out, err
}

// forEach runs f for every card on setupWorkers goroutines and returns the
// first error; after an error the remaining cards are skipped.
func forEach(ctx context.Context, cards []*card, f func(context.Context, *card) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan *card)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range min(setupWorkers, len(cards)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				if err := f(ctx, c); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
feed:
	for _, c := range cards {
		select {
		case work <- c:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

// verify compares every card's balance change over the run with what our
// approved answers imply.
func (e *engine) verify(ctx context.Context, cards []*card, before map[string]accountView) (*Verification, error) {
	v := &Verification{}
	var check []*card
	e.book.mu.Lock()
	for _, c := range cards {
		if c.uncertain {
			v.Unverifiable = append(v.Unverifiable, c.id)
		} else {
			check = append(check, c)
		}
	}
	e.book.mu.Unlock()
	for attempt := 0; ; attempt++ {
		after, err := e.readAccounts(ctx, check)
		if err != nil {
			return nil, err
		}
		v.Mismatches = compare(check, before, after)
		if len(v.Mismatches) == 0 || attempt == verifyRereads {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(verifyRereadPause):
		}
	}
	v.AccountsChecked = len(check)
	return v, nil
}

// compare is the verification proper: before + expected change = after,
// for posted balance and pending holds, exactly.
func compare(cards []*card, before, after map[string]accountView) []BalanceMismatch {
	var out []BalanceMismatch
	for _, c := range cards {
		b, a := before[c.id], after[c.id]
		wantPosted, wantPending := b.Posted+c.postedDelta, b.Pending+c.pendingDelta
		if a.Posted != wantPosted || a.Pending != wantPending {
			out = append(out, BalanceMismatch{
				Account:       c.id,
				PostedBefore:  b.Posted,
				PostedWant:    wantPosted,
				PostedGot:     a.Posted,
				PendingBefore: b.Pending,
				PendingWant:   wantPending,
				PendingGot:    a.Pending,
			})
		}
	}
	return out
}
