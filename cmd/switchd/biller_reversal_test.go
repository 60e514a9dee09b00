package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchd/switchd/internal/switchdtest"
	"github.com/switchd/switchd/sim"
)

// reversalQuiet is how long the receiver is watched after the event
// arrived, for a second one: the node polls its outbox every 50 ms here
// and retries a failed delivery after 5 s, so a duplicate from a replay or
// a second event would show well within it.
const reversalQuiet = 6 * time.Second

// proc is a process a test started from a built binary: its stdout and
// stderr go to files (no copying goroutines); cleanup sends SIGTERM and
// kills what has not exited within 10 s.
type proc struct {
	cmd       *exec.Cmd
	out, errs string
}

func startProc(t *testing.T, bin, name string, args ...string) *proc {
	t.Helper()
	dir := t.TempDir()
	p := &proc{out: filepath.Join(dir, name+".out"), errs: filepath.Join(dir, name+".err")}
	stdout, err := os.Create(p.out)
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.Create(p.errs)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = stdout, stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		exited := make(chan struct{})
		go func() { p.cmd.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-exited
		}
		stdout.Close()
		stderr.Close()
		if t.Failed() {
			b, _ := os.ReadFile(p.errs)
			t.Logf("%s stderr:\n%s", name, b)
		}
	})
	return p
}

// waitListening waits until addr accepts a TCP connection.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", addr, err)
		}
	}
}

// receivedLine is one line of switchload webhook-receiver's output.
type receivedLine struct {
	WebhookID string `json:"webhook_id"`
	Type      string `json:"type"`
	PaymentID string `json:"payment_id"`
	Status    string `json:"status"`
	Verified  bool   `json:"verified"`
	Duplicate bool   `json:"duplicate"`
	Error     string `json:"error"`
}

func receivedLines(t *testing.T, path string) []receivedLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []receivedLine
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var l receivedLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("receiver line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// partnerTxn is a transaction as GET /v1/transactions lists it.
type partnerTxn struct {
	ID, Type, Amount, Original string
	Day                        string `json:"business_day"`
	Debit                      string `json:"debtor_account"`
	Credit                     string `json:"creditor_account"`
}

// partnerDelivery is a webhook delivery as the partner API shows it.
type partnerDelivery struct {
	EventID   string `json:"event_id"`
	Type      string
	PaymentID string `json:"payment_id"`
	State     string
	Attempts  []struct {
		StatusCode int `json:"status_code"`
	}
}

// Issue 13, "Done means": a biller reverses yesterday's payment and the
// partner's webhook receiver gets exactly one signed event. Real
// processes: switchd on the demo config (its listeners moved to free
// ports), switchload sim biller as demo-biller (verifying switchd's
// request signature and bearer token, signing its reversals), switchload
// webhook-receiver as the partner's endpoint, switchctl for the day close
// and the settlement file. The partner registers for payment.reversed over
// the REST API and pays a WATER bill there (forwarded to the biller); ops
// closes the day; a reversal signed with another secret is refused and
// changes nothing; the biller reverses the payment through its control
// API; the same delivery again and another event about the same payment
// are answered without a second reversal. The receiver gets one verified
// payment.reversed, one delivery, and nothing more while it is watched;
// the partner's transaction list shows the reversal on the new day, and
// that day's settlement file has its row; and each day's reconciliation
// (the partner's copy of our settlement file, the biller's postings: the
// payment on its day, the reversal on the next) has no break.
func TestBillerReversalReachesPartnerWebhook(t *testing.T) {
	bin := switchdtest.Build(t) // skips under -short
	load, ctl := buildBinary(t, "switchload"), buildBinary(t, "switchctl")
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The biller signs its reversals with revSecret (switchd checks them
	// against reversal_secret_file); switchd signs its payments with
	// reqSecret and sends reqToken (from its environment), which the
	// biller checks.
	revSecret := []byte("reversal-secret-for-the-demo-biller!")
	revFile := write("demo-biller.secret", "whsec_"+base64.StdEncoding.EncodeToString(revSecret)+"\n")
	reqSecret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("request-signing-secret-of-switchd"))
	const reqToken = "biller-bearer-token-1"
	t.Setenv("SWITCHD_TEST_BILLER_SIGNING_SECRET", reqSecret)
	t.Setenv("SWITCHD_TEST_BILLER_TOKEN", reqToken)
	reqSecretFile, reqTokenFile := write("request.secret", reqSecret+"\n"), write("request.token", reqToken+"\n")

	billerAddr, billerCtl, apiAddr, recvAddr := switchdtest.FreePort(t), switchdtest.FreePort(t), switchdtest.FreePort(t), switchdtest.FreePort(t)
	node := switchdtest.StartWith(t, bin, switchdtest.Options{Extra: fmt.Sprintf(`api:
  listen: %s
  lane: api
  partners: [demo-acquirer]
webhooks:
  enabled: true
  allow_http_hosts: [127.0.0.1]
  allow_networks: [127.0.0.0/8]
  poll_interval: 50ms
destinations:
  - id: demo-biller # the demo's WATER route names it
    kind: http
    settlement_account: demo-biller-settlement
    http: {url: "http://%s/payments", timeout_ms: 3000, reversal_secret_file: %q, signing_secret_env: SWITCHD_TEST_BILLER_SIGNING_SECRET, token_env: SWITCHD_TEST_BILLER_TOKEN}
`, apiAddr, billerAddr, revFile)})
	reversalURL := node.OpsURL + "/v1/billers/demo-biller/reversals"
	startProc(t, load, "biller", "sim", "biller", "--listen", billerAddr, "--control", billerCtl,
		"--reversal-url", reversalURL, "--webhook-secret-file", revFile, "--backoff-min", "100ms", "--backoff-max", "1s",
		"--request-signing-secret-file", reqSecretFile, "--request-token-file", reqTokenFile)
	waitListening(t, billerAddr)
	waitListening(t, billerCtl)

	plain := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	do := func(method, url, body string, hdr map[string]string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	billerStats := func() sim.BillerStats {
		t.Helper()
		var s sim.BillerStats
		if st, b := do("GET", "http://"+billerCtl+"/stats", "", nil); st != 200 || json.Unmarshal(b, &s) != nil {
			t.Fatalf("biller stats: %d %s", st, b)
		}
		return s
	}
	switchctl := func(args ...string) string {
		t.Helper()
		args = append(args, "--ops", node.OpsURL, "--credentials", node.Credentials)
		out, err := exec.Command(ctl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("switchctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}

	// The partner's API client (a config file makes none of its own).
	secret := switchdtest.PartnerClient(t, node.OpsURL, "demo-acquirer", []string{"payments:write", "payments:read", "webhooks:write", "webhooks:read"}, "biller reversal test")
	api := switchdtest.NewAPI(t, node.DataDir, apiAddr, "demo-acquirer", secret)
	tok := api.Token()
	call := func(method, path, key, body string) (int, []byte) {
		t.Helper()
		return api.Call(tok, method, path, key, body)
	}

	// The partner's endpoint for payment.reversed, and its receiver.
	code, body := call("POST", "/v1/webhook-endpoints", "hook-rev-1", `{"url":"http://`+recvAddr+`/hook","event_types":["payment.reversed"]}`)
	var ep struct{ ID, Secret string }
	if json.Unmarshal(body, &ep); code != http.StatusCreated || !strings.HasPrefix(ep.Secret, "whsec_") {
		t.Fatalf("endpoint: %d %s", code, body)
	}
	recv := startProc(t, load, "receiver", "webhook-receiver", "--listen", recvAddr, "--secret", ep.Secret)
	waitListening(t, recvAddr)

	// A WATER bill over the REST API: routed to demo-biller, signed, paid.
	code, body = call("POST", "/v1/bill/pay", "water-42", `{"bill_type":"WATER","biller_reference":"WATER-42","amount":"25.00","currency":"USD","debtor_account":"card-4111"}`)
	var paid struct {
		ID, Status string
		Day        string `json:"business_day"`
	}
	if json.Unmarshal(body, &paid); code != http.StatusCreated || paid.ID == "" || paid.Status != "completed" {
		t.Fatalf("bill payment: %d %s", code, body)
	}
	if s := billerStats(); s.Payments["approved"] != 1 || s.Payments["unauthorized"] != 0 || s.Stored != 1 {
		t.Fatalf("the biller saw %+v, want one approved payment", s)
	}
	// The forward the biller was paid under (its Idempotency-Key): the
	// first of a fresh ledger.
	fwdID := "F00000000000001"
	resp, err := switchdtest.Get(node.OpsURL + "/v1/forwards/" + fwdID)
	if err != nil {
		t.Fatal(err)
	}
	var fw struct {
		Destination string `json:"dest"`
		State       string `json:"state"`
		Transfer    string `json:"transfer"`
	}
	json.NewDecoder(resp.Body).Decode(&fw)
	resp.Body.Close()
	if fw.Destination != "demo-biller" || fw.State != "approved" || fw.Transfer != paid.ID {
		t.Fatalf("forward %s: %+v, want demo-biller's approval of %s", fwdID, fw, paid.ID)
	}

	// Ops closes the day: the payment is yesterday's now.
	day1 := switchctl("day", "close", "--print-day")
	if day1 != paid.Day {
		t.Fatalf("closed %q, the payment is of %q", day1, paid.Day)
	}

	// A reversal signed with another secret: 401, nothing posted, no event.
	event := fmt.Sprintf(`{"type":"bill_payment.reversed","timestamp":%q,"data":{"payment_id":"bp_00000001","idempotency_key":%q,"bill_type":"WATER","biller_reference":"WATER-42","amount":"25.00","currency":"USD"}}`,
		time.Now().UTC().Format(time.RFC3339), fwdID)
	signed := func(id string, secret []byte) map[string]string {
		now := time.Now().Unix()
		return map[string]string{"Content-Type": "application/json", "webhook-id": id, "webhook-timestamp": strconv.FormatInt(now, 10),
			"webhook-signature": sim.Sign(secret, id, now, []byte(event))}
	}
	if st, b := do("POST", reversalURL, event, signed("rev_forged", []byte("not-the-billers-secret-not-the-billers"))); st != http.StatusUnauthorized {
		t.Fatalf("a reversal with a wrong signature: %d %s, want 401", st, b)
	}
	reversals := func() []partnerTxn {
		t.Helper()
		code, body := call("GET", "/v1/transactions?type=reverse", "", "")
		var page struct{ Transactions []partnerTxn }
		if json.Unmarshal(body, &page); code != 200 {
			t.Fatalf("transactions: %d %s", code, body)
		}
		return page.Transactions
	}
	deliveries := func() []partnerDelivery {
		t.Helper()
		code, body := call("GET", "/v1/webhook-endpoints/"+ep.ID+"/deliveries", "", "")
		var ds struct{ Deliveries []partnerDelivery }
		if json.Unmarshal(body, &ds); code != 200 {
			t.Fatalf("deliveries: %d %s", code, body)
		}
		return ds.Deliveries
	}
	if rs, ds, ls := reversals(), deliveries(), receivedLines(t, recv.out); len(rs) != 0 || len(ds) != 0 || len(ls) != 0 {
		t.Fatalf("a forged reversal changed something: reversals %+v, deliveries %+v, received %+v", rs, ds, ls)
	}

	// The biller reverses the payment (its control API): the signed call
	// reaches switchd, which posts the compensating transfer and writes
	// the partner's event.
	st, b := do("POST", "http://"+billerCtl+"/reversals", `{"payment_id":"bp_00000001","reason":"meter misread"}`, nil)
	var queued struct {
		WebhookID string `json:"webhook_id"`
	}
	if json.Unmarshal(b, &queued); st != http.StatusAccepted || queued.WebhookID == "" {
		t.Fatalf("biller reversal: %d %s", st, b)
	}
	for deadline := time.Now().Add(30 * time.Second); len(receivedLines(t, recv.out)) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no webhook within 30 s; biller %+v, deliveries %+v", billerStats(), deliveries())
		}
	}
	if s := billerStats().Reversals; s.Delivered != 1 || s.Attempts != 1 || s.Failed != 0 {
		t.Fatalf("the biller's reversal calls: %+v", s)
	}
	// The same call again (a biller's retry), and another event about the
	// same payment: neither reverses again.
	var again struct{ Transfer, Detail string }
	rs := reversals()
	if len(rs) != 1 {
		t.Fatalf("reversals %+v", rs)
	}
	for _, id := range []string{queued.WebhookID, "rev_second_event"} {
		st, b := do("POST", reversalURL, event, signed(id, revSecret))
		if json.Unmarshal(b, &again); st != http.StatusOK || (id != queued.WebhookID && again.Detail != "already reversed") || again.Transfer != rs[0].ID {
			t.Fatalf("reversal event %s again: %d %s", id, st, b)
		}
	}

	// Watched for a second event: there is none.
	time.Sleep(reversalQuiet)
	lines := receivedLines(t, recv.out)
	distinct := map[string]bool{}
	for _, l := range lines {
		distinct[l.WebhookID] = true
	}
	if len(lines) != 1 || len(distinct) != 1 || !lines[0].Verified || lines[0].Duplicate || lines[0].Type != "payment.reversed" || lines[0].PaymentID != paid.ID || lines[0].Status != "reversed" {
		t.Fatalf("the receiver got %d deliveries of %d webhook-ids, want exactly one verified payment.reversed of %s: %+v", len(lines), len(distinct), paid.ID, lines)
	}
	ds := deliveries()
	if len(ds) != 1 || ds[0].EventID != lines[0].WebhookID || ds[0].State != "delivered" || len(ds[0].Attempts) != 1 || ds[0].Attempts[0].StatusCode != http.StatusNoContent {
		t.Fatalf("deliveries %+v", ds)
	}

	// The payment reads reversed (its biller took it back), not refunded.
	code, body = call("GET", "/v1/payments/"+paid.ID, "", "")
	if json.Unmarshal(body, &paid); code != http.StatusOK || paid.Status != "reversed" {
		t.Fatalf("GET the reversed payment: %d %s", code, body)
	}

	// The partner's transaction list shows the reversal, on the new day.
	day2 := switchctl("day", "status")
	rs = reversals()
	if len(rs) != 1 || rs[0].Original != paid.ID || rs[0].Amount != "25.00" || rs[0].Day == day1 || !strings.Contains(day2, rs[0].Day) ||
		rs[0].Debit != "demo-biller-settlement" || rs[0].Credit != "card-4111" {
		t.Fatalf("the partner's reversals %+v (payment %s of %s; %s)", rs, paid.ID, day1, day2)
	}
	code, body = call("GET", "/v1/payments/"+paid.ID, "", "")
	if code != 200 || !strings.Contains(string(body), `"refunded":"25.00"`) {
		t.Fatalf("the payment after the reversal: %d %s", code, body)
	}

	// The next day's settlement file has the compensating transfer's row.
	if got := switchctl("day", "close", "--print-day"); got != rs[0].Day {
		t.Fatalf("closed %q, the reversal is of %q", got, rs[0].Day)
	}
	out := filepath.Join(dir, "out")
	switchctl("settlement", "pull", "--day", rs[0].Day, "--partner", "demo-acquirer", "--out", out)
	f, err := os.Open(filepath.Join(out, "demo-acquirer.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cr := csv.NewReader(f)
	cr.FieldsPerRecord = -1
	recs, err := cr.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var row []string
	for _, r := range recs {
		if len(r) > 17 && r[0] == "D" && r[3] == rs[0].ID {
			row = r
		}
	}
	// record, business_day, partner, transfer_id, type, …, amount (12),
	// currency, debit, credit, status (16), original_transfer_id (17).
	if row == nil || row[1] != rs[0].Day || row[2] != "demo-acquirer" || row[4] != "reversal" || row[12] != "25.00" ||
		row[14] != "demo-biller-settlement" || row[15] != "card-4111" || row[16] != "posted" || row[17] != paid.ID {
		t.Fatalf("settlement file of %s: row %q of\n%v", rs[0].Day, row, recs)
	}
	// Each day's three-way reconciliation, as ops runs it: the partner
	// agrees with us and sends our settlement file back; the biller sends
	// its postings (biller layout) from what it knows — the reference we
	// paid under, amount, currency and its status: on the payment's day
	// the payment it took, on the reversal's day the reversal, in its own
	// word ("reversed"). Neither day has a break.
	out1 := filepath.Join(dir, "out1")
	switchctl("settlement", "pull", "--day", day1, "--partner", "demo-acquirer", "--out", out1)
	st, b = do("GET", "http://"+billerCtl+"/payments?biller_reference=WATER-42", "", nil)
	var known struct{ Payments []sim.Payment }
	if json.Unmarshal(b, &known); st != 200 || len(known.Payments) != 1 || known.Payments[0].Status != "reversed" {
		t.Fatalf("the biller's payments of WATER-42: %d %s", st, b)
	}
	bp := known.Payments[0]
	billerFile := func(day, status string) string {
		return write("biller-"+day+".csv", fmt.Sprintf("rrn,stan,amount,currency,date,status\n%s,,%s,%s,%s,%s\n", bp.BillerReference, bp.Amount, bp.Currency, day, status))
	}
	for _, c := range []struct{ day, partnerFile, billerFile string }{
		{day1, filepath.Join(out1, "demo-acquirer.csv"), billerFile(day1, "POSTED")},
		{rs[0].Day, filepath.Join(out, "demo-acquirer.csv"), billerFile(rs[0].Day, bp.Status)},
	} {
		id := switchctl("recon", "run", "--day", c.day, "--partner", "demo-acquirer", "--partner-file", c.partnerFile, "--biller-file", c.billerFile, "--print-id")
		var sum struct {
			State       string
			PartnerRows int `json:"partner_rows"`
			BillerRows  int `json:"biller_rows"`
			Matched     int
		}
		var list struct{ Breaks []json.RawMessage }
		json.Unmarshal([]byte(switchctl("recon", "status", id, "--json")), &sum)
		breaks := switchctl("recon", "breaks", id, "--json")
		if err := json.Unmarshal([]byte(breaks), &list); err != nil {
			t.Fatalf("recon breaks %s: %v\n%s", id, err, breaks)
		}
		// Every row of both files is matched, so no break can name the
		// payment or its reversal.
		if sum.State != "done" || sum.PartnerRows != 1 || sum.BillerRows != 1 || sum.Matched != 2 || len(list.Breaks) != 0 {
			t.Fatalf("reconciliation %s of %s (payment %s, reversal %s): %+v, breaks:\n%s", id, c.day, paid.ID, rs[0].ID, sum, breaks)
		}
	}
	t.Logf("payment %s of %s reversed by %s on %s; receiver: %d delivery, %d webhook-id (%s); settlement row %v",
		paid.ID, day1, rs[0].ID, rs[0].Day, len(lines), len(distinct), lines[0].WebhookID, row[:5])
}
