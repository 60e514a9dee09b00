package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchd/switchd/api"
	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/config"
	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// node is a real one-node cluster (pebble, raft) with the demo accounts,
// partners and routes, and the partner API over it (plain HTTP through
// httptest: TLS is the listener's business, tested in cmd/switchd).
type node struct {
	st     *store.Store
	cn     *cluster.Node
	url    string
	minter *oauth.Server
	keys   *oauth.KeySet
	cfg    config.File
	core   *payment.Core
}

type ledger struct {
	*store.Store
	n *cluster.Node
}

func (l ledger) ReadIndex(ctx context.Context) error { return l.n.ReadIndex(ctx) }
func (l ledger) Propose(ctx context.Context, cmd store.Command) (store.Result, error) {
	return l.n.Propose(ctx, cmd)
}
func (l ledger) Leading() bool { return l.n.Leading() }

// startNode starts the node; opts change the config before it is
// finished (a benchmark's store sizes).
func startNode(t *testing.T, opts ...func(*config.File)) *node {
	t.Helper()
	n, srv := newNode(t, opts...)
	n.url = n.listen(t, srv)
	return n
}

// newNode is startNode before it serves: a test adds to the server
// (HandleStatements), then calls listen.
func newNode(t *testing.T, opts ...func(*config.File)) (*node, *api.Server) {
	t.Helper()
	cfg := config.Demo()
	cfg.DataDir = t.TempDir()
	cfg.Cluster.RaftAddr = "127.0.0.1:0"
	cfg.Cluster.HeartbeatTimeout, cfg.Cluster.ElectionTimeout, cfg.Cluster.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	for _, o := range opts {
		o(&cfg)
	}
	cfg.Finish()
	st, err := store.Open(cfg.Store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cn, err := cluster.New(cfg.Cluster, st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cn.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	core, err := payment.NewCore(cfg.Switch.Config, cn, st, st.Directory, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := core.Seed(ctx, cfg.Seeds(), st, time.Now()); err != nil {
		t.Fatal(err)
	}
	// Clients: the demo partner, a client that is no partner, and the
	// demo-agents partner (not on the API lane).
	for _, id := range []string{"demo-acquirer", "stranger", "demo-agents"} {
		res, err := cn.Propose(ctx, store.Command{Op: store.OpPutClient, Key: "c|" + id, Fingerprint: "f", Time: time.Now().UnixNano(),
			Admin: &store.Admin{Actor: "test", ClientChange: &store.ClientChange{Action: store.ClientCreate,
				Client: store.Client{ID: id, Scopes: oauth.PartnerScopes, Certs: []store.ClientCert{{Thumbprint: strings.Repeat("A", 43)}}}}}})
		if err != nil || res.Status != store.StatusOK {
			t.Fatal(err, res)
		}
	}
	key := filepath.Join(t.TempDir(), "k.pem")
	if _, err := oauth.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	ks, err := oauth.LoadKeys([]string{key})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := oauth.NewServer(oauth.DefaultConfig(), ks, st.Directory, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{st: st, cn: cn, minter: auth, keys: ks, cfg: cfg, core: core}
	return n, n.newServer(t)
}

// serve starts another partner API over the node's core and ledger, as a
// restarted node's would be (nothing in memory, the ledger kept), and
// returns its URL.
func (n *node) serve(t *testing.T) string {
	t.Helper()
	return n.listen(t, n.newServer(t))
}

// newServer is a partner API over the node's core and ledger; it is
// closed, workers and all, when the test ends.
func (n *node) newServer(t *testing.T) *api.Server {
	t.Helper()
	return n.newServerOn(t, n.core)
}

// newServerOn is newServer over another core (a fault-injecting ledger).
func (n *node) newServerOn(t *testing.T, core *payment.Core) *api.Server {
	t.Helper()
	tlsCfg, _, err := api.DevTLS(filepath.Join(t.TempDir(), "api"))
	if err != nil {
		t.Fatal(err)
	}
	acfg := api.DefaultConfig()
	acfg.TLS = &tlsCfg
	srv, err := api.New(acfg, core, ledger{n.st, n.cn}, n.minter, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(context.Background()) })
	return srv
}

// listen serves srv's handler (plain HTTP) and returns its URL.
func (n *node) listen(t *testing.T, srv *api.Server) string {
	t.Helper()
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); http.DefaultClient.CloseIdleConnections() })
	return hs.URL
}

func (n *node) token(t *testing.T, client string, scopes ...string) string {
	t.Helper()
	if len(scopes) == 0 {
		scopes = oauth.PartnerScopes
	}
	iss, err := n.minter.Issue(client, scopes, "")
	if err != nil {
		t.Fatal(err)
	}
	return iss.Token
}

type answer struct {
	code int
	body string
	hdr  http.Header
}

func (a answer) problem() string {
	var p struct{ Type string }
	json.Unmarshal([]byte(a.body), &p)
	return strings.TrimPrefix(p.Type, "https://switchd.dev/problems/")
}

// call sends one request; hdr's "-" values remove a default header.
func (n *node) call(t *testing.T, tok, method, path, key, body string, hdr ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, n.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "-" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b), resp.Header}
}

const pay = `{"amount":"12.34","currency":"USD","debtor_account":"card-4111","reference":"INV-1"}`

func balance(t *testing.T, st *store.Store, id string) int64 {
	t.Helper()
	a, err := st.Account(id)
	if err != nil {
		t.Fatal(err)
	}
	return a.Posted()
}

// A payment, its replay (same bytes, marked), the key with another body
// (409), a read, refunds up to the amount and one over it, a bill
// payment routed like its ISO 8583 twin, and funds checks.
func TestPaymentsFlow(t *testing.T) {
	n := startNode(t)
	tok := n.token(t, "demo-acquirer")
	first := n.call(t, tok, "POST", "/v1/payments", "k1", pay)
	if first.code != 201 || !strings.Contains(first.body, `"amount":"12.34"`) || !strings.Contains(first.body, `"creditor_account":"demo-acquirer-settlement"`) {
		t.Fatalf("payment: %d %s", first.code, first.body)
	}
	var p api.Payment
	json.Unmarshal([]byte(first.body), &p)
	again := n.call(t, tok, "POST", "/v1/payments", "k1", pay)
	if again.code != 201 || again.body != first.body || again.hdr.Get("Idempotent-Replayed") != "true" || first.hdr.Get("Idempotent-Replayed") != "" {
		t.Fatalf("replay: %d %q %s\nfirst %s", again.code, again.hdr.Get("Idempotent-Replayed"), again.body, first.body)
	}
	if other := n.call(t, tok, "POST", "/v1/payments", "k1", strings.Replace(pay, "12.34", "12.35", 1)); other.code != 409 || other.problem() != "idempotency-conflict" {
		t.Fatalf("key with another body: %d %s", other.code, other.body)
	}
	if got := balance(t, n.st, "card-4111"); got != 100000-1234 {
		t.Fatalf("card after one payment and its replays: %d", got)
	}
	if g := n.call(t, tok, "GET", "/v1/payments/"+p.ID, "", ""); g.code != 200 || g.body != first.body {
		t.Fatalf("read: %d %s", g.code, g.body)
	}
	if r := n.call(t, tok, "POST", "/v1/payments/"+p.ID+"/refunds", "r1", `{"amount":"2.00"}`); r.code != 201 || !strings.Contains(r.body, `"payment_id":"`+p.ID+`"`) {
		t.Fatalf("refund: %d %s", r.code, r.body)
	}
	if r := n.call(t, tok, "POST", "/v1/payments/"+p.ID+"/refunds", "r2", `{"amount":"10.35"}`); r.code != 422 || r.problem() != "exceeds-original" {
		t.Fatalf("refund over what is left: %d %s", r.code, r.body)
	}
	if r := n.call(t, tok, "POST", "/v1/payments/"+p.ID+"/refunds", "r3", `{"amount":"10.34"}`); r.code != 201 {
		t.Fatalf("refund of the rest: %d %s", r.code, r.body)
	}
	if g := n.call(t, tok, "GET", "/v1/payments/"+p.ID, "", ""); !strings.Contains(g.body, `"status":"refunded"`) || !strings.Contains(g.body, `"refunded":"12.34"`) {
		t.Fatalf("after refunds: %s", g.body)
	}
	if got := balance(t, n.st, "card-4111"); got != 100000 {
		t.Fatalf("card after full refund: %d", got)
	}
	bill := n.call(t, tok, "POST", "/v1/bill/pay", "b1", `{"bill_type":"ELEC","biller_reference":"E-778","amount":"25.00","currency":"USD","debtor_account":"card-4111"}`)
	if bill.code != 201 || !strings.Contains(bill.body, `"creditor_account":"biller-power-co"`) {
		t.Fatalf("bill pay: %d %s", bill.code, bill.body)
	}
	for amount, want := range map[string]string{"5.00": "FUNDS_AVAILABLE", "5000.00": "FUNDS_NOT_AVAILABLE"} {
		f := n.call(t, tok, "POST", "/v1/accounts/card-4111/check-funds", "", `{"amount":"`+amount+`","currency":"USD"}`)
		if f.code != 200 || !strings.Contains(f.body, want) {
			t.Errorf("check-funds %s: %d %s", amount, f.code, f.body)
		}
	}
	// Another partner's client cannot read it.
	if g := n.call(t, n.token(t, "demo-agents"), "GET", "/v1/payments/"+p.ID, "", ""); g.code != 404 {
		t.Errorf("another partner reads the payment: %d %s", g.code, g.body)
	}
}

// Every bad request gets its exact status and problem type, and none of
// them moves money.
func TestBadRequests(t *testing.T) {
	n := startNode(t)
	tok := n.token(t, "demo-acquirer")
	ok := n.call(t, tok, "POST", "/v1/payments", "base", pay)
	if ok.code != 201 {
		t.Fatal(ok.body)
	}
	var p api.Payment
	json.Unmarshal([]byte(ok.body), &p)
	before := [2]int64{balance(t, n.st, "card-4111"), balance(t, n.st, "card-5500")}
	expired, err := func() (string, error) {
		m, err := oauth.NewServer(oauth.DefaultConfig(), n.keys, n.st.Directory, nil, nil)
		if err != nil {
			return "", err
		}
		m.SetClock(func() time.Time { return time.Now().Add(-time.Hour) })
		iss, err := m.Issue("demo-acquirer", oauth.PartnerScopes, "")
		return iss.Token, err
	}()
	if err != nil {
		t.Fatal(err)
	}
	body := func(kv ...string) string {
		m := map[string]any{"amount": "1.00", "currency": "USD", "debtor_account": "card-4111", "reference": "R-X"}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "<delete>" {
				delete(m, kv[i])
				continue
			}
			var v any
			if json.Unmarshal([]byte(kv[i+1]), &v) != nil {
				v = kv[i+1]
			}
			m[kv[i]] = v
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	const pays = "/v1/payments"
	cases := []struct {
		name, tok, method, path, key, body string
		hdr                                []string
		code                               int
		typ                                string
	}{
		{"malformed JSON", tok, "POST", pays, "b1", `{"amount":`, nil, 400, "validation"},
		{"not an object", tok, "POST", pays, "b2", `[1,2]`, nil, 400, "validation"},
		{"unknown field", tok, "POST", pays, "b3", body("color", "red"), nil, 400, "validation"},
		{"float amount", tok, "POST", pays, "b4", body("amount", "12.34"), nil, 400, "validation"},
		{"integer amount", tok, "POST", pays, "b5", body("amount", "12"), nil, 400, "validation"},
		{"negative amount", tok, "POST", pays, "b6", body("amount", `"-1.00"`), nil, 400, "validation"},
		{"zero amount", tok, "POST", pays, "b7", body("amount", `"0.00"`), nil, 400, "validation"},
		{"too many decimals", tok, "POST", pays, "b8", body("amount", `"1.001"`), nil, 400, "validation"},
		{"too few decimals", tok, "POST", pays, "b9", body("amount", `"1.0"`), nil, 400, "validation"},
		{"no decimals for USD", tok, "POST", pays, "b10", body("amount", `"100"`), nil, 400, "validation"},
		{"exponent notation", tok, "POST", pays, "b11", body("amount", `"1e2"`), nil, 400, "validation"},
		{"amount beyond int64", tok, "POST", pays, "b12", body("amount", `"99999999999999999999.00"`), nil, 400, "validation"},
		{"empty amount", tok, "POST", pays, "b13", body("amount", `""`), nil, 400, "validation"},
		{"unknown currency", tok, "POST", pays, "b14", body("currency", "XXY"), nil, 400, "validation"},
		{"lower-case currency", tok, "POST", pays, "b15", body("currency", "usd"), nil, 400, "validation"},
		{"currency mismatch", tok, "POST", pays, "b16", body("currency", "EUR"), nil, 422, "currency-mismatch"},
		{"no amount", tok, "POST", pays, "b17", body("amount", "<delete>"), nil, 400, "validation"},
		{"no debtor", tok, "POST", pays, "b18", body("debtor_account", "<delete>"), nil, 400, "validation"},
		{"no reference", tok, "POST", pays, "b19", body("reference", "<delete>"), nil, 400, "validation"},
		{"reference too long", tok, "POST", pays, "b20", body("reference", strings.Repeat("R", 36)), nil, 400, "validation"},
		{"reference with a space", tok, "POST", pays, "b21", body("reference", "R 1"), nil, 400, "validation"},
		{"unknown debtor", tok, "POST", pays, "b22", body("debtor_account", "nobody"), nil, 404, "unknown-account"},
		{"debtor without a card", tok, "POST", pays, "b23", body("debtor_account", "bank-funding-usd"), nil, 404, "unknown-account"},
		{"insufficient funds", tok, "POST", pays, "b24", body("debtor_account", "card-5500"), nil, 422, "insufficient-funds"},
		{"payer type not the partner's", tok, "POST", pays, "b25", body("payer_type", "otc_agent"), nil, 403, ""},
		{"reference of another payment", tok, "POST", pays, "b26", body("reference", "INV-1"), nil, 409, "duplicate-reference"},
		{"no Idempotency-Key", tok, "POST", pays, "", body(), nil, 400, "validation"},
		{"Idempotency-Key too long", tok, "POST", pays, strings.Repeat("k", 65), body(), nil, 400, "validation"},
		{"Idempotency-Key with a bar", tok, "POST", pays, "a|b", body(), nil, 400, "validation"},
		{"key reused with another body", tok, "POST", pays, "base", body("amount", `"2.00"`), nil, 409, "idempotency-conflict"},
		{"huge body", tok, "POST", pays, "b31", body("reference", strings.Repeat("x", 70<<10)), nil, 413, "too-large"},
		{"wrong content type", tok, "POST", pays, "b32", body(), []string{"Content-Type", "text/plain"}, 415, "unsupported-media-type"},
		{"no token", "", "POST", pays, "b33", body(), nil, 401, "unauthenticated"},
		{"garbage token", "x.y.z", "POST", pays, "b34", body(), nil, 401, "invalid-token"},
		{"expired token", expired, "POST", pays, "b35", body(), nil, 401, "token-expired"},
		{"wrong scope", n.token(t, "demo-acquirer", oauth.ScopePaymentsRead), "POST", pays, "b36", body(), nil, 403, "insufficient-scope"},
		{"client that is no partner", n.token(t, "stranger"), "POST", pays, "b37", body(), nil, 403, "unknown-partner"},
		{"partner not on the API lane", n.token(t, "demo-agents"), "POST", pays, "b38", body(), nil, 403, "unknown-partner"},
		{"refund over the payment", tok, "POST", pays + "/" + p.ID + "/refunds", "b39", `{"amount":"12.35"}`, nil, 422, "exceeds-original"},
		{"refund of zero", tok, "POST", pays + "/" + p.ID + "/refunds", "b40", `{"amount":"0.00"}`, nil, 400, "validation"},
		{"refund of an unknown payment", tok, "POST", pays + "/T99999999999999/refunds", "b41", `{"amount":"1.00"}`, nil, 404, "not-found"},
		{"refund without a key", tok, "POST", pays + "/" + p.ID + "/refunds", "", `{"amount":"1.00"}`, nil, 400, "validation"},
		{"bill pay without a bill type", tok, "POST", "/v1/bill/pay", "b43", `{"biller_reference":"E-1","amount":"1.00","currency":"USD","debtor_account":"card-4111"}`, nil, 400, "validation"},
		{"funds check, float", tok, "POST", "/v1/accounts/card-4111/check-funds", "", `{"amount":1.5,"currency":"USD"}`, nil, 400, "validation"},
		{"funds check, another currency", tok, "POST", "/v1/accounts/card-4111/check-funds", "", `{"amount":"1.00","currency":"EUR"}`, nil, 422, "currency-mismatch"},
		{"unknown payment", tok, "GET", pays + "/T99999999999999", "", "", nil, 404, "not-found"},
	}
	if len(cases) < 40 {
		t.Fatalf("%d cases; the issue asks for at least 40", len(cases))
	}
	for _, c := range cases {
		a := n.call(t, c.tok, c.method, c.path, c.key, c.body, c.hdr...)
		if a.code != c.code || c.typ != "" && a.problem() != c.typ {
			t.Errorf("%s: %d %s, want %d %s", c.name, a.code, a.body, c.code, c.typ)
			continue
		}
		if ct := a.hdr.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: Content-Type %q", c.name, ct)
		}
	}
	if after := [2]int64{balance(t, n.st, "card-4111"), balance(t, n.st, "card-5500")}; after != before {
		t.Fatalf("a refused request moved money: %v → %v", before, after)
	}
	if g := n.call(t, tok, "GET", pays+"/"+p.ID, "", ""); !strings.Contains(g.body, `"refunded":"0.00"`) {
		t.Fatalf("a refused refund was made: %s", g.body)
	}
}

// The document is OpenAPI 3.1, names every operation and its scope, and
// has no JSON number for money.
func TestOpenAPIDocument(t *testing.T) {
	n := startNode(t)
	a := n.call(t, "", "GET", "/v1/openapi.json", "", "")
	if a.code != 200 {
		t.Fatal(a.code)
	}
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal([]byte(a.body), &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("openapi %q %v", doc.OpenAPI, err)
	}
	for _, p := range []string{"/v1/payments", "/v1/payments/{id}", "/v1/payments/{id}/refunds", "/v1/bill/pay", "/v1/accounts/{id}/check-funds", "/v1/payment-batches", "/v1/payment-batches/{id}"} {
		if doc.Paths[p] == nil {
			t.Errorf("no %s in the document", p)
		}
	}
	if strings.Contains(a.body, `"amount":{"type":"number"`) || strings.Contains(a.body, `"format":"double"`) {
		t.Error("money as a JSON number in the document")
	}
	if d := n.call(t, "", "GET", "/v1/docs", "", ""); d.code != 200 || !strings.Contains(d.body, "/v1/payments") || strings.Contains(d.body, "<script") {
		t.Errorf("reference page: %d", d.code)
	}
	_ = fmt.Sprint
}

// The document validates with an independent validator from npm
// (@seriousme/openapi-schema-validator, OpenAPI 3.0/3.1 JSON schemas),
// installed by .ci/run, which names it in SWITCHD_OPENAPI_VALIDATOR.
func TestOpenAPIValidatesWithNPM(t *testing.T) {
	bin := os.Getenv("SWITCHD_OPENAPI_VALIDATOR")
	if bin == "" {
		if os.Getenv("SWITCHD_REQUIRE_OPENAPI_VALIDATOR") == "1" {
			t.Fatal("SWITCHD_OPENAPI_VALIDATOR is not set")
		}
		t.Skip("no npm OpenAPI validator (SWITCHD_OPENAPI_VALIDATOR; .ci/run installs one)")
	}
	n := startNode(t)
	a := n.call(t, "", "GET", "/v1/openapi.json", "", "")
	doc := filepath.Join(t.TempDir(), "openapi.json")
	if err := os.WriteFile(doc, []byte(a.body), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, doc).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"valid": true`) {
		t.Fatalf("validate-api: %v\n%s", err, out)
	}
	// The validator can fail: a document without info is refused.
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"openapi":"3.1.0","paths":{}}`), 0o600)
	if out, _ := exec.Command(bin, bad).CombinedOutput(); strings.Contains(string(out), `"valid": true`) {
		t.Fatalf("the validator took a broken document:\n%s", out)
	}
}

// A replay after the payment changed (a refund since) is still the
// original answer, byte for byte; GET shows the payment as it is now.
func TestReplayAfterRefundIsTheOriginalAnswer(t *testing.T) {
	n := startNode(t)
	tok := n.token(t, "demo-acquirer")
	first := n.call(t, tok, "POST", "/v1/payments", "rp1", pay)
	var p api.Payment
	json.Unmarshal([]byte(first.body), &p)
	if r := n.call(t, tok, "POST", "/v1/payments/"+p.ID+"/refunds", "rp1-r", `{"amount":"1.00"}`); r.code != 201 {
		t.Fatal(r.body)
	}
	again := n.call(t, tok, "POST", "/v1/payments", "rp1", pay)
	if again.body != first.body || again.hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay after a refund:\n%s\nfirst:\n%s", again.body, first.body)
	}
	if g := n.call(t, tok, "GET", "/v1/payments/"+p.ID, "", ""); !strings.Contains(g.body, `"status":"partly_refunded"`) {
		t.Fatalf("GET: %s", g.body)
	}
}

// Refunds carry references a reconciliation can match: the payment's
// (RRN) and one of their own (STAN), so a payment and two refunds of it
// on one day are three rows with distinct (rrn, stan) in the settlement
// file; a refund's retry keeps its STAN.
func TestRefundReferences(t *testing.T) {
	n := startNode(t)
	tok := n.token(t, "demo-acquirer")
	var p api.Payment
	json.Unmarshal([]byte(n.call(t, tok, "POST", "/v1/payments", "rr1", pay).body), &p)
	seen := map[string]bool{}
	for _, k := range []string{"rr1-a", "rr1-b", "rr1-a"} {
		r := n.call(t, tok, "POST", "/v1/payments/"+p.ID+"/refunds", k, `{"amount":"1.00"}`)
		if r.code != 201 {
			t.Fatal(r.body)
		}
		var rf api.Refund
		json.Unmarshal([]byte(r.body), &rf)
		tr, err := n.st.Transfer(rf.ID)
		if err != nil {
			t.Fatal(err)
		}
		orig, _ := n.st.Transfer(p.ID)
		if tr.Ref.RRN != orig.Ref.RRN || len(tr.Ref.STAN) != 12 || tr.Ref.STAN == orig.Ref.STAN {
			t.Fatalf("refund %s ref %+v, payment ref %+v", k, tr.Ref, orig.Ref)
		}
		seen[tr.Ref.RRN+"/"+tr.Ref.STAN] = true
	}
	if len(seen) != 2 {
		t.Fatalf("refund references %v, want two distinct (the retry keeps its own)", seen)
	}
}
