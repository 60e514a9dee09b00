package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchd/switchd/api"
	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/store"
)

// withSCA is n served by another partner API over the same core and
// ledger whose SCA rule is sca.
func (n *node) withSCA(t *testing.T, sca api.SCAConfig) *node {
	t.Helper()
	tlsCfg, _, err := api.DevTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	acfg := api.DefaultConfig()
	acfg.TLS, acfg.SCA = &tlsCfg, sca
	srv, err := api.New(acfg, n.core, ledger{n.st, n.cn}, n.minter, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(context.Background()) })
	m := *n
	m.url = n.listen(t, srv)
	return &m
}

func (n *node) authorization(t *testing.T, tok, key, body string) api.Authorization {
	t.Helper()
	a := n.call(t, tok, "POST", "/v1/authorizations", key, body)
	if a.code != 201 {
		t.Fatalf("authorization: %d %s", a.code, a.body)
	}
	var au api.Authorization
	if err := json.Unmarshal([]byte(a.body), &au); err != nil {
		t.Fatal(err)
	}
	return au
}

// An authorization without SCA reserves at once; captures in parts pay
// the settlement account, each its own id; a capture is reversed back to
// the card; a cancellation gives back what is left.
func TestAuthorizationsFlow(t *testing.T) {
	n := startNode(t)
	tok := n.token(t, "demo-acquirer")
	const card, settle = "card-4111", "demo-acquirer-settlement"
	settle0 := fundsOf(t, n.st, settle)
	// 30.00 is the default threshold: not above it, so no SCA.
	const body = `{"account":"card-4111","amount":"30.00","currency":"USD","reference":"AUTH-1"}`
	first := n.call(t, tok, "POST", "/v1/authorizations", "au1", body)
	var a api.Authorization
	json.Unmarshal([]byte(first.body), &a)
	if first.code != 201 || a.Status != "reserved" || a.Reserved != "30.00" || a.Links != nil || a.ExpiresAt == "" ||
		first.hdr.Get("Location") != "/v1/authorizations/"+a.ID {
		t.Fatalf("authorization: %d %s", first.code, first.body)
	}
	if got := fundsOf(t, n.st, card); got != (funds{100000, 97000}) {
		t.Fatalf("card with 30.00 reserved: %v", got)
	}
	if r := n.call(t, tok, "POST", "/v1/authorizations", "au1", body); r.code != 201 || r.body != first.body || r.hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %s", r.code, r.body)
	}
	caps := "/v1/authorizations/" + a.ID + "/captures"
	c1 := n.call(t, tok, "POST", caps, "cap1", `{"amount":"10.00"}`)
	c2 := n.call(t, tok, "POST", caps, "cap2", `{"amount":"5.00"}`)
	var k1, k2 api.AuthCapture
	json.Unmarshal([]byte(c1.body), &k1)
	json.Unmarshal([]byte(c2.body), &k2)
	if c1.code != 201 || c2.code != 201 || k1.ID == "" || k1.ID == k2.ID || k1.AuthorizationID != a.ID || k2.Amount != "5.00" {
		t.Fatalf("captures: %d %s / %d %s", c1.code, c1.body, c2.code, c2.body)
	}
	if r := n.call(t, tok, "POST", caps, "cap1", `{"amount":"10.00"}`); r.code != 201 || r.body != c1.body || r.hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("capture replay: %d %s", r.code, r.body)
	}
	if got := fundsOf(t, n.st, card); got != (funds{98500, 97000}) {
		t.Fatalf("card after 15.00 captured: %v (available must not move)", got)
	}
	if r := n.call(t, tok, "POST", caps, "cap3", `{"amount":"15.01"}`); r.code != 422 || r.problem() != "exceeds-original" {
		t.Fatalf("capture over what is reserved: %d %s", r.code, r.body)
	}
	rev := caps + "/" + k1.ID + "/reversal"
	r1 := n.call(t, tok, "POST", rev, "rev1", "", "Content-Type", "application/json") // as the README's curl sends it
	var rv api.AuthCapture
	json.Unmarshal([]byte(r1.body), &rv)
	if r1.code != 201 || rv.CaptureID != k1.ID || rv.Amount != "10.00" || rv.ID == k1.ID {
		t.Fatalf("reversal: %d %s", r1.code, r1.body)
	}
	if got := fundsOf(t, n.st, card); got != (funds{99500, 98000}) {
		t.Fatalf("card after the reversal: %v", got)
	}
	if r := n.call(t, tok, "POST", rev, "rev1", ""); r.code != 201 || r.body != r1.body || r.hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("reversal replay: %d %s", r.code, r.body)
	}
	g := n.call(t, tok, "GET", "/v1/authorizations/"+a.ID, "", "")
	if !strings.Contains(g.body, `"status":"reserved"`) || !strings.Contains(g.body, `"reserved":"15.00"`) || !strings.Contains(g.body, `"captured":"15.00"`) {
		t.Fatalf("after captures: %s", g.body)
	}
	cancel := n.call(t, tok, "DELETE", "/v1/authorizations/"+a.ID, "can1", "", "Content-Type", "application/json")
	if cancel.code != 200 || !strings.Contains(cancel.body, `"status":"cancelled"`) || !strings.Contains(cancel.body, `"cancelled":"15.00"`) || !strings.Contains(cancel.body, `"reserved":"0.00"`) {
		t.Fatalf("cancel: %d %s", cancel.code, cancel.body)
	}
	if got := fundsOf(t, n.st, card); got != (funds{99500, 99500}) {
		t.Fatalf("card after the cancellation: %v", got)
	}
	if r := n.call(t, tok, "DELETE", "/v1/authorizations/"+a.ID, "can1", ""); r.code != 200 || r.body != cancel.body || r.hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("cancel replay: %d %s", r.code, r.body)
	}
	if got := fundsOf(t, n.st, settle); got[0] != settle0[0]+500 {
		t.Fatalf("settlement at the end: %v, was %v (15.00 captured, 10.00 reversed)", got, settle0)
	}
}

// The SCA rule: above the threshold, a listed partner or a listed risk
// flag needs SCA; then nothing is reserved and the answer links the
// redirect step (sca_test.go follows it).
func TestAuthorizationSCARule(t *testing.T) {
	n := startNode(t)
	tok := n.token(t, "demo-acquirer")
	byAmount := n.withSCA(t, api.SCAConfig{AmountThresholdMinor: 10000, RiskFlags: []string{"high", "new_device"}})
	byPartner := n.withSCA(t, api.SCAConfig{AmountThresholdMinor: 10000, Partners: []string{"demo-acquirer"}})
	i := 0
	for _, c := range []struct {
		name   string
		n      *node
		amount string
		flag   string
		want   string
	}{
		{"at the threshold", byAmount, "100.00", "", "reserved"},
		{"above the threshold", byAmount, "100.01", "", "authentication_required"},
		{"a listed risk flag", byAmount, "1.00", "new_device", "authentication_required"},
		{"an unlisted risk flag", byAmount, "1.00", "low", "reserved"},
		{"a listed partner", byPartner, "1.00", "", "authentication_required"},
		{"the default rule, above 30.00", n, "30.01", "", "authentication_required"},
		{"the default rule, flagged high", n, "1.00", "high", "authentication_required"},
	} {
		i++
		ref := "SCA-" + string(rune('A'+i))
		before := fundsOf(t, n.st, "card-4111")
		body := `{"account":"card-4111","amount":"` + c.amount + `","currency":"USD","reference":"` + ref + `","risk_flag":"` + c.flag + `"}`
		r := c.n.call(t, tok, "POST", "/v1/authorizations", "sca-"+ref, body)
		var a api.Authorization
		json.Unmarshal([]byte(r.body), &a)
		if r.code != 201 || a.Status != c.want {
			t.Errorf("%s: %d %s, want %s", c.name, r.code, r.body, c.want)
			continue
		}
		after := fundsOf(t, n.st, "card-4111")
		if c.want == "reserved" {
			continue
		}
		if after != before || a.Links == nil || a.Links.Redirect != "/v1/authorizations/"+a.ID+"/redirect" || a.Reserved != "" {
			t.Errorf("%s: %s, funds %v → %v: SCA must reserve nothing and link the redirect", c.name, r.body, before, after)
		}
		// The same request again: the stored answer.
		if again := c.n.call(t, tok, "POST", "/v1/authorizations", "sca-"+ref, body); again.body != r.body || again.hdr.Get("Idempotent-Replayed") != "true" {
			t.Errorf("%s: retry %s, want %s", c.name, again.body, r.body)
		}
		red := c.n.call(t, tok, "POST", a.Links.Redirect, "red-"+ref, `{"return_url":"https://shop.example/back"}`)
		if red.code != 201 || !strings.Contains(red.body, `"redirect_url":"https://`) {
			t.Errorf("%s: redirect %d %s", c.name, red.code, red.body)
		}
	}
}

// A reservation lapses with its hold: capturing or cancelling it then is
// a 422 authentication-is-no-longer-valid, and nothing moves.
func TestAuthorizationExpires(t *testing.T) {
	n := startNode(t)
	tok := n.token(t, "demo-acquirer")
	a := n.authorization(t, tok, "e1", `{"account":"card-4111","amount":"20.00","currency":"USD","reference":"AUTH-E"}`)
	if r := n.call(t, tok, "POST", "/v1/authorizations/"+a.ID+"/captures", "e1-c", `{"amount":"5.00"}`); r.code != 201 {
		t.Fatalf("capture: %d %s", r.code, r.body)
	}
	// The housekeeper's command, at the end of time: every hold lapses.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := n.cn.Propose(ctx, store.Command{Op: store.OpExpire, Time: math.MaxInt64}); err != nil || res.Expired != 1 {
		t.Fatalf("expire: %v %+v", err, res)
	}
	before := fundsOf(t, n.st, "card-4111")
	if before != (funds{99500, 99500}) {
		t.Fatalf("card after the expiry: %v", before)
	}
	for _, c := range []struct{ method, path, key, body string }{
		{"POST", "/v1/authorizations/" + a.ID + "/captures", "e2", `{"amount":"1.00"}`},
		{"DELETE", "/v1/authorizations/" + a.ID, "e3", ""},
	} {
		if r := n.call(t, tok, c.method, c.path, c.key, c.body); r.code != 422 || r.problem() != "authentication-is-no-longer-valid" {
			t.Errorf("%s %s after expiry: %d %s", c.method, c.path, r.code, r.body)
		}
	}
	if g := n.call(t, tok, "GET", "/v1/authorizations/"+a.ID, "", ""); !strings.Contains(g.body, `"status":"expired"`) {
		t.Fatalf("expired: %s", g.body)
	}
	// The capture made before still replays.
	if r := n.call(t, tok, "POST", "/v1/authorizations/"+a.ID+"/captures", "e1-c", `{"amount":"5.00"}`); r.code != 201 || r.hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("capture replay after expiry: %d %s", r.code, r.body)
	}
	if after := fundsOf(t, n.st, "card-4111"); after != before {
		t.Fatalf("a refusal moved money: %v → %v", before, after)
	}
}

// Every refused authorization call gets its exact status and problem
// type, and none of them moves money or changes an authorization.
func TestAuthorizationRefusals(t *testing.T) {
	n := startNode(t)
	tok := n.token(t, "demo-acquirer")
	high := n.withSCA(t, api.SCAConfig{AmountThresholdMinor: 1_000_000_00})
	active := n.authorization(t, tok, "a1", `{"account":"card-4111","amount":"20.00","currency":"USD","reference":"AUTH-A"}`)
	done := n.authorization(t, tok, "d1", `{"account":"card-4111","amount":"10.00","currency":"USD","reference":"AUTH-D"}`)
	act, dn := "/v1/authorizations/"+active.ID, "/v1/authorizations/"+done.ID
	capt := n.call(t, tok, "POST", act+"/captures", "a1-c", `{"amount":"2.00"}`)
	var k api.AuthCapture
	json.Unmarshal([]byte(capt.body), &k)
	if capt.code != 201 || n.call(t, tok, "POST", act+"/captures/"+k.ID+"/reversal", "a1-r", "").code != 201 {
		t.Fatalf("capture and reversal: %s", capt.body)
	}
	if r := n.call(t, tok, "DELETE", dn, "d1-x", ""); r.code != 200 {
		t.Fatalf("cancel: %d %s", r.code, r.body)
	}
	blockCapt := n.call(t, tok, "POST", "/v1/accounts/card-4111/blocks/"+active.ID+"/capture", "a1-bc", `{"amount":"1.00"}`)
	var bc api.Capture
	json.Unmarshal([]byte(blockCapt.body), &bc)
	if blockCapt.code != 201 {
		t.Fatalf("block capture: %s", blockCapt.body)
	}
	pay := n.call(t, tok, "POST", "/v1/payments", "p1", `{"amount":"1.00","currency":"USD","debtor_account":"card-4111","reference":"PAY-1"}`)
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
	read := func() [2]string {
		return [2]string{n.call(t, tok, "GET", act, "", "").body, n.call(t, tok, "GET", dn, "", "").body}
	}
	authsBefore := read()
	other := n.token(t, "demo-agents")
	readOnly := n.token(t, "demo-acquirer", oauth.ScopePaymentsRead)
	const auths = "/v1/authorizations"
	authBody := func(account, amount, ref string) string {
		return `{"account":"` + account + `","amount":"` + amount + `","currency":"USD","reference":"` + ref + `"}`
	}
	cases := []struct {
		name                         string
		n                            *node
		tok, method, path, key, body string
		code                         int
		typ                          string
	}{
		{"credit check: nothing available", n, tok, "POST", auths, "x1", authBody("card-5500", "0.01", "X1"), 422, "credit-check-rejected"},
		{"credit check: more than available", high, tok, "POST", auths, "x2", authBody("card-4111", "1000.00", "X2"), 422, "credit-check-rejected"},
		{"credit check with SCA", n, tok, "POST", auths, "x3", authBody("card-4111", "5000.00", "X3"), 422, "credit-check-rejected"},
		{"unknown account", n, tok, "POST", auths, "x4", authBody("nobody", "1.00", "X4"), 404, "unknown-account"},
		{"unknown account with SCA", n, tok, "POST", auths, "x5", authBody("nobody", "100.00", "X5"), 404, "unknown-account"},
		{"an account without a card", n, tok, "POST", auths, "x6", authBody("bank-funding-usd", "1.00", "X6"), 404, "unknown-account"},
		{"float amount", n, tok, "POST", auths, "x7", `{"account":"card-4111","amount":1.5,"currency":"USD","reference":"X7"}`, 400, "validation"},
		{"zero amount", n, tok, "POST", auths, "x8", authBody("card-4111", "0.00", "X8"), 400, "validation"},
		{"bad risk flag", n, tok, "POST", auths, "x9", `{"account":"card-4111","amount":"1.00","currency":"USD","reference":"X9","risk_flag":"HIGH"}`, 400, "validation"},
		{"currency mismatch", n, tok, "POST", auths, "x10", `{"account":"card-4111","amount":"1.00","currency":"EUR","reference":"X10"}`, 422, "currency-mismatch"},
		{"reference of another authorization", n, tok, "POST", auths, "x11", authBody("card-4111", "1.00", "AUTH-A"), 409, "duplicate-reference"},
		{"key reused with another body", n, tok, "POST", auths, "a1", authBody("card-4111", "21.00", "AUTH-A"), 409, "idempotency-conflict"},
		{"without a key", n, tok, "POST", auths, "", authBody("card-4111", "1.00", "X12"), 400, "validation"},
		{"over-capture", n, tok, "POST", act + "/captures", "x13", `{"amount":"17.01"}`, 422, "exceeds-original"},
		{"capture, zero", n, tok, "POST", act + "/captures", "x14", `{"amount":"0.00"}`, 400, "validation"},
		{"capture without a key", n, tok, "POST", act + "/captures", "", `{"amount":"1.00"}`, 400, "validation"},
		{"capture after cancel", n, tok, "POST", dn + "/captures", "x15", `{"amount":"1.00"}`, 409, "original-final"},
		{"cancel twice", n, tok, "DELETE", dn, "x16", "", 409, "original-final"},
		{"cancel without a key", n, tok, "DELETE", act, "", "", 400, "validation"},
		{"reverse twice", n, tok, "POST", act + "/captures/" + k.ID + "/reversal", "x17", "", 409, "original-final"},
		{"reverse a block's capture", n, tok, "POST", act + "/captures/" + bc.ID + "/reversal", "x18", "", 404, "not-found"},
		{"reverse under another authorization", n, tok, "POST", dn + "/captures/" + k.ID + "/reversal", "x19", "", 404, "not-found"},
		{"reverse a payment", n, tok, "POST", act + "/captures/" + p.ID + "/reversal", "x20", "", 404, "not-found"},
		{"reverse without a key", n, tok, "POST", act + "/captures/" + k.ID + "/reversal", "", "", 400, "validation"},
		{"unknown authorization", n, tok, "GET", auths + "/T99999999999999", "", "", 404, "not-found"},
		{"a payment is no authorization", n, tok, "DELETE", auths + "/" + p.ID, "x21", "", 404, "not-found"},
		{"an unknown SCA id", n, tok, "POST", auths + "/sca-0123/captures", "x22", `{"amount":"1.00"}`, 404, "not-found"},
		{"another partner reads it", n, other, "GET", act, "", "", 404, "not-found"},
		{"another partner captures it", n, other, "POST", act + "/captures", "x23", `{"amount":"1.00"}`, 404, "not-found"},
		{"another partner cancels it", n, other, "DELETE", act, "x24", "", 404, "not-found"},
		{"another partner reverses its capture", n, other, "POST", act + "/captures/" + k.ID + "/reversal", "x25", "", 404, "not-found"},
		{"a partner off the API lane", n, other, "POST", auths, "x26", authBody("card-4111", "1.00", "X26"), 403, "unknown-partner"},
		{"a read scope", n, readOnly, "POST", auths, "x27", authBody("card-4111", "1.00", "X27"), 403, "insufficient-scope"},
		{"no token", n, "", "DELETE", act, "x28", "", 401, "unauthenticated"},
		{"redirect of one that needed no SCA", n, tok, "POST", act + "/redirect", "x31", `{"return_url":"https://shop.example/back"}`, 422, "invalid-authentication-state"},
		{"redirect without a key", n, tok, "POST", act + "/redirect", "", `{"return_url":"https://shop.example/back"}`, 400, "validation"},
		{"redirect without a return URL", n, tok, "POST", act + "/redirect", "", `{}`, 400, "validation"},
		{"credit application", n, tok, "POST", "/v1/credit-applications", "x29", `{"kyc":{}}`, 501, "not-implemented"},
		{"credit application without a token", n, "", "POST", "/v1/credit-applications", "x30", `{}`, 401, "unauthenticated"},
	}
	for _, c := range cases {
		a := c.n.call(t, c.tok, c.method, c.path, c.key, c.body)
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
	if after := read(); after != authsBefore {
		t.Fatalf("a refused call changed an authorization:\n%v\n%v", authsBefore, after)
	}
}

// The SCA rule's bounds: each refused with ErrConfig, the default valid.
func TestSCAConfigValidate(t *testing.T) {
	if err := api.DefaultConfig().Validate(); err != nil {
		t.Fatalf("default: %v", err)
	}
	many := func(n int, f func(int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	for name, sca := range map[string]api.SCAConfig{
		"negative threshold":   {AmountThresholdMinor: -1},
		"threshold too large":  {AmountThresholdMinor: 1_000_000_000_000_001},
		"empty partner":        {Partners: []string{""}},
		"too many partners":    {Partners: many(1025, func(i int) string { return "p" + strconv.Itoa(i) })},
		"empty risk flag":      {RiskFlags: []string{""}},
		"upper-case risk flag": {RiskFlags: []string{"High"}},
		"risk flag too long":   {RiskFlags: []string{strings.Repeat("a", 33)}},
		"too many risk flags":  {RiskFlags: many(65, func(i int) string { return "f" + strconv.Itoa(i) })},
	} {
		cfg := api.DefaultConfig()
		cfg.SCA = sca
		if err := cfg.Validate(); !errors.Is(err, api.ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
}

// The document names the authorization operations, each with its scope.
func TestAuthorizationsInOpenAPI(t *testing.T) {
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
		{"/v1/authorizations", "post", oauth.ScopePaymentsWrite},
		{"/v1/authorizations/{id}", "get", oauth.ScopePaymentsRead},
		{"/v1/authorizations/{id}", "delete", oauth.ScopePaymentsWrite},
		{"/v1/authorizations/{id}/captures", "post", oauth.ScopePaymentsWrite},
		{"/v1/authorizations/{id}/captures/{capture}/reversal", "post", oauth.ScopePaymentsWrite},
		{"/v1/authorizations/{id}/redirect", "post", oauth.ScopePaymentsWrite},
		{"/v1/credit-applications", "post", oauth.ScopePaymentsWrite},
	} {
		op, ok := doc.Paths[c.path][c.method]
		if !ok || len(op.Security) != 1 || !slices.Equal(op.Security[0]["oauth2"], []string{c.scope}) {
			t.Errorf("%s %s: %v %+v", c.method, c.path, ok, op)
		}
	}
}
