package forward

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/switchd/switchd/host"
	"github.com/switchd/switchd/store"
)

// The SAF sender (issue 13): on the leader only, one sender per
// destination sends its queued advices head-of-line, the way jPOS's
// store-and-forward does — oldest first, the next only after the one
// before it was answered; a repeat goes as 0421; an answer with a retry
// code is counted as an attempt and tried again later; a timeout or a
// host that is down is not an attempt (the advice waits for the host);
// past its expiry an advice is given up with an alarm. Each outcome is a
// raft command (OpSAFUpdate), so a new leader carries on where the old
// one stopped: an advice whose delivery was not committed yet is sent
// again (as 0421), which the host must take as the repeat it is.

// SAFConfig tunes the sender.
type SAFConfig struct {
	// RetryMin and RetryMax bound the wait after an attempt (doubling).
	RetryMin time.Duration `yaml:"retry_min"`
	RetryMax time.Duration `yaml:"retry_max"`
	// RetryCodes are 0430 answers that mean "send it again later".
	RetryCodes []string `yaml:"retry_codes"`
	// Poll is how often an idle sender looks at its queue.
	Poll time.Duration `yaml:"poll"`
	// Window is how many deliveries may be on their way to the log while
	// the next advice is sent (the queue order is the send order).
	Window int `yaml:"window"`
}

// DefaultSAFConfig: retries from 1 s to 1 min, 91 and 96 are retry codes.
func DefaultSAFConfig() SAFConfig {
	return SAFConfig{RetryMin: time.Second, RetryMax: time.Minute, RetryCodes: []string{"91", "96"}, Poll: 200 * time.Millisecond, Window: 256}
}

const safWindowMax = 4096

// Validate reports the first setting that cannot work.
func (c *SAFConfig) Validate() error {
	switch {
	case c.RetryMin <= 0 || c.RetryMax < c.RetryMin || c.RetryMax > time.Hour:
		return fmt.Errorf("%w: saf retry_min > 0, retry_max from retry_min to 1h", ErrConfig)
	case c.Poll <= 0 || c.Poll > time.Minute:
		return fmt.Errorf("%w: saf poll %s out of (0, 1m]", ErrConfig, c.Poll)
	case c.Window < 1 || c.Window > safWindowMax:
		return fmt.Errorf("%w: saf window %d out of 1..%d", ErrConfig, c.Window, safWindowMax)
	}
	for _, rc := range c.RetryCodes {
		if len(rc) != 2 || rc == "00" {
			return fmt.Errorf("%w: saf retry code %q", ErrConfig, rc)
		}
	}
	return nil
}

// SAFLedger is what the sender reads besides Ledger.
type SAFLedger interface {
	SAFQueue(dest string, limit int) ([]store.SAFEntry, error)
	SAFEntry(id string) (store.SAFEntry, error)
}

// safSend sends one entry and returns its answer's code; errUnanswered,
// host.ErrTimeout or host.ErrConnectionLost when it went without a
// definitive answer, any other error when it could not be sent.
type safSend func(ctx context.Context, e *store.SAFEntry) (rc string, err error)

// isoAdvice sends an entry as an 0420/0421 through c.
func (f *Forwarder) isoAdvice(c *host.Client) safSend {
	return func(ctx context.Context, e *store.SAFEntry) (string, error) {
		var pan string
		if len(e.PAN) > 0 {
			var err error
			if pan, err = f.OpenPAN(e.Forward, e.PAN); err != nil {
				return "", fmt.Errorf("advice %s: %w", e.ID, err)
			}
		}
		ans, err := c.Send(ctx, Advice(e, pan))
		if err != nil {
			return "", err
		}
		return ans.Get(39), nil
	}
}

// safSender drains one destination's queue.
type safSender struct {
	f    *Forwarder
	dest string
	send safSend
	stop chan struct{}
	done chan struct{}
	// committing are deliveries proposed (false) or applied (true) that
	// a queue read may still list: the sender must not send them again.
	mu         sync.Mutex
	committing map[string]bool
	window     chan struct{}
	// claim is this sender's name in the entries it claims before their
	// first send; sent are the entries it has sent and not yet recorded
	// an outcome for. Either way, an entry another sender claimed, or one
	// this sender sent before, goes as a repeat (0421): the host may have
	// it already, and a new leader cannot know.
	claim string
	sent  map[string]bool
	// batch is the head of the queue as last read, consumed in order:
	// reading a window of entries for every advice cost more than
	// sending it (88 advices/s). Only the sender's goroutine uses it.
	batch     []store.SAFEntry
	wg        sync.WaitGroup
	delivered uint64
	expired   uint64
}

func (f *Forwarder) startSAF(dest string, send safSend) *safSender {
	var name [12]byte
	rand.Read(name[:])
	s := &safSender{f: f, dest: dest, send: send, stop: make(chan struct{}), done: make(chan struct{}),
		committing: map[string]bool{}, window: make(chan struct{}, f.cfg.SAF.Window),
		claim: hex.EncodeToString(name[:]), sent: map[string]bool{}}
	go s.run()
	return s
}

func (s *safSender) close() {
	close(s.stop)
	<-s.done
}

func (s *safSender) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.stop:
		return false
	case <-t.C:
		return true
	}
}

func (s *safSender) run() {
	defer close(s.done)
	defer s.wg.Wait() // deliveries on their way
	f := s.f
	for {
		select {
		case <-s.stop:
			return
		default:
		}
		if !f.opt.Leading() || f.safLedger == nil {
			if !s.sleep(f.cfg.SAF.Poll) {
				return
			}
			continue
		}
		wait, err := s.step()
		if err != nil {
			f.log.Warn("SAF", "destination", s.dest, "err", err)
			wait = f.cfg.SAF.Poll
		}
		if wait > 0 && !s.sleep(wait) {
			return
		}
	}
}

// step sends what is due at the head of the queue and returns how long
// to wait before the next step.
func (s *safSender) step() (time.Duration, error) {
	f := s.f
	if len(s.batch) == 0 {
		entries, err := f.safLedger.SAFQueue(s.dest, f.cfg.SAF.Window+1)
		if err != nil {
			return 0, err
		}
		s.mu.Lock()
		// A delivery applied after the queue was read is still listed in
		// entries: it stays in committing until a read no longer lists it,
		// or it would be sent again.
		listed := make(map[string]bool, len(entries))
		for _, e := range entries {
			listed[e.ID] = true
		}
		for id, applied := range s.committing {
			if applied && !listed[id] {
				delete(s.committing, id)
			}
		}
		entries = slices.DeleteFunc(entries, func(e store.SAFEntry) bool { _, ok := s.committing[e.ID]; return ok })
		s.mu.Unlock()
		if len(entries) == 0 {
			return f.cfg.SAF.Poll, nil
		}
		s.batch = entries
	}
	// The head as it is now: ops may have dropped or retried it since the
	// batch was read (one entry read, not a window).
	e, err := f.safLedger.SAFEntry(s.batch[0].ID)
	if err != nil {
		s.batch = nil
		return 0, err
	}
	if e.State != store.SAFQueued {
		s.batch = s.batch[1:]
		return 0, nil
	}
	if e.Sends == 0 && e.Claim == "" {
		// Never sent by anyone: claim it and the unsent ones behind it in
		// one command before the first goes out.
		batch := s.batch
		s.batch = nil // read again: the claim changed them
		return 0, s.claimEntries(batch)
	}
	now := f.opt.Now()
	if now.UnixNano() >= e.ExpiresAt {
		f.log.Error("SAF advice expired undelivered: the host never confirmed the reversal (reconcile by hand)",
			"destination", s.dest, "saf", e.ID, "forward", e.Forward, "masked_pan", e.MaskedPAN, "sends", e.Sends)
		s.expired++
		s.batch = nil
		return 0, s.update(e, store.SAFUpdate{ID: e.ID, Action: store.SAFActionExpire}, false)
	}
	if d := time.Duration(e.NextAt - now.UnixNano()); d > 0 {
		return min(d, f.cfg.SAF.Poll), nil
	}
	s.mu.Lock()
	repeat := e.Sends > 0 || e.Claim != s.claim || s.sent[e.ID]
	s.sent[e.ID] = true
	s.mu.Unlock()
	if repeat && e.Sends == 0 {
		e.Sends = 1 // Advice sends it as 0421
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	rc, err := s.send(ctx, &e)
	cancel()
	if err != nil || slices.Contains(f.cfg.SAF.RetryCodes, rc) {
		s.batch = nil // the head stays: read it again after the update
	}
	// The next attempt is counted from the answer (or the timeout), not
	// from the send: the FSM refuses a NextAt that is not after the
	// command's time, and a host timeout is longer than RetryMin, so an
	// unanswered advice was never recorded as sent and went again as 0220
	// instead of 0421.
	now = f.opt.Now()
	switch {
	case err == nil && !slices.Contains(f.cfg.SAF.RetryCodes, rc):
		// Delivered: proposed in the background, so the next advice goes
		// out while this one's delivery is on its way to the log.
		s.batch = s.batch[1:]
		return 0, s.update(e, store.SAFUpdate{ID: e.ID, Action: store.SAFActionDelivered, RC: rc}, true)
	case err == nil:
		return 0, s.update(e, store.SAFUpdate{ID: e.ID, Action: store.SAFActionAttempt, RC: rc, Counts: true,
			NextAt: now.Add(s.backoff(e.Attempts + 1)).UnixNano()}, false)
	case errors.Is(err, host.ErrTimeout), errors.Is(err, host.ErrConnectionLost), errors.Is(err, errUnanswered):
		// Sent, unanswered: not an attempt, but the next one is a repeat.
		return 0, s.update(e, store.SAFUpdate{ID: e.ID, Action: store.SAFActionAttempt, Error: "timeout",
			NextAt: now.Add(s.backoff(e.Sends + 1)).UnixNano()}, false)
	default:
		// Not sent (no connection, circuit open): wait for the host.
		return s.backoff(1), nil
	}
}

// claimEntries proposes a claim on the entries of the head window that
// nobody has sent or claimed.
func (s *safSender) claimEntries(entries []store.SAFEntry) error {
	ids := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.Sends == 0 && e.Claim == "" {
			ids = append(ids, e.ID)
		}
	}
	key := "saf|claim|" + s.claim + "|" + ids[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := s.f.ledger.Propose(ctx, store.Command{Op: store.OpSAFUpdate, Key: key, Fingerprint: key + "|" + ids[len(ids)-1],
		Time: s.f.opt.Now().UnixNano(), Forward: &store.ForwardCommand{SAF: &store.SAFUpdate{Action: store.SAFActionClaim, IDs: ids, Claim: s.claim}}})
	if err == nil {
		err = res.Status.Err()
	}
	return err
}

// recorded forgets that e was sent: its outcome is in the log, which
// says from now on whether the next send is a repeat.
func (s *safSender) recorded(id string) {
	s.mu.Lock()
	delete(s.sent, id)
	s.mu.Unlock()
}

func (s *safSender) backoff(n int) time.Duration {
	d := s.f.cfg.SAF.RetryMin
	for i := 1; i < n && d < s.f.cfg.SAF.RetryMax; i++ {
		d *= 2
	}
	return min(d, s.f.cfg.SAF.RetryMax)
}

// update proposes u for e; async deliveries hold a window slot until the
// log has them.
func (s *safSender) update(e store.SAFEntry, u store.SAFUpdate, async bool) error {
	cmd := safCommand(e, u, s.f.opt.Now().UnixNano())
	propose := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := s.f.ledger.Propose(ctx, cmd)
		if err == nil && res.Status != store.StatusOK && res.Status != store.StatusAlreadyFinal {
			err = res.Status.Err()
		}
		return err
	}
	if !async {
		err := propose()
		if err == nil {
			s.recorded(e.ID)
		}
		return err
	}
	s.mu.Lock()
	s.committing[e.ID] = false
	s.mu.Unlock()
	select {
	case s.window <- struct{}{}:
	case <-s.stop:
		return nil
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := propose()
		if err == nil {
			// Applied on the leader; this node is the leader, so its
			// queue no longer lists the entry.
			s.mu.Lock()
			s.delivered++
			delete(s.sent, e.ID)
			s.committing[e.ID] = true // applied: forgotten once a queue read no longer lists it
			s.mu.Unlock()
		} else {
			s.f.log.Warn("SAF delivery not recorded; the advice goes again", "saf", e.ID, "err", err)
			s.mu.Lock()
			delete(s.committing, e.ID)
			s.mu.Unlock()
		}
		<-s.window
	}()
	return nil
}

// safCommand is the OpSAFUpdate of u for entry e at now. Its key names
// the entry, the step and the sends so far, so the same step proposed
// again (after a leader change, or by the orphan check) is a repeat.
func safCommand(e store.SAFEntry, u store.SAFUpdate, now int64) store.Command {
	key := fmt.Sprintf("saf|%s|%s|%d", u.ID, u.Action, e.Sends)
	return store.Command{Op: store.OpSAFUpdate, Key: key, Fingerprint: key + "|" + u.RC + "|" + u.Error, Time: now,
		Forward: &store.ForwardCommand{SAF: &u}}
}
