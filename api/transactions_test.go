package api_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchd/switchd/api"
	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/store"
)

// propose applies cmds through raft, as another front door would.
func (n *node) propose(t *testing.T, cmds ...store.Command) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range cmds {
		if res, err := n.cn.Propose(ctx, c); err != nil || res.Status != store.StatusOK {
			t.Fatal(err, res)
		}
	}
}

// foreignPost is a transfer of another partner (demo-agents), from
// account debit.
func foreignPost(key, debit string) store.Command {
	return store.Command{Op: store.OpPost, Key: key, Fingerprint: "f-" + key, Time: time.Now().UnixNano(), Partner: "demo-agents",
		Debit: debit, Credit: "demo-agents-settlement", Amount: 1, Currency: "USD"}
}

func (n *node) list(t *testing.T, tok, query string) (api.TransactionPage, answer) {
	t.Helper()
	a := n.call(t, tok, "GET", "/v1/transactions?"+query, "", "")
	var p api.TransactionPage
	if a.code == 200 {
		if err := json.Unmarshal([]byte(a.body), &p); err != nil {
			t.Fatalf("%s: %v %s", query, err, a.body)
		}
	}
	return p, a
}

func ids(xs []api.Transaction) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = x.ID
	}
	return out
}

// The listing shows the caller's transfers only, filtered by day range,
// account, status and type, in pages joined by next cursors; the CSV
// export has every matching one.
func TestTransactions(t *testing.T) {
	n := startNode(t)
	tok := n.token(t, "demo-acquirer")
	day1, err := n.st.OpenDay()
	if err != nil {
		t.Fatal(err)
	}
	d, _ := time.Parse(time.DateOnly, day1)
	day2 := d.AddDate(0, 0, 1).Format(time.DateOnly)
	var payments []string
	payN := func(i int) {
		a := n.call(t, tok, "POST", "/v1/payments", fmt.Sprintf("k%d", i),
			fmt.Sprintf(`{"amount":"%d.00","currency":"USD","debtor_account":"card-4111","reference":"INV-%d"}`, i, i))
		if a.code != 201 {
			t.Fatalf("payment %d: %d %s", i, a.code, a.body)
		}
		var p api.Payment
		json.Unmarshal([]byte(a.body), &p)
		payments = append(payments, p.ID)
	}
	for i := 1; i <= 5; i++ {
		payN(i)
	}
	r := n.call(t, tok, "POST", "/v1/payments/"+payments[1]+"/refunds", "r1", `{"amount":"0.50"}`)
	if r.code != 201 {
		t.Fatalf("refund: %d %s", r.code, r.body)
	}
	var refund api.Refund
	json.Unmarshal([]byte(r.body), &refund)
	// Another partner's transfers, one of them from the same card.
	n.propose(t, foreignPost("f1", "bank-funding-usd"), foreignPost("f2", "card-4111"),
		store.Command{Op: store.OpCloseDay, Time: time.Now().UnixNano(), BusinessDay: day1, NextDay: day2})
	payN(6)
	payN(7)
	n.propose(t, foreignPost("f3", "card-4111"))

	mine := append(append(slices.Clone(payments[:5]), refund.ID), payments[5:]...)
	all, a := n.list(t, tok, "")
	if a.code != 200 || !slices.Equal(ids(all.Transactions), mine) || all.Next != "" {
		t.Fatalf("all: %d %v next %q, want %v\n%s", a.code, ids(all.Transactions), all.Next, mine, a.body)
	}
	if ct := a.hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	x := all.Transactions[5]
	if x.Type != "reverse" || x.Original != payments[1] || x.Amount != "0.50" || x.Currency != "USD" || x.DebtorAccount != "demo-acquirer-settlement" {
		t.Errorf("refund row: %+v", x)
	}
	if x := all.Transactions[0]; x.Type != "post" || x.Status != "posted" || x.Amount != "1.00" || x.Reference != "INV-1" ||
		x.DebtorAccount != "card-4111" || x.BusinessDay != day1 || !strings.HasSuffix(x.CreatedAt, "Z") {
		t.Errorf("payment row: %+v", x)
	}
	if x := all.Transactions[1]; x.Reversed != "0.50" {
		t.Errorf("refunded payment: %+v", x)
	}

	// Pages of 3, joined by next.
	var paged []string
	var sizes []int
	for after, i := "", 0; i < 10; i++ {
		q := "limit=3"
		if after != "" {
			q += "&after=" + after
		}
		p, a := n.list(t, tok, q)
		if a.code != 200 {
			t.Fatalf("page: %d %s", a.code, a.body)
		}
		paged = append(paged, ids(p.Transactions)...)
		sizes = append(sizes, len(p.Transactions))
		if after = p.Next; after == "" {
			break
		}
	}
	if !slices.Equal(paged, mine) || fmt.Sprint(sizes) != "[3 3 2]" {
		t.Errorf("pages %v of %v, want %v", sizes, paged, mine)
	}
	// Exactly a page: no next (the store was asked for one more).
	if p, _ := n.list(t, tok, "limit=8"); len(p.Transactions) != 8 || p.Next != "" {
		t.Errorf("limit 8: %d next %q", len(p.Transactions), p.Next)
	}

	for _, c := range []struct {
		q    string
		want []string
	}{
		{"type=reverse", []string{refund.ID}},
		{"type=post", payments},
		{"type=authorize", nil},
		{"from=" + day1 + "&to=" + day1, mine[:6]},
		{"from=" + day2 + "&to=" + day2, payments[5:]},
		{"from=" + day2, payments[5:]},
		{"to=" + day1, mine[:6]},
		{"from=2001-01-01&to=2001-12-31", nil},
		{"account=card-4111", mine}, // the refund credits the card
		{"account=card-4111&from=" + day2, payments[5:]},
		{"account=demo-acquirer-settlement&type=reverse", []string{refund.ID}},
		{"account=biller-power-co", nil},
		{"account=demo-agents-settlement", nil},
		{"status=posted", mine},
		{"status=pending", nil},
		{"after=" + payments[4] + "&limit=2", mine[5:7]},
	} {
		p, a := n.list(t, tok, c.q)
		if a.code != 200 || !slices.Equal(ids(p.Transactions), c.want) {
			t.Errorf("%s: %d %v, want %v", c.q, a.code, ids(p.Transactions), c.want)
		}
	}

	// CSV: the header, then every matching row (no pages; limit ignored).
	for _, c := range []struct {
		q    string
		want []string
	}{{"", mine}, {"limit=2", mine}, {"type=reverse", []string{refund.ID}}, {"account=card-4111&from=" + day2, payments[5:]}, {"status=pending", nil}} {
		a := n.call(t, tok, "GET", "/v1/transactions?"+c.q, "", "", "Accept", "text/csv")
		if a.code != 200 || a.hdr.Get("Content-Type") != "text/csv; charset=utf-8" {
			t.Fatalf("csv %s: %d %q %s", c.q, a.code, a.hdr.Get("Content-Type"), a.body)
		}
		rows, err := csv.NewReader(strings.NewReader(a.body)).ReadAll()
		if err != nil || len(rows) == 0 {
			t.Fatalf("csv %s: %v %q", c.q, err, a.body)
		}
		if strings.Join(rows[0], ",") != "id,type,status,amount,reversed,currency,debtor_account,creditor_account,original,reference,business_day,created_at" {
			t.Errorf("csv header %v", rows[0])
		}
		var got []string
		for _, row := range rows[1:] {
			got = append(got, row[0])
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("csv %s: %v, want %v", c.q, got, c.want)
		}
	}
	a = n.call(t, tok, "GET", "/v1/transactions", "", "", "Accept", "text/csv")
	rows, _ := csv.NewReader(strings.NewReader(a.body)).ReadAll()
	if got := strings.Join(rows[2], ","); !strings.HasPrefix(got, payments[1]+",post,posted,2.00,0.50,USD,card-4111,demo-acquirer-settlement,,INV-2,"+day1+",") {
		t.Errorf("csv row %s", got)
	}
	if at, err := time.Parse(time.RFC3339, rows[2][11]); err != nil || at.Location() != time.UTC || time.Since(at) > time.Minute {
		t.Errorf("created_at %q: %v", rows[2][11], err)
	}
	if row := strings.Join(rows[6], ","); !strings.Contains(row, ",reverse,posted,0.50,") || !strings.Contains(row, ","+payments[1]+",") {
		t.Errorf("csv refund row %s", row)
	}
	// JSON when the client prefers it.
	if a := n.call(t, tok, "GET", "/v1/transactions?limit=1", "", "", "Accept", "application/json, text/csv"); a.code != 200 || !strings.HasPrefix(a.body, `{"transactions":[`) {
		t.Errorf("json preferred: %d %s", a.code, a.body)
	}
}

// Every refused listing gets its exact status and problem type, a
// validation problem names the parameter, and nothing moves.
func TestTransactionsBadRequests(t *testing.T) {
	n := startNode(t)
	tok := n.token(t, "demo-acquirer")
	if a := n.call(t, tok, "POST", "/v1/payments", "k1", pay); a.code != 201 {
		t.Fatal(a.body)
	}
	before := [2]int64{balance(t, n.st, "card-4111"), balance(t, n.st, "demo-acquirer-settlement")}
	cases := []struct {
		name, tok, query string
		code             int
		typ, field       string
	}{
		{"from not a day", tok, "from=2026-13-01", 400, "validation", "from"},
		{"from without dashes", tok, "from=20260301", 400, "validation", "from"},
		{"to not a day", tok, "to=2026-02-30", 400, "validation", "to"},
		{"to before from", tok, "from=2026-03-02&to=2026-03-01", 400, "validation", "to"},
		{"limit zero", tok, "limit=0", 400, "validation", "limit"},
		{"limit over the maximum", tok, "limit=1001", 400, "validation", "limit"},
		{"limit not a number", tok, "limit=ten", 400, "validation", "limit"},
		{"unknown status", tok, "status=done", 400, "validation", "status"},
		{"unknown type", tok, "type=refund", 400, "validation", "type"},
		{"cursor not an id", tok, "after=INV-1", 400, "validation", "after"},
		{"account too long", tok, "account=" + strings.Repeat("a", 65), 400, "validation", "account"},
		{"no token", "", "", 401, "unauthenticated", ""},
		{"garbage token", "x.y.z", "", 401, "invalid-token", ""},
		{"write scope only", n.token(t, "demo-acquirer", oauth.ScopePaymentsWrite), "", 403, "insufficient-scope", ""},
		{"client that is no partner", n.token(t, "stranger"), "", 403, "unknown-partner", ""},
	}
	for _, c := range cases {
		for _, accept := range []string{"application/json", "text/csv"} {
			a := n.call(t, c.tok, "GET", "/v1/transactions?"+c.query, "", "", "Accept", accept)
			var p struct{ Field string }
			json.Unmarshal([]byte(a.body), &p)
			if a.code != c.code || a.problem() != c.typ || p.Field != c.field {
				t.Errorf("%s (%s): %d %s, want %d %s field %q", c.name, accept, a.code, a.body, c.code, c.typ, c.field)
				continue
			}
			if ct := a.hdr.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("%s (%s): Content-Type %q", c.name, accept, ct)
			}
			if strings.Contains(a.body, url.QueryEscape(c.query)) && c.query != "" || strings.Contains(a.body, "2026-13-01") {
				t.Errorf("%s: the problem echoes the request: %s", c.name, a.body)
			}
		}
	}
	if after := [2]int64{balance(t, n.st, "card-4111"), balance(t, n.st, "demo-acquirer-settlement")}; after != before {
		t.Fatalf("a refused listing moved money: %v → %v", before, after)
	}
}

// The document names the listing with both its media types.
func TestTransactionsInOpenAPI(t *testing.T) {
	n := startNode(t)
	a := n.call(t, "", "GET", "/v1/openapi.json", "", "")
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]struct {
				Content map[string]json.RawMessage `json:"content"`
			} `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal([]byte(a.body), &doc); err != nil {
		t.Fatal(err)
	}
	ok := doc.Paths["/v1/transactions"]["get"].Responses["200"].Content
	if ok["text/csv"] == nil || !strings.Contains(string(ok["application/json"]), "TransactionPage") {
		t.Fatalf("200 content: %v", ok)
	}
}
