package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/store"
)

const (
	// openingMinor is each card's opening balance. Most debits are small;
	// one in twenty asks for half the balance or more, so some are
	// declined (51) and the floor is exercised all run long.
	openingMinor = 1_000_000
	ccy          = "USD"
	// resolveTimeout bounds the repair phase: after the faults heal every
	// unresolved command is repeated until answered.
	resolveTimeout = 2 * time.Minute
	// linearizeTimeout bounds porcupine per run.
	linearizeTimeout = time.Minute
)

// Report is what one run did and found.
type Report struct {
	Seed     int64
	TLS      bool
	Faults   []string
	Ops      int // client operations in the history
	Debits   int
	Approved int
	Declined int
	Reads    int
	Retries  int // attempts that ended in an error and were repeated
	// SnapshotInstalls counts snapshots followers restored from a leader.
	SnapshotInstalls int
	// BogusJoins counts joins of nodes that do not exist or are not what
	// they claim (never to be accepted).
	BogusJoins int
	// The off-us mix: answers by kind (unanswered: the load ended first),
	// and the distinct reversal advices the host received.
	OffUsApproved, OffUsDeclined, OffUsTimedOut, OffUsUnanswered, OffUsRetries, OffUsAdvices int
	Violations                                                                               []string
}

func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d (tls %v): %d ops (%d debits: %d approved, %d declined; %d reads), %d retries, %d faults (%d bogus joins), %d snapshot installs, %d violations",
		r.Seed, r.TLS, r.Ops, r.Debits, r.Approved, r.Declined, r.Reads, r.Retries, len(r.Faults), r.BogusJoins, r.SnapshotInstalls, len(r.Violations))
	if n := r.OffUsApproved + r.OffUsDeclined + r.OffUsTimedOut + r.OffUsUnanswered; n > 0 {
		fmt.Fprintf(&b, "\n  off-us: %d purchases (%d approved, %d declined, %d timed out, %d unanswered at the end), %d retries, %d reversal advices at the host",
			n, r.OffUsApproved, r.OffUsDeclined, r.OffUsTimedOut, r.OffUsUnanswered, r.OffUsRetries, r.OffUsAdvices)
	}
	fmt.Fprintf(&b, "\n  faults: %s", strings.Join(r.Faults, ", "))
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "\n  VIOLATION: %s", v)
	}
	return b.String()
}

func cardID(i int) string { return fmt.Sprintf("card-%03d", i) }

// opInput and opOutput are one client operation on one card.
type opInput struct {
	Card   string
	Read   bool
	Amount int64
}

type opOutput struct {
	Approved bool  // debits
	Value    int64 // reads: available balance
	Transfer string
}

type history struct {
	mu  sync.Mutex // protects ops and the report counters
	ops []porcupine.Operation
	rep *Report
	// approved transfer id → the card and amount the client was told
	approved map[string]opInput
	// approvedByCard counts approvals per card
	approvedByCard map[string]int
}

func (hs *history) add(client int, in opInput, out opOutput, call, ret time.Time) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.ops = append(hs.ops, porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call.UnixNano(), Return: ret.UnixNano()})
	switch {
	case in.Read:
		hs.rep.Reads++
	case out.Approved:
		hs.rep.Debits++
		hs.rep.Approved++
		hs.approved[out.Transfer] = in
		hs.approvedByCard[in.Card]++
	default:
		hs.rep.Debits++
		hs.rep.Declined++
	}
}

// Run runs one chaos run and returns its report; an error means the
// harness itself failed (not a violation).
func Run(ctx context.Context, cfg Config) (Report, error) {
	rep := Report{Seed: cfg.Seed, TLS: cfg.TLS}
	if cfg.ForceSnapshotInstall && cfg.LogStore != "bolt" {
		return rep, fmt.Errorf("chaos: ForceSnapshotInstall needs LogStore bolt, not %q", cfg.LogStore)
	}
	h, err := newHarness(cfg)
	if err != nil {
		return rep, err
	}
	defer h.stopAll()
	setupCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	setup := setupCommands(cfg.Cards)
	if cfg.OffUsWorkers > 0 {
		if err := h.startIssuer(); err != nil {
			return rep, err
		}
		setup = append(setup, offUsSetup(h.issuer.Addr())...)
	}
	if err := h.form(setupCtx, setup); err != nil {
		return rep, err
	}

	hs := &history{rep: &rep, approved: map[string]opInput{}, approvedByCard: map[string]int{}}
	loadCtx, stopLoad := context.WithTimeout(ctx, cfg.Duration)
	defer stopLoad()
	var wg sync.WaitGroup
	var unresolved sync.Map // key → pending debit
	for w := 0; w < cfg.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.client(loadCtx, w, rand.New(rand.NewSource(cfg.Seed*1000+int64(w))), hs, &unresolved)
		}()
	}
	oh := &offUsHistory{answers: map[string]offUsAnswer{}}
	if cfg.OffUsWorkers > 0 {
		// Every node signs on to the host while it answers; then it
		// turns flaky for the rest of the load.
		if err := h.waitHostConnections(setupCtx); err != nil {
			return rep, err
		}
		if err := h.setIssuer(true); err != nil {
			return rep, err
		}
	}
	for w := 0; w < cfg.OffUsWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.offUsClient(loadCtx, w, rand.New(rand.NewSource(cfg.Seed*1000+500+int64(w))), oh)
		}()
	}
	faultsDone := make(chan struct{})
	go func() {
		defer close(faultsDone)
		h.faults(loadCtx, rand.New(rand.NewSource(cfg.Seed)), &rep)
	}()
	wg.Wait()
	<-faultsDone

	// Heal: every link, every node up, then finish what clients left.
	h.net.heal()
	for i := range h.members {
		if err := h.start(i, false); err != nil {
			return rep, err
		}
	}
	resolveCtx, cancelResolve := context.WithTimeout(ctx, resolveTimeout)
	defer cancelResolve()
	var rerr error
	unresolved.Range(func(_, v any) bool {
		p := v.(*pending)
		var res store.Result
		if err := h.proposeUntil(resolveCtx, 0, p.cmd, &res); err != nil {
			rerr = err
			return false
		}
		hs.add(p.client, p.in, outputOf(res), p.call, time.Now())
		return true
	})
	if rerr != nil {
		rep.Violations = append(rep.Violations, fmt.Sprintf("after healing: %v", rerr))
		return rep, nil
	}
	if cfg.ForceSnapshotInstall {
		if err := h.forceSnapshotInstall(resolveCtx); err != nil {
			return rep, err
		}
		rep.Faults = append(rep.Faults, "forced snapshot install")
	}
	if err := h.converge(resolveCtx); err != nil {
		rep.Violations = append(rep.Violations, err.Error())
		return rep, nil
	}
	if cfg.OffUsWorkers > 0 {
		rep.OffUsRetries = oh.retries
		rep.Violations = append(rep.Violations, h.checkOffUs(resolveCtx, oh, &rep)...)
	}
	rep.Ops = len(hs.ops)
	rep.Violations = append(rep.Violations, h.checkMembers(resolveCtx)...)
	rep.Violations = append(rep.Violations, h.checkReplicas(cfg.Cards, hs)...)
	rep.Violations = append(rep.Violations, checkLinearizable(hs.ops)...)
	h.stopAll()
	rep.SnapshotInstalls = int(h.restores.Load())
	return rep, nil
}

// Forced snapshot install (Config.ForceSnapshotInstall).
const (
	// appendEntriesMax is cluster/node.go's raft MaxAppendEntries. An
	// AppendEntries the leader built for the stopped follower before the
	// snapshot dropped the log can still be in flight when the follower
	// is back (the raft dial retries a refused peer for up to a second),
	// and that request alone moves the follower up to this many entries:
	// the gap must be wider for the next request to need the snapshot.
	appendEntriesMax = 256
	// snapshotLagMargin is how many entries past trailing_logs and
	// appendEntriesMax the leader writes while the follower is down,
	// beyond the follower's last index as read just before it stopped
	// (it may receive a few more before it stops).
	snapshotLagMargin = 50
	// snapshotInstallAttempts bounds the retries: a leader change during
	// the step (the new leader still holds the follower's log) spoils an
	// attempt, not the run.
	snapshotInstallAttempts = 3
	// snapshotInstallWait bounds the wait for the restarted follower's
	// restore in one attempt.
	snapshotInstallWait = 30 * time.Second
)

// forceSnapshotInstall stops a follower, writes enough through the leader
// that a snapshot there drops the log the follower needs, takes that
// snapshot, restarts the follower and waits until its store restored a
// snapshot stream from the leader. The writes are funding → merchant
// postings: no card is touched, so the client history stays complete.
func (h *harness) forceSnapshotInstall(ctx context.Context) error {
	trailing := h.clusterConfig(h.members[0], false).TrailingLogs
	var last error
	for attempt := 0; attempt < snapshotInstallAttempts; attempt++ {
		l, err := h.waitLeader(ctx)
		if err != nil {
			return err
		}
		f := (l + 1) % len(h.members)
		var fLast uint64
		h.use(f, func(n *cluster.Node, _ *store.Store) { fLast = n.StatusOf(false).LastIndex })
		h.log.Info("forced snapshot install", "attempt", attempt, "leader", h.members[l].id,
			"follower", h.members[f].id, "follower_last_index", fLast)
		h.kill(f)
		target := fLast + trailing + appendEntriesMax + snapshotLagMargin
		for i := 0; ; i++ {
			var leaderLast uint64
			up := h.use(l, func(n *cluster.Node, _ *store.Store) { leaderLast = n.StatusOf(false).LastIndex })
			if !up {
				return fmt.Errorf("chaos: forced snapshot install: leader %s down", h.members[l].id)
			}
			if leaderLast > target {
				break
			}
			c := store.Command{Op: store.OpPost, Key: fmt.Sprintf("snap|%d|%d", attempt, i), Fingerprint: "snap",
				Time: time.Now().UnixNano(), BusinessDay: "2026-11-21", Debit: "funding", Credit: "merchant", Amount: 1, Currency: ccy}
			if err := h.proposeUntil(ctx, l, c, nil); err != nil {
				return fmt.Errorf("chaos: forced snapshot install: %w", err)
			}
		}
		var snapErr error
		h.use(l, func(n *cluster.Node, _ *store.Store) { _, snapErr = n.Snapshot() })
		if snapErr != nil {
			return fmt.Errorf("chaos: forced snapshot install: snapshot on %s: %w", h.members[l].id, snapErr)
		}
		if err := h.start(f, false); err != nil {
			return fmt.Errorf("chaos: forced snapshot install: restart %s: %w", h.members[f].id, err)
		}
		// The restarted store counts restores from zero, and a restart
		// does not restore its own snapshot (the FSM keeps its state): a
		// restore now can only be one the leader sent.
		waitCtx, cancel := context.WithTimeout(ctx, snapshotInstallWait)
		installed := false
		for !installed && waitCtx.Err() == nil {
			h.use(f, func(_ *cluster.Node, st *store.Store) { installed = st.Metrics().Restores > 0 })
			if !installed {
				select {
				case <-waitCtx.Done():
				case <-time.After(20 * time.Millisecond):
				}
			}
		}
		cancel()
		if installed {
			return nil
		}
		last = fmt.Errorf("follower %s restarted without a snapshot install (leader %s)", h.members[f].id, h.members[l].id)
		h.log.Warn("forced snapshot install: retrying", "err", last)
	}
	return fmt.Errorf("chaos: forced snapshot install: %d attempts: %w", snapshotInstallAttempts, last)
}

func setupCommands(cards int) []store.Command {
	var cmds []store.Command
	acct := func(a store.Account) {
		cmds = append(cmds, store.Command{Op: store.OpCreateAccount, Key: "setup|acct|" + a.ID, Fingerprint: "setup", Time: 1, Account: &a})
	}
	acct(store.Account{ID: "funding", Kind: store.KindFunding, Currency: ccy, Unlimited: true})
	acct(store.Account{ID: "merchant", Kind: store.KindSettlement, Currency: ccy, Unlimited: true})
	for i := 0; i < cards; i++ {
		acct(store.Account{ID: cardID(i), Kind: store.KindCardholder, Currency: ccy})
		cmds = append(cmds, store.Command{Op: store.OpPost, Key: "setup|fund|" + cardID(i), Fingerprint: "setup", Time: 2,
			BusinessDay: "2026-11-21", Debit: "funding", Credit: cardID(i), Amount: openingMinor, Currency: ccy})
	}
	return cmds
}

type pending struct {
	client int
	in     opInput
	cmd    store.Command
	call   time.Time
}

func outputOf(res store.Result) opOutput {
	return opOutput{Approved: res.Status == store.StatusOK, Transfer: res.TransferID}
}

// client is one partner: debits (retried with the same key on any node
// until answered) and balance reads (ReadIndex, then the local store).
func (h *harness) client(ctx context.Context, id int, rng *rand.Rand, hs *history, unresolved *sync.Map) {
	for seq := 0; ctx.Err() == nil; seq++ {
		card := cardID(rng.Intn(h.cfg.Cards))
		node := rng.Intn(len(h.members))
		if rng.Intn(10) < 3 {
			h.read(ctx, id, node, card, hs)
			continue
		}
		in := opInput{Card: card, Amount: int64(1 + rng.Intn(100))}
		if rng.Intn(20) == 0 {
			in.Amount = int64(openingMinor/2 + rng.Intn(openingMinor/2))
		}
		cmd := store.Command{Op: store.OpPost, Key: fmt.Sprintf("c%d|%d", id, seq), Fingerprint: "f",
			Time: time.Now().UnixNano(), BusinessDay: "2026-11-21", Debit: card, Credit: "merchant", Amount: in.Amount, Currency: ccy}
		call := time.Now()
		for try := 0; ; try++ {
			var res store.Result
			var err error
			up := h.use((node+try)%len(h.members), func(n *cluster.Node, _ *store.Store) {
				cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				res, err = n.Propose(cctx, cmd)
			})
			if up && err == nil {
				hs.add(id, in, outputOf(res), call, time.Now())
				break
			}
			if up {
				hs.mu.Lock()
				hs.rep.Retries++
				hs.mu.Unlock()
			}
			if ctx.Err() != nil {
				// Load is over with the outcome unknown: the repair
				// phase repeats it (same key) after healing.
				unresolved.Store(cmd.Key, &pending{client: id, in: in, cmd: cmd, call: call})
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func (h *harness) read(ctx context.Context, client, node int, card string, hs *history) {
	for try := 0; ctx.Err() == nil && try < 20; try++ {
		var val int64
		var err error
		call := time.Now()
		up := h.use((node+try)%len(h.members), func(n *cluster.Node, st *store.Store) {
			cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err = n.ReadIndex(cctx); err != nil {
				return
			}
			var a store.Account
			a, err = st.Account(card)
			val = a.Available()
		})
		if up && err == nil {
			hs.add(client, opInput{Card: card, Read: true}, opOutput{Value: val}, call, time.Now())
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// faults runs the seeded schedule until ctx ends.
func (h *harness) faults(ctx context.Context, rng *rand.Rand, rep *Report) {
	sleep := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	note := func(s string) {
		rep.Faults = append(rep.Faults, s)
		h.log.Info("fault", "what", s)
	}
	// Bogus joins draw from their own stream, so the schedule of the
	// other faults (and of every seed recorded before) stays the same.
	bogus := rand.New(rand.NewSource(h.cfg.Seed ^ bogusJoinSeedMix))
	for sleep(h.cfg.FaultEvery/2 + time.Duration(rng.Int63n(int64(h.cfg.FaultEvery)))) {
		if bogus.Intn(bogusJoinOneIn) == 0 {
			h.bogusJoin(ctx, bogus, rep)
		}
		hold := h.cfg.FaultEvery/2 + time.Duration(rng.Int63n(int64(h.cfg.FaultEvery)))
		l := h.leader()
		switch k := rng.Intn(6); {
		case k == 0 && l >= 0:
			note("kill leader " + h.members[l].id)
			h.kill(l)
			sleep(hold)
			h.mustStart(l)
		case k == 1:
			f := rng.Intn(len(h.members))
			if f == l {
				f = (f + 1) % len(h.members)
			}
			note("kill follower " + h.members[f].id)
			h.kill(f)
			sleep(hold)
			h.mustStart(f)
		case k == 2 && l >= 0:
			note("partition leader " + h.members[l].id)
			h.net.isolate(l, len(h.members))
			sleep(hold)
			h.net.heal()
		case k == 3:
			d := time.Duration(5+rng.Intn(40)) * time.Millisecond
			note(fmt.Sprintf("delay links %s", d))
			h.net.setFlaky(d, 0)
			sleep(hold)
			h.net.heal()
		case k == 4:
			note("drop links 2%")
			h.net.setFlaky(0, 0.02)
			sleep(hold)
			h.net.heal()
		case k == 5:
			note("restart all")
			for i := range h.members {
				h.kill(i)
			}
			for i := range h.members {
				h.mustStart(i)
			}
		}
	}
}

const (
	// bogusJoinOneIn: before each fault, a bogus join with chance 1 in
	// this (a short run of ~12 faults sees a few).
	bogusJoinOneIn = 3
	// bogusJoinSeedMix derives the bogus joins' stream from the seed.
	bogusJoinSeedMix = 0x6a6f696e
	// bogusJoinTimeout bounds one bogus join: refusing takes a probe
	// (joinProbeTimeout, 2 s) plus finding the leader during a fault.
	bogusJoinTimeout = 5 * time.Second
)

// bogusJoin asks random live members to add a node that does not exist
// (an address nothing listens on) and one that is not what it claims (a
// member's address under a made-up id). Issue 9 item 4: one such call
// used to add an unreachable voter and cost the quorum. Neither may ever
// be accepted; a refusal for lack of a leader during a fault is fine.
func (h *harness) bogusJoin(ctx context.Context, rng *rand.Rand, rep *Report) {
	free, err := freeAddr() // free a moment ago: nothing listens now
	if err != nil {
		return
	}
	m := h.members[rng.Intn(len(h.members))]
	for _, b := range []struct{ what, addr string }{{"nothing there", free}, {"impostor of " + m.id, m.addr}} {
		via := rng.Intn(len(h.members))
		id := fmt.Sprintf("bogus-%d", rep.BogusJoins)
		var err error
		up := h.use(via, func(n *cluster.Node, _ *store.Store) {
			cctx, cancel := context.WithTimeout(ctx, bogusJoinTimeout)
			defer cancel()
			_, err = n.Join(cctx, id, b.addr)
		})
		if !up {
			continue
		}
		rep.BogusJoins++
		var note string
		switch {
		case err == nil:
			rep.Violations = append(rep.Violations, fmt.Sprintf("bogus join of %s at %s (%s) via %s was accepted", id, b.addr, b.what, h.members[via].id))
			note = fmt.Sprintf("bogus join (%s) ACCEPTED", b.what)
		case errors.Is(err, cluster.ErrMembership):
			note = fmt.Sprintf("bogus join (%s) refused", b.what)
		default:
			note = fmt.Sprintf("bogus join (%s) not taken: %v", b.what, err)
		}
		rep.Faults = append(rep.Faults, note)
		h.log.Info("fault", "what", note, "err", err)
	}
}

// checkMembers: after healing, the configuration is exactly the
// harness's nodes, all voters (no bogus member slipped in).
func (h *harness) checkMembers(ctx context.Context) []string {
	l, err := h.waitLeader(ctx)
	if err != nil {
		return []string{err.Error()}
	}
	var cs cluster.ClusterStatus
	h.use(l, func(n *cluster.Node, _ *store.Store) { cs, err = n.ClusterStatus(ctx, false) })
	if err != nil {
		return []string{fmt.Sprintf("cluster status: %v", err)}
	}
	known := map[string]bool{}
	for _, m := range h.members {
		known[m.id] = true
	}
	var v []string
	for _, m := range cs.Members {
		if !known[m.ID] || m.Suffrage != "Voter" {
			v = append(v, fmt.Sprintf("configuration holds %s at %s as %s", m.ID, m.Address, m.Suffrage))
		}
	}
	if len(cs.Members) != len(h.members) {
		v = append(v, fmt.Sprintf("configuration has %d members, want %d", len(cs.Members), len(h.members)))
	}
	return v
}

func (h *harness) mustStart(i int) {
	if err := h.start(i, false); err != nil {
		h.log.Error("restart failed", "node", h.members[i].id, "err", err)
	}
}

// converge waits until every replica applied the same index with the same
// state hash (DESIGN.md invariant 5).
func (h *harness) converge(ctx context.Context) error {
	if _, err := h.waitLeader(ctx); err != nil {
		return err
	}
	var last string
	for {
		var idx []uint64
		var sums [][32]byte
		for i := range h.members {
			h.use(i, func(_ *cluster.Node, st *store.Store) {
				x, s, err := st.StateHash()
				if err == nil {
					idx, sums = append(idx, x), append(sums, s)
				}
			})
		}
		same := len(idx) == len(h.members)
		for k := range idx {
			same = same && idx[k] == idx[0] && sums[k] == sums[0]
		}
		if same {
			return nil
		}
		last = fmt.Sprintf("applied %v", idx)
		select {
		case <-ctx.Done():
			return fmt.Errorf("replicas did not converge to one state hash: %s", last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// checkReplicas compares every replica with what clients were told.
func (h *harness) checkReplicas(cards int, hs *history) []string {
	var v []string
	for i := range h.members {
		h.use(i, func(_ *cluster.Node, st *store.Store) {
			id := h.members[i].id
			// Every approval the client saw is there, as told.
			for tid, in := range hs.approved {
				t, err := st.Transfer(tid)
				if err != nil {
					v = append(v, fmt.Sprintf("%s: approved transfer %s missing: %v", id, tid, err))
					continue
				}
				if t.Debit != in.Card || t.Amount != in.Amount || t.Status != store.TransferPosted {
					v = append(v, fmt.Sprintf("%s: transfer %s is %s %d %s, client was told %s %d", id, tid, t.Debit, t.Amount, t.Status, in.Card, in.Amount))
				}
			}
			// Exactly once: each card's debits are exactly the approvals.
			var sum int64
			for c := 0; c < cards; c++ {
				card := cardID(c)
				debits, err := countDebits(st, card)
				if err != nil {
					v = append(v, fmt.Sprintf("%s: transfers of %s: %v", id, card, err))
					continue
				}
				if debits != hs.approvedByCard[card] {
					v = append(v, fmt.Sprintf("%s: %s has %d debits in the ledger, clients saw %d approved", id, card, debits, hs.approvedByCard[card]))
				}
				a, err := st.Account(card)
				if err != nil {
					v = append(v, fmt.Sprintf("%s: %s: %v", id, card, err))
					continue
				}
				if a.Available() < a.Floor {
					v = append(v, fmt.Sprintf("%s: %s below its floor: %d", id, card, a.Available()))
				}
			}
			// Double entry: all balances sum to zero.
			after := ""
			for {
				as, err := st.Accounts(after, 1000)
				if err != nil {
					v = append(v, fmt.Sprintf("%s: accounts: %v", id, err))
					break
				}
				for _, a := range as {
					sum += a.Posted()
				}
				if len(as) < 1000 {
					break
				}
				after = as[len(as)-1].ID
			}
			if sum != 0 {
				v = append(v, fmt.Sprintf("%s: balances sum to %d, not zero", id, sum))
			}
		})
	}
	return v
}

func countDebits(st *store.Store, card string) (int, error) {
	n, after := 0, ""
	for {
		ts, err := st.Transfers(store.TransferFilter{Account: card, Limit: 1000, After: after})
		if err != nil {
			return 0, err
		}
		for _, t := range ts {
			if t.Debit == card {
				n++
			}
		}
		if len(ts) < 1000 {
			return n, nil
		}
		after = ts[len(ts)-1].ID
	}
}

// model is one card's available balance: a debit is approved exactly when
// the balance covers it; a read returns the balance.
var model = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, op := range history {
			c := op.Input.(opInput).Card
			by[c] = append(by[c], op)
		}
		keys := make([]string, 0, len(by))
		for k := range by {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() interface{} { return int64(openingMinor) },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		bal, in, out := state.(int64), input.(opInput), output.(opOutput)
		if in.Read {
			return out.Value == bal, bal
		}
		if bal >= in.Amount {
			return out.Approved, bal - in.Amount
		}
		return !out.Approved, bal
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(opInput), output.(opOutput)
		if in.Read {
			return fmt.Sprintf("read %s → %d", in.Card, out.Value)
		}
		return fmt.Sprintf("debit %s %d → approved=%v", in.Card, in.Amount, out.Approved)
	},
}

func checkLinearizable(ops []porcupine.Operation) []string {
	res, _ := porcupine.CheckOperationsVerbose(model, ops, linearizeTimeout)
	switch res {
	case porcupine.Ok:
		return nil
	case porcupine.Unknown:
		return []string{"porcupine timed out (history not proven linearizable)"}
	}
	return []string{"history of some account is not linearizable"}
}
