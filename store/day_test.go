package store

import (
	"errors"
	"testing"
)

func closeDayCmd(day, next string) Command {
	return Command{Op: OpCloseDay, Time: t0 + 3, BusinessDay: day, NextDay: next}
}

func openDayCmd(day string) Command {
	return Command{Op: OpOpenDay, Time: t0, BusinessDay: day}
}

func TestDayStampedByFSM(t *testing.T) {
	s := fixture(t) // the funding post opened 2026-03-02
	if d, err := s.OpenDay(); err != nil || d != "2026-03-02" {
		t.Fatalf("open day %q %v, want the first command's day", d, err)
	}
	late := postCmd("late", "fund", "card2", 5)
	late.BusinessDay = "2026-03-02" // the proposer's clock still says the old day
	rs := run(t, s, closeDayCmd("2026-03-02", "2026-03-03"), late)
	if rs[0].Status != StatusOK || rs[0].Day != "2026-03-03" || rs[1].Status != StatusOK {
		t.Fatalf("close + late post: %+v", rs)
	}
	if tr := getXfer(t, s, rs[1].TransferID); tr.BusinessDay != "2026-03-03" {
		t.Errorf("late message landed in %s, want the next day", tr.BusinessDay)
	}
	early := postCmd("early", "fund", "card2", 5)
	early.BusinessDay = "2026-03-09" // a clock ahead does not open a day either
	if tr := getXfer(t, s, run1(t, s, early).TransferID); tr.BusinessDay != "2026-03-03" {
		t.Errorf("early message landed in %s", tr.BusinessDay)
	}
	d, err := s.Day("2026-03-02")
	if err != nil || d.State != DayClosed || d.Next != "2026-03-03" || d.ClosedAt != t0+3 {
		t.Errorf("closed day record %+v %v", d, err)
	}
	if d, err := s.Day("2026-03-03"); err != nil || d.State != DayOpen {
		t.Errorf("open day record %+v %v", d, err)
	}
	days, err := s.Days("", 0)
	if err != nil || len(days) != 2 || days[0].Day != "2026-03-03" || days[1].Day != "2026-03-02" {
		t.Errorf("days %+v %v", days, err)
	}
	// Survives a restart.
	s = reopen(t, s)
	if d, err := s.OpenDay(); err != nil || d != "2026-03-03" {
		t.Errorf("after restart open day %q %v", d, err)
	}
}

func TestDayOps(t *testing.T) {
	s := openTest(t)
	if _, err := s.OpenDay(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("fresh store open day: %v", err)
	}
	cases := []struct {
		name       string
		c          Command
		want       Status
		replayed   bool
		wantOpen   string
		wantResDay string
	}{
		{"bad day", openDayCmd("2026-3-1"), StatusInvalidCommand, false, "", ""},
		{"bad date", openDayCmd("2026-02-30"), StatusInvalidCommand, false, "", ""},
		{"open", openDayCmd("2026-03-01"), StatusOK, false, "2026-03-01", "2026-03-01"},
		{"open again", openDayCmd("2026-03-01"), StatusOK, true, "2026-03-01", "2026-03-01"},
		{"open another", openDayCmd("2026-03-05"), StatusDayMismatch, false, "2026-03-01", "2026-03-01"},
		{"close not open", closeDayCmd("2026-03-04", "2026-03-05"), StatusDayMismatch, false, "2026-03-01", "2026-03-01"},
		{"next not later", closeDayCmd("2026-03-01", "2026-03-01"), StatusInvalidCommand, false, "2026-03-01", ""},
		{"next missing", closeDayCmd("2026-03-01", ""), StatusInvalidCommand, false, "2026-03-01", ""},
		{"close", closeDayCmd("2026-03-01", "2026-03-02"), StatusOK, false, "2026-03-02", "2026-03-02"},
		{"close again (scheduled after manual)", closeDayCmd("2026-03-01", "2026-03-02"), StatusOK, true, "2026-03-02", "2026-03-02"},
		{"reopen closed", openDayCmd("2026-03-01"), StatusDayMismatch, false, "2026-03-02", "2026-03-02"},
		{"close into a closed day", closeDayCmd("2026-03-02", "2026-03-02"), StatusInvalidCommand, false, "2026-03-02", ""},
		{"close", closeDayCmd("2026-03-02", "2026-03-04"), StatusOK, false, "2026-03-04", "2026-03-04"},
	}
	for _, tc := range cases {
		r := run1(t, s, tc.c)
		if r.Status != tc.want || r.Replayed != tc.replayed || r.Day != tc.wantResDay {
			t.Errorf("%s: %+v, want %v replayed=%v day=%q", tc.name, r, tc.want, tc.replayed, tc.wantResDay)
		}
		if got, _ := s.OpenDay(); got != tc.wantOpen {
			t.Errorf("%s: open day %q, want %q", tc.name, got, tc.wantOpen)
		}
	}
	if !errors.Is(StatusDayMismatch.Err(), ErrDayMismatch) || StatusDayMismatch.String() != "day_mismatch" {
		t.Error("status mapping")
	}
}

func TestCloseBeforeAnyOpen(t *testing.T) {
	s := openTest(t)
	if r := run1(t, s, closeDayCmd("2026-03-01", "2026-03-02")); r.Status != StatusOK || r.Day != "2026-03-02" {
		t.Fatalf("%+v", r)
	}
	if d, err := s.Day("2026-03-01"); err != nil || d.State != DayClosed {
		t.Errorf("%+v %v", d, err)
	}
}

func TestDayCommandEncoding(t *testing.T) {
	in := []Command{closeDayCmd("2026-03-01", "2026-03-02"), openDayCmd("2026-03-01")}
	b, err := EncodeBatch(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeBatch(b)
	if err != nil || len(out) != 2 || out[0] != in[0] || out[1] != in[1] {
		t.Fatalf("round trip: %+v %v", out, err)
	}
}
