package payment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
	// seedAttemptTimeout bounds one pass.
	seedAttemptTimeout = 15 * time.Second
	// seedRetryMin and seedRetryMax bound the wait between failed passes
	// (doubling): quick while an election settles, no busy loop while the
	// cluster has no quorum for minutes.
	seedRetryMin = 100 * time.Millisecond
	seedRetryMax = 5 * time.Second
	// driftIDsMax bounds the ids the drift warning lists.
	driftIDsMax = 10
)

// Seed commands' keys are seedPrefix|what|id (seedPrefix|routes for the
// routing table), all with the fingerprint seedFingerprint: fixed, so a
// second seeder, or a pass cut short by a crash and run again, replays
// instead of changing anything twice.
const (
	seedPrefix      = "seed"
	seedFingerprint = "seed"
	seedRoutesKey   = seedPrefix + "|routes"
	// SeedActor is who the audit chain names for seeded records.
	SeedActor  = "system:seed"
	seedReason = "seeded from config at bootstrap"
)

func seedKey(what, id string) string { return seedPrefix + "|" + what + "|" + id }

// Seeds is what the config wants a new cluster to start with. Accounts
// are made sure of on every start of the bootstrapping node; partners,
// agents and routes seed a brand-new cluster only (a directory with no
// partner and no route) and are ignored after that: the replicated
// directory is what routes, and ops changes it.
type Seeds struct {
	Accounts []AccountSeed
	Partners []store.Partner
	Routes   []store.Route
	Agents   []AgentSeed
	// Destinations are ISO 8583 hosts and HTTP billers routes may name
	// (issue 13); seeded before the routes.
	Destinations []store.Destination
}

// AgentSeed is an OTC agent the config wants: a terminal of a partner
// whose payer type may be otc_agent, with a cash limit as a decimal
// string ("1000.00") in Currency, and optionally an offline limit the
// same way (what it may report by offline advice without settling,
// store/advice.go; absent: "0", offline advices refused).
type AgentSeed struct {
	Partner      string `yaml:"partner"`
	Terminal     string `yaml:"terminal"`
	Currency     string `yaml:"currency"`
	CashLimit    string `yaml:"cash_limit"`
	OfflineLimit string `yaml:"offline_limit"`
}

// Agent is the store record s asks for.
func (s AgentSeed) Agent() (store.Agent, error) {
	ccy, err := currency.ByCode(s.Currency)
	if err != nil {
		return store.Agent{}, fmt.Errorf("payment: agent %s/%s: %w", s.Partner, s.Terminal, err)
	}
	minor, err := agentLimit(s, "cash_limit", s.CashLimit, ccy)
	if err != nil {
		return store.Agent{}, err
	}
	offline := int64(0)
	if s.OfflineLimit != "" {
		if offline, err = agentLimit(s, "offline_limit", s.OfflineLimit, ccy); err != nil {
			return store.Agent{}, err
		}
	}
	return store.Agent{Partner: s.Partner, Terminal: s.Terminal, Currency: s.Currency, CashLimit: minor, OfflineLimit: offline}, nil
}

// agentLimit is one of s's limits, the decimal v, in minor units of ccy.
func agentLimit(s AgentSeed, name, v string, ccy currency.Currency) (int64, error) {
	minor, err := currency.ParseMinor(v, ccy, '.')
	if err != nil {
		return 0, fmt.Errorf("payment: agent %s/%s %s: %w", s.Partner, s.Terminal, name, err)
	}
	if minor < 0 {
		return 0, fmt.Errorf("payment: agent %s/%s %s: %w", s.Partner, s.Terminal, name, store.ErrInvalidAmount)
	}
	return minor, nil
}

// AccountReader finds an account by id and a stored answer by idempotency
// key (store.Store), read after Ledger.ReadIndex.
type AccountReader interface {
	Account(id string) (store.Account, error)
	Replay(key, fingerprint string) (store.Result, bool, error)
}

// Seed makes sure of seeds through the ledger, now, and fails if the
// ledger cannot take them: the synchronous form for test harnesses that
// own a ready one-node cluster (switchd seeds with StartSeeder, which
// never holds up a start). Every command has a fixed key, so seeding
// again changes nothing.
func (c *Core) Seed(ctx context.Context, seeds Seeds, accounts AccountReader, now time.Time) error {
	if err := c.ledger.ReadIndex(ctx); err != nil {
		return err
	}
	for _, s := range seeds.Accounts {
		if _, err := c.createAccount(ctx, s, seedPrefix, seedFingerprint, seedAdmin(), now); err != nil {
			return err
		}
	}
	_, err := c.seedDirectory(ctx, seeds, accounts, now)
	return err
}

func seedAdmin() *store.Admin { return &store.Admin{Actor: SeedActor, Reason: seedReason} }

// Seeder makes sure the config's seeds exist, on the node that
// bootstrapped the cluster: once they all exist (checked with a
// linearizable read), it proposes nothing, so restarts of a seeded
// cluster propose no seeding at all. Then, as on every other node
// (StartDirectoryCheck), it compares the config's partners and routes
// with the replicated ones and warns once if they differ.
type Seeder struct {
	c        *Core
	accounts AccountReader
	seeds    Seeds
	seed     bool // false: only compare (a node that did not bootstrap)
	// prepare runs before a pass that creates accounts (the first
	// business day is opened before the opening balances are posted);
	// nil for none.
	prepare func(context.Context) error
	log     *slog.Logger

	done   atomic.Bool
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the seeding goroutine
}

// StartSeeder starts seeding in the background; Done reports when every
// seed exists, Close stops a seeder that has not finished.
func (c *Core) StartSeeder(seeds Seeds, accounts AccountReader, prepare func(context.Context) error, logger *slog.Logger) *Seeder {
	return c.startSeeder(seeds, accounts, true, prepare, logger)
}

// StartDirectoryCheck waits in the background until the node has caught
// up with the cluster, then warns once if the config's partners or routes
// differ from the replicated ones (which are what routes). It proposes
// nothing.
func (c *Core) StartDirectoryCheck(seeds Seeds, accounts AccountReader, logger *slog.Logger) *Seeder {
	return c.startSeeder(seeds, accounts, false, nil, logger)
}

func (c *Core) startSeeder(seeds Seeds, accounts AccountReader, seed bool, prepare func(context.Context) error, logger *slog.Logger) *Seeder {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Seeder{c: c, accounts: accounts, seeds: seeds, seed: seed, prepare: prepare, log: logger}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.run()
	return s
}

// Done reports whether every seed exists (for a directory check: whether
// the comparison ran).
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
			if s.seed {
				s.log.Info("seeds present", "accounts", len(s.seeds.Accounts), "created", created, "passes", attempt)
			}
			warnDrift(s.log, s.seeds, s.c.dir())
			s.done.Store(true)
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

// pass reads which seeds are missing and creates them; it returns how many
// records it created.
func (s *Seeder) pass() (int, error) {
	ctx, cancel := context.WithTimeout(s.ctx, seedAttemptTimeout)
	defer cancel()
	if err := s.c.ledger.ReadIndex(ctx); err != nil {
		return 0, err
	}
	if !s.seed {
		return 0, nil
	}
	var missing []AccountSeed
	for _, seed := range s.seeds.Accounts {
		need, err := s.needsPass(seed)
		if err != nil {
			return 0, err
		}
		if need {
			missing = append(missing, seed)
		}
	}
	if len(missing) > 0 && s.prepare != nil {
		if err := s.prepare(ctx); err != nil {
			return 0, err
		}
	}
	created := 0
	for _, seed := range missing {
		ok, err := s.c.createAccount(ctx, seed, seedPrefix, seedFingerprint, seedAdmin(), s.c.now())
		if err != nil {
			return created, err
		}
		if ok {
			created++
		}
	}
	n, err := s.c.seedDirectory(ctx, s.seeds, s.accounts, s.c.now())
	return created + n, err
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
		return false, fmt.Errorf("payment: account %q: %w", seed.ID, err)
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

// seedDirectory seeds partners, agents and then the routing table, on a
// brand-new cluster only, and returns how many records it created. The
// routing table goes last, so its record says the seeding finished.
func (c *Core) seedDirectory(ctx context.Context, seeds Seeds, replays AccountReader, now time.Time) (int, error) {
	if len(seeds.Partners) == 0 && len(seeds.Routes) == 0 && len(seeds.Agents) == 0 && len(seeds.Destinations) == 0 {
		return 0, nil
	}
	need, err := c.directoryNeedsSeed(seeds, replays)
	if err != nil || !need {
		return 0, err
	}
	created := 0
	propose := func(op store.Op, key string, a *store.Admin) (store.Result, error) {
		a.Actor, a.Reason = SeedActor, seedReason
		res, err := c.ledger.Propose(ctx, store.Command{Op: op, Key: key, Fingerprint: seedFingerprint, Time: now.UnixNano(), Admin: a})
		if err != nil {
			return res, fmt.Errorf("payment: seed %s: %w", key, err)
		}
		if err := res.Status.Err(); err != nil {
			return res, fmt.Errorf("payment: seed %s: %w (%s)", key, err, res.Detail)
		}
		if !res.Replayed {
			created++
		}
		return res, nil
	}
	for i := range seeds.Partners {
		p := seeds.Partners[i]
		if _, err := propose(store.OpPutPartner, seedKey("partner", p.ID), &store.Admin{Partner: &p}); err != nil {
			return created, err
		}
	}
	for _, as := range seeds.Agents {
		a, err := as.Agent()
		if err != nil {
			return created, err
		}
		if _, err := propose(store.OpPutAgent, seedKey("agent", store.AgentID(a.Partner, a.Terminal)), &store.Admin{Agent: &a}); err != nil {
			return created, err
		}
	}
	for i := range seeds.Destinations {
		x := seeds.Destinations[i]
		if _, err := propose(store.OpPutDestination, seedKey("destination", x.ID), &store.Admin{Destination: &x}); err != nil {
			return created, err
		}
	}
	routes := slices.Clone(seeds.Routes)
	if routes == nil {
		routes = []store.Route{}
	}
	_, err = propose(store.OpReplaceRoutes, seedRoutesKey, &store.Admin{Routes: routes, BaseVersion: 0})
	if errors.Is(err, store.ErrVersionConflict) {
		// Only after a pass cut short: ops changed the table since. Ops'
		// table stands; seeding never writes over it.
		c.log.Warn("seed routes not applied: the routing table was changed since the cluster started", "err", err)
		return created, nil
	}
	return created, err
}

// directoryNeedsSeed reports whether the directory still needs seeding:
// it is empty (a brand-new cluster), or a seed pass stopped (a crash)
// after some partners or agents and before the routing table, whose
// record comes last.
func (c *Core) directoryNeedsSeed(seeds Seeds, replays AccountReader) (bool, error) {
	if _, done, err := replays.Replay(seedRoutesKey, seedFingerprint); err != nil || done {
		return false, err
	}
	d := c.dir()
	if d.Version() == 0 && len(d.Partners()) == 0 {
		return true, nil
	}
	for _, p := range seeds.Partners {
		if _, begun, err := replays.Replay(seedKey("partner", p.ID), seedFingerprint); err != nil || begun {
			return begun, err
		}
	}
	return false, nil
}

// warnDrift logs one warning when the config's partners or routes are not
// what the replicated directory holds.
func warnDrift(log *slog.Logger, seeds Seeds, d *store.Directory) {
	partners, routes := Drift(seeds, d)
	if len(partners) == 0 && len(routes) == 0 {
		return
	}
	log.Warn("the config's partners/routes differ from the replicated directory: the stored (replicated) state is what "+
		"routes and the YAML's partners: and routes: are ignored (they seed a new cluster only); change routes with "+
		"`switchctl routes ...`", "partners_differ", partners, "routes_differ", routes)
}

// Drift lists the ids of partners and routes that differ between the
// config's seeds and directory d (in one, not the other, or not the
// same), at most driftIDsMax of each.
func Drift(seeds Seeds, d *store.Directory) (partners, routes []string) {
	stored := d.Partners()
	seen := map[string]bool{}
	for _, p := range seeds.Partners {
		seen[p.ID] = true
		if sp, ok := d.Partner(p.ID); !ok || !samePartner(p, *sp) {
			partners = appendCapped(partners, p.ID)
		}
	}
	for _, p := range stored {
		if !seen[p.ID] {
			partners = appendCapped(partners, p.ID)
		}
	}
	clear(seen)
	for _, r := range seeds.Routes {
		seen[r.ID] = true
		if sr, ok := d.Route(r.ID); !ok || *sr != NormalRoute(r) {
			routes = appendCapped(routes, r.ID)
		}
	}
	for _, r := range d.Routes() {
		if !seen[r.ID] {
			routes = appendCapped(routes, r.ID)
		}
	}
	return partners, routes
}

func appendCapped(ids []string, id string) []string {
	if len(ids) >= driftIDsMax {
		return ids
	}
	return append(ids, id)
}

func samePartner(a, b store.Partner) bool {
	return a.ID == b.ID && slices.Equal(a.AcquirerIDs, b.AcquirerIDs) && slices.Equal(a.Lanes, b.Lanes) &&
		a.SettlementAccount == b.SettlementAccount && a.WithdrawalMax == b.WithdrawalMax &&
		a.PayerType == b.PayerType && slices.Equal(a.PayerTypes, b.PayerTypes) && a.Suspended == b.Suspended
}

// NormalRoute is r as the store keeps it: empty key fields read "*".
func NormalRoute(r store.Route) store.Route {
	for _, f := range []*string{&r.BillType, &r.PayerType, &r.Partner} {
		if *f == "" {
			*f = store.Wildcard
		}
	}
	return r
}
