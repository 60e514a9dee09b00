package ops_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/settle"
	"github.com/switchd/switchd/store"
)

// startSettleNode is startNode with the settlement routes, and returns
// the node to propose with.
func startSettleNode(t *testing.T) (string, *cluster.Node) {
	t.Helper()
	base, tn := startSettleNodeVia(t, nil)
	return base, tn.node
}

// startSettleNodeVia is startSettleNode for a member that via adds (nil:
// a new cluster).
func startSettleNodeVia(t *testing.T, via *testNode) (string, *testNode) {
	t.Helper()
	tn := newTestNodeVia(t, via)
	cal, err := settle.NewCalendar(tn.cfg.Settle.Zone, tn.cfg.Settle.Cutover)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := settle.New(tn.cfg.Settle, tn.st, settle.NewDays(cal, tn.st, tn.node, nil, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	tn.srv.HandleSettlement(svc)
	tn.srv.HandleRecon(svc)
	return tn.start(t), tn
}

func TestSettlementAPI(t *testing.T) {
	base, node := startSettleNode(t)
	defer http.DefaultClient.CloseIdleConnections()
	now := time.Now()
	res, err := node.Propose(context.Background(), store.Command{Op: store.OpPost, Key: "t1", Fingerprint: "f",
		Time: now.UnixNano(), BusinessDay: now.UTC().Format(time.DateOnly), Partner: "demo-acquirer",
		Debit: "card-4111", Credit: "demo-acquirer-settlement", Amount: 1234, Currency: "USD",
		Ref: store.Ref{MTI: "0200", ProcCode: "000000", STAN: "000001", RRN: "000000000001"}})
	if err != nil || res.Status != store.StatusOK {
		t.Fatalf("post: %+v %v", res, err)
	}
	var days struct {
		Open string      `json:"open"`
		Days []store.Day `json:"days"`
	}
	code, body, _ := do(t, "GET", base+"/v1/days", "")
	if code != 200 || json.Unmarshal([]byte(body), &days) != nil || days.Open == "" {
		t.Fatalf("days: %d %s", code, body)
	}
	day := days.Open
	// The open day has no files yet.
	if code, body, _ := do(t, "POST", base+"/v1/settlements", `{"day":"`+day+`","partner":"demo-acquirer"}`); code != 409 {
		t.Errorf("open day: %d %s", code, body)
	}
	code, body, _ = do(t, "POST", base+"/v1/days/close", "")
	var closed settle.DayResult
	if code != 200 || json.Unmarshal([]byte(body), &closed) != nil || closed.Closed != day || closed.Open <= day {
		t.Fatalf("close: %d %s", code, body)
	}
	if code, body, _ := do(t, "POST", base+"/v1/days/close", `{"day":"`+day+`"}`); code != 200 || !strings.Contains(body, `"already_closed":true`) {
		t.Errorf("second close: %d %s", code, body)
	}
	// The close names its operator in the audit chain.
	if recs := auditOf(t, base, "day/"+day); len(recs) == 0 || recs[len(recs)-1].Action != "day.close" || recs[len(recs)-1].Actor != testActor {
		t.Errorf("audit of the close: %+v", recs)
	}
	if code, body, _ := do(t, "POST", base+"/v1/days/close", `{"day":"2001-01-01"}`); code != 409 {
		t.Errorf("close a day that is not open: %d %s", code, body)
	}
	for _, bad := range []string{`{"day":"x","partner":"demo-acquirer"}`, `{"day":"` + day + `","partner":"../etc"}`, `{"nope":1}`} {
		if code, body, _ := do(t, "POST", base+"/v1/settlements", bad); code != 400 {
			t.Errorf("%s: %d %s", bad, code, body)
		}
	}
	// A GET of a file not made yet starts its job.
	code, body, hdr := do(t, "GET", base+"/v1/settlements/"+day+"/demo-acquirer.csv", "")
	var job settle.Job
	if code != 202 || json.Unmarshal([]byte(body), &job) != nil || hdr.Get("Location") != "/v1/jobs/"+job.ID {
		t.Fatalf("first GET: %d %s", code, body)
	}
	for deadline := time.Now().Add(10 * time.Second); job.State != settle.JobDone; {
		if time.Now().After(deadline) || job.State == settle.JobFailed {
			t.Fatalf("job: %+v", job)
		}
		time.Sleep(10 * time.Millisecond)
		_, body, _ = do(t, "GET", base+"/v1/jobs/"+job.ID, "")
		job = settle.Job{}
		json.Unmarshal([]byte(body), &job)
	}
	code, csv, hdr := do(t, "GET", base+"/v1/settlements/"+day+"/demo-acquirer.csv", "")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/csv") ||
		!strings.Contains(csv, ",12.34,USD,card-4111,demo-acquirer-settlement,posted,") {
		t.Fatalf("csv: %d %s", code, csv)
	}
	sum := sha256.Sum256([]byte(csv))
	if code, body, _ := do(t, "GET", base+"/v1/settlements/"+day+"/demo-acquirer.csv.sha256", ""); code != 200 ||
		body != hex.EncodeToString(sum[:])+"  demo-acquirer.csv\n" {
		t.Errorf("sha256: %d %q", code, body)
	}
	if code, body, _ := do(t, "GET", base+"/v1/settlements/"+day+"/demo-acquirer.json", ""); code != 200 || !json.Valid([]byte(body)) {
		t.Errorf("json: %d %s", code, body)
	}
	if code, _, _ := do(t, "GET", base+"/v1/settlements/"+day+"/demo-acquirer.xls", ""); code != 404 {
		t.Errorf("unknown extension: %d", code)
	}
	if code, body, _ := do(t, "POST", base+"/v1/statements", `{"day":"`+day+`","account":"nobody"}`); code != 404 {
		t.Errorf("statement of an unknown account: %d %s", code, body)
	}
	if code, body, _ := do(t, "GET", base+"/v1/statements/card-4111/"+day+".mt940", ""); code != 202 || !strings.Contains(body, `"kind":"statement"`) {
		t.Errorf("statement GET: %d %s", code, body)
	}
	if code, _, _ := do(t, "GET", base+"/v1/jobs/job-unknown", ""); code != 404 {
		t.Errorf("unknown job: %d", code)
	}
}

// waitRecon takes the answer (code, body) to a reconciliation's upload and
// polls it until it is done; it returns its status and the last body.
func waitRecon(t *testing.T, base string, code int, body string) (settle.ReconStatus, string) {
	t.Helper()
	var st settle.ReconStatus
	if code != 202 || json.Unmarshal([]byte(body), &st) != nil || st.ID == "" {
		t.Fatalf("start: %d %s", code, body)
	}
	for deadline := time.Now().Add(10 * time.Second); st.State != settle.JobDone; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) || st.State == settle.JobFailed {
			t.Fatalf("recon: %+v", st)
		}
		_, body, _ = do(t, "GET", base+"/v1/reconciliations/"+st.ID, "")
		st = settle.ReconStatus{}
		json.Unmarshal([]byte(body), &st)
	}
	return st, body
}

func upload(t *testing.T, url string, fields map[string]string, files map[string]string) (int, string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	for k, v := range files {
		fw, _ := mw.CreateFormFile(k, k+".csv")
		fw.Write([]byte(v))
	}
	mw.Close()
	req, err := http.NewRequest("POST", url, &body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = as(t, testActor)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func TestReconAPI(t *testing.T) {
	base, node := startSettleNode(t)
	defer http.DefaultClient.CloseIdleConnections()
	now := time.Now()
	post := func(key, stan string, amt int64, credit string) {
		res, err := node.Propose(context.Background(), store.Command{Op: store.OpPost, Key: key, Fingerprint: "f",
			Time: now.UnixNano(), BusinessDay: now.UTC().Format(time.DateOnly), Partner: "demo-acquirer",
			Debit: "card-4111", Credit: credit, Amount: amt, Currency: "USD",
			Ref: store.Ref{MTI: "0200", ProcCode: "500000", STAN: stan, RRN: "RRN" + stan}})
		if err != nil || res.Status != store.StatusOK {
			t.Fatalf("post: %+v %v", res, err)
		}
	}
	post("a", "000001", 1000, "biller-power-co")
	post("b", "000002", 2000, "biller-power-co")
	_, body, _ := do(t, "POST", base+"/v1/days/close", "")
	var closed settle.DayResult
	json.Unmarshal([]byte(body), &closed)
	day := closed.Closed
	partner := "record,rrn,stan,amount,currency,business_day,status\nD,RRN000001,000001,10.00,USD," + day + ",posted\nD,RRN000002,000002,20.01,USD," + day + ",posted\n"
	biller := "rrn,stan,amount,currency,date,status\nRRN000001,000001,10.00,USD," + day + ",FAIL\n"
	code, body := upload(t, base+"/v1/reconciliations", map[string]string{"day": day, "partner": "demo-acquirer"},
		map[string]string{"partner_file": partner, "biller_file": biller})
	st, body := waitRecon(t, base, code, body)
	// 20.01 vs 20.00: B3; the biller failed what we posted: B4; the biller
	// never got the second: B2.
	if st.Counts[settle.B3] != 1 || st.Counts[settle.B4] != 1 || st.Counts[settle.B2] != 1 || st.Matched != 1 {
		t.Fatalf("counts %s", body)
	}
	code, csvBody, hdr := do(t, "GET", base+"/v1/reconciliations/"+st.ID+"/breaks?code=B2&format=csv", "")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/csv") || strings.Count(csvBody, "\n") != 2 || !strings.Contains(csvBody, ",B2,Eng,biller,") {
		t.Fatalf("B2 csv: %d %s", code, csvBody)
	}
	var list struct {
		Breaks []settle.Break `json:"breaks"`
	}
	_, body, _ = do(t, "GET", base+"/v1/reconciliations/"+st.ID+"/breaks?code=B4", "")
	if json.Unmarshal([]byte(body), &list) != nil || len(list.Breaks) != 1 {
		t.Fatalf("B4: %s", body)
	}
	bid := list.Breaks[0].ID
	// Without an actor, or with a body naming someone else: refused, the
	// break stays open.
	for _, hdr := range []http.Header{{}, as(t, "ops2")} {
		code, body, _ := doWith(t, hdr, "POST", base+"/v1/reconciliations/"+st.ID+"/breaks/"+bid, `{"action":"resolve","note":"x","actor":"ops1"}`)
		want := map[bool]string{true: "unauthenticated", false: "bad-request"}[len(hdr) == 0]
		wantCode := map[bool]int{true: 401, false: 400}[len(hdr) == 0]
		if code != wantCode || problemType(t, body) != want {
			t.Errorf("resolve as %v: %d %s, want %d %s", hdr, code, body, wantCode, want)
		}
	}
	if _, body, _ := do(t, "GET", base+"/v1/reconciliations/"+st.ID+"/breaks/"+bid, ""); !strings.Contains(body, `"state":"open"`) {
		t.Errorf("break after refused resolves: %s", body)
	}
	ops1 := as(t, "ops1")
	if code, body, _ := doWith(t, ops1, "POST", base+"/v1/reconciliations/"+st.ID+"/breaks/"+bid, `{"action":"resolve","note":"biller retried","actor":"ops1"}`); code != 200 ||
		!strings.Contains(body, `"state":"resolved"`) || !strings.Contains(body, `"actor":"ops1"`) {
		t.Errorf("resolve: %d %s", code, body)
	}
	if recs := auditOf(t, base, "break/"+st.ID+"/"+bid); len(recs) != 1 || recs[0].Actor != "ops1" ||
		!strings.HasPrefix(recs[0].Remote, "127.0.0.1:") || recs[0].Reason != "biller retried" {
		t.Errorf("audit of the resolve: %+v", recs)
	}
	if code, body, _ := do(t, "POST", base+"/v1/reconciliations/"+st.ID+"/breaks/"+bid, `{"action":"resolve","note":"x"}`); code != 409 || problemType(t, body) != "break-resolved" {
		t.Errorf("resolve twice: %d %s", code, body)
	}
	if code, _, _ := do(t, "POST", base+"/v1/reconciliations/"+st.ID+"/breaks/"+bid, `{"action":"delete"}`); code != 400 {
		t.Errorf("bad action: %d", code)
	}
	if code, body, _ := do(t, "GET", base+"/v1/reconciliations/Rnope", ""); code != 404 || problemType(t, body) != "no-reconciliation" {
		t.Errorf("unknown recon: %d %s", code, body)
	}
	if code, body := upload(t, base+"/v1/reconciliations", map[string]string{"day": day, "partner": "demo-acquirer"},
		map[string]string{"partner_file": partner}); code != 400 {
		t.Errorf("missing biller file: %d %s", code, body)
	}
	// The biller field names whose file it is: the http biller's file owes
	// none of the power company's postings (no B2), and says so.
	code, body = upload(t, base+"/v1/reconciliations", map[string]string{"day": day, "partner": "demo-acquirer", "biller": "demo-biller"},
		map[string]string{"partner_file": partner, "biller_file": biller})
	scoped, body := waitRecon(t, base, code, body)
	if scoped.ID == st.ID || scoped.Biller != "demo-biller" || scoped.Counts[settle.B2] != 0 || scoped.Counts[settle.B4] != 1 {
		t.Errorf("biller demo-biller: %s", body)
	}
	if code, body := upload(t, base+"/v1/reconciliations", map[string]string{"day": day, "partner": "demo-acquirer", "biller": "card-4111"},
		map[string]string{"partner_file": partner, "biller_file": biller}); code != 400 || problemType(t, body) != "bad-request" || !strings.Contains(body, "kind cardholder") {
		t.Errorf("a cardholder account as the biller: %d %s", code, body)
	}
}

// Through a follower: closing the day is forwarded to the leader, the day
// list shows the close at once, and a break resolved through the follower
// answers with its new state (the follower reads it back after catching up
// with the leader, which applied it first).
func TestSettleAPIThroughFollower(t *testing.T) {
	_, leader := startSettleNodeVia(t, nil)
	base, follower := startSettleNodeVia(t, leader)
	defer http.DefaultClient.CloseIdleConnections()
	now := time.Now()
	res, err := leader.node.Propose(context.Background(), store.Command{Op: store.OpPost, Key: "a", Fingerprint: "f",
		Time: now.UnixNano(), BusinessDay: now.UTC().Format(time.DateOnly), Partner: "demo-acquirer",
		Debit: "card-4111", Credit: "biller-power-co", Amount: 1000, Currency: "USD",
		Ref: store.Ref{MTI: "0200", ProcCode: "500000", STAN: "000001", RRN: "RRN000001"}})
	if err != nil || res.Status != store.StatusOK {
		t.Fatalf("post: %+v %v", res, err)
	}
	code, body, _ := do(t, "POST", base+"/v1/days/close", "")
	var closed settle.DayResult
	if code != 200 || json.Unmarshal([]byte(body), &closed) != nil || closed.Closed == "" {
		t.Fatalf("close the day through the follower: %d %s", code, body)
	}
	day := closed.Closed
	if code, body, _ := do(t, "GET", base+"/v1/days", ""); code != 200 || !strings.Contains(body, `"day":"`+day+`","state":"closed"`) {
		t.Fatalf("days through the follower right after the close: %d %s", code, body)
	}
	if err := follower.node.ReadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	partner := "record,rrn,stan,amount,currency,business_day,status\nD,RRN000001,000001,10.01,USD," + day + ",posted\n"
	biller := "rrn,stan,amount,currency,date,status\nRRN000001,000001,10.00,USD," + day + ",OK\n"
	code, body = upload(t, base+"/v1/reconciliations", map[string]string{"day": day, "partner": "demo-acquirer"},
		map[string]string{"partner_file": partner, "biller_file": biller})
	st, body := waitRecon(t, base, code, body)
	var list struct {
		Breaks []settle.Break `json:"breaks"`
	}
	if _, body, _ = do(t, "GET", base+"/v1/reconciliations/"+st.ID+"/breaks?code=B3", ""); json.Unmarshal([]byte(body), &list) != nil || len(list.Breaks) != 1 {
		t.Fatalf("B3 (10.01 against 10.00): %s", body)
	}
	for i, b := range []string{`{"action":"assign","assignee":"ops2","actor":"ops1"}`, `{"action":"resolve","note":"partner re-sent","actor":"ops1"}`} {
		want := []string{`"state":"assigned"`, `"state":"resolved"`}[i]
		if code, body, _ := doWith(t, as(t, "ops1"), "POST", base+"/v1/reconciliations/"+st.ID+"/breaks/"+list.Breaks[0].ID, b); code != 200 || !strings.Contains(body, want) {
			t.Fatalf("%s through the follower: %d %s, want %s", b, code, body, want)
		}
	}
}
