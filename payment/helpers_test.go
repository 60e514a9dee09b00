package payment_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/config"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
	switching "github.com/switchd/switchd/switch"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testStart is the tests' clock: fixed, so business days are stable.
var testStart = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// Cards of the tests' config (valid Luhn).
const (
	panRich  = "4111111111111111" // card-4111, the demo's 1000.00
	panAgent = "4000056655665556" // card-cust, 5000.00: pays at the agent's counter
)

// testNode is one real node (pebble, one-voter raft on loopback) with a
// core over it, seeded with the demo config plus what mutate adds; the
// ledger goes through a gate that counts proposals.
type testNode struct {
	t    testing.TB
	cfg  config.File
	st   *store.Store
	node *cluster.Node
	gate *gateLedger
	core *payment.Core
	logs *logBuffer
}

// testConfig is the demo config on a free port and a temp dir, with a
// second lane ("east") that demo-acquirer may use too, a second partner
// (bank-b) on both lanes, a card for the agent's customers and a payer
// type route for mfs_user.
func testConfig(t testing.TB) config.File {
	cfg := config.Demo()
	cfg.DataDir = t.TempDir()
	cfg.Cluster.RaftAddr = "127.0.0.1:0"
	cfg.Cluster.HeartbeatTimeout, cfg.Cluster.ElectionTimeout, cfg.Cluster.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	east := switching.DefaultLane()
	east.Name, east.Listen, east.Partners = "east", "127.0.0.1:0", []string{"demo-acquirer", "bank-b"}
	cfg.Switch.Lanes[0].Partners = append(cfg.Switch.Lanes[0].Partners, "bank-b")
	cfg.Switch.Lanes = append(cfg.Switch.Lanes, east)
	cfg.Switch.Partners = append(cfg.Switch.Partners, switching.Partner{
		ID: "bank-b", AcquirerIDs: []string{"200001"}, SettlementAccount: "bank-b-settlement"})
	cfg.Switch.Routes = append([]switching.Route{{ID: "mfs", PayerType: store.PayerMFSUser, Partner: "*", BillType: "*",
		Destination: store.DestinationLedger, SettlementAccount: "mfs-settlement"}}, cfg.Switch.Routes...)
	cfg.Accounts = append(cfg.Accounts,
		payment.AccountSeed{ID: "bank-b-settlement", Kind: store.KindSettlement, Currency: "USD", Partner: "bank-b", Unlimited: true},
		payment.AccountSeed{ID: "mfs-settlement", Kind: store.KindSettlement, Currency: "USD", Unlimited: true},
		payment.AccountSeed{ID: "card-cust", Kind: store.KindCardholder, Currency: "USD", PAN: panAgent, Opening: "5000.00", FundedBy: "bank-funding-usd"},
	)
	return cfg
}

func newTestNode(t testing.TB, mutate func(*config.File)) *testNode {
	t.Helper()
	n := openTestNode(t, mutate)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.core.Seed(ctx, n.cfg.Seeds(), n.st, testStart); err != nil {
		t.Fatal(err)
	}
	return n
}

// openTestNode is newTestNode without the seeding.
func openTestNode(t testing.TB, mutate func(*config.File)) *testNode {
	t.Helper()
	cfg := testConfig(t)
	if mutate != nil {
		mutate(&cfg)
	}
	cfg.Finish()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n := &testNode{t: t, cfg: cfg, logs: &logBuffer{}}
	n.open()
	t.Cleanup(n.close)
	return n
}

func (n *testNode) open() {
	t := n.t
	st, err := store.Open(n.cfg.Store)
	if err != nil {
		t.Fatal(err)
	}
	node, err := cluster.New(n.cfg.Cluster, st, nil, nil)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	n.st, n.node = st, node
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := node.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	n.gate = &gateLedger{node: node}
	n.core, err = payment.NewCore(n.cfg.Switch.Config, n.gate, st, st.Directory, nil, func() time.Time { return testStart })
	if err != nil {
		t.Fatal(err)
	}
}

func (n *testNode) close() {
	if n.node != nil {
		if err := n.node.Close(); err != nil {
			n.t.Errorf("node close: %v", err)
		}
		if err := n.st.Close(); err != nil {
			n.t.Errorf("store close: %v", err)
		}
	}
	n.node, n.st = nil, nil
}

// restart closes the node and opens the same data directory again.
func (n *testNode) restart() {
	n.close()
	n.open()
}

// admin proposes an admin change as ops would, and fails the test unless
// the FSM takes it.
func (n *testNode) admin(op store.Op, key string, a store.Admin) {
	n.t.Helper()
	a.Actor, a.Reason = "ops:test", "test change"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := n.node.Propose(ctx, store.Command{Op: op, Key: key, Time: testStart.UnixNano(), Admin: &a})
	if err != nil || res.Status != store.StatusOK {
		n.t.Fatalf("%v %s: %v %v %s", op, key, res.Status.Err(), err, res.Detail)
	}
}

// setSuspended suspends or resumes partner id.
func (n *testNode) setSuspended(id string, suspended bool) {
	n.t.Helper()
	p, ok := n.st.Directory().Partner(id)
	if !ok {
		n.t.Fatalf("no partner %s", id)
	}
	q := *p
	q.Suspended = suspended
	n.admin(store.OpPutPartner, fmt.Sprintf("test|partner|%s|%v", id, suspended), store.Admin{Partner: &q})
}

func (n *testNode) account(id string) store.Account {
	n.t.Helper()
	a, err := n.st.Account(id)
	if err != nil {
		n.t.Fatalf("account %s: %v", id, err)
	}
	return a
}

// posted is account id's posted balance.
func (n *testNode) posted(id string) int64 {
	n.t.Helper()
	a := n.account(id)
	return a.Posted()
}

// transfers counts the transfers of account id.
func (n *testNode) transfers(id string) int {
	n.t.Helper()
	ts, err := n.st.Transfers(store.TransferFilter{Account: id, Limit: 1000})
	if err != nil {
		n.t.Fatal(err)
	}
	return len(ts)
}

// submit submits in with a fresh request timeout.
func (n *testNode) submit(in payment.Intent) (payment.Outcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return n.core.Submit(ctx, in)
}

// intent is a request of kind from acquirer on lane, keyed by stan.
func intent(t testing.TB, kind payment.Kind, lane, acquirer, pan string, amount int64, stan int) payment.Intent {
	key := fmt.Sprintf("%s|%06d", acquirer, stan)
	return payment.Intent{
		Kind: kind, Origin: payment.Origin{Lane: lane}, Acquirer: acquirer, PAN: mustPAN(t, pan), Terminal: "TERM0001",
		Amount: amount, Currency: "USD", Ref: store.Ref{STAN: fmt.Sprintf("%06d", stan)},
		IdempotencyKey: key, OriginalRef: key,
		Fingerprint: []string{kind.String(), fmt.Sprint(amount), payment.FingerprintPAN},
	}
}

// logBuffer is a concurrency-safe log sink.
type logBuffer struct {
	mu  sync.Mutex // protects buf
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewJSONHandler(b, nil)) }

// count is how many log lines contain s.
func (b *logBuffer) count(s string) int {
	n := 0
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}
