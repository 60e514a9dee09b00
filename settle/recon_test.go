package settle

import (
	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchd/switchd/store"
)

func TestParseFileBadInput(t *testing.T) {
	m := DefaultBillerMapping()
	const head = "rrn,stan,amount,currency,date,status\n"
	cases := []struct {
		name, in string
		want     string // in the error; "" means it parses
		rows     int
	}{
		{"good", head + "R1,000001,12.34,USD,2026-03-02,OK\n", "", 1},
		{"BOM and CRLF", "\ufeff" + strings.ReplaceAll(head+"R1,000001,12.34,USD,2026-03-02,OK\n", "\n", "\r\n"), "", 1},
		{"quoted field", head + "\"R,1\",000001,12.34,USD,2026-03-02,OK\n", "", 1},
		{"numeric currency", head + "R1,000001,12.34,840,2026-03-02,OK\n", "", 1},
		{"no trailing newline", head + "R1,000001,12.34,USD,2026-03-02,OK", "", 1},
		{"empty", "", "row 1: empty file", 0},
		{"missing column", "rrn,stan,amount,currency,date\nR1,1,1.00,USD,2026-03-02\n", "row 1 column status: missing", 0},
		{"duplicate header", "rrn,rrn,stan,amount,currency,date,status\n", "row 1 column rrn: duplicate column", 0},
		{"too few columns", head + "R1,000001,12.34,USD,2026-03-02,OK\nR2,000002,1.00,USD\n", "row 3: 4 columns, the header has 6", 0},
		{"too many columns", head + "R1,000001,12.34,USD,2026-03-02,OK,extra\n", "row 2: 7 columns", 0},
		{"bad quote", head + "R1,\"00\"0001,12.34,USD,2026-03-02,OK\n", "row 2 column 7", 0},
		{"one decimal", head + "R1,000001,12.3,USD,2026-03-02,OK\n", "row 2 column amount: \"12.3\" is not an amount with 2 decimals", 0},
		{"three decimals", head + "R1,000001,12.345,USD,2026-03-02,OK\n", "row 2 column amount", 0},
		{"JPY with decimals", head + "R1,000001,12.00,JPY,2026-03-02,OK\n", "row 2 column amount: \"12.00\" is not an amount with 0 decimals", 0},
		{"comma decimal", head + "R1,000001,\"12,34\",USD,2026-03-02,OK\n", "row 2 column amount", 0},
		{"unknown currency", head + "R1,000001,12.34,XXY,2026-03-02,OK\n", "row 2 column currency: unknown currency", 0},
		{"bad date", head + "R1,000001,12.34,USD,02/03/2026,OK\n", "row 2 column date", 0},
		{"duplicate row", head + "R1,000001,12.34,USD,2026-03-02,OK\nR2,000002,1.00,USD,2026-03-02,OK\nR1,000001,12.34,USD,2026-03-02,OK\n", "row 4 column rrn: duplicates row 2", 0},
		{"no key", head + ",,12.34,USD,2026-03-02,OK\n", "row 2 column rrn: rrn and stan are both empty", 0},
		{"stray CR", head + "R1,000001,12.34,USD,2026-03-02,\"O\rK\"\n", "row 2 column status: stray carriage return", 0},
		{"BOM inside", head + "\ufeffR1,000001,12.34,USD,2026-03-02,OK\n", "row 2 column rrn: stray", 0},
		{"invalid UTF-8", head + "R1\xff,000001,12.34,USD,2026-03-02,OK\n", "row 2 column rrn", 0},
		{"too large", head + strings.Repeat("R1,000001,12.34,USD,2026-03-02,OK\n", 10), "file larger than 200 bytes", 0},
	}
	for _, tc := range cases {
		rows, err := parseFile("biller.csv", strings.NewReader(tc.in), m, 200, newSymbols(), "")
		if tc.want == "" {
			if err != nil || len(rows) != tc.rows {
				t.Errorf("%s: %d rows, %v", tc.name, len(rows), err)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "biller.csv") {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
		if rows != nil {
			t.Errorf("%s: rows returned with an error", tc.name)
		}
	}
}

func FuzzParseFile(f *testing.F) {
	f.Add([]byte("rrn,stan,amount,currency,date,status\nR1,000001,12.34,USD,2026-03-02,OK\n"))
	f.Add([]byte("\ufeffrrn,stan,amount,currency,date,status\r\nR1,1,0.01,JPY,2026-03-02,FAIL\r\n"))
	f.Add([]byte("rrn,stan,amount,currency,date,status\n\"a\"\"b\",1,-1.00,840,2026-02-30,OK\nT,1\n"))
	m := DefaultBillerMapping()
	m.Trailer = "T"
	f.Fuzz(func(t *testing.T, b []byte) {
		sym := newSymbols()
		rows, err := parseFile("f.csv", bytes.NewReader(b), m, 1<<16, sym, "")
		if err != nil {
			if !errors.Is(err, ErrInput) || rows != nil {
				t.Fatalf("error %v with %d rows", err, len(rows))
			}
			return
		}
		keys := map[string]bool{}
		for _, r := range rows {
			if keys[r.key] || r.row < 2 || !store.ValidDay(sym.name(r.day)) || r.status < statusOK || r.status > statusReversed {
				t.Fatalf("bad row %+v", r)
			}
			keys[r.key] = true
		}
	})
}

// plantedFiles returns the partner's file (our settlement file with
// planted differences) and a biller file for dayOfTraffic.
func plantedFiles(t *testing.T, l *ledger) (partner, biller string) {
	t.Helper()
	csv, _ := settlementBytes(t, l, "2026-03-02", "acq")
	p := string(csv)
	// B3: the partner says 12.35 for our 12.34.
	p = strings.Replace(p, ",000001,RRN000001,100001,,,12.34,", ",000001,RRN000001,100001,,,12.35,", 1)
	// B4: the refund failed at the partner.
	p = strings.Replace(p, "2.00,USD,acq-settle,card1,posted", "2.00,USD,acq-settle,card1,failed", 1)
	// B5: the reversal is dated three days later.
	p = strings.Replace(p, "D,2026-03-02,acq,T00000000000007", "D,2026-03-05,acq,T00000000000007", 1)
	// B1: a transfer we never saw.
	p = strings.Replace(p, "\nT,", "\nD,2026-03-02,acq,T99999999999999,financial,0200,000000,999999,RRN999999,100001,,,1.00,USD,card1,acq-settle,posted,,,,,,\nT,", 1)
	// The biller never got the bill payment (B2) but reports one we
	// never made (B1).
	b := "rrn,stan,amount,currency,date,status\nRRN888888,888888,3.00,USD,2026-03-02,OK\n"
	return p, b
}

func TestReconcilePlantedBreaks(t *testing.T) {
	l := newLedger(t)
	dayOfTraffic(t, l)
	pf, bf := plantedFiles(t, l)
	svc := newReconService(t, l)
	st, err := svc.StartRecon("2026-03-02", "acq", "", strings.NewReader(pf), strings.NewReader(bf))
	if err != nil {
		t.Fatal(err)
	}
	st = waitRecon(t, svc, st.ID)
	if st.State != JobDone {
		t.Fatalf("%+v", st)
	}
	want := map[string]int{B1: 2, B2: 1, B3: 1, B4: 1, B5: 1}
	for c, n := range want {
		if st.Counts[c] != n {
			t.Errorf("%s: %d, want %d (%v)", c, st.Counts[c], n, st.Counts)
		}
	}
	// 7 partner rows (+1 planted) and 1 biller row; 4 partner rows match
	// cleanly (the hold, the capture, the second purchase, the bill
	// payment).
	if st.PartnerRows != 8 || st.BillerRows != 1 || st.LedgerRows != 7 || st.Matched != 4 {
		t.Errorf("rows %+v", st.ReconSummary)
	}
	bs, err := svc.ReconBreaks(st.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, b := range bs {
		got[b.Code+"/"+b.Source+"/"+b.STAN] = b.Owner
	}
	for k, owner := range map[string]string{"B3/partner/000001": "Partner ops", "B4/partner/000002": "Eng", "B5/partner/000006": "Ops",
		"B1/partner/999999": "Ops", "B1/biller/888888": "Ops", "B2/biller/000007": "Eng"} {
		if got[k] != owner {
			t.Errorf("break %s: owner %q (all: %v)", k, got[k], got)
		}
	}
	b2, _ := svc.ReconBreaks(st.ID, B2)
	if len(b2) != 1 || b2[0].Ours == nil || b2[0].Ours.Transfer != "T00000000000008" || b2[0].Ours.Amount != "7.50" {
		t.Fatalf("B2: %+v", b2)
	}
	// Work the B2: assign, resolve with a note; the trail is kept.
	ctx := context.Background()
	if _, err := svc.UpdateBreak(ctx, st.ID, b2[0].ID, store.BreakUpdate{Action: store.BreakAssign, Assignee: "eng-oncall", Actor: "ops"}, "k1", 1, nil); err != nil {
		t.Fatal(err)
	}
	d, err := svc.UpdateBreak(ctx, st.ID, b2[0].ID, store.BreakUpdate{Action: store.BreakResolve, Note: "biller replayed the posting", Actor: "eng"}, "k2", 2, nil)
	if err != nil || d.State != "resolved" || d.Assignee != "eng-oncall" || len(d.Audit) != 2 {
		t.Fatalf("resolve: %+v %v", d, err)
	}
	if _, err := svc.UpdateBreak(ctx, st.ID, b2[0].ID, store.BreakUpdate{Action: store.BreakResolve, Note: "again"}, "k3", 3, nil); !errors.Is(err, store.ErrAlreadyFinal) {
		t.Errorf("resolve twice: %v", err)
	}
	if _, err := svc.UpdateBreak(ctx, st.ID, b2[0].ID, store.BreakUpdate{Action: store.BreakResolve}, "k4", 4, nil); !errors.Is(err, ErrBadRequest) {
		t.Errorf("resolve without note: %v", err)
	}
	if _, err := svc.UpdateBreak(ctx, st.ID, "B9999999", store.BreakUpdate{Action: store.BreakAssign, Assignee: "x"}, "k5", 5, nil); !errors.Is(err, ErrNoBreak) {
		t.Errorf("unknown break: %v", err)
	}
	if bs, _ := svc.ReconBreaks(st.ID, B2); bs[0].State != "resolved" || bs[0].Note != "biller replayed the posting" {
		t.Errorf("merged state %+v", bs[0])
	}
	// The same files again: the same reconciliation, decisions kept.
	again, err := svc.StartRecon("2026-03-02", "acq", "", strings.NewReader(pf), strings.NewReader(bf))
	if err != nil || again.ID != st.ID || again.State != JobDone {
		t.Errorf("re-upload: %+v %v", again, err)
	}
	// A restart forgets the cache, not the result.
	svc.recons = reconCache{}
	if st2, err := svc.Recon(st.ID); err != nil || st2.Counts[B1] != 2 {
		t.Errorf("from disk: %+v %v", st2, err)
	}
	// A bad file fails the whole reconciliation with row and column.
	bad, err := svc.StartRecon("2026-03-02", "acq", "", strings.NewReader(pf), strings.NewReader("rrn,stan,amount,currency,date,status\nR,1,1.0,USD,2026-03-02,OK\n"))
	if err != nil {
		t.Fatal(err)
	}
	if bad = waitRecon(t, svc, bad.ID); bad.State != JobFailed || !strings.Contains(bad.Error, "biller.csv row 2 column amount") || bad.ReconSummary != nil {
		t.Errorf("bad input: %+v", bad)
	}
	if _, err := svc.ReconBreaks(bad.ID, ""); !errors.Is(err, ErrNoRecon) {
		t.Errorf("breaks of a failed recon: %v", err)
	}
}

func waitRecon(t *testing.T, svc *Service, id string) ReconStatus {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		st, err := svc.Recon(id)
		if err != nil {
			t.Fatal(err)
		}
		if st.State == JobDone || st.State == JobFailed {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("recon %s stuck: %+v", id, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReconDateTolerance(t *testing.T) {
	l := newLedger(t)
	dayOfTraffic(t, l) // the late post (RRN000009) was booked 2026-03-03
	sym := newSymbols()
	usd, _ := sym.id("USD")
	day, _ := sym.id("2026-03-02")
	in := &reconInput{id: "R", day: "2026-03-02", partner: "acq", toleranceDays: 1, sym: sym,
		partnerRows: []fileRow{{row: 2, key: matchKey("RRN000009", "000009"), amount: 300, ccy: usd, day: day, status: statusOK}}}
	res, err := reconcile(context.Background(), l, in)
	if err != nil || res.Matched != 1 || res.Counts[B1]+res.Counts[B5] != 0 {
		t.Errorf("within tolerance: %+v %v", res, err)
	}
	in.toleranceDays = 0
	if res, _ := reconcile(context.Background(), l, in); res.Counts[B1] != 1 {
		t.Errorf("without tolerance the next day is not searched: %+v", res)
	}
}

// TestReconSampleFiles: the examples in testdata/recon parse.
func TestReconSampleFiles(t *testing.T) {
	for _, f := range []struct {
		path string
		m    Mapping
		rows int
	}{{"../testdata/recon/partner.csv", DefaultPartnerMapping(), 4}, {"../testdata/recon/biller.csv", DefaultBillerMapping(), 1}} {
		b, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := parseFile(f.path, bytes.NewReader(b), f.m, 1<<20, newSymbols(), "")
		if err != nil || len(rows) != f.rows {
			t.Errorf("%s: %d rows, %v", f.path, len(rows), err)
		}
	}
}

// TestParseFilePartnerColumn: a biller file with every partner's rows
// gives only the reconciled partner's (the others are still checked).
func TestParseFilePartnerColumn(t *testing.T) {
	m := DefaultBillerMapping()
	m.Partner = "acquirer"
	in := "rrn,stan,amount,currency,date,status,acquirer\nR1,1,1.00,USD,2026-03-02,OK,acq\nR2,2,2.00,USD,2026-03-02,OK,other\nR3,3,3.00,USD,2026-03-02,OK,acq\nR1,1,1.00,USD,2026-03-02,OK,other\n"
	rows, err := parseFile("b.csv", strings.NewReader(in), m, 1<<20, newSymbols(), "acq")
	if err != nil || len(rows) != 2 || rows[1].rrn() != "R3" {
		t.Fatalf("%+v %v", rows, err)
	}
	if _, err := parseFile("b.csv", strings.NewReader(in+"R4,4,4.0,USD,2026-03-02,OK,other\n"), m, 1<<20, newSymbols(), "acq"); err == nil ||
		!strings.Contains(err.Error(), "row 6 column amount") {
		t.Errorf("another partner's bad row: %v", err)
	}
	m.Partner = "nope"
	if _, err := parseFile("b.csv", strings.NewReader(in), m, 1<<20, newSymbols(), "acq"); err == nil || !strings.Contains(err.Error(), "row 1 column nope") {
		t.Errorf("missing partner column: %v", err)
	}
}

// billerReversalDays records, for partner acq, a WATER bill paid on
// 2026-03-02 through the http destination "water" (card1 → its settlement
// account, under the partner's reference WATER-42 and no STAN, as a REST
// bill payment is) and the biller's reversal of it on 2026-03-03 (op 29:
// the compensating transfer has the payment's rrn and stan). It returns
// the payment's and the reversal's transfer ids.
func billerReversalDays(t *testing.T, l *ledger) (payment, reversal string) {
	t.Helper()
	return billerReversal(t, l, true)
}

// billerReversal books a WATER bill payment to an http biller on
// 2026-03-02 and the biller's reversal of it: the next day, or the same
// one when nextDay is false.
func billerReversal(t *testing.T, l *ledger, nextDay bool) (payment, reversal string) {
	t.Helper()
	seedAccounts(t, l)
	at := tBase.Add(time.Hour)
	fund := txn(store.OpPost, "fund-000020", 10000, at)
	fund.Debit, fund.Credit, fund.Partner = "fund", "card1", "bank"
	l.must(t, store.Command{Op: store.OpCreateAccount, Key: "acct|water-settle", Fingerprint: "fp", Time: at.UnixNano(),
		Account: &store.Account{ID: "water-settle", Kind: store.KindSettlement, Currency: "USD", Unlimited: true}},
		store.Command{Op: store.OpPutDestination, Key: "dest|water", Fingerprint: "fp", Time: at.UnixNano(),
			Admin: &store.Admin{Actor: "alice", Reason: "test", Destination: &store.Destination{ID: "water", Kind: store.DestinationKindHTTP,
				SettlementAccount: "water-settle", HTTP: &store.HTTPDestination{URL: "http://127.0.0.1:9/payments", TimeoutMs: 1000}}}},
		fund)
	bill := txn(store.OpForward, "rest|water-42", 2500, at)
	bill.Card, bill.Ref = "h1", store.Ref{RRN: "WATER-42", Acquirer: "100001"}
	bill.Forward = &store.ForwardCommand{Request: &store.ForwardRequest{Destination: "water", Credit: "water-settle",
		Body: `{"bill_type":"WATER","biller_reference":"WATER-42","amount":"25.00","currency":"USD"}`, TimeoutAt: at.Add(5 * time.Second).UnixNano()}}
	fr, err := l.apply(bill)
	if err != nil || fr[0].Status != store.StatusOK {
		t.Fatalf("bill payment: %+v %v", fr, err)
	}
	ok := store.Command{Op: store.OpForwardResult, Key: "fwd|approved|rest|water-42", Fingerprint: "fp", Time: at.Add(time.Second).UnixNano(),
		Forward: &store.ForwardCommand{Result: &store.ForwardResult{Key: "rest|water-42", Outcome: store.OutcomeApproved, RC: "00", AuthCode: "000001"}}}
	ar, err := l.apply(ok)
	if err != nil || ar[0].Status != store.StatusOK || ar[0].TransferID == "" {
		t.Fatalf("approval: %+v %v", ar, err)
	}
	next, day := at.Add(time.Hour), "2026-03-02"
	if nextDay {
		next, day = tBase.AddDate(0, 0, 1), "2026-03-03"
		l.must(t, store.Command{Op: store.OpCloseDay, Time: next.UnixNano(), BusinessDay: "2026-03-02", NextDay: "2026-03-03"})
	}
	rv, err := l.apply(store.Command{Op: store.OpHostReversal, Key: "hrev|water|wh1", Fingerprint: "fp", Time: next.Add(time.Hour).UnixNano(),
		BusinessDay: day, HostReversal: &store.HostReversal{Destination: "water", Forward: fr[0].TransferID, Source: store.HostReversalWebhook, Event: "wh1"}})
	if err != nil || rv[0].Status != store.StatusOK || rv[0].TransferID == "" {
		t.Fatalf("reversal: %+v %v", rv, err)
	}
	return ar[0].TransferID, rv[0].TransferID
}

// A biller reverses yesterday's payment: the partner sends back our
// settlement files and the biller its postings (the payment on its day,
// the reversal as REVERSED on the next). Neither day has a break; a row
// is compared with the transfer of its own day (a wrong amount names the
// reversal on the reversal's day, the payment on the payment's); a
// REVERSED for a payment we never reversed is a status break; a biller
// file without the reversal is a B2 (the biller would count money we gave
// back).
func TestReconDestinationReversal(t *testing.T) {
	l := newLedger(t)
	payment, reversal := billerReversalDays(t, l)
	scope, err := newReconService(t, l).resolveBiller("", "2026-03-02") // every biller, as a run naming none
	if err != nil {
		t.Fatal(err)
	}
	const head = "rrn,stan,amount,currency,date,status\n"
	run := func(day, biller string) *ReconResult {
		t.Helper()
		pf, _ := settlementBytes(t, l, day, "acq")
		in := &reconInput{id: "R", day: day, partner: "acq", toleranceDays: 1, sym: newSymbols(), billers: scope}
		var err error
		if in.partnerRows, err = parseFile("partner.csv", bytes.NewReader(pf), DefaultPartnerMapping(), 1<<20, in.sym, "acq"); err != nil || len(in.partnerRows) != 1 {
			t.Fatalf("%s partner file (%d rows): %v\n%s", day, len(in.partnerRows), err, pf)
		}
		if in.billerRows, err = parseFile("biller.csv", strings.NewReader(head+biller), DefaultBillerMapping(), 1<<20, in.sym, "acq"); err != nil {
			t.Fatal(err)
		}
		res, err := reconcile(context.Background(), l, in)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, c := range []struct {
		day, biller string
		matched     int
	}{
		{"2026-03-02", "WATER-42,,25.00,USD,2026-03-02,POSTED\n", 2},
		{"2026-03-03", "WATER-42,,25.00,USD,2026-03-03,REVERSED\n", 2},
		{"2026-03-03", "WATER-42,,25.00,USD,2026-03-03,POSTED\n", 2}, // a biller that calls its reversal posted
	} {
		if res := run(c.day, c.biller); len(res.Breaks) != 0 || res.Matched != c.matched || res.LedgerRows != 1 {
			t.Errorf("%s with biller rows %q: matched %d, ledger %d, breaks %+v", c.day, c.biller, res.Matched, res.LedgerRows, res.Breaks)
		}
	}
	for _, c := range []struct{ day, biller, transfer string }{
		{"2026-03-03", "WATER-42,,25.01,USD,2026-03-03,REVERSED\n", reversal},
		{"2026-03-03", "WATER-42,,25.01,USD,2026-03-03,POSTED\n", reversal},
		{"2026-03-02", "WATER-42,,25.01,USD,2026-03-02,POSTED\n", payment},
	} {
		res := run(c.day, c.biller)
		if len(res.Breaks) != 1 || res.Breaks[0].Code != B3 || res.Breaks[0].Source != "biller" || res.Breaks[0].Ours.Transfer != c.transfer || res.Breaks[0].Ours.Day != c.day {
			t.Errorf("%s with biller rows %q: breaks %+v, want B3 naming %s", c.day, c.biller, res.Breaks, c.transfer)
		}
	}
	if res := run("2026-03-03", ""); len(res.Breaks) != 1 || res.Breaks[0].Code != B2 || res.Breaks[0].Ours.Transfer != reversal || res.Matched != 1 {
		t.Errorf("the reversal's day without the biller's row: matched %d, breaks %+v, want one B2 naming %s", res.Matched, res.Breaks, reversal)
	}

	// The biller says REVERSED for a payment of ours that was not.
	l2 := newLedger(t)
	seedAccounts(t, l2)
	fund := txn(store.OpPost, "fund-000020", 10000, tBase)
	fund.Debit, fund.Credit, fund.Partner = "fund", "card1", "bank"
	bill := txn(store.OpPost, "bill-000021", 750, tBase.Add(time.Minute))
	bill.Card, bill.Credit = "h1", "biller"
	l2.must(t, fund, bill)
	sym := newSymbols()
	br, err := parseFile("biller.csv", strings.NewReader(head+"RRN000021,000021,7.50,USD,2026-03-02,REVERSED\n"), DefaultBillerMapping(), 1<<20, sym, "acq")
	if err != nil {
		t.Fatal(err)
	}
	res, err := reconcile(context.Background(), l2, &reconInput{id: "R", day: "2026-03-02", partner: "acq", toleranceDays: 1, sym: sym, billerRows: br})
	if err != nil || len(res.Breaks) != 1 || res.Breaks[0].Code != B4 || res.Breaks[0].Detail != "status REVERSED, ours OK (not reversed)" {
		t.Fatalf("REVERSED for a payment standing: %+v %v", res.Breaks, err)
	}
}

// A biller reverses a payment the day it was made: the partner's copy of
// our settlement file has both rows with the same rrn and stan (the
// reversal is the destination's, it carries its original's), told apart
// by their type; the biller's file has the payment POSTED and its
// REVERSED. Every row matches, no break.
func TestReconSameDayDestinationReversal(t *testing.T) {
	l := newLedger(t)
	billerReversal(t, l, false)
	pf, _ := settlementBytes(t, l, "2026-03-02", "acq")
	in := &reconInput{id: "R", day: "2026-03-02", partner: "acq", toleranceDays: 1, sym: newSymbols()}
	var err error
	if in.partnerRows, err = parseFile("partner.csv", bytes.NewReader(pf), DefaultPartnerMapping(), 1<<20, in.sym, "acq"); err != nil || len(in.partnerRows) != 2 {
		t.Fatalf("partner file (%d rows): %v\n%s", len(in.partnerRows), err, pf)
	}
	biller := "rrn,stan,amount,currency,date,status\nWATER-42,,25.00,USD,2026-03-02,POSTED\nWATER-42,,25.00,USD,2026-03-02,REVERSED\n"
	if in.billerRows, err = parseFile("biller.csv", strings.NewReader(biller), DefaultBillerMapping(), 1<<20, in.sym, "acq"); err != nil {
		t.Fatal(err)
	}
	res, err := reconcile(context.Background(), l, in)
	if err != nil || len(res.Breaks) != 0 || res.LedgerRows != 2 {
		t.Fatalf("%v: ledger %d, matched %d, breaks %+v", err, res.LedgerRows, res.Matched, res.Breaks)
	}
	// Without the type column the two rows are one reference twice: the
	// file is refused, as any duplicate.
	m := DefaultPartnerMapping()
	m.Type = ""
	if _, err := parseFile("partner.csv", bytes.NewReader(pf), m, 1<<20, newSymbols(), "acq"); err == nil || !strings.Contains(err.Error(), "duplicates row") {
		t.Fatalf("without the type column: %v", err)
	}
}

// newReconService is a settle service over l, for its biller resolution
// and uploads.
func newReconService(t *testing.T, l *ledger) *Service {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	cal, _ := NewCalendar("UTC", "23:55")
	svc, err := New(cfg, l, NewDays(cal, l, l, nil, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return svc
}

// B2 covers the payments to an http biller (credited to its destination's
// settlement account) and their reversals, as it covers on-us billers'
// postings; a run names the biller its file is from, or covers them all.
// The ledger: on 2026-03-02 WATER-42 paid through http destination
// "water"; on 2026-03-03 water's reversal of it and a 7.50 on-us bill
// posted to account "biller" (kind biller).
func TestReconHTTPBillerB2(t *testing.T) {
	l := newLedger(t)
	payment, reversal := billerReversalDays(t, l)
	at := tBase.AddDate(0, 0, 1).Add(2 * time.Hour)
	bill := txn(store.OpPost, "bill-000021", 750, at)
	bill.Card, bill.Credit = "h1", "biller"
	onUs := l.must(t, bill)[0].TransferID
	svc := newReconService(t, l)
	const (
		head       = "rrn,stan,amount,currency,date,status\n"
		paid       = "WATER-42,,25.00,USD,2026-03-02,POSTED\n"
		reversed   = "WATER-42,,25.00,USD,2026-03-03,REVERSED\n"
		posted     = "RRN000021,000021,7.50,USD,2026-03-03,POSTED\n"
		httpPaid   = "paid to http biller water, missing in the biller's file"
		httpRev    = "reversal of a payment to http biller water, missing in the biller's file"
		ledgerPost = "posted to a biller account, missing in the biller's file" // as before http billers
	)
	type b2 struct{ transfer, detail string }
	for _, c := range []struct {
		name, day, biller, rows string
		want                    []b2
	}{
		{"all billers, the payment missing", "2026-03-02", "", "", []b2{{payment, httpPaid}}},
		{"water, the payment missing", "2026-03-02", "water", "", []b2{{payment, httpPaid}}},
		{"water by its settlement account", "2026-03-02", "water-settle", "", []b2{{payment, httpPaid}}},
		{"water, the payment present", "2026-03-02", "water", paid, nil},
		{"all billers, the payment present", "2026-03-02", "", paid, nil},
		{"the on-us biller's file: water's payment is not its", "2026-03-02", "biller", "", nil},
		{"water, its reversal present", "2026-03-03", "water", reversed, nil},
		{"water, its reversal missing", "2026-03-03", "water", "", []b2{{reversal, httpRev}}},
		{"all billers, the on-us posting missing", "2026-03-03", "", reversed, []b2{{onUs, ledgerPost}}},
		{"all billers, both missing", "2026-03-03", "", "", []b2{{reversal, httpRev}, {onUs, ledgerPost}}},
		{"all billers, both present", "2026-03-03", "", reversed + posted, nil},
		{"the on-us biller, its posting missing", "2026-03-03", "biller", "", []b2{{onUs, ledgerPost}}},
		{"the on-us biller, its posting present", "2026-03-03", "biller", posted, nil},
	} {
		scope, err := svc.resolveBiller(c.biller, c.day)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		in := &reconInput{id: "R", day: c.day, partner: "acq", biller: c.biller, billers: scope, toleranceDays: 1, sym: newSymbols()}
		if in.billerRows, err = parseFile("biller.csv", strings.NewReader(head+c.rows), DefaultBillerMapping(), 1<<20, in.sym, "acq"); err != nil {
			t.Fatal(err)
		}
		res, err := reconcile(context.Background(), l, in)
		if err != nil {
			t.Fatal(err)
		}
		var got []b2
		for _, b := range res.Breaks {
			if b.Code != B2 || b.Source != "biller" || b.Owner != "Eng" || b.Ours == nil {
				t.Errorf("%s: break %+v, want only B2s", c.name, b)
				continue
			}
			got = append(got, b2{b.Ours.Transfer, b.Detail})
		}
		if !slices.Equal(got, c.want) || res.Counts[B2] != len(c.want) || res.Matched != len(in.billerRows) || res.Biller != c.biller {
			t.Errorf("%s: B2 %v (counts %v, matched %d of %d rows), want %v", c.name, got, res.Counts, res.Matched, len(in.billerRows), c.want)
		}
	}

	// Without a scope resolved (the zero value: what reconciliation
	// checked before http billers) only the on-us posting is owed.
	sym := newSymbols()
	res, err := reconcile(context.Background(), l, &reconInput{id: "R", day: "2026-03-03", partner: "acq", toleranceDays: 1, sym: sym})
	if err != nil || res.Counts[B2] != 1 || res.Breaks[0].Ours.Transfer != onUs || res.Breaks[0].Detail != ledgerPost {
		t.Fatalf("zero scope: %+v %v", res.Breaks, err)
	}

	// A biller that is none: refused before anything is stored.
	l.must(t, store.Command{Op: store.OpPutDestination, Key: "dest|iss", Fingerprint: "fp", Time: at.UnixNano(),
		Admin: &store.Admin{Actor: "alice", Reason: "test", Destination: &store.Destination{ID: "iss", Kind: store.DestinationKindISO8583,
			SettlementAccount: "fund", ISO8583: &store.HostDestination{Addrs: []string{"127.0.0.1:9"}, Dialect: "iso87ascii", Header: "binary2", PoolSize: 1, TimeoutMs: 1000}}}})
	for biller, want := range map[string]string{
		"iss":   `biller "iss" is a iso8583 destination, not an http biller`,
		"card1": `biller "card1" is an account of kind cardholder`,
		"nope":  `biller "nope": no http destination and no account of that id`,
		"../x":  "biller must be 1-64 characters",
	} {
		_, err := svc.StartRecon("2026-03-03", "acq", biller, strings.NewReader(head), strings.NewReader(head))
		if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), want) {
			t.Errorf("biller %q: %v, want %q", biller, err, want)
		}
	}
	if ents, _ := os.ReadDir(svc.reconDir("")); len(ents) != 0 {
		t.Errorf("refused runs left %d entries", len(ents))
	}

	// Through the service: the biller is part of the reconciliation's
	// identity and shown by its status; the same files for all billers
	// are another reconciliation.
	pf, _ := settlementBytes(t, l, "2026-03-02", "acq")
	start := func(biller string) ReconStatus {
		t.Helper()
		st, err := svc.StartRecon("2026-03-02", "acq", biller, bytes.NewReader(pf), strings.NewReader(head))
		if err != nil {
			t.Fatal(err)
		}
		return waitRecon(t, svc, st.ID)
	}
	water, all := start("water"), start("")
	if water.State != JobDone || water.Biller != "water" || water.Counts[B2] != 1 || all.State != JobDone || all.Biller != "" || all.Counts[B2] != 1 || water.ID == all.ID {
		t.Fatalf("water %+v / all %+v", water, all)
	}
	if again := start("water"); again.ID != water.ID {
		t.Errorf("the same upload for water again: %s, then %s", water.ID, again.ID)
	}
}

// An http destination deleted since the days a run reads stays in B2's
// scope, from the audit record of its deletion: its payments made before
// it went are still owed in the biller's file, whether the run names it
// or covers every biller. One deleted before those days is out of scope.
func TestReconDeletedHTTPBiller(t *testing.T) {
	l := newLedger(t)
	payment, _ := billerReversalDays(t, l)
	gone := tBase.AddDate(0, 0, 3) // 2026-03-05
	l.must(t, store.Command{Op: store.OpDeleteDestination, Key: "del|water", Fingerprint: "fp", Time: gone.UnixNano(),
		Admin: &store.Admin{Actor: "alice", Reason: "contract ended", ID: "water"}})
	if _, ok := l.Directory().Destination("water"); ok {
		t.Fatal("water not deleted")
	}
	svc := newReconService(t, l)
	for _, biller := range []string{"", "water", "water-settle"} {
		scope, err := svc.resolveBiller(biller, "2026-03-02")
		if err != nil {
			t.Fatalf("biller %q: %v", biller, err)
		}
		if id := scope.dests["water-settle"]; id != "water" || scope.named != (biller != "") {
			t.Fatalf("biller %q: scope %+v, want water's account in it", biller, scope)
		}
		in := &reconInput{id: "R", day: "2026-03-02", partner: "acq", biller: biller, billers: scope, toleranceDays: 1, sym: newSymbols()}
		in.billerRows, err = parseFile("biller.csv", strings.NewReader("rrn,stan,amount,currency,date,status\n"), DefaultBillerMapping(), 1<<20, in.sym, "acq")
		if err != nil {
			t.Fatal(err)
		}
		res, err := reconcile(context.Background(), l, in)
		if err != nil {
			t.Fatal(err)
		}
		if res.Counts[B2] != 1 || res.Breaks[0].Code != B2 || res.Breaks[0].Ours.Transfer != payment {
			t.Fatalf("biller %q: breaks %+v, want the B2 of %s", biller, res.Breaks, payment)
		}
	}
	// A month later the deletion is before the days read: out of scope,
	// and naming it is an unknown biller.
	if scope, err := svc.resolveBiller("", "2026-04-02"); err != nil || len(scope.dests) != 0 {
		t.Fatalf("a month on: %+v %v", scope, err)
	}
	if _, err := svc.resolveBiller("water", "2026-04-02"); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("naming it a month on: %v", err)
	}
}
