package ops_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/config"
	"github.com/switchd/switchd/ops"
	"github.com/switchd/switchd/settle"
	"github.com/switchd/switchd/store"
	switching "github.com/switchd/switchd/switch"
)

// startSettleNode is startNode with the settlement routes, and returns
// the node to propose with.
func startSettleNode(t *testing.T) (string, *cluster.Node) {
	t.Helper()
	cfg := config.Demo()
	cfg.DataDir = t.TempDir()
	cfg.Cluster.RaftAddr = "127.0.0.1:0"
	cfg.Cluster.HeartbeatTimeout = 50 * time.Millisecond
	cfg.Cluster.ElectionTimeout = 50 * time.Millisecond
	cfg.Cluster.LeaderLeaseTimeout = 50 * time.Millisecond
	cfg.Ops.Listen = "127.0.0.1:0"
	cfg.Finish()
	st, err := store.Open(cfg.Store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := prometheus.NewRegistry()
	node, err := cluster.New(cfg.Cluster, st, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := node.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	pipe, err := switching.NewPipeline(cfg.Switch, node, st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pipe.Seed(ctx, cfg.Accounts, time.Now()); err != nil {
		t.Fatal(err)
	}
	cal, err := settle.NewCalendar(cfg.Settle.Zone, cfg.Settle.Cutover)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := settle.New(cfg.Settle, st, settle.NewDays(cal, st, node, nil, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	srv, err := ops.New(cfg.Ops, st, pipe, node, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.HandleSettlement(svc)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(context.Background()) })
	return "http://" + srv.Addr().String(), node
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
	if code, _, _ := do(t, "GET", base+"/v1/jobs/job-unknown", ""); code != 404 {
		t.Errorf("unknown job: %d", code)
	}
}
