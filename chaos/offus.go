package chaos

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand"
	"sync"
	"time"

	"github.com/switchd/switchd/card"
	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/forward"
	"github.com/switchd/switchd/mac"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/sim"
	"github.com/switchd/switchd/store"
)

// The off-us mix (issue 13): besides the on-us debits, OffUsWorkers
// partners send purchases of a card whose BIN routes to an ISO 8583 host,
// a simulated issuer that is flaky all run long (it declines some, leaves
// some unanswered, drops connections). Each node runs the forwarder the
// switch runs (records before sending, the host's answer after, the
// leader's sweeper and SAF sender), killed and restarted with its node.
// A client repeats a request with the same key on any node until it has
// an answer, as a partner does after no answer. After the faults heal and
// the host recovers, every replica must agree with what clients were
// told (approved posted once, declined and timed out never posted), each
// timed-out forward's reversal must have reached the host, and no advice
// may have reached it as new (0420) twice.

const (
	offUsDest    = "iss"
	offUsIssuer  = "iss-settle"
	offUsPartner = "acq-settle"
	offUsPAN     = "4000000000000002"
	// offUsDrainTimeout bounds the wait for the SAF queue to drain and
	// every forward to be decided once the host recovers.
	offUsDrainTimeout = time.Minute
)

// offUsAnswer is what one client was told for one key.
type offUsAnswer struct {
	amount   int64
	approved bool
	timedOut bool
	transfer string
}

type offUsHistory struct {
	mu      sync.Mutex
	answers map[string]offUsAnswer // key → the answer
	retries int
}

func offUsSetup(issuerAddr string) []store.Command {
	acct := func(a store.Account) store.Command {
		return store.Command{Op: store.OpCreateAccount, Key: "setup|acct|" + a.ID, Fingerprint: "setup", Time: 1, Account: &a}
	}
	return []store.Command{
		acct(store.Account{ID: offUsIssuer, Kind: store.KindSettlement, Currency: ccy, Unlimited: true}),
		acct(store.Account{ID: offUsPartner, Kind: store.KindSettlement, Currency: ccy, Unlimited: true}),
		{Op: store.OpPutDestination, Key: "setup|dest", Fingerprint: "setup", Time: 1, Admin: &store.Admin{Actor: "chaos", Reason: "off-us mix",
			Destination: &store.Destination{ID: offUsDest, Kind: store.DestinationKindISO8583, SettlementAccount: offUsIssuer, BINs: []string{"400000"},
				ISO8583: &store.HostDestination{Addrs: []string{issuerAddr}, Dialect: "iso87ascii", Header: "binary2", PoolSize: 2,
					TimeoutMs: 300, SignOn: true, BreakerFailures: 1000, BreakerCoolMs: 100}}}},
	}
}

// startIssuer starts the flaky simulated host (approving at first: a
// host that times out does not answer the sign-on either).
func (h *harness) startIssuer() error {
	cfg := sim.DefaultIssuerConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Seed = uint64(h.cfg.Seed)
	iss, err := sim.NewIssuer(cfg, nil)
	if err != nil {
		return err
	}
	kb := make([]byte, 32)
	rand.Read(kb)
	if h.kek, err = mac.NewKEK(kb); err != nil {
		iss.Close()
		return err
	}
	h.issuer = iss
	return nil
}

// flaky makes the host decline, drop and leave unanswered a share of
// requests; healthy approves everything at once.
func (h *harness) setIssuer(flaky bool) error {
	b := h.issuer.Behavior()
	b.Mode = sim.ModeApprove
	b.DeclineRatio, b.TimeoutRatio, b.DisconnectRatio = 0, 0, 0
	if flaky {
		b.DeclineRatio, b.TimeoutRatio, b.DisconnectRatio = 0.1, 0.1, 0.02
	}
	return h.issuer.SetBehavior(b)
}

// fwdLedger is the forwarder's view of one member.
type fwdLedger struct {
	*store.Store
	n *cluster.Node
}

func (l fwdLedger) ReadIndex(ctx context.Context) error { return l.n.ReadIndex(ctx) }
func (l fwdLedger) Propose(ctx context.Context, c store.Command) (store.Result, error) {
	return l.n.Propose(ctx, c)
}

// startForwarder runs member m's forwarder (m.mu held).
func (h *harness) startForwarder(m *member) error {
	cfg := forward.DefaultConfig()
	cfg.DeadlineMargin, cfg.SweepInterval, cfg.SyncInterval = 300*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond
	cfg.SAF.RetryMin, cfg.SAF.RetryMax, cfg.SAF.Poll = 50*time.Millisecond, 300*time.Millisecond, 20*time.Millisecond
	f, err := forward.New(cfg, fwdLedger{m.st, m.node}, h.kek, forward.Options{Logger: h.log.With("node", m.id), Leading: m.node.Leading})
	if err != nil {
		return err
	}
	m.fwd = f
	return nil
}

// offUsClient sends off-us purchases until ctx ends.
func (h *harness) offUsClient(ctx context.Context, id int, rng *mrand.Rand, oh *offUsHistory) {
	pan, err := card.ParsePAN(offUsPAN)
	if err != nil {
		panic(err) // a constant
	}
	for seq := 0; ctx.Err() == nil; seq++ {
		key := fmt.Sprintf("acq|o%d|%d", id, seq)
		amount := int64(1 + rng.Intn(100))
		stan := fmt.Sprintf("%06d", (id*100_000+seq)%1_000_000)
		in := &payment.Intent{Kind: payment.KindPurchase, Acquirer: "100001", Terminal: fmt.Sprintf("T%07d", id), PAN: pan, Amount: amount,
			Currency: ccy, Ref: store.Ref{MTI: "0200", ProcCode: "000000", STAN: stan, RRN: fmt.Sprintf("%012d", id*100_000+seq)}}
		cmd := store.Command{Key: key, Fingerprint: "f", Time: time.Now().UnixNano(), BusinessDay: "2026-11-21", Partner: "acq",
			Amount: amount, Currency: ccy, Ref: in.Ref}
		node := rng.Intn(len(h.members))
		for try := 0; ; try++ {
			var ans payment.ForwardAnswer
			var err error
			up := h.useForwarder((node+try)%len(h.members), func(f *forward.Forwarder, d *store.Directory) {
				dest, ok := d.Destination(offUsDest)
				if !ok {
					err = errors.New("no destination yet")
					return
				}
				cctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				ans, err = f.Forward(cctx, payment.ForwardRequest{Command: cmd, Kind: payment.KindPurchase, Destination: dest,
					Credit: offUsPartner, PAN: pan, Intent: in})
			})
			if up && err == nil {
				oh.mu.Lock()
				oh.answers[key] = offUsAnswer{amount: amount, approved: ans.Approved, timedOut: ans.TimedOut, transfer: ans.TransferID}
				oh.mu.Unlock()
				break
			}
			if up {
				oh.mu.Lock()
				oh.retries++
				oh.mu.Unlock()
			}
			if ctx.Err() != nil {
				// No answer when the load ended: the check repeats it.
				oh.mu.Lock()
				oh.answers[key] = offUsAnswer{amount: -1}
				oh.mu.Unlock()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// useForwarder runs fn with member i's forwarder, or returns false when
// the member is down.
func (h *harness) useForwarder(i int, fn func(f *forward.Forwarder, d *store.Directory)) bool {
	m := h.members[i]
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.fwd == nil {
		return false
	}
	fn(m.fwd, m.st.Directory())
	return true
}

// checkOffUs heals the host, waits until every forward is decided and
// every advice delivered, and compares each replica with the answers.
func (h *harness) checkOffUs(ctx context.Context, oh *offUsHistory, rep *Report) []string {
	if err := h.setIssuer(false); err != nil {
		return []string{fmt.Sprintf("off-us: healing the host: %v", err)}
	}
	ctx, cancel := context.WithTimeout(ctx, offUsDrainTimeout)
	defer cancel()
	for {
		lead := h.leader()
		done := false
		if lead >= 0 {
			h.use(lead, func(_ *cluster.Node, st *store.Store) {
				due, err1 := st.DueForwards(time.Now().Add(time.Hour).UnixNano(), 1)
				q, err2 := st.SAFQueue(offUsDest, 1)
				done = err1 == nil && err2 == nil && len(due) == 0 && len(q) == 0
			})
		}
		if done {
			break
		}
		if ctx.Err() != nil {
			return []string{"off-us: forwards still pending or advices queued a minute after the host recovered"}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := h.converge(ctx); err != nil {
		return []string{err.Error()}
	}
	var v []string
	oh.mu.Lock()
	defer oh.mu.Unlock()
	var approvedSum int64
	timedOut := 0
	for key, a := range oh.answers {
		switch {
		case a.amount < 0:
			rep.OffUsUnanswered++
		case a.approved:
			rep.OffUsApproved++
			approvedSum += a.amount
		case a.timedOut:
			rep.OffUsTimedOut++
		default:
			rep.OffUsDeclined++
		}
		for i := range h.members {
			h.use(i, func(_ *cluster.Node, st *store.Store) {
				id := h.members[i].id
				f, err := st.Forward(key)
				switch {
				case errors.Is(err, store.ErrNotFound):
					// Never recorded: the host was unreachable (91 at
					// once) or the client gave up before it was.
					if a.approved || a.timedOut {
						v = append(v, fmt.Sprintf("%s: forward %s missing, client was told %+v", id, key, a))
					}
					return
				case err != nil:
					v = append(v, fmt.Sprintf("%s: forward %s: %v", id, key, err))
					return
				}
				if i == 0 && f.State == store.ForwardTimedOut {
					timedOut++
				}
				switch {
				case f.State == store.ForwardPending:
					v = append(v, fmt.Sprintf("%s: forward %s still pending", id, key))
				case a.amount < 0:
					// Unanswered: whatever was decided stands, and is
					// counted below.
					if i == 0 && f.State == store.ForwardApproved {
						approvedSum += f.Amount
					}
				case a.approved && (f.State != store.ForwardApproved || f.TransferID != a.transfer):
					v = append(v, fmt.Sprintf("%s: forward %s is %s (%s), client was told approved (%s)", id, key, f.State, f.TransferID, a.transfer))
				case !a.approved && f.State == store.ForwardApproved:
					v = append(v, fmt.Sprintf("%s: forward %s approved and posted, client was told %+v", id, key, a))
				case a.timedOut && f.State != store.ForwardTimedOut:
					v = append(v, fmt.Sprintf("%s: forward %s is %s, client was told timed out", id, key, f.State))
				}
				if f.State == store.ForwardTimedOut {
					e, err := st.SAFEntry(f.SAF)
					if err != nil || e.State != store.SAFDelivered {
						v = append(v, fmt.Sprintf("%s: forward %s timed out, its reversal %s is %s %v", id, key, f.SAF, e.State, err))
					}
				}
			})
		}
	}
	// Exactly once: the host's position is the approvals, no more.
	for i := range h.members {
		h.use(i, func(_ *cluster.Node, st *store.Store) {
			a, err := st.Account(offUsIssuer)
			if err != nil {
				v = append(v, fmt.Sprintf("%s: %s: %v", h.members[i].id, offUsIssuer, err))
				return
			}
			if a.DebitsPosted != approvedSum {
				v = append(v, fmt.Sprintf("%s: the host's account was debited %d, approvals total %d", h.members[i].id, a.DebitsPosted, approvedSum))
			}
		})
	}
	st := h.issuer.Stats().Advices
	rep.OffUsAdvices = int(st.Distinct)
	if st.NewTwice != 0 {
		v = append(v, fmt.Sprintf("off-us: %d reversal advices reached the host as new (0420) twice", st.NewTwice))
	}
	if int(st.Distinct) < timedOut {
		v = append(v, fmt.Sprintf("off-us: %d forwards timed out, the host saw %d distinct reversals", timedOut, st.Distinct))
	}
	return v
}

// waitHostConnections waits until every member's forwarder is connected
// to the host.
func (h *harness) waitHostConnections(ctx context.Context) error {
	for i := range h.members {
		for {
			ready := false
			h.useForwarder(i, func(f *forward.Forwarder, _ *store.Directory) {
				c := f.Client(offUsDest)
				ready = c != nil && c.Ready()
			})
			if ready {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("chaos: %s never connected to the simulated issuer: %w", h.members[i].id, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}
