package switching_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/config"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
	switching "github.com/switchd/switchd/switch"
)

// testStart is the harness clock's start: fixed so golden output is stable.
var testStart = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

type clock struct {
	mu  sync.Mutex // protects now
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// harness is one real node: pebble store, one-voter raft on loopback, the
// payment core, the ISO 8583 front door and a TCP lane, with the demo
// config's accounts, partners, agents and routes.
type harness struct {
	t     testing.TB
	log   *slog.Logger
	dir   string
	cfg   config.File
	clk   *clock
	st    *store.Store
	node  *cluster.Node
	core  *payment.Core
	pipe  *switching.Pipeline
	lane  *switching.Lane
	hk    *switching.Housekeeper
	codec *codec.Codec
	fr    codec.Framer
	conn  net.Conn
	br    *bufio.Reader
}

func newHarness(t testing.TB, mutate func(*config.File)) *harness {
	return newHarnessLog(t, mutate, nil)
}

// newHarnessLog is newHarness with every component logging to logger.
func newHarnessLog(t testing.TB, mutate func(*config.File), logger *slog.Logger) *harness {
	h := &harness{t: t, dir: t.TempDir(), clk: &clock{now: testStart}, log: logger}
	h.cfg = config.Demo()
	h.cfg.DataDir = h.dir
	h.cfg.Cluster.RaftAddr = "127.0.0.1:0"
	h.cfg.Cluster.HeartbeatTimeout = 50 * time.Millisecond
	h.cfg.Cluster.ElectionTimeout = 50 * time.Millisecond
	h.cfg.Cluster.LeaderLeaseTimeout = 50 * time.Millisecond
	h.cfg.Switch.Lanes[0].Listen = "127.0.0.1:0"
	h.cfg.Switch.HousekeepingInterval = time.Hour // tests expire by hand
	if mutate != nil {
		mutate(&h.cfg)
	}
	h.cfg.Finish()
	if err := h.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	h.start()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) start() {
	t := h.t
	scfg := h.cfg.Store
	scfg.Logger = h.log
	st, err := store.Open(scfg)
	if err != nil {
		t.Fatal(err)
	}
	h.st = st
	node, err := cluster.New(h.cfg.Cluster, st, h.log, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.node = node
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := node.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	h.core, err = payment.NewCore(h.cfg.Switch.Config, node, st, st.Directory, h.log, h.clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	h.pipe = switching.NewPipeline(h.core, h.log)
	if err := h.core.Seed(ctx, h.cfg.Seeds(), st, h.clk.Now()); err != nil {
		t.Fatal(err)
	}
	h.hk = switching.NewHousekeeper(h.cfg.Switch, node, h.log, h.clk.Now)
	h.lane, err = switching.NewLane(h.cfg.Switch.Lanes[0], h.pipe, h.cfg.Switch.RequestTimeout, h.log, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.lane.Start(); err != nil {
		t.Fatal(err)
	}
	h.codec, err = codec.Load(h.cfg.Switch.Lanes[0].Dialect)
	if err != nil {
		t.Fatal(err)
	}
	lc := h.cfg.Switch.Lanes[0]
	h.fr = codec.Framer{Header: lc.Header, FrameBytesMax: lc.FrameBytesMax}
	h.conn = nil
}

func (h *harness) stop() {
	if h.conn != nil {
		h.conn.Close()
		h.conn = nil
	}
	if h.lane != nil {
		h.lane.Close()
	}
	if h.hk != nil {
		h.hk.Close()
	}
	if h.node != nil {
		if err := h.node.Close(); err != nil {
			h.t.Errorf("node close: %v", err)
		}
	}
	if h.st != nil {
		if err := h.st.Close(); err != nil {
			h.t.Errorf("store close: %v", err)
		}
	}
	h.lane, h.hk, h.node, h.st = nil, nil, nil, nil
}

// restart stops everything and opens the same data directory again: what
// the ledger holds afterwards is what was durable.
func (h *harness) restart() {
	h.stop()
	h.start()
}

func (h *harness) dial() {
	if h.conn != nil {
		return
	}
	c, err := net.DialTimeout("tcp", h.lane.Addr().String(), 5*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	h.conn = c
	h.br = bufio.NewReader(c)
}

// exchange writes one framed payload and reads one answer; closed reports
// that the switch closed the connection instead of answering.
func (h *harness) exchange(payload []byte) (resp *codec.Message, closed bool) {
	h.dial()
	frame, err := h.fr.AppendFrame(nil, payload)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.exchangeRaw(frame)
}

func (h *harness) exchangeRaw(frame []byte) (*codec.Message, bool) {
	h.dial()
	h.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := h.conn.Write(frame); err != nil {
		h.t.Fatal(err)
	}
	b, err := h.fr.ReadFrame(h.br, nil)
	if err != nil {
		var ne net.Error
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.As(err, &ne) && !ne.Timeout() || isReset(err) {
			h.conn.Close()
			h.conn = nil
			return nil, true
		}
		h.t.Fatalf("reading answer: %v", err)
	}
	m := new(codec.Message)
	if err := h.codec.Unpack(b, m); err != nil {
		h.t.Fatalf("answer does not unpack: %v", err)
	}
	return m, false
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

// send packs a message written as "MTI id=value id=value …".
func (h *harness) send(line string) (*codec.Message, bool) {
	m, err := parseMessage(line)
	if err != nil {
		h.t.Fatal(err)
	}
	payload, err := h.codec.Pack(nil, m)
	if err != nil {
		h.t.Fatalf("pack %q: %v", line, err)
	}
	return h.exchange(payload)
}

func parseMessage(line string) (*codec.Message, error) {
	fs := strings.Fields(line)
	if len(fs) == 0 {
		return nil, errors.New("empty message line")
	}
	m := new(codec.Message)
	m.MTI = fs[0]
	for _, f := range fs[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("field %q: want id=value", f)
		}
		id, err := strconv.Atoi(k)
		if err != nil {
			return nil, fmt.Errorf("field %q: %v", f, err)
		}
		// "_" stands for a space inside a value (fields like 43 have
		// them), "\_" for an underscore (payer types have them).
		v = strings.ReplaceAll(v, `\_`, "\x00")
		v = strings.ReplaceAll(v, "_", " ")
		m.Set(id, strings.ReplaceAll(v, "\x00", "_"))
	}
	return m, nil
}

// format prints a message as golden output: MTI and fields in order, the
// PAN masked.
func format(m *codec.Message) string {
	var b strings.Builder
	b.WriteString(m.MTI)
	ids := m.IDs()
	sort.Ints(ids)
	for _, id := range ids {
		v := m.Get(id)
		if id == 2 && len(v) > 10 {
			// Mask even a PAN that fails Luhn: golden files hold no card numbers.
			v = v[:6] + strings.Repeat("*", len(v)-10) + v[len(v)-4:]
		}
		fmt.Fprintf(&b, " %d=%s", id, strings.ReplaceAll(v, " ", "_"))
	}
	return b.String()
}

func (h *harness) account(id string) string {
	a, err := h.st.Account(id)
	if err != nil {
		return "error: " + err.Error()
	}
	return fmt.Sprintf("%s posted=%d pending=%d available=%d", id, a.Posted(), a.DebitsPending, a.Available())
}

// ledgerSums checks double entry over every account: the posted balances
// of one currency sum to zero, and so do pending debits against credits.
func (h *harness) ledgerSums() string {
	accts, err := h.st.Accounts("", 1000)
	if err != nil {
		return "error: " + err.Error()
	}
	posted := map[string]int64{}
	pending := map[string]int64{}
	for _, a := range accts {
		posted[a.Currency] += a.Posted()
		pending[a.Currency] += a.DebitsPending - a.CreditsPending
	}
	var ccys []string
	for c := range posted {
		ccys = append(ccys, c)
	}
	sort.Strings(ccys)
	var b strings.Builder
	for _, c := range ccys {
		fmt.Fprintf(&b, "%s posted=%d pending=%d ", c, posted[c], pending[c])
	}
	return strings.TrimSpace(b.String())
}

func mustHex(t testing.TB, s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
