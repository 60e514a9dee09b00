package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchd/switchd/api"
	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/ops"
	"github.com/switchd/switchd/settle"
	"github.com/switchd/switchd/store"
)

// stmtNode is a node whose partner API serves statements from a real
// settle.Service, with the ops API over the same service beside it (the
// files ops serves are what the partner must get).
type stmtNode struct {
	*node
	svc     *settle.Service
	opsURL  string
	opsTok  string
	partner string // the demo partner's token
}

func startStatementNode(t *testing.T) *stmtNode {
	t.Helper()
	n, srv := newNode(t)
	cal, err := settle.NewCalendar(n.cfg.Settle.Zone, n.cfg.Settle.Cutover)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := settle.New(n.cfg.Settle, n.st, settle.NewDays(cal, n.st, n.cn, nil, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	srv.HandleStatements(svc)
	n.url = n.listen(t, srv)

	ocfg := n.cfg.Ops
	ocfg.Listen = "127.0.0.1:0"
	osrv, err := ops.New(ocfg, n.st, n.core, n.cn, n.minter, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	osrv.HandleSettlement(svc)
	if err := osrv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { osrv.Close(context.Background()) })
	ctx := context.Background()
	res, err := n.cn.Propose(ctx, store.Command{Op: store.OpPutClient, Key: "c|ops-reader", Fingerprint: "f", Time: time.Now().UnixNano(),
		Admin: &store.Admin{Actor: "test", ClientChange: &store.ClientChange{Action: store.ClientCreate,
			Client: store.Client{ID: "ops-reader", Scopes: []string{oauth.ScopeOpsRead}, Certs: []store.ClientCert{{Thumbprint: strings.Repeat("B", 43)}}}}}})
	if err != nil || res.Status != store.StatusOK {
		t.Fatal(err, res)
	}
	return &stmtNode{node: n, svc: svc, opsURL: "http://" + osrv.Addr().String(),
		opsTok: n.token(t, "ops-reader", oauth.ScopeOpsRead), partner: n.token(t, "demo-acquirer")}
}

// closeDay pays 12.34 from card-4111 to the demo partner's settlement
// account, closes the business day and returns it.
func (n *stmtNode) closeDay(t *testing.T) string {
	t.Helper()
	if a := n.call(t, n.partner, "POST", "/v1/payments", "stmt-pay", pay); a.code != 201 {
		t.Fatalf("payment: %d %s", a.code, a.body)
	}
	res, err := n.svc.CloseDay(context.Background(), "", nil)
	if err != nil || res.Closed == "" {
		t.Fatalf("close: %+v %v", res, err)
	}
	return res.Closed
}

// opsGET is a GET of the ops API, with its reader's token.
func (n *stmtNode) opsGET(t *testing.T, path string) answer {
	t.Helper()
	req, _ := http.NewRequest("GET", n.opsURL+path, nil)
	req.Header.Set("Authorization", "Bearer "+n.opsTok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b), resp.Header}
}

// wait polls the job at self until it is done.
func (n *stmtNode) wait(t *testing.T, self string) api.StatementJob {
	t.Helper()
	var j api.StatementJob
	for deadline := time.Now().Add(10 * time.Second); j.Status != "done"; time.Sleep(10 * time.Millisecond) {
		a := n.call(t, n.partner, "GET", self, "", "")
		j = api.StatementJob{}
		if a.code != 200 || json.Unmarshal([]byte(a.body), &j) != nil || j.Status == "failed" || time.Now().After(deadline) {
			t.Fatalf("job %s: %d %s", self, a.code, a.body)
		}
	}
	return j
}

// A statement in each format: 202 with the job, its replay (same job,
// marked), the key with another body (409), the job done with its file,
// and the file byte for byte what the ops API serves for the account-day.
func TestStatementsFlow(t *testing.T) {
	n := startStatementNode(t)
	day := n.closeDay(t)
	const acct = "demo-acquirer-settlement"
	for _, c := range []struct{ format, ext, ctype, has string }{
		{"mt940", ".mt940", "text/plain; charset=us-ascii", ":61:"},
		{"camt053", ".camt053.xml", "application/xml", "<Amt Ccy=\"USD\">12.34</Amt>"},
	} {
		body := `{"day":"` + day + `","format":"` + c.format + `"}`
		first := n.call(t, n.partner, "POST", "/v1/accounts/"+acct+"/statements", "st-"+c.format, body)
		var j api.StatementJob
		if first.code != 202 || json.Unmarshal([]byte(first.body), &j) != nil || j.Account != acct || j.Day != day || j.Format != c.format ||
			!slices.Contains([]string{"queued", "running", "done"}, j.Status) || j.Links.Self != "/v1/accounts/"+acct+"/statements/"+j.ID ||
			first.hdr.Get("Location") != j.Links.Self || first.hdr.Get("Idempotent-Replayed") != "" {
			t.Fatalf("%s: %d %s %v", c.format, first.code, first.body, first.hdr)
		}
		again := n.call(t, n.partner, "POST", "/v1/accounts/"+acct+"/statements", "st-"+c.format, body)
		var j2 api.StatementJob
		if again.code != 202 || json.Unmarshal([]byte(again.body), &j2) != nil || j2.ID != j.ID || again.hdr.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("%s replay: %d %s", c.format, again.code, again.body)
		}
		other := strings.Replace(body, c.format, map[string]string{"mt940": "camt053", "camt053": "mt940"}[c.format], 1)
		if a := n.call(t, n.partner, "POST", "/v1/accounts/"+acct+"/statements", "st-"+c.format, other); a.code != 409 || a.problem() != "idempotency-conflict" {
			t.Fatalf("%s key with another body: %d %s", c.format, a.code, a.body)
		}
		done := n.wait(t, j.Links.Self)
		name := acct + c.ext
		if len(done.Files) != 1 || done.Files[0].Name != name || done.Files[0].Entries != 1 || done.Links.File != j.Links.Self+"/"+name {
			t.Fatalf("%s done: %+v", c.format, done)
		}
		f := n.call(t, n.partner, "GET", done.Links.File, "", "")
		if f.code != 200 || f.hdr.Get("Content-Type") != c.ctype || !strings.Contains(f.body, c.has) || int64(len(f.body)) != done.Files[0].Bytes {
			t.Fatalf("%s file: %d %q %s", c.format, f.code, f.hdr.Get("Content-Type"), f.body)
		}
		o := n.opsGET(t, "/v1/statements/"+acct+"/"+day+c.ext)
		if o.code != 200 || o.body != f.body {
			t.Fatalf("%s: the partner's file is not the ops API's (%d):\n%s\n--- ops:\n%s", c.format, o.code, f.body, o.body)
		}
		sum := n.opsGET(t, "/v1/statements/"+acct+"/"+day+c.ext+".sha256")
		if !strings.HasPrefix(sum.body, done.Files[0].SHA256+"  ") {
			t.Errorf("%s sha256: %s, ops %s", c.format, done.Files[0].SHA256, sum.body)
		}
	}
}

// Every refusal gets its exact status and problem type; none starts a
// job (the statements directory holds only the one job's files made
// after them) or moves money.
func TestStatementRefusals(t *testing.T) {
	n := startStatementNode(t)
	day := n.closeDay(t)
	open, err := n.st.OpenDay()
	if err != nil {
		t.Fatal(err)
	}
	before := [3]int64{balance(t, n.st, "card-4111"), balance(t, n.st, "demo-acquirer-settlement"), balance(t, n.st, "demo-agents-settlement")}
	// A job of card-4111's statement started by ops: no partner's.
	code, body := func() (int, string) {
		a := n.opsGET(t, "/v1/statements/card-4111/"+day+".mt940")
		var j settle.Job
		json.Unmarshal([]byte(a.body), &j)
		return a.code, j.ID
	}()
	if code != 202 || body == "" {
		t.Fatalf("ops job: %d %s", code, body)
	}
	opsJob := body + "-mt940"
	const own = "/v1/accounts/demo-acquirer-settlement/statements"
	req := func(d, f string) string { return `{"day":"` + d + `","format":"` + f + `"}` }
	cases := []struct {
		name, tok, method, path, key, body string
		code                               int
		typ                                string
	}{
		{"unknown account", n.partner, "POST", "/v1/accounts/nobody/statements", "r1", req(day, "mt940"), 404, "unknown-account"},
		{"another partner's account", n.partner, "POST", "/v1/accounts/demo-agents-settlement/statements", "r2", req(day, "mt940"), 404, "unknown-account"},
		{"cardholder account, no partner", n.partner, "POST", "/v1/accounts/card-4111/statements", "r3", req(day, "mt940"), 404, "unknown-account"},
		{"the open day", n.partner, "POST", own, "r4", req(open, "mt940"), 409, "day-not-closed"},
		{"a day never opened", n.partner, "POST", own, "r5", req("2001-01-01", "mt940"), 409, "day-not-closed"},
		{"not a day", n.partner, "POST", own, "r6", req("2026-13-01", "mt940"), 400, "validation"},
		{"not a date at all", n.partner, "POST", own, "r7", req("yesterday", "mt940"), 400, "validation"},
		{"bad format", n.partner, "POST", own, "r8", req(day, "pdf"), 400, "validation"},
		{"no format", n.partner, "POST", own, "r9", `{"day":"` + day + `"}`, 400, "validation"},
		{"unknown field", n.partner, "POST", own, "r10", `{"day":"` + day + `","format":"mt940","account":"card-4111"}`, 400, "validation"},
		{"no Idempotency-Key", n.partner, "POST", own, "", req(day, "mt940"), 400, "validation"},
		{"Idempotency-Key with a bar", n.partner, "POST", own, "a|b", req(day, "mt940"), 400, "validation"},
		{"wrong scope", n.token(t, "demo-acquirer", oauth.ScopePaymentsWrite, oauth.ScopePaymentsRead), "POST", own, "r13", req(day, "mt940"), 403, "insufficient-scope"},
		{"no token", "", "POST", own, "r14", req(day, "mt940"), 401, "unauthenticated"},
		{"client that is no partner", n.token(t, "stranger"), "POST", own, "r15", req(day, "mt940"), 403, "unknown-partner"},
		{"an ops token", n.opsTok, "POST", own, "r16", req(day, "mt940"), 403, "insufficient-scope"},
		{"unknown job", n.partner, "GET", own + "/job-0123456789abcdef-mt940", "", "", 404, "no-job"},
		{"job id without a format", n.partner, "GET", own + "/" + strings.TrimSuffix(opsJob, "-mt940"), "", "", 404, "no-job"},
		{"another account's job under own account", n.partner, "GET", own + "/" + opsJob, "", "", 404, "no-job"},
		{"the partnerless account's job", n.partner, "GET", "/v1/accounts/card-4111/statements/" + opsJob, "", "", 404, "unknown-account"},
		{"its file", n.partner, "GET", "/v1/accounts/card-4111/statements/" + opsJob + "/card-4111.mt940", "", "", 404, "unknown-account"},
		{"job read with the wrong scope", n.token(t, "demo-acquirer", oauth.ScopePaymentsRead), "GET", own + "/" + opsJob, "", "", 403, "insufficient-scope"},
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
	// The partner's own job, then files it does not list.
	a := n.call(t, n.partner, "POST", own, "ok", req(day, "mt940"))
	var j api.StatementJob
	if a.code != 202 || json.Unmarshal([]byte(a.body), &j) != nil {
		t.Fatalf("own: %d %s", a.code, a.body)
	}
	n.wait(t, j.Links.Self)
	for _, name := range []string{"demo-acquirer-settlement.camt053.xml", "demo-acquirer-settlement.mt940.sha256", "card-4111.mt940", "..%2Fcard-4111.mt940"} {
		if f := n.call(t, n.partner, "GET", j.Links.Self+"/"+name, "", ""); f.code != 404 || f.problem() != "no-file" {
			t.Errorf("file %s: %d %s", name, f.code, f.body)
		}
	}
	// Only the ops job's and the partner's job's files were made.
	var made []string
	filepath.WalkDir(filepath.Join(n.cfg.Settle.Dir, "statements"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(n.cfg.Settle.Dir, p)
			made = append(made, rel)
		}
		return nil
	})
	slices.Sort(made)
	want := []string{"statements/" + day + "/card-4111.camt053.xml", "statements/" + day + "/card-4111.camt053.xml.sha256",
		"statements/" + day + "/card-4111.mt940", "statements/" + day + "/card-4111.mt940.sha256",
		"statements/" + day + "/demo-acquirer-settlement.camt053.xml", "statements/" + day + "/demo-acquirer-settlement.camt053.xml.sha256",
		"statements/" + day + "/demo-acquirer-settlement.mt940", "statements/" + day + "/demo-acquirer-settlement.mt940.sha256"}
	if !slices.Equal(made, want) {
		t.Errorf("files made:\n%v\nwant\n%v", made, want)
	}
	if after := [3]int64{balance(t, n.st, "card-4111"), balance(t, n.st, "demo-acquirer-settlement"), balance(t, n.st, "demo-agents-settlement")}; after != before {
		t.Errorf("balances moved: %v → %v", before, after)
	}
}

// Without HandleStatements the routes are documented and answer 503.
func TestStatementsNotServed(t *testing.T) {
	n := startNode(t)
	a := n.call(t, n.token(t, "demo-acquirer"), "POST", "/v1/accounts/demo-acquirer-settlement/statements", "k", `{"day":"2026-01-02","format":"mt940"}`)
	if a.code != 503 || a.problem() != "not-ready" {
		t.Fatalf("%d %s", a.code, a.body)
	}
	doc := n.call(t, "", "GET", "/v1/openapi.json", "", "")
	for _, p := range []string{`"/v1/accounts/{id}/statements"`, `"/v1/accounts/{id}/statements/{job}"`, `"/v1/accounts/{id}/statements/{job}/{file}"`} {
		if !strings.Contains(doc.body, p) {
			t.Errorf("no %s in the document", p)
		}
	}
}

// secondStatementServer is another node's partner API over the same
// ledger with its own settle service and directory: nothing of the
// first one's files or jobs.
func (n *stmtNode) secondStatementServer(t *testing.T) (*stmtNode, string) {
	t.Helper()
	cfg := n.cfg.Settle
	cfg.Dir = t.TempDir()
	cal, err := settle.NewCalendar(cfg.Zone, cfg.Cutover)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := settle.New(cfg, n.st, settle.NewDays(cal, n.st, n.cn, nil, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	srv := n.newServer(t)
	srv.HandleStatements(svc)
	m := *n.node
	m.url = n.listen(t, srv)
	o := *n
	o.node = &m
	return &o, cfg.Dir
}

// A job survives a restart and is answered by another node from the
// ledger: the POST's replay byte for byte, GET done, and the file, made
// there again, the same bytes (SHA-256) as the first node's. A job
// recorded but never finished (its node died) is run by the node a GET
// reaches. Another partner sees none of them.
func TestStatementJobAcrossNodes(t *testing.T) {
	n := startStatementNode(t)
	day := n.closeDay(t)
	const own = "/v1/accounts/demo-acquirer-settlement/statements"
	body := `{"day":"` + day + `","format":"mt940"}`
	first := n.call(t, n.partner, "POST", own, "x-1", body)
	var j api.StatementJob
	if first.code != 202 || json.Unmarshal([]byte(first.body), &j) != nil || !strings.HasPrefix(j.ID, "stj-") {
		t.Fatalf("post: %d %s", first.code, first.body)
	}
	done := n.wait(t, j.Links.Self)
	f1 := n.call(t, n.partner, "GET", done.Links.File, "", "")
	replay1 := n.call(t, n.partner, "POST", own, "x-1", body)

	m, dir := n.secondStatementServer(t)
	replay2 := m.call(t, n.partner, "POST", own, "x-1", body)
	if replay2.code != 202 || replay2.body != replay1.body || replay2.hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay on the second node: %d %s, first %s", replay2.code, replay2.body, replay1.body)
	}
	if a := m.call(t, n.partner, "POST", own, "x-1", `{"day":"`+day+`","format":"camt053"}`); a.code != 409 || a.problem() != "idempotency-conflict" {
		t.Fatalf("key with another body on the second node: %d %s", a.code, a.body)
	}
	g := m.call(t, n.partner, "GET", j.Links.Self, "", "")
	var j2 api.StatementJob
	if g.code != 200 || json.Unmarshal([]byte(g.body), &j2) != nil || j2.Status != "done" || !reflect.DeepEqual(j2.Files, done.Files) {
		t.Fatalf("job on the second node: %d %s", g.code, g.body)
	}
	if _, err := os.Stat(filepath.Join(dir, "statements", day, "demo-acquirer-settlement.mt940")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the second node holds the file before it is asked: %v", err)
	}
	f2 := m.call(t, n.partner, "GET", done.Links.File, "", "")
	if f2.code != 200 || f2.body != f1.body {
		t.Fatalf("file on the second node: %d, %d bytes, first %d", f2.code, len(f2.body), len(f1.body))
	}
	if sum := sha256.Sum256([]byte(f2.body)); hex.EncodeToString(sum[:]) != done.Files[0].SHA256 {
		t.Fatal("second node's file is not the recorded SHA-256")
	}

	// A job recorded by a node that died before it ran it.
	id := "stj-0123456789abcdef"
	res, err := n.cn.Propose(context.Background(), store.Command{Op: store.OpPutStatementJob, Key: "demo-acquirer|statements|died",
		Fingerprint: "statement|demo-acquirer-settlement|" + day + "|camt053", Time: time.Now().UnixNano(), Partner: "demo-acquirer",
		StatementJob: &store.StatementJob{ID: id, Account: "demo-acquirer-settlement", Day: day, Format: "camt053", Request: "died", State: store.StatementQueued}})
	if err != nil || res.Status != store.StatusOK {
		t.Fatal(err, res)
	}
	resumed := m.wait(t, own+"/"+id+"-camt053")
	if len(resumed.Files) != 1 || resumed.Files[0].Name != "demo-acquirer-settlement.camt053.xml" {
		t.Fatalf("resumed job: %+v", resumed)
	}
	// Recorded: the first node answers it done without running it.
	if g := n.call(t, n.partner, "GET", own+"/"+id+"-camt053", "", ""); g.code != 200 || !strings.Contains(g.body, `"status":"done"`) || !strings.Contains(g.body, resumed.Files[0].SHA256) {
		t.Fatalf("resumed job on the first node: %d %s", g.code, g.body)
	}

	// Another partner: no such job (its own account space is empty).
	other := n.token(t, "demo-agents")
	for _, p := range []string{j.Links.Self, done.Links.File} {
		if a := m.call(t, other, "GET", p, "", ""); a.code != 404 {
			t.Fatalf("another partner reads %s: %d %s", p, a.code, a.body)
		}
	}
}
