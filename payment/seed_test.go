package payment_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/config"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
)

// gateLedger is the node as a seeder sees it during an outage: while down,
// every proposal and read fails as on a node without a leader.
type gateLedger struct {
	node      *cluster.Node
	down      atomic.Bool
	proposals atomic.Int64 // proposals that reached the node
}

func (g *gateLedger) Propose(ctx context.Context, cmd store.Command) (store.Result, error) {
	if g.down.Load() {
		return store.Result{}, cluster.ErrNotLeader
	}
	g.proposals.Add(1)
	return g.node.Propose(ctx, cmd)
}

func (g *gateLedger) ReadIndex(ctx context.Context) error {
	if g.down.Load() {
		return cluster.ErrNotLeader
	}
	return g.node.ReadIndex(ctx)
}

// seedSetup is a one-voter node behind a gate that is down (no leader), and
// a core proposing through the gate; all closed at cleanup.
func seedSetup(t *testing.T) (config.File, *store.Store, *gateLedger, *payment.Core) {
	t.Helper()
	cfg := config.Demo()
	cfg.DataDir = t.TempDir()
	cfg.Cluster.RaftAddr = "127.0.0.1:0"
	cfg.Cluster.HeartbeatTimeout, cfg.Cluster.ElectionTimeout, cfg.Cluster.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	cfg.Finish()
	st, err := store.Open(cfg.Store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	node, err := cluster.New(cfg.Cluster, st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() }) // before the store: cleanups run last-in first-out
	g := &gateLedger{node: node}
	g.down.Store(true)
	core, err := payment.NewCore(cfg.Switch.Config, g, st, st.Directory, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, st, g, core
}

// Seeding waits for the cluster instead of failing the start, creates the
// accounts and opening balances once (and the directory), and a later
// seeder on a seeded ledger proposes nothing.
func TestSeederRetriesUntilALeaderThenProposesNothing(t *testing.T) {
	cfg, st, g, core := seedSetup(t)
	var prepared atomic.Int64
	prepare := func(context.Context) error { prepared.Add(1); return nil }

	s := core.StartSeeder(cfg.Seeds(), st, prepare, nil)
	defer s.Close()
	time.Sleep(300 * time.Millisecond) // several retries while down
	if s.Done() || g.proposals.Load() != 0 {
		t.Fatalf("seeded without a leader: done %v, proposals %d", s.Done(), g.proposals.Load())
	}
	g.down.Store(false)
	seedWaitFor(t, 10*time.Second, s.Done)
	for _, a := range cfg.Accounts {
		if _, err := st.Account(a.ID); err != nil {
			t.Fatalf("seed account %s: %v", a.ID, err)
		}
	}
	card, _ := st.Account("card-4111")
	if card.Posted() != 100000 {
		t.Fatalf("card-4111 posted %d, want the opening 100000 once", card.Posted())
	}
	if prepared.Load() != 1 {
		t.Fatalf("prepare ran %d times, want once before the accounts were created", prepared.Load())
	}

	before := g.proposals.Load()
	s2 := core.StartSeeder(cfg.Seeds(), st, prepare, nil)
	defer s2.Close()
	seedWaitFor(t, 10*time.Second, s2.Done)
	if n := g.proposals.Load() - before; n != 0 || prepared.Load() != 1 {
		t.Fatalf("a seeder on a seeded ledger proposed %d commands (prepare ran %d times)", n, prepared.Load())
	}
	if card, _ := st.Account("card-4111"); card.Posted() != 100000 {
		t.Fatalf("card-4111 posted %d after a second seeder", card.Posted())
	}
}

// Close stops a seeder that is still waiting for a leader.
func TestSeederCloseWhileWaiting(t *testing.T) {
	cfg, st, _, core := seedSetup(t)
	s := core.StartSeeder(cfg.Seeds(), st, nil, nil)
	time.Sleep(50 * time.Millisecond)
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop a waiting seeder")
	}
	if s.Done() {
		t.Fatal("done without seeding")
	}
}

func seedWaitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
	}
}

// A seed pass cut short between an account's creation and its opening
// balance (a crash) is finished by the next seeder: the opening is posted
// once, and only for that account.
func TestSeederFinishesAPassCutShort(t *testing.T) {
	cfg, st, g, core := seedSetup(t)
	g.down.Store(false)
	seedWaitFor(t, 10*time.Second, g.node.Ready)
	// What the cut-short pass left: card-4111 created, its opening not.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var card payment.AccountSeed
	for _, a := range cfg.Accounts {
		if a.ID == "card-4111" {
			card = a
		}
	}
	res, err := g.node.Propose(ctx, store.Command{Op: store.OpCreateAccount, Key: "seed|account|card-4111", Fingerprint: "seed",
		Time: time.Now().UnixNano(), Account: &store.Account{ID: card.ID, Kind: card.Kind, Currency: card.Currency,
			CardHash: core.CardHash(mustPAN(t, card.PAN)), MaskedPAN: "411111******1111"}})
	if err != nil || res.Status != store.StatusOK {
		t.Fatalf("create: %v %v", res.Status, err)
	}
	s := core.StartSeeder(cfg.Seeds(), st, nil, nil)
	defer s.Close()
	seedWaitFor(t, 10*time.Second, s.Done)
	if a, _ := st.Account("card-4111"); a.Posted() != 100000 {
		t.Fatalf("card-4111 posted %d, want its opening 100000", a.Posted())
	}
	before := g.proposals.Load()
	s2 := core.StartSeeder(cfg.Seeds(), st, nil, nil)
	defer s2.Close()
	seedWaitFor(t, 10*time.Second, s2.Done)
	if n := g.proposals.Load() - before; n != 0 {
		t.Fatalf("the finished ledger got %d more seed proposals", n)
	}
	if a, _ := st.Account("card-4111"); a.Posted() != 100000 {
		t.Fatalf("card-4111 posted %d after another seeder, want 100000", a.Posted())
	}
}

func mustPAN(t testing.TB, s string) payment.PAN {
	t.Helper()
	pan, err := payment.ParsePAN(s)
	if err != nil {
		t.Fatal(err)
	}
	return pan
}

// seedsOf is what the directory holds, in a comparable form.
func directoryOf(st *store.Store) (partners []string, routes []string) {
	d := st.Directory()
	for _, p := range d.Partners() {
		partners = append(partners, fmt.Sprintf("%s:%v:%v:%s", p.ID, p.Lanes, p.Suspended, p.PayerType))
	}
	for _, r := range d.Routes() {
		routes = append(routes, r.ID)
	}
	return partners, routes
}

// A new cluster's directory is seeded from the config once (partners,
// agents, routes, each recorded as system:seed). Ops changes after that
// stand: a restarted seeder proposes nothing, and the config's now
// different partners and routes earn one warning, not a write.
func TestSeedDirectoryOnceNotOverOpsChanges(t *testing.T) {
	n := newTestNode(t, nil)
	partners, routes := directoryOf(n.st)
	want := []string{"bank-b:[demo east]:false:bank_customer", "demo-acquirer:[demo east api]:false:bank_customer", "demo-agents:[demo]:false:otc_agent"}
	if fmt.Sprint(partners) != fmt.Sprint(want) || fmt.Sprint(routes) != "[default elec grid mfs water]" {
		t.Fatalf("seeded directory: %v %v", partners, routes)
	}
	if a, err := n.st.Agent("demo-agents:AGENT001"); err != nil || a.CashLimit != 100000 || a.OfflineLimit != 20000 || a.Currency != "USD" {
		t.Fatalf("seeded agent: %+v %v", a, err)
	}
	recs, err := n.st.Audit(store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	seeded := map[string]string{}
	for _, r := range recs {
		seeded[r.Action] = r.Actor
	}
	for _, action := range []string{"account.create", "partner.put", "agent.put", "routes.replace"} {
		if seeded[action] != payment.SeedActor {
			t.Fatalf("audit %s by %q, want %s (%v)", action, seeded[action], payment.SeedActor, seeded)
		}
	}

	// Ops: suspend a partner, drop a route, change an agent's limit.
	n.setSuspended("demo-acquirer", true)
	n.admin(store.OpDeleteRoute, "ops|route|grid", store.Admin{ID: "grid"})
	n.admin(store.OpPutAgent, "ops|agent|1", store.Admin{Agent: &store.Agent{Partner: "demo-agents", Terminal: "AGENT001", Currency: "USD", CashLimit: 5000}})
	version := n.st.Directory().Version()
	n.restart()

	before := n.gate.proposals.Load()
	s := n.core.StartSeeder(n.cfg.Seeds(), n.st, nil, n.logs.logger())
	defer s.Close()
	seedWaitFor(t, 10*time.Second, s.Done)
	if got := n.gate.proposals.Load() - before; got != 0 {
		t.Fatalf("seeder on a seeded cluster proposed %d commands", got)
	}
	partners, routes = directoryOf(n.st)
	if !slices.Contains(partners, "demo-acquirer:[demo east api]:true:bank_customer") || slices.Contains(routes, "grid") ||
		n.st.Directory().Version() != version {
		t.Fatalf("ops changes lost over a restart: %v %v", partners, routes)
	}
	if a, _ := n.st.Agent("demo-agents:AGENT001"); a.CashLimit != 5000 {
		t.Fatalf("agent limit seeded over ops' change: %+v", a)
	}
	if got := n.logs.count("switchctl routes"); got != 1 {
		t.Fatalf("%d drift warnings, want 1:\n%s", got, n.logs)
	}
	if !strings.Contains(n.logs.String(), `"partners_differ":["demo-acquirer"]`) || !strings.Contains(n.logs.String(), `"routes_differ":["grid"]`) {
		t.Fatalf("drift warning does not say what differs:\n%s", n.logs)
	}

	// A node that did not bootstrap only compares, and proposes nothing.
	other := &logBuffer{}
	c := n.core.StartDirectoryCheck(n.cfg.Seeds(), n.st, other.logger())
	defer c.Close()
	seedWaitFor(t, 10*time.Second, c.Done)
	if other.count("switchctl routes") != 1 || n.gate.proposals.Load() != before {
		t.Fatalf("directory check: %d proposals, log:\n%s", n.gate.proposals.Load()-before, other)
	}
}

// Config and directory the same: no warning.
func TestNoDriftNoWarning(t *testing.T) {
	n := newTestNode(t, nil)
	if p, r := payment.Drift(n.cfg.Seeds(), n.st.Directory()); len(p)+len(r) != 0 {
		t.Fatalf("drift right after seeding: %v %v", p, r)
	}
	c := n.core.StartDirectoryCheck(n.cfg.Seeds(), n.st, n.logs.logger())
	defer c.Close()
	seedWaitFor(t, 10*time.Second, c.Done)
	if n.logs.count("switchctl routes") != 0 {
		t.Fatalf("warned without drift:\n%s", n.logs)
	}
}

// A seed pass cut short after the first partner (a crash) is finished by
// the next seeder, though the directory is no longer empty; the partner
// already put is replayed, not put twice.
func TestSeedDirectoryFinishesAPassCutShort(t *testing.T) {
	n := openTestNode(t, nil)
	seeds := n.cfg.Seeds()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, a := range seeds.Accounts {
		if _, err := n.core.CreateAccount(ctx, a, nil); err != nil {
			t.Fatal(err)
		}
	}
	p := seeds.Partners[0]
	res, err := n.node.Propose(ctx, store.Command{Op: store.OpPutPartner, Key: "seed|partner|" + p.ID, Fingerprint: "seed",
		Time: testStart.UnixNano(), Admin: &store.Admin{Actor: payment.SeedActor, Reason: "seeded from config at bootstrap", Partner: &p}})
	if err != nil || res.Status != store.StatusOK {
		t.Fatalf("first partner: %v %v", res.Status, err)
	}
	s := n.core.StartSeeder(seeds, n.st, nil, nil)
	defer s.Close()
	seedWaitFor(t, 10*time.Second, s.Done)
	partners, routes := directoryOf(n.st)
	if len(partners) != len(seeds.Partners) || len(routes) != len(seeds.Routes) {
		t.Fatalf("directory after the finishing pass: %v %v", partners, routes)
	}
	recs, _ := n.st.Audit(store.AuditFilter{Object: "partner/" + p.ID})
	if len(recs) != 1 {
		t.Fatalf("partner %s put %d times", p.ID, len(recs))
	}
}
