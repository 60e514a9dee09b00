package api_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchd/switchd/api"
	"github.com/switchd/switchd/config"
	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/store"
)

// funds is an account's (posted, available) in minor units.
type funds [2]int64

func fundsOf(t *testing.T, st *store.Store, id string) funds {
	t.Helper()
	a, err := st.Account(id)
	if err != nil {
		t.Fatal(err)
	}
	return funds{a.Posted(), a.Available()}
}

func (n *node) newBlock(t *testing.T, tok, account, key, body string) api.Block {
	t.Helper()
	a := n.call(t, tok, "POST", "/v1/accounts/"+account+"/blocks", key, body)
	if a.code != 201 {
		t.Fatalf("block: %d %s", a.code, a.body)
	}
	var b api.Block
	if err := json.Unmarshal([]byte(a.body), &b); err != nil {
		t.Fatal(err)
	}
	return b
}

// A block holds money out of the available balance and leaves the posted
// one; captures post it (available stays where the block put it);
// a release gives the rest back.
func TestBlocksFlow(t *testing.T) {
	n := startNode(t)
	tok := n.token(t, "demo-acquirer")
	const card, settle = "card-4111", "demo-acquirer-settlement"
	settle0 := fundsOf(t, n.st, settle)
	if got := fundsOf(t, n.st, card); got != (funds{100000, 100000}) {
		t.Fatalf("card before: %v", got)
	}
	const blk = `{"amount":"300.00","currency":"USD","reference":"BLK-1"}`
	start := time.Now()
	first := n.call(t, tok, "POST", "/v1/accounts/card-4111/blocks", "blk1", blk)
	if first.code != 201 || first.hdr.Get("Idempotent-Replayed") != "" {
		t.Fatalf("block: %d %s", first.code, first.body)
	}
	var b api.Block
	json.Unmarshal([]byte(first.body), &b)
	if b.Account != card || b.Amount != "300.00" || b.Currency != "USD" || b.Status != "active" || b.Held != "300.00" ||
		first.hdr.Get("Location") != "/v1/accounts/card-4111/blocks/"+b.ID {
		t.Fatalf("block: %s (Location %q)", first.body, first.hdr.Get("Location"))
	}
	exp, err := time.Parse(time.RFC3339Nano, b.ExpiresAt)
	if hx := config.Demo().Switch.HoldExpiry; err != nil || exp.Before(start.Add(hx-time.Minute)) || exp.After(time.Now().Add(hx)) {
		t.Fatalf("expires_at %q, want about now + %s: %v", b.ExpiresAt, hx, err)
	}
	if got := fundsOf(t, n.st, card); got != (funds{100000, 70000}) {
		t.Fatalf("card with a 300.00 block (posted, available): %v", got)
	}
	again := n.call(t, tok, "POST", "/v1/accounts/card-4111/blocks", "blk1", blk)
	if again.code != 201 || again.body != first.body || again.hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %q %s", again.code, again.hdr.Get("Idempotent-Replayed"), again.body)
	}
	if got := fundsOf(t, n.st, card); got != (funds{100000, 70000}) {
		t.Fatalf("card after the replay: %v", got)
	}
	if g := n.call(t, n.token(t, "demo-acquirer", oauth.ScopeAccountsRead), "GET", "/v1/accounts/card-4111/blocks/"+b.ID, "", ""); g.code != 200 || g.body != first.body {
		t.Fatalf("read: %d %s", g.code, g.body)
	}
	// The funds check sees the block: 700.00 is available, 700.01 not.
	for amount, want := range map[string]string{"700.00": "FUNDS_AVAILABLE", "700.01": "FUNDS_NOT_AVAILABLE"} {
		if f := n.call(t, tok, "POST", "/v1/accounts/card-4111/check-funds", "", `{"amount":"`+amount+`","currency":"USD"}`); !strings.Contains(f.body, want) {
			t.Errorf("check-funds %s with the block: %s", amount, f.body)
		}
	}

	capPath := "/v1/accounts/card-4111/blocks/" + b.ID + "/capture"
	c1 := n.call(t, tok, "POST", capPath, "cap1", `{"amount":"100.00"}`)
	if c1.code != 201 || !strings.Contains(c1.body, `"block_id":"`+b.ID+`"`) || !strings.Contains(c1.body, `"amount":"100.00"`) {
		t.Fatalf("capture: %d %s", c1.code, c1.body)
	}
	if got := fundsOf(t, n.st, card); got != (funds{90000, 70000}) {
		t.Fatalf("card after a 100.00 capture: %v (available must not move)", got)
	}
	if got := fundsOf(t, n.st, settle); got[0] != settle0[0]+10000 {
		t.Fatalf("settlement after the capture: %v, was %v", got, settle0)
	}
	if r := n.call(t, tok, "POST", capPath, "cap1", `{"amount":"100.00"}`); r.code != 201 || r.body != c1.body || r.hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("capture replay: %d %s", r.code, r.body)
	}
	if g := n.call(t, tok, "GET", "/v1/accounts/card-4111/blocks/"+b.ID, "", ""); !strings.Contains(g.body, `"held":"200.00"`) || !strings.Contains(g.body, `"captured":"100.00"`) || !strings.Contains(g.body, `"status":"active"`) {
		t.Fatalf("after one capture: %s", g.body)
	}
	if r := n.call(t, tok, "POST", capPath, "cap2", `{"amount":"200.01"}`); r.code != 422 || r.problem() != "exceeds-original" {
		t.Fatalf("capture over what is held: %d %s", r.code, r.body)
	}
	if r := n.call(t, tok, "POST", capPath, "cap3", `{"amount":"50.00","final":true}`); r.code != 201 {
		t.Fatalf("final capture: %d %s", r.code, r.body)
	}
	// The final capture released the other 150.00.
	if got := fundsOf(t, n.st, card); got != (funds{85000, 85000}) {
		t.Fatalf("card after the final capture: %v", got)
	}
	if g := n.call(t, tok, "GET", "/v1/accounts/card-4111/blocks/"+b.ID, "", ""); !strings.Contains(g.body, `"status":"captured"`) || !strings.Contains(g.body, `"held":"0.00"`) || !strings.Contains(g.body, `"captured":"150.00"`) {
		t.Fatalf("after the final capture: %s", g.body)
	}

	// A second block, released.
	b2 := n.newBlock(t, tok, card, "blk2", `{"amount":"100.00","currency":"USD","reference":"BLK-2"}`)
	if got := fundsOf(t, n.st, card); got != (funds{85000, 75000}) {
		t.Fatalf("card with the second block: %v", got)
	}
	// With a Content-Type and no body, as the README's curl sends it.
	rel := n.call(t, tok, "DELETE", "/v1/accounts/card-4111/blocks/"+b2.ID, "rel2", "", "Content-Type", "application/json")
	if rel.code != 200 || !strings.Contains(rel.body, `"status":"released"`) || !strings.Contains(rel.body, `"released":"100.00"`) || !strings.Contains(rel.body, `"held":"0.00"`) {
		t.Fatalf("release: %d %s", rel.code, rel.body)
	}
	if got := fundsOf(t, n.st, card); got != (funds{85000, 85000}) {
		t.Fatalf("card after the release: %v", got)
	}
	if r := n.call(t, tok, "DELETE", "/v1/accounts/card-4111/blocks/"+b2.ID, "rel2", ""); r.code != 200 || r.body != rel.body || r.hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("release replay: %d %s", r.code, r.body)
	}
	if got := fundsOf(t, n.st, settle); got[0] != settle0[0]+15000 {
		t.Fatalf("settlement at the end: %v, was %v", got, settle0)
	}
}

// Every refused block call gets its exact status and problem type, and
// none of them moves money or changes a block.
func TestBlockRefusals(t *testing.T) {
	n := startNode(t)
	tok := n.token(t, "demo-acquirer")
	active := n.newBlock(t, tok, "card-4111", "a1", `{"amount":"100.00","currency":"USD","reference":"BLK-A"}`)
	released := n.newBlock(t, tok, "card-4111", "r1", `{"amount":"50.00","currency":"USD","reference":"BLK-R"}`)
	if r := n.call(t, tok, "DELETE", "/v1/accounts/card-4111/blocks/"+released.ID, "r1-rel", ""); r.code != 200 {
		t.Fatalf("release: %d %s", r.code, r.body)
	}
	pay := n.call(t, tok, "POST", "/v1/payments", "p1", `{"amount":"1.00","currency":"USD","debtor_account":"card-4111","reference":"PAY-1"}`)
	if pay.code != 201 {
		t.Fatal(pay.body)
	}
	var p api.Payment
	json.Unmarshal([]byte(pay.body), &p)
	accounts := []string{"card-4111", "card-5500", "demo-acquirer-settlement"}
	snapshot := func() []funds {
		var out []funds
		for _, a := range accounts {
			out = append(out, fundsOf(t, n.st, a))
		}
		return out
	}
	before := snapshot()
	blockOf := func(id string) string {
		return n.call(t, tok, "GET", "/v1/accounts/card-4111/blocks/"+id, "", "").body
	}
	blocksBefore := [2]string{blockOf(active.ID), blockOf(released.ID)}

	const blocks = "/v1/accounts/card-4111/blocks"
	act, rel := blocks+"/"+active.ID, blocks+"/"+released.ID
	other := n.token(t, "demo-agents")
	cases := []struct {
		name, tok, method, path, key, body string
		code                               int
		typ                                string
	}{
		{"over-capture", tok, "POST", act + "/capture", "x1", `{"amount":"100.01"}`, 422, "exceeds-original"},
		{"capture after release", tok, "POST", rel + "/capture", "x2", `{"amount":"1.00"}`, 409, "original-final"},
		{"release twice", tok, "DELETE", rel, "x3", "", 409, "original-final"},
		{"another partner reads the block", other, "GET", act, "", "", 404, "not-found"},
		{"another partner releases the block", other, "DELETE", act, "x4", "", 404, "not-found"},
		{"another partner captures the block", other, "POST", act + "/capture", "x5", `{"amount":"1.00"}`, 404, "not-found"},
		{"block on an unknown account", tok, "POST", "/v1/accounts/nobody/blocks", "x6", `{"amount":"1.00","currency":"USD","reference":"BLK-X6"}`, 404, "unknown-account"},
		{"block on an account without a card", tok, "POST", "/v1/accounts/bank-funding-usd/blocks", "x7", `{"amount":"1.00","currency":"USD","reference":"BLK-X7"}`, 404, "unknown-account"},
		{"the block under an unknown account", tok, "GET", "/v1/accounts/nobody/blocks/" + active.ID, "", "", 404, "not-found"},
		{"the block under another account", tok, "DELETE", "/v1/accounts/card-5500/blocks/" + active.ID, "x8", "", 404, "not-found"},
		{"unknown block", tok, "GET", blocks + "/T99999999999999", "", "", 404, "not-found"},
		{"a payment is no block", tok, "DELETE", blocks + "/" + p.ID, "x9", "", 404, "not-found"},
		{"a block is no payment", tok, "GET", "/v1/payments/" + active.ID, "", "", 404, "not-found"},
		{"insufficient funds", tok, "POST", "/v1/accounts/card-5500/blocks", "x10", `{"amount":"0.01","currency":"USD","reference":"BLK-X10"}`, 422, "insufficient-funds"},
		{"more than available", tok, "POST", blocks, "x11", `{"amount":"899.01","currency":"USD","reference":"BLK-X11"}`, 422, "insufficient-funds"},
		{"float amount", tok, "POST", blocks, "x12", `{"amount":1.5,"currency":"USD","reference":"BLK-X12"}`, 400, "validation"},
		{"zero amount", tok, "POST", blocks, "x13", `{"amount":"0.00","currency":"USD","reference":"BLK-X13"}`, 400, "validation"},
		{"too many decimals", tok, "POST", blocks, "x14", `{"amount":"1.001","currency":"USD","reference":"BLK-X14"}`, 400, "validation"},
		{"capture, float", tok, "POST", act + "/capture", "x15", `{"amount":1.0}`, 400, "validation"},
		{"capture, zero", tok, "POST", act + "/capture", "x16", `{"amount":"0.00"}`, 400, "validation"},
		{"currency mismatch", tok, "POST", blocks, "x17", `{"amount":"1.00","currency":"EUR","reference":"BLK-X17"}`, 422, "currency-mismatch"},
		{"reference of another block", tok, "POST", blocks, "x18", `{"amount":"1.00","currency":"USD","reference":"BLK-A"}`, 409, "duplicate-reference"},
		{"key reused with another body", tok, "POST", blocks, "a1", `{"amount":"2.00","currency":"USD","reference":"BLK-A"}`, 409, "idempotency-conflict"},
		{"block without a key", tok, "POST", blocks, "", `{"amount":"1.00","currency":"USD","reference":"BLK-X19"}`, 400, "validation"},
		{"release without a key", tok, "DELETE", act, "", "", 400, "validation"},
		{"capture without a key", tok, "POST", act + "/capture", "", `{"amount":"1.00"}`, 400, "validation"},
		{"block with a read scope", n.token(t, "demo-acquirer", oauth.ScopeAccountsRead), "POST", blocks, "x20", `{"amount":"1.00","currency":"USD","reference":"BLK-X20"}`, 403, "insufficient-scope"},
		{"release with a read scope", n.token(t, "demo-acquirer", oauth.ScopeAccountsRead), "DELETE", act, "x21", "", 403, "insufficient-scope"},
		{"read without accounts:read", n.token(t, "demo-acquirer", oauth.ScopePaymentsWrite), "GET", act, "", "", 403, "insufficient-scope"},
		{"no token", "", "POST", act + "/capture", "x22", `{"amount":"1.00"}`, 401, "unauthenticated"},
		{"block from a partner off the API lane", other, "POST", "/v1/accounts/card-4111/blocks", "x23", `{"amount":"1.00","currency":"USD","reference":"BLK-X23"}`, 403, "unknown-partner"},
	}
	for _, c := range cases {
		a := n.call(t, c.tok, c.method, c.path, c.key, c.body)
		if a.code != c.code || a.problem() != c.typ {
			t.Errorf("%s: %d %s, want %d %s", c.name, a.code, a.body, c.code, c.typ)
			continue
		}
		if ct := a.hdr.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: Content-Type %q", c.name, ct)
		}
	}
	if after := snapshot(); !slices.Equal(after, before) {
		t.Fatalf("a refused call moved money (%v): %v → %v", accounts, before, after)
	}
	if after := [2]string{blockOf(active.ID), blockOf(released.ID)}; after != blocksBefore {
		t.Fatalf("a refused call changed a block:\n%v\n%v", blocksBefore, after)
	}
}

// The document names the block operations, each with its scope.
func TestBlocksInOpenAPI(t *testing.T) {
	n := startNode(t)
	a := n.call(t, "", "GET", "/v1/openapi.json", "", "")
	var doc struct {
		Paths map[string]map[string]struct {
			Security []map[string][]string `json:"security"`
		} `json:"paths"`
	}
	if err := json.Unmarshal([]byte(a.body), &doc); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, method, scope string }{
		{"/v1/accounts/{id}/blocks", "post", oauth.ScopePaymentsWrite},
		{"/v1/accounts/{id}/blocks/{block}", "get", oauth.ScopeAccountsRead},
		{"/v1/accounts/{id}/blocks/{block}", "delete", oauth.ScopePaymentsWrite},
		{"/v1/accounts/{id}/blocks/{block}/capture", "post", oauth.ScopePaymentsWrite},
	} {
		op, ok := doc.Paths[c.path][c.method]
		if !ok || len(op.Security) != 1 || !slices.Equal(op.Security[0]["oauth2"], []string{c.scope}) {
			t.Errorf("%s %s: %v %+v", c.method, c.path, ok, op)
		}
	}
}
