package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestScanTransfersMatchesTransfers: the streaming scan returns what
// paging through Transfers returns, for every kind of filter, with the
// originals resolved.
func TestScanTransfersMatchesTransfers(t *testing.T) {
	s := fixture(t)
	var cmds []Command
	for i := 0; i < 300; i++ {
		c := postCmd(keyN("s", i), "fund", "merch", int64(1+i))
		c.Partner = fmt.Sprintf("p%d", i%3)
		if i%5 == 0 {
			c.Debit, c.Credit = "fund", "card2"
		}
		c.OriginalRef = keyN("ref", i)
		cmds = append(cmds, c)
		if i%50 == 49 {
			cmds = append(cmds, closeDayCmd(genDay(i/50), genDay(i/50+1)))
		}
	}
	mustOK(t, s, cmds...)
	mustOK(t, s, reverseCmd("rev", keyN("ref", 7), 3))
	for _, f := range []TransferFilter{{}, {Account: "card2"}, {Account: "merch", Partner: "p1"}, {BusinessDay: genDay(2)},
		{BusinessDay: genDay(3), Partner: "p2"}, {Partner: "p0", Status: TransferPosted}, {BusinessDay: "2001-01-01"},
		{Op: OpReverse}, {DayFrom: genDay(1), DayTo: genDay(3), Partner: "p1"}, {DayFrom: genDay(2), DayTo: genDay(2), Partner: "p2"}} {
		var want []Transfer
		for after := ""; ; {
			f2 := f
			f2.Limit, f2.After = 50, after
			page, err := s.Transfers(f2)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, page...)
			if len(page) < 50 {
				break
			}
			after = page[len(page)-1].ID
		}
		var got []Transfer
		err := s.ScanTransfers(context.Background(), f, func(tr, orig *Transfer, v *ScanView) error {
			if (tr.Original != "") != (orig != nil) || (orig != nil && orig.ID != tr.Original) {
				t.Errorf("%s: original %v", tr.ID, orig)
			}
			if _, err := v.Account(tr.Debit); err != nil {
				t.Error(err)
			}
			got = append(got, *tr)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%+v: %d transfers, Transfers gave %d", f, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%+v: #%d %+v, want %+v", f, i, got[i], want[i])
			}
		}
	}
	stop := errors.New("stop")
	n := 0
	if err := s.ScanTransfers(context.Background(), TransferFilter{Account: "merch"}, func(*Transfer, *Transfer, *ScanView) error {
		n++
		return stop
	}); !errors.Is(err, stop) || n != 1 {
		t.Errorf("stop: %v after %d", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.ScanTransfers(ctx, TransferFilter{Account: "merch"}, func(*Transfer, *Transfer, *ScanView) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// TestTransferFilterOpAndDays: Op and a day range select exactly the
// transfers a plain predicate over every transfer selects, by table scan,
// by the account index and by the day index (a one-day range).
func TestTransferFilterOpAndDays(t *testing.T) {
	s := fixture(t)
	var cmds []Command
	for i := 0; i < 120; i++ {
		c := postCmd(keyN("s", i), "fund", "merch", int64(1+i))
		c.Partner = fmt.Sprintf("p%d", i%2)
		c.OriginalRef = keyN("ref", i)
		cmds = append(cmds, c)
		if i%30 == 29 {
			cmds = append(cmds, closeDayCmd(genDay(i/30), genDay(i/30+1)))
		}
	}
	mustOK(t, s, cmds...)
	mustOK(t, s, reverseCmd("rev1", keyN("ref", 7), 3), reverseCmd("rev2", keyN("ref", 100), 2))
	all, err := s.Transfers(TransferFilter{Limit: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []TransferFilter{{Op: OpReverse}, {Op: OpPost, Partner: "p1"}, {DayFrom: genDay(1), DayTo: genDay(2)},
		{DayFrom: genDay(2), DayTo: genDay(2), Partner: "p0"}, {DayFrom: genDay(2), DayTo: genDay(2)}, {DayFrom: genDay(3)},
		{DayTo: genDay(0), Account: "merch"}, {DayFrom: genDay(3), DayTo: genDay(1)}, {Op: OpReverse, DayFrom: genDay(4), DayTo: genDay(4)}} {
		var want []string
		for _, tr := range all {
			if (f.Op == 0 || tr.Op == f.Op) && (f.Partner == "" || tr.Partner == f.Partner) &&
				(f.Account == "" || tr.Debit == f.Account || tr.Credit == f.Account) &&
				(f.DayFrom == "" || tr.BusinessDay >= f.DayFrom) && (f.DayTo == "" || tr.BusinessDay <= f.DayTo) {
				want = append(want, tr.ID)
			}
		}
		var got []string
		for after := ""; ; {
			f2 := f
			f2.Limit, f2.After = 7, after
			page, err := s.Transfers(f2)
			if err != nil {
				t.Fatal(err)
			}
			for _, tr := range page {
				got = append(got, tr.ID)
			}
			if len(page) < 7 {
				break
			}
			after = page[len(page)-1].ID
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%+v: %v\nwant %v", f, got, want)
		}
	}
	if n := len(all); n < 120 {
		t.Fatalf("%d transfers", n)
	}
}

func TestScanAccountBack(t *testing.T) {
	s := fixture(t)
	mustOK(t, s, postCmd("a1", "fund", "card2", 5), closeDayCmd("2026-03-02", "2026-03-03"), postCmd("a2", "card2", "merch", 2))
	var ids []string
	a, err := s.ScanAccountBack(context.Background(), "card2", func(tr *Transfer) (bool, error) {
		ids = append(ids, tr.ID+"/"+tr.BusinessDay)
		return true, nil
	})
	if err != nil || a.ID != "card2" || a.Posted() != 3 || len(ids) != 2 || ids[0] != "T00000000000003/2026-03-03" || ids[1] != "T00000000000002/2026-03-02" {
		t.Fatalf("%+v %v %v", a, ids, err)
	}
	n := 0
	if _, err := s.ScanAccountBack(context.Background(), "card2", func(*Transfer) (bool, error) { n++; return false, nil }); err != nil || n != 1 {
		t.Errorf("stop: %d %v", n, err)
	}
	if _, err := s.ScanAccountBack(context.Background(), "nobody", func(*Transfer) (bool, error) { return true, nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown account: %v", err)
	}
}
