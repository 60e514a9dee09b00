package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchd/switchd/api"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
)

// clock is a test clock: real time plus a skew the test moves.
type clock struct{ skew atomic.Int64 }

func (c *clock) now() time.Time                        { return time.Now().Add(time.Duration(c.skew.Load())) }
func (c *clock) advance(d time.Duration)               { c.skew.Add(int64(d)) }
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// withClock is n served by a partner API over a core of its own whose
// clock is clk (the FSM's time comes from it), with cfg's changes.
func (n *node) withClock(t *testing.T, clk *clock, cfg func(*api.Config)) *node {
	t.Helper()
	core, err := payment.NewCore(n.cfg.Switch.Config, n.cn, n.st, n.st.Directory, nil, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, _, err := api.DevTLS(filepath.Join(t.TempDir(), "api"))
	if err != nil {
		t.Fatal(err)
	}
	acfg := api.DefaultConfig()
	acfg.TLS, acfg.PublicURL = &tlsCfg, "https://pay.bank.example"
	if cfg != nil {
		cfg(&acfg)
	}
	srv, err := api.New(acfg, core, ledger{n.st, n.cn}, n.minter, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(context.Background()) })
	m := *n
	m.core = core
	m.url = n.listen(t, srv)
	return &m
}

// browser sends what a browser would: no bearer token, a form, and it
// does not follow redirects (the test reads the 303).
func (n *node) browser(t *testing.T, method, path string, form url.Values) answer {
	t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req, err := http.NewRequest(method, n.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := (&http.Client{CheckRedirect: noRedirects}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		k, err := resp.Body.Read(buf)
		b.Write(buf[:k])
		if err != nil {
			break
		}
	}
	return answer{code: resp.StatusCode, body: b.String(), hdr: resp.Header}
}

const scaBody = `{"account":"card-4111","amount":"60.00","currency":"USD","reference":"SCA-FLOW"}`

// scaStart creates an authorization needing SCA (60.00 is above the
// default 30.00) and starts its redirect; it returns the authorization
// and the link's path and token.
func scaStart(t *testing.T, n *node, tok, ref string) (api.Authorization, string, string) {
	t.Helper()
	a := n.authorization(t, tok, "c-"+ref, strings.Replace(scaBody, "SCA-FLOW", ref, 1))
	if a.Status != "authentication_required" || !strings.HasPrefix(a.ID, "sca-") {
		t.Fatalf("create: %+v", a)
	}
	r := n.call(t, tok, "POST", "/v1/authorizations/"+a.ID+"/redirect", "r-"+ref, `{"return_url":"https://shop.example/back?order=7"}`)
	var red api.Redirect
	if err := json.Unmarshal([]byte(r.body), &red); err != nil || r.code != 201 {
		t.Fatalf("redirect: %d %s", r.code, r.body)
	}
	u, err := url.Parse(red.RedirectURL)
	if err != nil || u.Scheme != "https" || u.Host != "pay.bank.example" || u.Path != "/v1/sca/"+a.ID || red.ExpiresAt != a.ExpiresAt {
		t.Fatalf("redirect URL %q (expires %s)", red.RedirectURL, red.ExpiresAt)
	}
	token := u.Query().Get("token")
	if len(token) != 43 {
		t.Fatalf("token %q", token)
	}
	return a, u.Path, token
}

func getAuth(t *testing.T, n *node, tok, id string) api.Authorization {
	t.Helper()
	r := n.call(t, tok, "GET", "/v1/authorizations/"+id, "", "")
	var a api.Authorization
	if err := json.Unmarshal([]byte(r.body), &a); err != nil || r.code != 200 {
		t.Fatalf("get: %d %s", r.code, r.body)
	}
	return a
}

// create → redirect → the page → approve → reserved → capture, reverse,
// cancel: after authentication exactly like an authorization that
// needed no SCA.
func TestSCAApprove(t *testing.T) {
	base := startNode(t)
	n := base.withClock(t, &clock{}, nil)
	tok := n.token(t, "demo-acquirer")
	before := fundsOf(t, n.st, "card-4111")
	first := n.call(t, tok, "POST", "/v1/authorizations", "c1", scaBody)
	if first.code != 201 || !strings.Contains(first.body, `"status":"authentication_required"`) || !strings.Contains(first.body, `"expires_at"`) {
		t.Fatalf("create: %d %s", first.code, first.body)
	}
	if again := n.call(t, tok, "POST", "/v1/authorizations", "c1", scaBody); again.body != first.body || again.hdr.Get("Idempotent-Replayed") != "true" ||
		again.hdr.Get("Location") != first.hdr.Get("Location") {
		t.Fatalf("replay: %s\n%s", again.body, first.body)
	}
	if r := n.call(t, tok, "POST", "/v1/authorizations", "c1", strings.Replace(scaBody, "60.00", "61.00", 1)); r.code != 409 {
		t.Fatalf("the key with another body: %d %s", r.code, r.body)
	}
	var a api.Authorization
	json.Unmarshal([]byte(first.body), &a)
	if g := getAuth(t, n, tok, a.ID); g.Status != "authentication_required" || g.Amount != "60.00" || g.Links == nil {
		t.Fatalf("get: %+v", g)
	}
	// Nothing is reserved, and nothing can be captured or cancelled yet.
	if r := n.call(t, tok, "POST", "/v1/authorizations/"+a.ID+"/captures", "k0", `{"amount":"1.00"}`); r.code != 422 || r.problem() != "invalid-authentication-state" {
		t.Fatalf("capture before authentication: %d %s", r.code, r.body)
	}
	if r := n.call(t, tok, "DELETE", "/v1/authorizations/"+a.ID, "d0", ""); r.code != 422 || r.problem() != "invalid-authentication-state" {
		t.Fatalf("cancel before authentication: %d %s", r.code, r.body)
	}
	r := n.call(t, tok, "POST", "/v1/authorizations/"+a.ID+"/redirect", "r1", `{"return_url":"https://shop.example/back?order=7"}`)
	var red api.Redirect
	json.Unmarshal([]byte(r.body), &red)
	u, _ := url.Parse(red.RedirectURL)
	token := u.Query().Get("token")
	if r.code != 201 || len(token) != 43 || u.Host != "pay.bank.example" {
		t.Fatalf("redirect: %d %s", r.code, r.body)
	}
	if g := getAuth(t, n, tok, a.ID); g.Status != "authentication_started" {
		t.Fatalf("after the redirect: %+v", g)
	}
	// The record keeps the token's hash, never the token.
	rec, err := n.st.Authorization(a.ID)
	if err != nil || rec.TokenHash == "" || strings.Contains(rec.TokenHash, token) || rec.Attempts != 1 {
		t.Fatalf("record: %+v %v", rec, err)
	}
	page := n.browser(t, "GET", u.Path+"?token="+token, nil)
	if page.code != 200 || !strings.Contains(page.body, "60.00 USD") || !strings.Contains(page.body, "SCA-FLOW") ||
		!strings.Contains(page.body, "demo-acquirer") || strings.Contains(page.body, "card-4111") || !strings.Contains(page.body, "4111") ||
		strings.Contains(page.body, "<script") || !strings.Contains(page.body, `value="approve"`) {
		t.Fatalf("page: %d %s", page.code, page.body)
	}
	for k, want := range map[string]string{"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
		"Content-Security-Policy": "default-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self' https://shop.example"} {
		if got := page.hdr.Get(k); got != want {
			t.Errorf("page header %s: %q, want %q", k, got, want)
		}
	}
	if got := fundsOf(t, n.st, "card-4111"); got != before {
		t.Fatalf("reserved before approval: %v", got)
	}
	done := n.browser(t, "POST", u.Path, url.Values{"token": {token}, "decision": {"approve"}})
	back, _ := url.Parse(done.hdr.Get("Location"))
	if done.code != 303 || back.Host != "shop.example" || back.Path != "/back" || back.Query().Get("order") != "7" ||
		back.Query().Get("authorization_id") != a.ID || back.Query().Get("status") != "reserved" || done.hdr.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("approve: %d %v %s", done.code, done.hdr, done.body)
	}
	if got := fundsOf(t, n.st, "card-4111"); got != (funds{before[0], before[1] - 6000}) {
		t.Fatalf("after approval: %v (want 60.00 reserved)", got)
	}
	g := getAuth(t, n, tok, a.ID)
	if g.Status != "reserved" || g.ID != a.ID || g.Reserved != "60.00" || g.CreatedAt != a.CreatedAt {
		t.Fatalf("after approval: %+v", g)
	}
	// The used link is refused, and changes nothing.
	recBefore, _ := n.st.Authorization(a.ID)
	for _, dec := range []string{"approve", "decline"} {
		if r := n.browser(t, "POST", u.Path, url.Values{"token": {token}, "decision": {dec}}); r.code != 403 || !strings.Contains(r.body, "not valid") {
			t.Fatalf("used link %s: %d %s", dec, r.code, r.body)
		}
	}
	if r := n.browser(t, "GET", u.Path+"?token="+token, nil); r.code != 403 {
		t.Fatalf("used link's page: %d", r.code)
	}
	if recAfter, _ := n.st.Authorization(a.ID); !reflect.DeepEqual(recBefore, recAfter) {
		t.Fatalf("a used link changed the record: %+v", recAfter)
	}
	// Redirecting a decided authorization: 422.
	if r := n.call(t, tok, "POST", "/v1/authorizations/"+a.ID+"/redirect", "r2", `{"return_url":"https://shop.example/back"}`); r.code != 422 || r.problem() != "invalid-authentication-state" {
		t.Fatalf("redirect after approval: %d %s", r.code, r.body)
	}
	// Captures, their reversal and the cancellation, as without SCA.
	caps := "/v1/authorizations/" + a.ID + "/captures"
	c1 := n.call(t, tok, "POST", caps, "k1", `{"amount":"20.00"}`)
	var k api.AuthCapture
	json.Unmarshal([]byte(c1.body), &k)
	if c1.code != 201 || k.AuthorizationID != a.ID || k.Amount != "20.00" {
		t.Fatalf("capture: %d %s", c1.code, c1.body)
	}
	if r := n.call(t, tok, "POST", caps, "k1", `{"amount":"20.00"}`); r.body != c1.body || r.hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("capture replay: %s", r.body)
	}
	if r := n.call(t, tok, "POST", caps+"/"+k.ID+"/reversal", "v1", ""); r.code != 201 {
		t.Fatalf("reversal: %d %s", r.code, r.body)
	}
	c := n.call(t, tok, "DELETE", "/v1/authorizations/"+a.ID, "d1", "")
	if c.code != 200 || !strings.Contains(c.body, `"id":"`+a.ID+`"`) || !strings.Contains(c.body, `"status":"cancelled"`) || !strings.Contains(c.body, `"cancelled":"40.00"`) {
		t.Fatalf("cancel: %d %s", c.code, c.body)
	}
	if got := fundsOf(t, n.st, "card-4111"); got != before {
		t.Fatalf("after capture, reversal and cancel: %v, want %v", got, before)
	}
	// The replays of the create and the redirect still answer as they did.
	if again := n.call(t, tok, "POST", "/v1/authorizations", "c1", scaBody); again.body != first.body {
		t.Fatalf("replay after the flow: %s", again.body)
	}
	if r := n.call(t, tok, "POST", "/v1/authorizations/"+a.ID+"/redirect", "r1", `{"return_url":"https://shop.example/back?order=7"}`); r.code != 409 || r.problem() != "conflict" {
		t.Fatalf("redirect replay: %d %s", r.code, r.body)
	}
}

// A reservation that did not happen after the approval (a crash between
// the two steps) is made by the partner's next call, once.
func TestSCAHoldRetried(t *testing.T) {
	n := startNode(t).withClock(t, &clock{}, nil)
	tok := n.token(t, "demo-acquirer")
	before := fundsOf(t, n.st, "card-4111")
	a, _, token := scaStart(t, n, tok, "SCA-CRASH")
	// The completion alone, as if the node died before the hold.
	sum := sha256hex(token)
	if _, err := n.core.ProposeAuthorization(context.Background(), "demo-acquirer", "sca-complete|"+sum[:32], []string{"authorization-complete", a.ID, "approve"},
		store.AuthorizationChange{Action: store.AuthComplete, ID: a.ID, TokenHash: sum, Approve: true}); err != nil {
		t.Fatal(err)
	}
	if g := getAuth(t, n, tok, a.ID); g.Status != "authenticated" {
		t.Fatalf("authenticated, not reserved: %+v", g)
	}
	for _, key := range []string{"k1", "k2"} {
		if r := n.call(t, tok, "POST", "/v1/authorizations/"+a.ID+"/captures", key, `{"amount":"10.00"}`); r.code != 201 {
			t.Fatalf("capture %s: %d %s", key, r.code, r.body)
		}
	}
	if got := fundsOf(t, n.st, "card-4111"); got != (funds{before[0] - 2000, before[1] - 6000}) {
		t.Fatalf("one hold of 60.00, 20.00 captured: %v", got)
	}
}

func TestSCADecline(t *testing.T) {
	n := startNode(t).withClock(t, &clock{}, nil)
	tok := n.token(t, "demo-acquirer")
	before := fundsOf(t, n.st, "card-4111")
	a, path, token := scaStart(t, n, tok, "SCA-NO")
	r := n.browser(t, "POST", path, url.Values{"token": {token}, "decision": {"decline"}})
	back, _ := url.Parse(r.hdr.Get("Location"))
	if r.code != 303 || back.Query().Get("status") != "authentication_failed" {
		t.Fatalf("decline: %d %v", r.code, r.hdr)
	}
	if g := getAuth(t, n, tok, a.ID); g.Status != "authentication_failed" {
		t.Fatalf("after decline: %+v", g)
	}
	if r := n.call(t, tok, "POST", "/v1/authorizations/"+a.ID+"/captures", "k1", `{"amount":"1.00"}`); r.code != 422 || r.problem() != "invalid-authentication-state" {
		t.Fatalf("capture of a declined one: %d %s", r.code, r.body)
	}
	if got := fundsOf(t, n.st, "card-4111"); got != before {
		t.Fatalf("a decline moved money: %v", got)
	}
}

// Past sca.authentication_ttl (the injected clock, no sleeping) every
// step is 422 authentication-is-no-longer-valid and nothing is reserved.
func TestSCAExpired(t *testing.T) {
	clk := &clock{}
	n := startNode(t).withClock(t, clk, func(c *api.Config) { c.SCA.AuthenticationTTL = 5 * time.Minute })
	tok := n.token(t, "demo-acquirer")
	before := fundsOf(t, n.st, "card-4111")
	a, path, token := scaStart(t, n, tok, "SCA-LATE")
	if exp, _ := time.Parse(time.RFC3339Nano, a.ExpiresAt); exp.Sub(clk.now()) > 5*time.Minute || exp.Sub(clk.now()) < 4*time.Minute {
		t.Fatalf("expires_at %s", a.ExpiresAt)
	}
	clk.advance(5*time.Minute + time.Second)
	if g := getAuth(t, n, tok, a.ID); g.Status != "expired" || g.Links != nil {
		t.Fatalf("get: %+v", g)
	}
	if r := n.browser(t, "GET", path+"?token="+token, nil); r.code != 422 || !strings.Contains(r.body, "time limit") {
		t.Fatalf("page: %d %s", r.code, r.body)
	}
	if r := n.browser(t, "POST", path, url.Values{"token": {token}, "decision": {"approve"}}); r.code != 422 {
		t.Fatalf("approve: %d %s", r.code, r.body)
	}
	for _, c := range []struct{ method, path, key, body string }{
		{"POST", "/v1/authorizations/" + a.ID + "/captures", "k1", `{"amount":"1.00"}`},
		{"DELETE", "/v1/authorizations/" + a.ID, "d1", ""},
		{"POST", "/v1/authorizations/" + a.ID + "/redirect", "r2", `{"return_url":"https://shop.example/back"}`},
	} {
		if r := n.call(t, tok, c.method, c.path, c.key, c.body); r.code != 422 || r.problem() != "authentication-is-no-longer-valid" {
			t.Errorf("%s %s: %d %s", c.method, c.path, r.code, r.body)
		}
	}
	// The FSM decided it from the command's time: the record says so.
	if rec, _ := n.st.Authorization(a.ID); rec.State != store.AuthExpired || rec.TokenHash != "" {
		t.Fatalf("record: %+v", rec)
	}
	if got := fundsOf(t, n.st, "card-4111"); got != before {
		t.Fatalf("an expired authorization moved money: %v", got)
	}
}

// A wrong token, another authorization's token, a malformed form: the
// refusal page (403 or 400), and nothing changes.
func TestSCATokenRefused(t *testing.T) {
	n := startNode(t).withClock(t, &clock{}, nil)
	tok := n.token(t, "demo-acquirer")
	a, path, token := scaStart(t, n, tok, "SCA-TOK")
	_, _, otherToken := scaStart(t, n, tok, "SCA-TOK2")
	before := fundsOf(t, n.st, "card-4111")
	rec, _ := n.st.Authorization(a.ID)
	applied := n.st.AppliedIndex()
	wrong := []byte(token)
	wrong[0] ^= 1
	for name, c := range map[string]struct {
		method string
		path   string
		form   url.Values
		code   int
	}{
		"page, wrong token":          {"GET", path + "?token=" + string(wrong), nil, 403},
		"page, no token":             {"GET", path, nil, 403},
		"page, another's token":      {"GET", path + "?token=" + otherToken, nil, 403},
		"page, unknown id":           {"GET", "/v1/sca/sca-000000000000000000000000?token=" + token, nil, 403},
		"approve, wrong token":       {"POST", path, url.Values{"token": {string(wrong)}, "decision": {"approve"}}, 403},
		"approve, another's token":   {"POST", path, url.Values{"token": {otherToken}, "decision": {"approve"}}, 403},
		"approve, no token":          {"POST", path, url.Values{"decision": {"approve"}}, 403},
		"right token, no decision":   {"POST", path, url.Values{"token": {token}}, 400},
		"right token, odd decision":  {"POST", path, url.Values{"token": {token}, "decision": {"yes"}}, 400},
		"right token, in the query":  {"POST", path + "?token=" + token + "&decision=approve", url.Values{}, 400},
		"right token, too long form": {"POST", path, url.Values{"token": {token}, "decision": {"approve"}, "pad": {strings.Repeat("x", 2000)}}, 400},
	} {
		r := n.browser(t, c.method, c.path, c.form)
		if r.code != c.code || r.hdr.Get("Cache-Control") != "no-store" || strings.Contains(r.body, token) {
			t.Errorf("%s: %d %s", name, r.code, r.body)
		}
	}
	if after, _ := n.st.Authorization(a.ID); !reflect.DeepEqual(rec, after) {
		t.Fatalf("a refusal changed the record: %+v", after)
	}
	if got := fundsOf(t, n.st, "card-4111"); got != before {
		t.Fatalf("a refusal moved money: %v", got)
	}
	if n.st.AppliedIndex() != applied {
		t.Fatalf("a refusal proposed something: applied %d → %d", applied, n.st.AppliedIndex())
	}
	// The right token still works.
	if r := n.browser(t, "POST", path, url.Values{"token": {token}, "decision": {"approve"}}); r.code != 303 {
		t.Fatalf("approve: %d %s", r.code, r.body)
	}
}

// A second redirect replaces the link (the first is refused), a repeat
// of one under its key is a 409, a fourth is 422; another partner's id
// is a 404; bad return URLs are 400 and change nothing.
func TestSCARedirects(t *testing.T) {
	base := startNode(t)
	n := base.withClock(t, &clock{}, func(c *api.Config) {
		c.SCA.ReturnURLPrefixes = map[string][]string{"demo-acquirer": {"https://shop.example/", "http://127.0.0.1:9/"}}
		c.SCA.AllowLoopbackHTTP = true
	})
	tok := n.token(t, "demo-acquirer")
	a, path, first := scaStart(t, n, tok, "SCA-TWICE")
	red := "/v1/authorizations/" + a.ID + "/redirect"
	rec, _ := n.st.Authorization(a.ID)
	for name, ret := range map[string]string{
		"relative":             "/back",
		"not https":            "http://shop.example/back",
		"ftp":                  "ftp://shop.example/back",
		"credentials":          "https://u:p@shop.example/back",
		"fragment":             "https://shop.example/back#x",
		"another site":         "https://evil.example/back",
		"a prefix's lookalike": "https://shop.example.evil/back",
		"too long":             "https://shop.example/" + strings.Repeat("a", 2048),
		"javascript":           "javascript:alert(1)",
	} {
		if r := n.call(t, tok, "POST", red, "bad-"+name, `{"return_url":"`+ret+`"}`); r.code != 400 || r.problem() != "validation" {
			t.Errorf("%s: %d %s", name, r.code, r.body)
		}
	}
	other := n.token(t, "demo-agents")
	for _, c := range []struct{ method, path, key, body string }{
		{"GET", "/v1/authorizations/" + a.ID, "", ""},
		{"POST", red, "o1", `{"return_url":"https://shop.example/back"}`},
		{"POST", "/v1/authorizations/" + a.ID + "/captures", "o2", `{"amount":"1.00"}`},
		{"DELETE", "/v1/authorizations/" + a.ID, "o3", ""},
	} {
		if r := n.call(t, other, c.method, c.path, c.key, c.body); r.code != 404 || r.problem() != "not-found" {
			t.Errorf("another partner %s %s: %d %s", c.method, c.path, r.code, r.body)
		}
	}
	if after, _ := n.st.Authorization(a.ID); !reflect.DeepEqual(rec, after) {
		t.Fatalf("a refused redirect changed the record: %+v", after)
	}
	// Loopback http where allowed (development), under a prefix.
	r := n.call(t, tok, "POST", red, "r2", `{"return_url":"http://127.0.0.1:9/done"}`)
	var second api.Redirect
	json.Unmarshal([]byte(r.body), &second)
	if r.code != 201 || strings.Contains(second.RedirectURL, first) {
		t.Fatalf("second redirect: %d %s", r.code, r.body)
	}
	if r := n.browser(t, "GET", path+"?token="+first, nil); r.code != 403 {
		t.Fatalf("the replaced link: %d", r.code)
	}
	if r := n.call(t, tok, "POST", red, "r2", `{"return_url":"http://127.0.0.1:9/done"}`); r.code != 409 || r.problem() != "conflict" {
		t.Fatalf("a repeat: %d %s", r.code, r.body)
	}
	if r := n.call(t, tok, "POST", red, "r3", `{"return_url":"https://shop.example/b"}`); r.code != 201 {
		t.Fatalf("third: %d %s", r.code, r.body)
	}
	if r := n.call(t, tok, "POST", red, "r4", `{"return_url":"https://shop.example/b"}`); r.code != 422 || r.problem() != "invalid-authentication-state" {
		t.Fatalf("fourth: %d %s", r.code, r.body)
	}
}

func TestSCAConfigBounds(t *testing.T) {
	for name, f := range map[string]func(*api.Config){
		"negative ttl":       func(c *api.Config) { c.SCA.AuthenticationTTL = -1 },
		"ttl over a day":     func(c *api.Config) { c.SCA.AuthenticationTTL = 25 * time.Hour },
		"prefix not https":   func(c *api.Config) { c.SCA.ReturnURLPrefixes = map[string][]string{"p": {"http://shop.example/"}} },
		"prefix host open":   func(c *api.Config) { c.SCA.ReturnURLPrefixes = map[string][]string{"p": {"https://shop.example"}} },
		"no prefixes":        func(c *api.Config) { c.SCA.ReturnURLPrefixes = map[string][]string{"p": {}} },
		"public url path":    func(c *api.Config) { c.PublicURL = "https://api.example/x" },
		"public url no host": func(c *api.Config) { c.PublicURL = "https://" },
	} {
		cfg := api.DefaultConfig()
		f(&cfg)
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: valid", name)
		}
	}
}

func sha256hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Blocks and authorizations share references: an SCA authorization's
// reference taken by a block (or the other way round) is a 409, and
// nothing is stored.
func TestSCAReferenceShared(t *testing.T) {
	n := startNode(t).withClock(t, &clock{}, nil)
	tok := n.token(t, "demo-acquirer")
	if r := n.call(t, tok, "POST", "/v1/accounts/card-4111/blocks", "b1", `{"amount":"1.00","currency":"USD","reference":"SHARED-1"}`); r.code != 201 {
		t.Fatalf("block: %d %s", r.code, r.body)
	}
	if r := n.call(t, tok, "POST", "/v1/authorizations", "a1", strings.Replace(scaBody, "SCA-FLOW", "SHARED-1", 1)); r.code != 409 || r.problem() != "duplicate-reference" {
		t.Fatalf("SCA authorization under a block's reference: %d %s", r.code, r.body)
	}
	a, _, _ := scaStart(t, n, tok, "SHARED-2")
	for _, c := range []struct{ path, body string }{
		{"/v1/accounts/card-4111/blocks", `{"amount":"1.00","currency":"USD","reference":"SHARED-2"}`},
		{"/v1/authorizations", `{"account":"card-4111","amount":"1.00","currency":"USD","reference":"SHARED-2"}`},
	} {
		if r := n.call(t, tok, "POST", c.path, "x-"+c.path, c.body); r.code != 409 || r.problem() != "duplicate-reference" {
			t.Errorf("%s under an SCA authorization's reference: %d %s", c.path, r.code, r.body)
		}
	}
	if r := n.call(t, tok, "POST", "/v1/authorizations", "c-SHARED-2", strings.Replace(scaBody, "SCA-FLOW", "SHARED-2", 1)); r.code != 201 || !strings.Contains(r.body, a.ID) {
		t.Fatalf("the SCA create's replay: %d %s", r.code, r.body)
	}
}
