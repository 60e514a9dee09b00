package settle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchd/switchd/store"
)

var rewrite = flag.Bool("rewrite", false, "rewrite golden files in testdata")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *rewrite {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -rewrite to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (review, then -rewrite):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestCalendar(t *testing.T) {
	ny, _ := time.LoadLocation("America/New_York")
	cases := []struct {
		zone, cutover string
		at            time.Time
		want          string
	}{
		{"UTC", "23:55", time.Date(2026, 3, 2, 23, 54, 59, 0, time.UTC), "2026-03-02"},
		{"UTC", "23:55", time.Date(2026, 3, 2, 23, 55, 0, 0, time.UTC), "2026-03-03"},
		{"UTC", "00:00", time.Date(2026, 3, 2, 23, 59, 59, 0, time.UTC), "2026-03-02"},
		{"UTC", "00:00", time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC), "2026-03-03"},
		{"America/New_York", "23:55", time.Date(2026, 3, 3, 4, 54, 0, 0, time.UTC), "2026-03-02"}, // 23:54 EST
		{"America/New_York", "23:55", time.Date(2026, 3, 3, 4, 56, 0, 0, time.UTC), "2026-03-03"},
		{"America/New_York", "23:55", time.Date(2026, 12, 31, 23, 56, 0, 0, ny), "2027-01-01"},
		// The night DST starts (2026-03-08 02:00 → 03:00 in New York).
		{"America/New_York", "02:30", time.Date(2026, 3, 8, 3, 31, 0, 0, ny), "2026-03-09"},
	}
	for _, tc := range cases {
		c, err := NewCalendar(tc.zone, tc.cutover)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.DayAt(tc.at); got != tc.want {
			t.Errorf("%s %s at %s: %s, want %s", tc.zone, tc.cutover, tc.at, got, tc.want)
		}
	}
	if _, err := NewCalendar("UTC", "24:00"); err == nil {
		t.Error("24:00 accepted")
	}
}

func TestTickOpensClosesAndSkipsIdleDays(t *testing.T) {
	l := newLedger(t)
	cal, _ := NewCalendar("UTC", "23:55")
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	d := NewDays(cal, l, l, nil, func() time.Time { return now })
	ctx := context.Background()
	if r, err := d.Tick(ctx); err != nil || r.Open != "2026-03-02" {
		t.Fatalf("first tick: %+v %v", r, err)
	}
	now = time.Date(2026, 3, 2, 23, 54, 0, 0, time.UTC)
	if r, err := d.Tick(ctx); err != nil || r.Closed != "" || r.Open != "2026-03-02" {
		t.Fatalf("before cutover: %+v %v", r, err)
	}
	now = time.Date(2026, 3, 2, 23, 55, 1, 0, time.UTC)
	if r, err := d.Tick(ctx); err != nil || r.Closed != "2026-03-02" || r.Open != "2026-03-03" {
		t.Fatalf("cutover: %+v %v", r, err)
	}
	// A message the partner timestamped before midnight lands in the new day.
	seedAccounts(t, l)
	late := txn(store.OpPost, "late-000001", 100, time.Date(2026, 3, 2, 23, 56, 0, 0, time.UTC))
	late.Debit, late.Credit = "fund", "card1"
	id := l.must(t, late)[0].TransferID
	if tr, _ := l.Transfer(id); tr.BusinessDay != "2026-03-03" {
		t.Errorf("late message in %s", tr.BusinessDay)
	}
	// Down for three days: the next tick closes 03-03 and opens the day
	// the clock is in.
	now = time.Date(2026, 3, 6, 8, 0, 0, 0, time.UTC)
	if r, err := d.Tick(ctx); err != nil || r.Closed != "2026-03-03" || r.Open != "2026-03-06" {
		t.Fatalf("after downtime: %+v %v", r, err)
	}
	// Manual close, then the schedule tries the same day: a no-op.
	r, err := d.Close(ctx, "", &store.Admin{Actor: "ops1", Remote: "192.0.2.7:4711"})
	if err != nil || r.Closed != "2026-03-06" || r.Open != "2026-03-07" || r.AlreadyClosed {
		t.Fatalf("manual close: %+v %v", r, err)
	}
	// The audit chain names the operator of the manual close and the
	// switch for the cutover's.
	for day, want := range map[string]string{"2026-03-06": "ops1", "2026-03-03": "system"} {
		recs, err := l.Audit(store.AuditFilter{Object: "day/" + day})
		var close *store.AuditRecord
		for i := range recs {
			if recs[i].Action == "day.close" {
				close = &recs[i]
			}
		}
		if err != nil || close == nil || close.Actor != want || want == "ops1" && close.Remote != "192.0.2.7:4711" {
			t.Errorf("day.close of %s: %+v %v, want actor %s", day, close, err, want)
		}
	}
	if r, err := d.Close(ctx, "2026-03-06", nil); err != nil || !r.AlreadyClosed {
		t.Fatalf("second close: %+v %v", r, err)
	}
	if _, err := d.Close(ctx, "2026-03-09", nil); !errors.Is(err, store.ErrDayMismatch) {
		t.Fatalf("closing a day that is not open: %v", err)
	}
	// Gated on leadership: a node that is not leading does not tick.
	d.OnlyWhen(func() bool { return false })
	now = time.Date(2026, 3, 8, 8, 0, 0, 0, time.UTC)
	if r, err := d.Tick(ctx); err != nil || r != (DayResult{}) {
		t.Fatalf("not leading: %+v %v", r, err)
	}
	if open, _ := l.OpenDay(); open != "2026-03-07" {
		t.Fatalf("a node that is not leading closed a day: %s open", open)
	}
	d.OnlyWhen(nil)
	// A follower's ticker does nothing and reports nothing.
	l.follower = true
	now = time.Date(2026, 3, 8, 8, 0, 0, 0, time.UTC)
	if r, err := d.Tick(ctx); err != nil || r != (DayResult{}) {
		t.Fatalf("follower tick: %+v %v", r, err)
	}
}

func TestCutoverTickerStops(t *testing.T) {
	l := newLedger(t)
	cal, _ := NewCalendar("UTC", "23:55")
	c := StartCutover(NewDays(cal, l, l, nil, nil), 10*time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := l.OpenDay(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the ticker never opened a day")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.Close()
	c.Close()
}

// dayOfTraffic posts one of every kind of transfer on 2026-03-02 for
// partner acq, closes the day and posts a late one into 2026-03-03.
func dayOfTraffic(t testing.TB, l *ledger) {
	t.Helper()
	seedAccounts(t, l)
	at := tBase
	step := func() time.Time { at = at.Add(time.Minute); return at }
	fund := txn(store.OpPost, "fund-000000", 100000, step())
	fund.Debit, fund.Credit, fund.Partner = "fund", "card1", "bank"
	buy := txn(store.OpPost, "buy-000001", 1234, step())
	buy.Card, buy.Credit, buy.OriginalRef = "h1", "acq-settle", "ref-buy"
	buy.PayerType = store.PayerBankCustomer
	refund := txn(store.OpPost, "refund-000002", 200, step())
	refund.Card, refund.CreditCard, refund.Debit = "h1", true, "acq-settle"
	refund.Ref.ProcCode = "200000"
	auth := txn(store.OpAuthorize, "auth-000003", 5000, step())
	auth.Card, auth.Credit, auth.HoldExpiry, auth.OriginalRef = "h1", "acq-settle", at.Add(time.Hour).UnixNano(), "ref-auth"
	auth.Ref.MTI = "0100"
	capture := txn(store.OpComplete, "cap-000004", 4000, step())
	capture.Original, capture.Final = "ref-auth", true
	capture.Ref.MTI = "0220"
	buy2 := txn(store.OpPost, "buy-000005", 500, step())
	buy2.Card, buy2.Credit, buy2.OriginalRef = "h1", "acq-settle", "ref-buy2"
	rev := txn(store.OpReverse, "rev-000006", 500, step())
	rev.Original = "ref-buy2"
	rev.Ref.MTI = "0400"
	bill := txn(store.OpPost, "bill-000007", 750, step())
	bill.Card, bill.Credit = "h1", "biller"
	bill.PayerType = store.PayerMFSUser // the classified payer type is in the file
	bill.Ref.ProcCode = "500000"
	odd := txn(store.OpPost, "odd-000008", 1, step())
	odd.Card, odd.Credit = "h2", "acq-settle" // declined: card2 is empty
	l.must(t, fund, buy, refund, auth, capture, buy2, rev, bill)
	if r, _ := l.apply(odd); r[0].Status != store.StatusInsufficientFunds {
		t.Fatalf("odd: %v", r[0].Status)
	}
	l.must(t, store.Command{Op: store.OpCloseDay, Time: step().UnixNano(), BusinessDay: "2026-03-02", NextDay: "2026-03-03"})
	late := txn(store.OpPost, "late-000009", 300, step())
	late.Card, late.Credit = "h1", "acq-settle"
	late.BusinessDay = "2026-03-02"
	l.must(t, late)
}

func settlementBytes(t *testing.T, l *ledger, day, partner string) (csv, js []byte) {
	t.Helper()
	var c, j bytes.Buffer
	if _, err := WriteSettlement(context.Background(), l, day, partner, &c, &j); err != nil {
		t.Fatal(err)
	}
	return c.Bytes(), j.Bytes()
}

func TestSettlementFile(t *testing.T) {
	a, b := newLedger(t), newLedger(t)
	dayOfTraffic(t, a)
	dayOfTraffic(t, b) // a second replica applying the same commands
	csv, js := settlementBytes(t, a, "2026-03-02", "acq")
	golden(t, "settlement-acq-2026-03-02.csv", csv)
	golden(t, "settlement-acq-2026-03-02.json", js)
	csv2, js2 := settlementBytes(t, b, "2026-03-02", "acq")
	if !bytes.Equal(csv, csv2) || !bytes.Equal(js, js2) {
		t.Error("two replicas wrote different settlement files")
	}
	if !json.Valid(js) {
		t.Fatal("invalid JSON")
	}
	var doc struct {
		Transfers []map[string]string `json:"transfers"`
		Trailer   []Totals            `json:"trailer"`
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	// 7 transfers of acq that day (the funding is partner "bank", the late
	// one belongs to the next day, the decline made none).
	lines := strings.Split(strings.TrimSpace(string(csv)), "\n")
	if len(doc.Transfers) != 7 || len(lines) != 1+7+1 {
		t.Fatalf("%d JSON rows, %d CSV lines", len(doc.Transfers), len(lines))
	}
	// Partner position: credited 12.34 + 40.00 + 5.00, debited 2.00
	// (refund) + 5.00 (reversal); the bill payment and the hold do not
	// touch the partner's account.
	want := Totals{Currency: "USD", Count: 7, SettledCount: 6, Debits: "7.00", Credits: "57.34", Net: "50.34"}
	if got := doc.Trailer; len(got) != 1 || got[0].Currency != want.Currency || got[0].Count != want.Count ||
		got[0].SettledCount != want.SettledCount || got[0].Debits != want.Debits || got[0].Credits != want.Credits || got[0].Net != want.Net {
		t.Errorf("trailer %+v, want %+v", got, want)
	}
	if lines[len(lines)-1] != "T,2026-03-02,acq,USD,7,6,7.00,57.34,50.34" {
		t.Errorf("CSV trailer %q", lines[len(lines)-1])
	}
	// Time does not change a closed day's file: the hold's later fate and
	// new traffic leave it alone.
	expire := store.Command{Op: store.OpExpire, Time: tBase.Add(48 * time.Hour).UnixNano()}
	if _, err := a.apply(expire); err != nil {
		t.Fatal(err)
	}
	if csv3, _ := settlementBytes(t, a, "2026-03-02", "acq"); !bytes.Equal(csv, csv3) {
		t.Error("the file changed after the day closed")
	}
	// An empty day still has a header and no trailer rows.
	csv4, js4 := settlementBytes(t, a, "2026-03-02", "nobody")
	if string(csv4) != strings.Join(settlementColumns, ",")+"\n" || !json.Valid(js4) {
		t.Errorf("empty file: %q %q", csv4, js4)
	}
}

func TestSettlementJob(t *testing.T) {
	l := newLedger(t)
	dayOfTraffic(t, l)
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	cal, _ := NewCalendar("UTC", "23:55")
	svc, err := New(cfg, l, NewDays(cal, l, l, nil, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if _, err := svc.Submit(Spec{Kind: KindSettlement, Day: "2026-03-03", Partner: "acq"}); !errors.Is(err, ErrDayNotClosed) {
		t.Errorf("open day: %v", err)
	}
	for _, bad := range []Spec{{Kind: KindSettlement, Day: "2026-3-2", Partner: "acq"}, {Kind: KindSettlement, Day: "2026-03-02", Partner: "../x"},
		{Kind: "other", Day: "2026-03-02"}} {
		if _, err := svc.Submit(bad); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	job, err := svc.Submit(Spec{Kind: KindSettlement, Day: "2026-03-02", Partner: "acq"})
	if err != nil {
		t.Fatal(err)
	}
	job = waitJob(t, svc, job.ID)
	if job.State != JobDone || len(job.Files) != 2 || job.Files[0].Rows != 7 {
		t.Fatalf("job %+v", job)
	}
	f, err := svc.Open(KindSettlement, "2026-03-02", "acq", ExtCSV)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want, _ := settlementBytes(t, l, "2026-03-02", "acq")
	var got bytes.Buffer
	got.ReadFrom(f)
	if !bytes.Equal(got.Bytes(), want) {
		t.Error("file differs from WriteSettlement")
	}
	sum, err := os.ReadFile(filepath.Join(cfg.Dir, "settlements", "2026-03-02", "acq.csv.sha256"))
	if err != nil || string(sum) != job.Files[0].SHA256+"  acq.csv\n" {
		t.Errorf("sha256 file %q %v", sum, err)
	}
	if _, err := svc.Open(KindSettlement, "2026-03-02", "other", ExtCSV); !errors.Is(err, ErrNoFile) {
		t.Errorf("missing file: %v", err)
	}
	if _, ok := svc.Job("job-nope"); ok {
		t.Error("unknown job found")
	}
}

func waitJob(t testing.TB, svc *Service, id string) Job {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		j, ok := svc.Job(id)
		if !ok {
			t.Fatalf("job %s vanished", id)
		}
		if j.State == JobDone || j.State == JobFailed {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s stuck in %s", id, j.State)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestJobQueueBounded(t *testing.T) {
	block := make(chan struct{})
	started := make(chan struct{}, 1)
	j := newJobs(2, 3, time.Minute, func(ctx context.Context, s Spec) ([]File, error) {
		select {
		case started <- struct{}{}:
		default:
		}
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return nil, nil
	}, discard())
	defer j.close()
	first, _ := j.submit(Spec{Kind: KindSettlement, Day: "2026-03-01", Partner: "a"})
	<-started // the worker holds the first; two more fit the queue
	if again, _ := j.submit(first.Spec); again.ID != first.ID {
		t.Error("the same spec got a second job")
	}
	for _, p := range []string{"b", "c"} {
		if _, err := j.submit(Spec{Kind: KindSettlement, Day: "2026-03-01", Partner: p}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := j.submit(Spec{Kind: KindSettlement, Day: "2026-03-01", Partner: "d"}); !errors.Is(err, ErrQueueFull) {
		t.Errorf("fourth job: %v", err)
	}
	close(block)
	for deadline := time.Now().Add(5 * time.Second); ; {
		if g, _ := j.get(first.ID); g.State == JobDone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("job never finished")
		}
		time.Sleep(time.Millisecond)
	}
}
