package switching_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"go.uber.org/goleak"

	"github.com/switchd/switchd/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestGolden runs the protocol scripts in testdata/golden against a real
// node over TCP. Regenerate with: go test ./switch/ -run TestGolden -rewrite
// and review the diff.
//
// Commands:
//
//	send            each input line "MTI id=value …" is sent; the answer printed
//	frame           each input line is sent as raw payload text in one frame
//	raw             the input is hex of whole bytes on the wire (header included)
//	account id=X    balances of account X
//	transfers account=X   the account's transfers
//	sums            double-entry sums per currency (must be 0)
//	advance by=DUR  moves the clock (Go duration, or Nd for days)
//	expire          one housekeeping run (hold expiry)
//	restart         stop the node and open the same data again
//	suspend partner=X / resume partner=X   an ops change of the partner, through the store
//	agent id=X      the OTC agent's cash and offline limits and what it holds
//	settle-agent id=X amount=N   the agent hands N minor units in (ops, through the store)
func TestGolden(t *testing.T) {
	datadriven.Walk(t, "testdata/golden", func(t *testing.T, path string) {
		h := newHarness(t, nil)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			return h.run(t, d)
		})
	})
}

func (h *harness) run(t *testing.T, d *datadriven.TestData) string {
	var out strings.Builder
	switch d.Cmd {
	case "send":
		for _, line := range nonEmptyLines(d.Input) {
			resp, closed := h.send(line)
			if closed {
				out.WriteString("closed\n")
				continue
			}
			out.WriteString(format(resp) + "\n")
		}
	case "frame":
		for _, line := range nonEmptyLines(d.Input) {
			resp, closed := h.exchange([]byte(line))
			if closed {
				out.WriteString("closed\n")
				continue
			}
			out.WriteString(format(resp) + "\n")
		}
	case "raw":
		resp, closed := h.exchangeRaw(mustHex(t, d.Input))
		if closed {
			return "closed\n"
		}
		return format(resp) + "\n"
	case "account":
		var id string
		d.ScanArgs(t, "id", &id)
		return h.account(id) + "\n"
	case "transfers":
		var id string
		d.ScanArgs(t, "account", &id)
		ts, err := h.st.Transfers(store.TransferFilter{Account: id, Limit: 1000})
		if err != nil {
			return "error: " + err.Error() + "\n"
		}
		for _, x := range ts {
			fmt.Fprintf(&out, "%s %s %s %s→%s amount=%d held=%d captured=%d reversed=%d day=%s",
				x.ID, x.Op, x.Status, x.Debit, x.Credit, x.Amount, x.Held, x.Captured, x.Reversed, x.BusinessDay)
			if x.Original != "" {
				fmt.Fprintf(&out, " original=%s", x.Original)
			}
			out.WriteString("\n")
		}
	case "sums":
		return h.ledgerSums() + "\n"
	case "advance":
		var by string
		d.ScanArgs(t, "by", &by)
		dur, err := parseDuration(by)
		if err != nil {
			t.Fatal(err)
		}
		h.clk.Advance(dur)
		return fmt.Sprintf("now %s\n", h.clk.Now().Format(time.RFC3339))
	case "expire":
		n, err := h.hk.Once(context.Background())
		if err != nil {
			return "error: " + err.Error() + "\n"
		}
		return fmt.Sprintf("released %d\n", n)
	case "restart":
		h.restart()
		return "restarted\n"
	case "suspend", "resume":
		var id string
		d.ScanArgs(t, "partner", &id)
		p, ok := h.st.Directory().Partner(id)
		if !ok {
			return "no partner " + id + "\n"
		}
		q := *p
		q.Suspended = d.Cmd == "suspend"
		return h.admin(store.OpPutPartner, d.Pos, store.Admin{Partner: &q}) + "\n"
	case "agent":
		var id string
		d.ScanArgs(t, "id", &id)
		a, err := h.st.Agent(id)
		if err != nil {
			return "error: " + err.Error() + "\n"
		}
		return fmt.Sprintf("%s limit=%d held=%d settled=%d offline_limit=%d offline_held=%d\n",
			a.ID, a.CashLimit, a.CashHeld, a.Settled, a.OfflineLimit, a.OfflineHeld)
	case "settle-agent":
		var id string
		var amount int64
		d.ScanArgs(t, "id", &id)
		d.ScanArgs(t, "amount", &amount)
		return h.admin(store.OpSettleAgent, d.Pos, store.Admin{Settlement: &store.AgentSettlement{
			Agent: id, Amount: amount, Currency: "USD", Reference: "golden"}}) + "\n"
	default:
		t.Fatalf("unknown command %q", d.Cmd)
	}
	return out.String()
}

// admin proposes an ops change (keyed by the script position, so each
// is its own) and says what the FSM made of it.
func (h *harness) admin(op store.Op, pos string, a store.Admin) string {
	a.Actor, a.Reason = "ops:golden", "golden script"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := h.node.Propose(ctx, store.Command{Op: op, Key: "golden|" + pos, Time: h.clk.Now().UnixNano(), Admin: &a})
	if err != nil {
		return "error: " + err.Error()
	}
	if err := res.Status.Err(); err != nil {
		return "refused: " + err.Error()
	}
	return op.String() + " ok"
}

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		return time.Duration(n) * 24 * time.Hour, err
	}
	return time.ParseDuration(s)
}
