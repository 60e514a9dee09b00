package forward

import (
	"context"
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
	// committing are deliveries proposed and not yet applied here: the
	// queue still lists them, the sender must not send them again.
	mu         sync.Mutex
	committing map[string]bool
	window     chan struct{}
	wg         sync.WaitGroup
	delivered  uint64
	expired    uint64
}

func (f *Forwarder) startSAF(dest string, send safSend) *safSender {
	s := &safSender{f: f, dest: dest, send: send, stop: make(chan struct{}), done: make(chan struct{}),
		committing: map[string]bool{}, window: make(chan struct{}, f.cfg.SAF.Window)}
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
	entries, err := f.safLedger.SAFQueue(s.dest, f.cfg.SAF.Window+1)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	entries = slices.DeleteFunc(entries, func(e store.SAFEntry) bool { return s.committing[e.ID] })
	s.mu.Unlock()
	if len(entries) == 0 {
		return f.cfg.SAF.Poll, nil
	}
	e := entries[0]
	now := f.opt.Now()
	if now.UnixNano() >= e.ExpiresAt {
		f.log.Error("SAF advice expired undelivered: the host never confirmed the reversal (reconcile by hand)",
			"destination", s.dest, "saf", e.ID, "forward", e.Forward, "masked_pan", e.MaskedPAN, "sends", e.Sends)
		s.expired++
		return 0, s.update(e, store.SAFUpdate{ID: e.ID, Action: store.SAFActionExpire}, false)
	}
	if d := time.Duration(e.NextAt - now.UnixNano()); d > 0 {
		return min(d, f.cfg.SAF.Poll), nil
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
	switch {
	case err == nil && !slices.Contains(f.cfg.SAF.RetryCodes, rc):
		// Delivered: proposed in the background, so the next advice goes
		// out while this one's delivery is on its way to the log.
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
	key := fmt.Sprintf("saf|%s|%s|%d", u.ID, u.Action, e.Sends)
	cmd := store.Command{Op: store.OpSAFUpdate, Key: key, Fingerprint: key + "|" + u.RC + "|" + u.Error, Time: s.f.opt.Now().UnixNano(),
		Forward: &store.ForwardCommand{SAF: &u}}
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
		return propose()
	}
	s.mu.Lock()
	s.committing[e.ID] = true
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
			s.mu.Unlock()
		} else {
			s.f.log.Warn("SAF delivery not recorded; the advice goes again", "saf", e.ID, "err", err)
		}
		s.mu.Lock()
		delete(s.committing, e.ID)
		s.mu.Unlock()
		<-s.window
	}()
	return nil
}
