package switching

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/store"
)

// Seeding runs in the background and retries: a node's start must never
// depend on proposing anything (after kill -9 of a whole cluster no node
// has a leader until a quorum is back, and a leader replaying its log
// refuses proposals until its barrier is applied).
const (
	// seedAttemptTimeout bounds one pass over the seed accounts.
	seedAttemptTimeout = 15 * time.Second
	// seedRetryMin and seedRetryMax bound the wait between failed passes
	// (doubling): quick while an election settles, no busy loop while the
	// cluster has no quorum for minutes.
	seedRetryMin = 100 * time.Millisecond
	seedRetryMax = 5 * time.Second
)

// Seed commands' keys are seedPrefix|account|ID and seedPrefix|opening|ID
// (createAccount), all with the fingerprint seedFingerprint.
const (
	seedPrefix      = "seed"
	seedFingerprint = "seed"
)

func seedKey(what, id string) string { return seedPrefix + "|" + what + "|" + id }

// AccountReader finds an account by id and a stored answer by idempotency
// key (store.Store), read after Ledger.ReadIndex.
type AccountReader interface {
	Account(id string) (store.Account, error)
	Replay(key, fingerprint string) (store.Result, bool, error)
}

// Seeder makes sure the config's seed accounts exist, on the node that
// bootstrapped the cluster: once they all exist (checked with a
// linearizable read), it proposes nothing, so restarts of a seeded cluster
// propose no seeding at all. Creation is idempotent by key, so two
// seeders (or a pass cut short by a crash) change nothing twice.
type Seeder struct {
	p        *Pipeline
	accounts AccountReader
	seeds    []AccountSeed
	// prepare runs before each pass (the first business day is opened
	// before the opening balances are posted); nil for none.
	prepare func(context.Context) error
	log     *slog.Logger

	done   atomic.Bool
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the seeding goroutine
}

// StartSeeder starts seeding in the background; Done reports when every
// seed account exists, Close stops a seeder that has not finished.
func (p *Pipeline) StartSeeder(seeds []AccountSeed, accounts AccountReader, prepare func(context.Context) error, logger *slog.Logger) *Seeder {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Seeder{p: p, accounts: accounts, seeds: seeds, prepare: prepare, log: logger}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.run()
	return s
}

// Done reports whether every seed account exists.
func (s *Seeder) Done() bool { return s.done.Load() }

// Close stops seeding and waits for a pass in progress to end.
func (s *Seeder) Close() {
	s.cancel()
	s.wg.Wait()
}

func (s *Seeder) run() {
	defer s.wg.Done()
	wait := seedRetryMin
	for attempt := 1; ; attempt++ {
		created, err := s.pass()
		if err == nil {
			s.done.Store(true)
			s.log.Info("seed accounts present", "accounts", len(s.seeds), "created", created, "passes", attempt)
			return
		}
		if s.ctx.Err() != nil {
			return
		}
		// The first failure says why at info; repeats (a cluster without
		// quorum) go to debug, with a reminder every ~minute at info.
		lvl := slog.LevelDebug
		if attempt == 1 || attempt%12 == 0 {
			lvl = slog.LevelInfo
		}
		s.log.Log(s.ctx, lvl, "seeding waits for the cluster; retrying", "err", err, "pass", attempt, "retry_in", wait)
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, seedRetryMax)
	}
}

// pass reads which seed accounts are missing and creates them; it returns
// how many it created.
func (s *Seeder) pass() (int, error) {
	ctx, cancel := context.WithTimeout(s.ctx, seedAttemptTimeout)
	defer cancel()
	if err := s.p.ledger.ReadIndex(ctx); err != nil {
		return 0, err
	}
	var missing []AccountSeed
	for _, seed := range s.seeds {
		need, err := s.needsPass(seed)
		if err != nil {
			return 0, err
		}
		if need {
			missing = append(missing, seed)
		}
	}
	if len(missing) == 0 {
		return 0, nil
	}
	if s.prepare != nil {
		if err := s.prepare(ctx); err != nil {
			return 0, err
		}
	}
	created := 0
	for _, seed := range missing {
		ok, err := s.p.createAccount(ctx, seed, seedPrefix, seedFingerprint, s.p.now())
		if err != nil {
			return created, err
		}
		if ok {
			created++
		}
	}
	return created, nil
}

// needsPass reports whether seed still needs creating: its account is
// missing, or a seed pass created it and stopped (a crash) before posting
// its opening balance. That case shows as the creation's idempotency
// record without the opening's; both are stamped at the same time, so
// they are kept and pruned together, and once pruned the opening was
// posted long ago or never will be (creating again only finds the
// account).
func (s *Seeder) needsPass(seed AccountSeed) (bool, error) {
	_, err := s.accounts.Account(seed.ID)
	if errors.Is(err, store.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	ccy, err := currency.ByCode(seed.Currency)
	if err != nil {
		return false, fmt.Errorf("switch: account %q: %w", seed.ID, err)
	}
	if minor, err := openingMinor(seed, ccy); err != nil || minor == 0 {
		return false, err
	}
	_, created, err := s.accounts.Replay(seedKey("account", seed.ID), seedFingerprint)
	if err != nil || !created {
		return false, err
	}
	_, opened, err := s.accounts.Replay(seedKey("opening", seed.ID), seedFingerprint)
	return !opened, err
}
