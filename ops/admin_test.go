package ops_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/switchd/switchd/internal/switchdtest"
	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/store"
)

// problemDoc is an RFC 9457 problem as the admin routes write it.
type problemDoc struct {
	Type   string `json:"type"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Field  string `json:"field"`
}

func problemOf(t *testing.T, body string) problemDoc {
	t.Helper()
	var p problemDoc
	if err := json.Unmarshal([]byte(body), &p); err != nil || p.Type == "" {
		t.Fatalf("not a problem document: %s", body)
	}
	p.Type = strings.TrimPrefix(p.Type, "https://switchd.dev/problems/")
	return p
}

// state is what a refusal must leave alone: the routing table, the
// partners, the agents and the audit chain, as this node serves them.
type state struct{ routes, partners, agents, audit string }

func snapshotState(t *testing.T, base string) state {
	t.Helper()
	get := func(path string) string {
		code, body, _ := do(t, "GET", base+path, "")
		if code != 200 {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		return body
	}
	return state{get("/v1/routes"), get("/v1/partners"), get("/v1/agents"), get("/v1/audit?limit=1000")}
}

// refused checks that a request was refused with status and problem type
// (and field, when given) and that nothing changed.
func refused(t *testing.T, base, name string, code int, body string, wantCode int, wantType, wantField string, before state) {
	t.Helper()
	if code != wantCode {
		t.Errorf("%s: %d %s, want %d %s", name, code, body, wantCode, wantType)
		return
	}
	p := problemOf(t, body)
	if p.Type != wantType || wantField != "" && p.Field != wantField {
		t.Errorf("%s: problem %+v, want type %s field %q", name, p, wantType, wantField)
	}
	if after := snapshotState(t, base); after != before {
		t.Errorf("%s: the refusal changed something:\nbefore %+v\nafter  %+v", name, before, after)
	}
}

type auditPage struct {
	Records []store.AuditRecord `json:"records"`
}

func auditOf(t *testing.T, base, object string) []store.AuditRecord {
	t.Helper()
	code, body, _ := do(t, "GET", base+"/v1/audit?object="+object, "")
	var p auditPage
	if code != 200 || json.Unmarshal([]byte(body), &p) != nil {
		t.Fatalf("audit %s: %d %s", object, code, body)
	}
	return p.Records
}

type tableDoc struct {
	Version uint64        `json:"version"`
	Routes  []store.Route `json:"routes"`
}

func table(t *testing.T, base string) tableDoc {
	t.Helper()
	code, body, _ := do(t, "GET", base+"/v1/routes", "")
	var tb tableDoc
	if code != 200 || json.Unmarshal([]byte(body), &tb) != nil {
		t.Fatalf("routes: %d %s", code, body)
	}
	return tb
}

// putPartner creates partner id (acquirer acq, settling in the demo
// acquirer's account, OTC agents allowed).
func putPartner(t *testing.T, base, id, acq string) {
	t.Helper()
	body := fmt.Sprintf(`{"acquirer_ids":[%q],"lanes":["demo"],"settlement_account":"demo-acquirer-settlement",
		"payer_type":"bank_customer","payer_types":["otc_agent"],"withdrawal_max":50000,"reason":"onboarding"}`, acq)
	if code, body, _ := do(t, "PUT", base+"/v1/partners/"+id, body); code != 201 && code != 200 {
		t.Fatalf("partner %s: %d %s", id, code, body)
	}
}

// Every call without a valid token, or with one lacking the call's
// scope, is refused with a 401 or 403 problem and a WWW-Authenticate
// challenge before anything is read or proposed: no token, another
// scheme, garbage, expired, another audience, tampered, signed by a key
// we do not have, a disabled or unknown client, a certificate-bound token
// without its certificate, and a read-only token on a write.
func TestAuthRefusals(t *testing.T) {
	base, _ := startSettleNode(t)
	defer http.DefaultClient.CloseIdleConnections()
	putPartner(t, base, "acme", "200001")
	if code, body, _ := do(t, "PUT", base+"/v1/agents/acme:T1", `{"currency":"USD","cash_limit":1000}`); code != 201 {
		t.Fatalf("agent: %d %s", code, body)
	}
	_, daysBefore, _ := do(t, "GET", base+"/v1/days", "")
	before := snapshotState(t, base)
	writes := []struct{ method, path, body string }{
		{"PUT", "/v1/routes/r1", `{"bill_type":"WATER","destination":"ledger","reason":"x"}`},
		{"DELETE", "/v1/routes/r1?reason=x", ""},
		{"PUT", "/v1/routes", `{"base_version":0,"reason":"x","routes":[]}`},
		{"PUT", "/v1/partners/acme", `{"acquirer_ids":["200001"],"payer_type":"bank_customer","reason":"x"}`},
		{"POST", "/v1/partners/acme/suspend", `{"reason":"x"}`},
		{"POST", "/v1/partners/acme/resume", `{"reason":"x"}`},
		{"PUT", "/v1/agents/acme:T1", `{"currency":"USD","cash_limit":5}`},
		{"POST", "/v1/agents/acme:T1/settlements", `{"amount":1,"currency":"USD","reference":"R1"}`},
		{"POST", "/v1/accounts", `{"id":"no-actor","kind":"cardholder","currency":"USD"}`},
		{"POST", "/v1/days/close", ""},
		{"POST", "/v1/reconciliations/R1/breaks/B0000001", `{"action":"resolve","note":"x"}`},
		{"POST", "/v1/cluster/join", `{"id":"n9","raft_addr":"127.0.0.1:1"}`},
		{"POST", "/v1/cluster/remove", `{"id":"n9"}`},
		{"POST", "/v1/cluster/transfer-leadership", ""},
		{"POST", "/v1/cluster/snapshot", ""},
		{"POST", "/v1/clients", `{"id":"mallory","scopes":["cluster:admin"]}`},
		{"POST", "/v1/clients/ops1/disable", ""},
		{"GET", "/v1/accounts/card-4111", ""},
		{"GET", "/v1/audit", ""},
	}
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	mint := func(cfg oauth.Config, now time.Time, client, bound string) string {
		iss, err := minter(t, cfg, now).Issue(client, oauth.Scopes, bound)
		if err != nil {
			t.Fatal(err)
		}
		return iss.Token
	}
	good := tokenFor(t, testActor)
	// Tampered: the payload says another client, the signature is the old one's.
	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	parts[1] = base64.RawURLEncoding.EncodeToString(bytes.Replace(payload, []byte(testActor), []byte("ops-tes2"), 2))
	tampered := strings.Join(parts, ".")
	other := func() string {
		key := filepath.Join(t.TempDir(), "other.pem")
		if _, err := oauth.GenerateKeyFile(key); err != nil {
			t.Fatal(err)
		}
		ks, err := oauth.LoadKeys([]string{key})
		if err != nil {
			t.Fatal(err)
		}
		m, _ := oauth.NewServer(oauth.DefaultConfig(), ks, func() *store.Directory { return store.NewDirectory(nil, nil) }, nil, nil)
		iss, err := m.Issue(testActor, oauth.Scopes, "")
		if err != nil {
			t.Fatal(err)
		}
		return iss.Token
	}()
	wrongAud := oauth.DefaultConfig()
	wrongAud.Audience = "switchd-partner-api"
	cases := []struct {
		name    string
		hdr     http.Header
		code    int
		problem string
	}{
		{"no token", http.Header{}, 401, "unauthenticated"},
		{"basic auth", http.Header{"Authorization": {"Basic b3BzOnNlY3JldA=="}}, 401, "unauthenticated"},
		{"garbage", bearer("not.a.jwt"), 401, "invalid-token"},
		{"two headers", http.Header{"Authorization": {"Bearer " + good, "Bearer " + good}}, 401, "invalid-token"},
		{"expired", bearer(mint(oauth.DefaultConfig(), time.Now().Add(-time.Hour), testActor, "")), 401, "token-expired"},
		{"wrong audience", bearer(mint(wrongAud, time.Time{}, testActor, "")), 401, "wrong-audience"},
		{"tampered", bearer(tampered), 401, "invalid-token"},
		{"another key", bearer(other), 401, "invalid-token"},
		{"disabled client", bearer(mint(oauth.DefaultConfig(), time.Time{}, "gone", "")), 401, "client-disabled"},
		{"unknown client", bearer(mint(oauth.DefaultConfig(), time.Time{}, "nobody", "")), 401, "client-disabled"},
		{"bound to a certificate, sent without", bearer(mint(oauth.DefaultConfig(), time.Time{}, testActor, fakeThumbprint)), 401, "certificate-binding"},
	}
	for _, c := range cases {
		for _, wr := range writes {
			code, body, h := doWith(t, c.hdr, wr.method, base+wr.path, wr.body)
			refused(t, base, fmt.Sprintf("%s %s, %s", wr.method, wr.path, c.name), code, body, c.code, c.problem, "", before)
			if !strings.HasPrefix(h.Get("WWW-Authenticate"), `Bearer realm="switchd"`) {
				t.Errorf("%s %s, %s: WWW-Authenticate %q", wr.method, wr.path, c.name, h.Get("WWW-Authenticate"))
			}
		}
	}
	// A read-only client may read, and nothing else.
	reader := as(t, "reader")
	for _, wr := range writes {
		code, body, h := doWith(t, reader, wr.method, base+wr.path, wr.body)
		if wr.path == "/v1/accounts/card-4111" {
			if code != 200 {
				t.Errorf("reader GET account: %d %s", code, body)
			}
			continue
		}
		refused(t, base, fmt.Sprintf("%s %s as reader", wr.method, wr.path), code, body, 403, "insufficient-scope", "", before)
		if !strings.Contains(h.Get("WWW-Authenticate"), `error="insufficient_scope", scope="`) {
			t.Errorf("%s %s as reader: WWW-Authenticate %q", wr.method, wr.path, h.Get("WWW-Authenticate"))
		}
	}
	// A token asked with fewer scopes than its client holds has only those.
	if code, body, _ := doWith(t, as(t, testActor, oauth.ScopeOpsRead), "POST", base+"/v1/cluster/snapshot", ""); code != 403 {
		t.Errorf("snapshot with an ops:read token of an admin client: %d %s", code, body)
	}
	if code, _, _ := do(t, "GET", base+"/v1/accounts/no-actor", ""); code != 404 {
		t.Errorf("an account was created without a token: %d", code)
	}
	if _, days, _ := do(t, "GET", base+"/v1/days", ""); days != daysBefore {
		t.Errorf("a day was closed without a token:\n%s\n%s", daysBefore, days)
	}
	// Open routes stay open.
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/.well-known/jwks.json"} {
		if code, body, _ := doWith(t, http.Header{}, "GET", base+p, ""); code != 200 {
			t.Errorf("%s without a token: %d %s", p, code, body)
		}
	}
}

func TestRoutesAPI(t *testing.T) {
	base := startNode(t)
	defer http.DefaultClient.CloseIdleConnections()
	putPartner(t, base, "acme", "200001")
	v0 := table(t, base).Version

	start := time.Now()
	route := `{"bill_type":"WATER","partner":"acme","destination":"ledger","settlement_account":"biller-power-co","reason":"new water biller"}`
	code, body, _ := do(t, "PUT", base+"/v1/routes/r-water", route)
	var rv struct {
		Version uint64      `json:"version"`
		Route   store.Route `json:"route"`
	}
	if code != 201 || json.Unmarshal([]byte(body), &rv) != nil || rv.Version != v0+1 || rv.Route.PayerType != "*" || rv.Route.SettlementAccount != "biller-power-co" {
		t.Fatalf("create route: %d %s", code, body)
	}
	code, got, _ := do(t, "GET", base+"/v1/routes/r-water", "")
	if code != 200 || !strings.Contains(got, `"bill_type":"WATER","payer_type":"*","partner":"acme","destination":"ledger","settlement_account":"biller-power-co"`) {
		t.Fatalf("GET the route: %d %s", code, got)
	}
	// A change: the audit record names who, when, why, before and after.
	changed := strings.Replace(route, "biller-power-co", "demo-acquirer-settlement", 1)
	changed = strings.Replace(changed, "new water biller", "biller settles through the acquirer", 1)
	if code, body, _ := do(t, "PUT", base+"/v1/routes/r-water", changed); code != 200 || !strings.Contains(body, `"version":`+fmt.Sprint(v0+2)) {
		t.Fatalf("change route: %d %s", code, body)
	}
	recs := auditOf(t, base, "route/r-water")
	if len(recs) != 2 {
		t.Fatalf("audit of route/r-water: %+v", recs)
	}
	r := recs[1]
	if r.Actor != testActor || !strings.HasPrefix(r.Remote, "127.0.0.1:") || r.Action != "route.put" ||
		r.Reason != "biller settles through the acquirer" || r.Time < start.UnixNano() || r.Time > time.Now().UnixNano() ||
		!strings.Contains(string(r.Before), `"settlement_account":"biller-power-co"`) ||
		!strings.Contains(string(r.After), `"settlement_account":"demo-acquirer-settlement"`) {
		t.Errorf("audit record of the change: %+v (before %s, after %s)", r, r.Before, r.After)
	}
	if recs[0].Before != nil || recs[0].Reason != "new water biller" {
		t.Errorf("audit record of the creation: %+v", recs[0])
	}
	// The same again under one Idempotency-Key: the second is a replay;
	// the key with other content is refused.
	keyed := withKey(as(t, testActor), "k-1")
	elec := `{"bill_type":"ELEC","partner":"acme","destination":"ledger","settlement_account":"biller-power-co","reason":"electricity"}`
	if code, body, _ := doWith(t, keyed, "PUT", base+"/v1/routes/r-elec", elec); code != 201 {
		t.Fatalf("keyed create: %d %s", code, body)
	}
	before := snapshotState(t, base)
	if code, body, _ := doWith(t, keyed, "PUT", base+"/v1/routes/r-elec", elec); code != 200 || !strings.Contains(body, `"replayed":true`) {
		t.Errorf("keyed repeat: %d %s", code, body)
	}
	if after := snapshotState(t, base); after != before {
		t.Errorf("a replay changed something")
	}

	// Refusals: each names its field, and nothing changes.
	for _, c := range []struct {
		name, method, path, body string
		code                     int
		typ, field               string
	}{
		{"no reason", "PUT", "/v1/routes/r-x", `{"bill_type":"GAS","destination":"ledger"}`, 422, "invalid-change", "reason"},
		{"blank reason", "PUT", "/v1/routes/r-x", `{"bill_type":"GAS","destination":"ledger","reason":"  "}`, 422, "invalid-change", "reason"},
		{"unknown partner", "PUT", "/v1/routes/r-x", `{"bill_type":"GAS","partner":"nobody","destination":"ledger","reason":"x"}`, 422, "invalid-change", "route.partner"},
		{"unknown account", "PUT", "/v1/routes/r-x", `{"bill_type":"GAS","destination":"ledger","settlement_account":"no-such-account","reason":"x"}`, 422, "invalid-change", "route.settlement_account"},
		{"unknown destination", "PUT", "/v1/routes/r-x", `{"bill_type":"GAS","destination":"mars","reason":"x"}`, 422, "invalid-change", "route.destination"},
		{"duplicate key", "PUT", "/v1/routes/r-x", strings.Replace(route, "new water biller", "again", 1), 422, "invalid-change", "route"},
		{"bad id", "PUT", "/v1/routes/a%20b", `{"bill_type":"GAS","destination":"ledger","reason":"x"}`, 422, "invalid-change", "route.id"},
		{"unknown field", "PUT", "/v1/routes/r-x", `{"bill_type":"GAS","destination":"ledger","reason":"x","color":"red"}`, 400, "bad-request", ""},
		{"key reused", "PUT", "/v1/routes/r-elec", strings.Replace(elec, "electricity", "other", 1), 409, "idempotency-conflict", ""},
		{"delete without reason", "DELETE", "/v1/routes/r-elec", "", 422, "invalid-change", "reason"},
		{"delete unknown", "DELETE", "/v1/routes/nope?reason=x", "", 404, "not-found", ""},
		{"bulk without base version", "PUT", "/v1/routes", `{"reason":"x","routes":[]}`, 422, "invalid-change", "base_version"},
		{"bulk stale", "PUT", "/v1/routes", fmt.Sprintf(`{"base_version":%d,"reason":"x","routes":[]}`, v0), 409, "version-conflict", ""},
		{"bulk duplicate id", "PUT", "/v1/routes", fmt.Sprintf(`{"base_version":%d,"reason":"x","routes":[{"id":"a","bill_type":"A","destination":"ledger"},{"id":"a","bill_type":"B","destination":"ledger"}]}`, v0+3), 422, "invalid-change", "routes[1].id"},
		{"bulk duplicate key", "PUT", "/v1/routes", fmt.Sprintf(`{"base_version":%d,"reason":"x","routes":[{"id":"a","bill_type":"A","destination":"ledger"},{"id":"b","bill_type":"A","destination":"ledger"}]}`, v0+3), 422, "invalid-change", "routes[1]"},
		{"bulk unknown account", "PUT", "/v1/routes", fmt.Sprintf(`{"base_version":%d,"reason":"x","routes":[{"id":"a","bill_type":"A","destination":"ledger","settlement_account":"nope"}]}`, v0+3), 422, "invalid-change", "routes[0].settlement_account"},
	} {
		hdr := as(t, testActor)
		if c.name == "key reused" {
			hdr = keyed
		}
		code, body, _ := doWith(t, hdr, c.method, base+c.path, c.body)
		refused(t, base, c.name, code, body, c.code, c.typ, c.field, before)
	}

	// Explain: the most specific key probed first has no rule, the rule
	// with bill type and partner matches.
	code, body, _ = do(t, "GET", base+"/v1/routes/explain?bill_type=WATER&payer_type=bank_customer&partner=acme", "")
	var ex struct {
		Match *store.Route      `json:"match"`
		Steps []store.Candidate `json:"steps"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &ex) != nil || ex.Match == nil || ex.Match.ID != "r-water" || len(ex.Steps) != 3 {
		t.Fatalf("explain: %d %s", code, body)
	}
	first, last := ex.Steps[0], ex.Steps[len(ex.Steps)-1]
	if first.Route != nil || first.BillType != "WATER" || first.PayerType != "bank_customer" || first.Partner != "acme" ||
		!strings.Contains(first.Why, "no rule") || last.Route == nil || last.PayerType != "*" || last.Partner != "acme" {
		t.Errorf("explain steps: %s", body)
	}
	// Only the demo table's catch-all routes a request nothing else
	// names: without a payer type only four distinct keys are probed,
	// three of them misses.
	code, body, _ = do(t, "GET", base+"/v1/routes/explain?bill_type=NONE&partner=nobody", "")
	ex.Match, ex.Steps = nil, nil
	if code != 200 || json.Unmarshal([]byte(body), &ex) != nil || ex.Match == nil || ex.Match.ID != "default" || len(ex.Steps) != 4 {
		t.Errorf("explain of the catch-all: %d %s", code, body)
	}

	// Bulk replace with 10,000 rules (the size a bank's table grows to
	// is well below; the body limit must allow it), then back to two.
	tb := table(t, base)
	var big strings.Builder
	fmt.Fprintf(&big, `{"base_version":%d,"reason":"bulk load","routes":[`, tb.Version)
	for i := 0; i < 10_000; i++ {
		if i > 0 {
			big.WriteByte(',')
		}
		fmt.Fprintf(&big, `{"id":"bulk-%05d","bill_type":"B%05d","payer_type":"*","partner":"acme","destination":"ledger","settlement_account":"biller-power-co"}`, i, i)
	}
	big.WriteString("]}")
	code, body, _ = do(t, "PUT", base+"/v1/routes", big.String())
	if code != 200 {
		t.Fatalf("bulk of 10,000: %d %.300s", code, body)
	}
	if tb2 := table(t, base); len(tb2.Routes) != 10_000 || tb2.Version != tb.Version+1 {
		t.Fatalf("after the bulk: version %d, %d rules", tb2.Version, len(tb2.Routes))
	}
	two := fmt.Sprintf(`{"base_version":%d,"reason":"back to two","routes":[
		{"id":"r-water","bill_type":"WATER","partner":"acme","destination":"ledger","settlement_account":"biller-power-co"},
		{"id":"r-default","destination":"ledger"}]}`, tb.Version+1)
	if code, body, _ := do(t, "PUT", base+"/v1/routes", two); code != 200 {
		t.Fatalf("bulk of two: %d %.300s", code, body)
	}
	tb = table(t, base)
	if len(tb.Routes) != 2 || tb.Routes[0].ID != "r-default" || tb.Routes[0].BillType != "*" || tb.Routes[1].ID != "r-water" {
		t.Fatalf("table: %+v", tb)
	}
	// The first replace is the seeding of the demo table at bootstrap.
	if recs := auditOf(t, base, "routes"); len(recs) != 3 || recs[0].Actor != "system:seed" || !strings.Contains(string(recs[2].After), `"rules":2`) ||
		!strings.Contains(string(recs[2].Before), `"rules":10000`) {
		t.Errorf("audit of the replaces: %+v", recs)
	}

	// Delete (reason in the query), then it is gone and audited.
	if code, body, _ := do(t, "DELETE", base+"/v1/routes/r-default?reason=no+default+route", ""); code != 200 ||
		!strings.Contains(body, `"id":"r-default"`) {
		t.Fatalf("delete: %d %s", code, body)
	}
	if code, _, _ := do(t, "GET", base+"/v1/routes/r-default", ""); code != 404 {
		t.Errorf("deleted route still there: %d", code)
	}
	if recs := auditOf(t, base, "route/r-default"); len(recs) != 1 || recs[0].Action != "route.delete" || recs[0].After != nil ||
		recs[0].Reason != "no default route" {
		t.Errorf("audit of the delete: %+v", recs)
	}
	// Reason in the body works too.
	if code, body, _ := do(t, "DELETE", base+"/v1/routes/r-water", `{"reason":"biller gone"}`); code != 200 {
		t.Errorf("delete with a body: %d %s", code, body)
	}
}

func TestPartnersAPI(t *testing.T) {
	base := startNode(t)
	defer http.DefaultClient.CloseIdleConnections()
	putPartner(t, base, "acme", "200001")
	code, body, _ := do(t, "GET", base+"/v1/partners/acme", "")
	if code != 200 || !strings.Contains(body, `"acquirer_ids":["200001"]`) || strings.Contains(body, `"suspended"`) {
		t.Fatalf("partner: %d %s", code, body)
	}
	if code, body, _ := do(t, "GET", base+"/v1/partners", ""); code != 200 || !strings.Contains(body, `"id":"acme"`) {
		t.Fatalf("partners: %d %s", code, body)
	}
	before := snapshotState(t, base)
	for _, c := range []struct {
		name, method, path, body string
		code                     int
		typ, field               string
	}{
		{"no reason", "PUT", "/v1/partners/beta", `{"acquirer_ids":["300001"],"payer_type":"bank_customer"}`, 422, "invalid-change", "reason"},
		{"unknown account", "PUT", "/v1/partners/beta", `{"acquirer_ids":["300001"],"payer_type":"bank_customer","settlement_account":"nope","reason":"x"}`, 422, "invalid-change", "partner.settlement_account"},
		{"acquirer taken", "PUT", "/v1/partners/beta", `{"acquirer_ids":["0200001"],"payer_type":"bank_customer","reason":"x"}`, 422, "invalid-change", "partner.acquirer_ids"},
		{"no payer type", "PUT", "/v1/partners/beta", `{"acquirer_ids":["300001"],"reason":"x"}`, 422, "invalid-change", "partner.payer_type"},
		{"float withdrawal max", "PUT", "/v1/partners/beta", `{"acquirer_ids":["300001"],"payer_type":"bank_customer","withdrawal_max":12.5,"reason":"x"}`, 400, "bad-request", ""},
		{"suspend without reason", "POST", "/v1/partners/acme/suspend", `{}`, 422, "invalid-change", "reason"},
		{"suspend unknown", "POST", "/v1/partners/nobody/suspend", `{"reason":"x"}`, 404, "not-found", ""},
	} {
		code, body, _ := do(t, c.method, base+c.path, c.body)
		refused(t, base, c.name, code, body, c.code, c.typ, c.field, before)
	}
	// Suspend keeps everything else; again is no change; resume.
	code, body, _ = do(t, "POST", base+"/v1/partners/acme/suspend", `{"reason":"fraud alert"}`)
	if code != 200 || !strings.Contains(body, `"suspended":true`) || !strings.Contains(body, `"withdrawal_max":50000`) {
		t.Fatalf("suspend: %d %s", code, body)
	}
	before = snapshotState(t, base)
	if code, body, _ := do(t, "POST", base+"/v1/partners/acme/suspend", `{"reason":"again"}`); code != 200 || !strings.Contains(body, `"unchanged":true`) {
		t.Errorf("suspend twice: %d %s", code, body)
	}
	if snapshotState(t, base) != before {
		t.Error("a second suspend changed something")
	}
	if code, body, _ := do(t, "POST", base+"/v1/partners/acme/resume", `{"reason":"cleared"}`); code != 200 || strings.Contains(body, `"suspended"`) {
		t.Fatalf("resume: %d %s", code, body)
	}
	recs := auditOf(t, base, "partner/acme")
	if len(recs) != 3 || recs[0].Action != "partner.put" || recs[1].Action != "partner.suspend" || recs[1].Reason != "fraud alert" ||
		recs[2].Action != "partner.resume" || recs[2].Actor != testActor {
		t.Errorf("partner audit: %+v", recs)
	}
}

func TestAgentsAPI(t *testing.T) {
	tn := newTestNode(t)
	base := tn.start(t)
	defer http.DefaultClient.CloseIdleConnections()
	putPartner(t, base, "acme", "200001")
	if code, body, _ := do(t, "PUT", base+"/v1/partners/plain", `{"acquirer_ids":["300001"],"payer_type":"bank_customer","reason":"no agents"}`); code != 201 {
		t.Fatalf("partner plain: %d %s", code, body)
	}
	before := snapshotState(t, base)
	for _, c := range []struct {
		name, path, body string
		code             int
		typ, field       string
	}{
		{"float limit", "/v1/agents/acme:T1", `{"currency":"USD","cash_limit":100.5}`, 400, "bad-request", ""},
		{"no limit", "/v1/agents/acme:T1", `{"currency":"USD"}`, 422, "invalid-change", "agent.cash_limit"},
		{"unknown partner", "/v1/agents/nobody:T1", `{"currency":"USD","cash_limit":100}`, 422, "invalid-change", "agent.partner"},
		{"partner without agents", "/v1/agents/plain:T1", `{"currency":"USD","cash_limit":100}`, 422, "invalid-change", "agent.partner"},
		{"unknown currency", "/v1/agents/acme:T1", `{"currency":"XXQ","cash_limit":100}`, 422, "invalid-change", "agent.currency"},
		{"no terminal", "/v1/agents/acme", `{"currency":"USD","cash_limit":100}`, 422, "invalid-change", "id"},
		{"negative offline limit", "/v1/agents/acme:T1", `{"currency":"USD","cash_limit":100,"offline_limit":-1}`, 422, "invalid-change", "agent.offline_limit"},
		{"float offline limit", "/v1/agents/acme:T1", `{"currency":"USD","cash_limit":100,"offline_limit":1.5}`, 400, "bad-request", ""},
	} {
		code, body, _ := do(t, "PUT", base+c.path, c.body)
		refused(t, base, c.name, code, body, c.code, c.typ, c.field, before)
	}
	if code, body, _ := do(t, "PUT", base+"/v1/agents/acme:T1", `{"currency":"USD","cash_limit":10000,"offline_limit":2500,"reason":"new agent"}`); code != 201 ||
		!strings.Contains(body, `"offline_limit":2500`) {
		t.Fatalf("agent: %d %s", code, body)
	}
	// A PUT without offline_limit keeps the agent's (docs/ADVICES.md).
	if code, body, _ := do(t, "PUT", base+"/v1/agents/acme:T2", `{"currency":"USD","cash_limit":100,"offline_limit":70,"reason":"second"}`); code != 201 {
		t.Fatalf("agent T2: %d %s", code, body)
	}
	if code, body, _ := do(t, "PUT", base+"/v1/agents/acme:T2", `{"currency":"USD","cash_limit":200,"reason":"cash limit only"}`); code != 200 ||
		!strings.Contains(body, `"cash_limit":200`) || !strings.Contains(body, `"offline_limit":70`) {
		t.Fatalf("agent put without offline_limit: %d %s", code, body)
	}
	// The agent takes 90.00 in cash (a posting against its limit).
	now := time.Now()
	res, err := tn.node.Propose(context.Background(), store.Command{Op: store.OpPost, Key: "cash-1", Fingerprint: "f",
		Time: now.UnixNano(), BusinessDay: now.UTC().Format(time.DateOnly), Partner: "acme", PayerType: store.PayerOTCAgent,
		Agent: "acme:T1", Debit: "bank-funding-usd", Credit: "card-5500", Amount: 9000, Currency: "USD"})
	if err != nil || res.Status != store.StatusOK {
		t.Fatalf("cash-in: %+v %v", res, err)
	}
	code, body, _ := do(t, "GET", base+"/v1/agents/acme:T1", "")
	if code != 200 || !strings.Contains(body, `"cash_limit":10000,"cash_held":9000`) {
		t.Fatalf("agent after cash-in: %d %s", code, body)
	}
	code, body, _ = do(t, "GET", base+"/v1/transfers?payer_type=otc_agent", "")
	if code != 200 || strings.Count(body, `"payer_type":"otc_agent"`) != 1 || !strings.Contains(body, `"agent":"acme:T1"`) {
		t.Errorf("transfers of OTC agents: %d %s", code, body)
	}
	if code, body, _ := do(t, "GET", base+"/v1/transfers?payer_type=mfs_user", ""); code != 200 || body != "{\"transfers\":[]}\n" {
		t.Errorf("transfers of MFS users: %d %s", code, body)
	}
	_, metrics, _ := do(t, "GET", base+"/metrics", "")
	if !strings.Contains(metrics, `switchd_agent_cash_limit_used_ratio{agent="acme:T1"} 0.9`) || !strings.Contains(metrics, "switchd_agents_over_80_percent 1") {
		t.Errorf("agent metrics:\n%s", grepLines(metrics, "agent"))
	}

	before = snapshotState(t, base)
	for _, c := range []struct {
		name, body string
		code       int
		typ, field string
	}{
		{"more than held", `{"amount":9001,"currency":"USD","reference":"R1"}`, 422, "invalid-change", "amount"},
		{"other currency", `{"amount":100,"currency":"EUR","reference":"R1"}`, 422, "invalid-change", "currency"},
		{"float amount", `{"amount":12.34,"currency":"USD","reference":"R1"}`, 400, "bad-request", ""},
		{"no reference", `{"amount":100,"currency":"USD"}`, 422, "invalid-change", "reference"},
		{"zero", `{"amount":0,"currency":"USD","reference":"R1"}`, 422, "invalid-change", "amount"},
	} {
		code, body, _ := do(t, "POST", base+"/v1/agents/acme:T1/settlements", c.body)
		refused(t, base, c.name, code, body, c.code, c.typ, c.field, before)
	}
	code, body, _ = do(t, "POST", base+"/v1/agents/nobody:T9/settlements", `{"amount":100,"currency":"USD","reference":"R1"}`)
	refused(t, base, "unknown agent", code, body, 404, "not-found", "", before)

	settle := `{"amount":5000,"currency":"USD","reference":"SLIP-0001"}`
	if code, body, _ := do(t, "POST", base+"/v1/agents/acme:T1/settlements", settle); code != 200 ||
		!strings.Contains(body, `"cash_held":4000,"settled":5000`) || strings.Contains(body, "replayed") {
		t.Fatalf("settle: %d %s", code, body)
	}
	// The same slip again (another operator, say): its first answer, and
	// nothing settled twice. The same slip with another amount: refused.
	before = snapshotState(t, base)
	if code, body, _ := doWith(t, as(t, "ops2"), "POST", base+"/v1/agents/acme:T1/settlements", settle); code != 200 ||
		!strings.Contains(body, `"cash_held":4000,"settled":5000`) || !strings.Contains(body, `"replayed":true`) {
		t.Errorf("settle again: %d %s", code, body)
	}
	code, body, _ = do(t, "POST", base+"/v1/agents/acme:T1/settlements", strings.Replace(settle, "5000", "4000", 1))
	refused(t, base, "same slip, other amount", code, body, 409, "idempotency-conflict", "", before)

	recs := auditOf(t, base, "agent/acme:T1")
	if len(recs) != 2 || recs[0].Action != "agent.put" || recs[0].Reason != "new agent" || recs[1].Action != "agent.settle" ||
		recs[1].Actor != testActor || !strings.Contains(string(recs[1].After), `"reference":"SLIP-0001"`) ||
		!strings.Contains(string(recs[1].Before), `"cash_held":9000`) {
		t.Errorf("agent audit: %+v", recs)
	}
	_, metrics, _ = do(t, "GET", base+"/metrics", "")
	if !strings.Contains(metrics, `switchd_agent_cash_limit_used_ratio{agent="acme:T1"} 0.4`) || !strings.Contains(metrics, "switchd_agents_over_80_percent 0") {
		t.Errorf("agent metrics after settling:\n%s", grepLines(metrics, "agent"))
	}
	if code, body, _ := do(t, "GET", base+"/v1/agents", ""); code != 200 || !strings.Contains(body, `"id":"acme:T1"`) {
		t.Errorf("agents: %d %s", code, body)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// The chain verifies; after one stored record is changed behind the
// store's back, verify names that record.
func TestAuditVerify(t *testing.T) {
	cfg := testConfig(t, switchdtest.FreePort(t))
	cfg.Finish()
	tn := openTestNode(t, cfg, nil, true)
	base := tn.start(t)
	defer http.DefaultClient.CloseIdleConnections()
	putPartner(t, base, "acme", "200001")
	// Not ELEC nor WATER: the demo table routes them.
	for i, bt := range []string{"SEWER", "GAS", "TEL"} {
		body := fmt.Sprintf(`{"bill_type":%q,"destination":"ledger","reason":"biller %d"}`, bt, i)
		if code, body, _ := do(t, "PUT", base+"/v1/routes/r-"+strings.ToLower(bt), body); code != 201 {
			t.Fatalf("route: %d %s", code, body)
		}
	}
	code, body, _ := do(t, "GET", base+"/v1/audit/verify", "")
	var v store.AuditVerdict
	if code != 200 || json.Unmarshal([]byte(body), &v) != nil || !v.OK || v.Records < 4 || len(v.Head) != 64 || v.AppliedIndex == 0 {
		t.Fatalf("verify: %d %s", code, body)
	}
	recs := auditOf(t, base, "route/r-gas")
	if len(recs) != 1 {
		t.Fatalf("audit of r-gas: %+v", recs)
	}
	bad := recs[0].Seq
	tn.close()

	// Someone edits the reason of one record in pebble.
	db, err := pebble.Open(cfg.Store.Dir, &pebble.Options{FormatMajorVersion: pebble.FormatNewest})
	if err != nil {
		t.Fatal(err)
	}
	k := binary.BigEndian.AppendUint64([]byte{'u'}, bad)
	val, closer, err := db.Get(k)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(val), `"reason":"biller 1"`, `"reason":"nothing to see"`, 1)
	closer.Close()
	if edited == string(val) {
		t.Fatalf("record %d is not what the test expects: %s", bad, val)
	}
	if err := db.Set(k, []byte(edited), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	tn = openTestNode(t, cfg, nil, false)
	base = tn.start(t)
	code, body, _ = do(t, "GET", base+"/v1/audit/verify", "")
	v = store.AuditVerdict{}
	if code != 200 || json.Unmarshal([]byte(body), &v) != nil || v.OK || v.BadSeq != bad ||
		!strings.Contains(v.Problem, fmt.Sprintf("record %d", bad)) {
		t.Fatalf("verify after the edit: %d %s, want record %d named", code, body, bad)
	}
}

// Membership changes are audited: a second raft entry right after the
// change names the actor, the node and what it became.
func TestMembershipAudited(t *testing.T) {
	leader := newTestNode(t)
	base := leader.start(t)
	defer http.DefaultClient.CloseIdleConnections()
	follower := newTestNodeVia(t, leader) // joined through cluster.Node.Join, not audited
	addr := follower.node.Status().RaftAddr
	id := follower.cfg.Cluster.NodeID
	// Joining again through the API (a no-op for raft) is recorded.
	code, body, _ := doWith(t, as(t, "ops1"), "POST", base+"/v1/cluster/join",
		fmt.Sprintf(`{"id":%q,"raft_addr":%q,"reason":"rejoin after maintenance"}`, id, addr))
	if code != 200 || !strings.Contains(body, `"audited":true`) {
		t.Fatalf("join: %d %s", code, body)
	}
	// Leadership over and back: each record is proposed after the
	// transfer, through whichever node leads by then.
	lead := leader.cfg.Cluster.NodeID
	for _, to := range []string{id, lead} {
		code, body, _ := doWith(t, as(t, "ops1"), "POST", base+"/v1/cluster/transfer-leadership", fmt.Sprintf(`{"id":%q}`, to))
		if code != 200 || !strings.Contains(body, `"audited":true`) {
			t.Fatalf("transfer to %s: %d %s", to, code, body)
		}
	}
	if err := leader.node.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := doWith(t, as(t, "ops2"), "POST", base+"/v1/cluster/remove", fmt.Sprintf(`{"id":%q}`, id)); code != 200 ||
		!strings.Contains(body, `"audited":true`) {
		t.Fatalf("remove: %d %s", code, body)
	}
	recs := auditOf(t, base, "node/"+id)
	if len(recs) != 3 || recs[0].Action != "cluster.join" || recs[0].Actor != "ops1" || recs[0].Reason != "rejoin after maintenance" ||
		!strings.Contains(string(recs[0].After), `"raft_addr":"`+addr+`"`) ||
		recs[1].Action != "cluster.transfer-leadership" || !strings.Contains(string(recs[1].After), `"from":"`+lead+`"`) ||
		recs[2].Action != "cluster.remove" || recs[2].Actor != "ops2" || !strings.HasPrefix(recs[2].Remote, "127.0.0.1:") {
		t.Fatalf("membership audit: %+v", recs)
	}
	if back := auditOf(t, base, "node/"+lead); len(back) != 1 || !strings.Contains(string(back[0].After), `"to":"`+lead+`"`) {
		t.Fatalf("audit of the transfer back: %+v", back)
	}
	// A refused change is not recorded.
	if code, _, _ := do(t, "POST", base+"/v1/cluster/transfer-leadership", ""); code != 409 {
		t.Errorf("transfer on one voter: %d", code)
	}
	if code, body, _ := do(t, "GET", base+"/v1/audit?object=node/any", ""); code != 200 || body != "{\"records\":[]}\n" {
		t.Errorf("a refused transfer was audited: %s", body)
	}
	if code, body, _ := do(t, "GET", base+"/v1/audit/verify", ""); code != 200 || !strings.Contains(body, `"ok":true`) {
		t.Errorf("verify: %d %s", code, body)
	}
}

// The audit list filters by object and time and pages by sequence.
func TestAuditList(t *testing.T) {
	base := startNode(t)
	defer http.DefaultClient.CloseIdleConnections()
	putPartner(t, base, "acme", "200001")
	mid := time.Now()
	time.Sleep(2 * time.Millisecond)
	putPartner(t, base, "beta", "300001")
	all := auditOf(t, base, "")
	if len(all) < 2 {
		t.Fatalf("audit: %+v", all)
	}
	q := "?from=" + mid.UTC().Format(time.RFC3339Nano)
	code, body, _ := do(t, "GET", base+"/v1/audit"+q, "")
	var p auditPage
	if code != 200 || json.Unmarshal([]byte(body), &p) != nil || len(p.Records) != 1 || p.Records[0].Object != "partner/beta" {
		t.Errorf("audit %s: %d %s", q, code, body)
	}
	q = "?to=" + mid.UTC().Format(time.RFC3339Nano) + "&object=partner/beta"
	if code, body, _ := do(t, "GET", base+"/v1/audit"+q, ""); code != 200 || body != "{\"records\":[]}\n" {
		t.Errorf("audit %s: %d %s", q, code, body)
	}
	code, body, _ = do(t, "GET", base+"/v1/audit?limit=1", "")
	if code != 200 || !strings.Contains(body, fmt.Sprintf(`"next_after":%d`, all[0].Seq)) {
		t.Errorf("first page of 1: %d %s", code, body)
	}
	code, body, _ = do(t, "GET", base+fmt.Sprintf("/v1/audit?after=%d", all[0].Seq), "")
	if json.Unmarshal([]byte(body), &p) != nil || len(p.Records) != len(all)-1 || p.Records[0].Seq != all[1].Seq {
		t.Errorf("after %d: %d %s", all[0].Seq, code, body)
	}
	for _, q := range []string{"?from=yesterday", "?to=1", "?after=x", "?limit=0"} {
		if code, _, _ := do(t, "GET", base+"/v1/audit"+q, ""); code != 400 {
			t.Errorf("audit%s: %d, want 400", q, code)
		}
	}
}

// withKey adds an Idempotency-Key to h.
func withKey(h http.Header, key string) http.Header {
	h.Set("Idempotency-Key", key)
	return h
}
