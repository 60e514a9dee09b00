package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Business days are replicated state: the FSM keeps which day is open and
// stamps it on every transfer, so every replica agrees which day a transfer
// belongs to, whatever the proposer's clock said. A day is opened once and
// closed once; closing it opens the next one in the same command, so there
// is never a moment without an open day once the first one opened.
//
// Day ops carry no idempotency key: they are idempotent by content
// (closing a closed day changes nothing and answers Replayed). A decline is
// not stored either, so a close proposed on a stale read (the day already
// changed) cannot poison the key a later, correct close would use.

const (
	// OpOpenDay opens BusinessDay when no day is open (the very first day).
	// Opening the day that is already open is a no-op (Replayed).
	OpOpenDay Op = 7
	// OpCloseDay closes BusinessDay, which must be the open day, and opens
	// NextDay (later than BusinessDay) in the same step: transfers applied
	// after it belong to NextDay (a late message after the cutover lands
	// in the next day). Closing a closed day is a no-op (Replayed).
	OpCloseDay Op = 8
)

// StatusDayMismatch: the day op names a day that is not the open one (or
// opens a day while another is open, or reopens a closed day).
const StatusDayMismatch Status = 12

// ErrDayMismatch is StatusDayMismatch's error.
var ErrDayMismatch = errors.New("store: business day is not the open day")

// DayState is the life of a business day.
type DayState string

const (
	DayOpen   DayState = "open"
	DayClosed DayState = "closed"
)

// Day is one business day as the FSM keeps it.
type Day struct {
	Day   string   `json:"day"`
	State DayState `json:"state"`
	// OpenedAt and ClosedAt are the times of the commands that opened and
	// closed it (proposer's clock, unix nanoseconds).
	OpenedAt int64 `json:"opened_at"`
	ClosedAt int64 `json:"closed_at,omitempty"`
	// Next is the day the close opened.
	Next string `json:"next,omitempty"`
}

const (
	pfxDay = 'd' // d<YYYY-MM-DD> → day record
)

// keyOpenDay holds the open business day (absent before the first).
var keyOpenDay = []byte{pfxMeta, 'd', 'a', 'y'}

// ValidDay reports whether s is a calendar date YYYY-MM-DD.
func ValidDay(s string) bool {
	if len(s) != len(time.DateOnly) {
		return false
	}
	_, err := time.Parse(time.DateOnly, s) // pure: no clock, no zone database
	return err == nil
}

func appendDayRecord(dst []byte, d *Day) []byte {
	e := enc{b: dst}
	e.byte(recordVersion)
	if d.State == DayClosed {
		e.byte(2)
	} else {
		e.byte(1)
	}
	e.svar(d.OpenedAt)
	e.svar(d.ClosedAt)
	e.str(d.Next)
	return e.b
}

func decodeDayRecord(day string, b []byte) (Day, error) {
	d := newDec(b)
	out := Day{Day: day}
	if v := d.byte(); v != recordVersion {
		d.fail("day record version")
	}
	switch d.byte() {
	case 1:
		out.State = DayOpen
	case 2:
		out.State = DayClosed
	default:
		d.fail("day state")
	}
	out.OpenedAt = d.svar()
	out.ClosedAt = d.svar()
	out.Next = d.str()
	return out, d.done()
}

// openDay is the open business day as of this txn ("" before the first).
func (t *txn) openDay() string {
	if !t.dayLoaded {
		v, _ := t.get(string(keyOpenDay))
		t.day, t.dayLoaded = string(v), true
	}
	return t.day
}

func (t *txn) dayRecord(day string) (Day, bool) {
	v, ok := t.get(skey1(pfxDay, day))
	if !ok {
		return Day{}, false
	}
	d, err := decodeDayRecord(day, v)
	mustDecode(err)
	return d, true
}

func (t *txn) putDay(d *Day) { t.set(skey1(pfxDay, d.Day), appendDayRecord(nil, d)) }

func (t *txn) setOpenDay(day string, at int64) {
	t.putDay(&Day{Day: day, State: DayOpen, OpenedAt: at})
	t.set(string(keyOpenDay), []byte(day))
	t.day, t.dayLoaded = day, true
}

// stampDay puts the FSM's open day on a financial command, replacing the
// proposer's guess. Before any day was opened, the command's own day opens
// the first one (a fresh ledger needs no explicit OpOpenDay).
func (t *txn) stampDay(c *Command) {
	switch c.Op {
	case OpAuthorize, OpPost, OpComplete, OpReverse, OpForwardAdvice, OpForward, OpHostReversal:
	default:
		return
	}
	if open := t.openDay(); open != "" {
		c.BusinessDay = open
		return
	}
	if ValidDay(c.BusinessDay) {
		t.setOpenDay(c.BusinessDay, c.Time)
	}
}

// dayOp applies OpOpenDay and OpCloseDay.
func (t *txn) dayOp(c *Command) Result {
	if !ValidDay(c.BusinessDay) {
		return invalid()
	}
	open := t.openDay()
	rec, known := t.dayRecord(c.BusinessDay)
	switch c.Op {
	case OpOpenDay:
		switch {
		case open == c.BusinessDay:
			return Result{Status: StatusOK, Replayed: true, Day: open}
		case open != "" || known:
			return Result{Status: StatusDayMismatch, Day: open}
		}
		t.setOpenDay(c.BusinessDay, c.Time)
		t.appendAudit(c, "day.open", "day/"+c.BusinessDay, nil, mustJSON(map[string]string{"state": string(DayOpen)}))
		return Result{Status: StatusOK, Day: c.BusinessDay}
	case OpCloseDay:
		if !ValidDay(c.NextDay) || c.NextDay <= c.BusinessDay {
			return invalid()
		}
		switch {
		case known && rec.State == DayClosed:
			return Result{Status: StatusOK, Replayed: true, Day: open}
		case open != "" && open != c.BusinessDay:
			return Result{Status: StatusDayMismatch, Day: open}
		}
		if _, ok := t.dayRecord(c.NextDay); ok {
			// NextDay was open or closed before: days never reopen.
			return Result{Status: StatusDayMismatch, Day: open}
		}
		if !known {
			// Closing a day that never opened (no day open yet) records it
			// as opened and closed at once.
			rec = Day{Day: c.BusinessDay, OpenedAt: c.Time}
		}
		rec.State, rec.ClosedAt, rec.Next = DayClosed, c.Time, c.NextDay
		t.putDay(&rec)
		t.setOpenDay(c.NextDay, c.Time)
		t.appendAudit(c, "day.close", "day/"+c.BusinessDay, mustJSON(map[string]string{"state": string(DayOpen)}),
			mustJSON(map[string]string{"state": string(DayClosed), "next": c.NextDay}))
		return Result{Status: StatusOK, Day: c.NextDay}
	}
	return invalid()
}

// OpenDay returns the open business day, or ErrNotFound before the first.
func (s *Store) OpenDay() (string, error) {
	var day string
	err := s.read(func(db *pebble.DB) error {
		v, err := getRecord(db, keyOpenDay, func(b []byte) (string, error) { return string(b), nil })
		day = v
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return "", fmt.Errorf("open business day: %w", ErrNotFound)
	}
	return day, err
}

// Day returns one business day's record, or ErrNotFound.
func (s *Store) Day(day string) (Day, error) {
	var d Day
	err := s.read(func(db *pebble.DB) (err error) {
		d, err = getRecord(db, key1(pfxDay, day), func(b []byte) (Day, error) { return decodeDayRecord(day, b) })
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return Day{}, fmt.Errorf("business day %q: %w", day, ErrNotFound)
	}
	return d, err
}

// Days returns up to limit business days before `before` (all when
// empty), newest first.
func (s *Store) Days(before string, limit int) ([]Day, error) {
	limit = clampLimit(limit)
	var out []Day
	err := s.read(func(db *pebble.DB) error {
		hi := []byte{pfxDay + 1}
		if before != "" {
			hi = key1(pfxDay, before)
		}
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{pfxDay}, UpperBound: hi})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.Last(); ok && len(out) < limit; ok = it.Prev() {
			d, err := decodeDayRecord(string(it.Key()[1:]), it.Value())
			if err != nil {
				return err
			}
			out = append(out, d)
		}
		return it.Error()
	})
	return out, err
}
