package settle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/store"
)

// Proposer submits a command through the cluster (cluster.Node).
type Proposer interface {
	Propose(ctx context.Context, cmd store.Command) (store.Result, error)
}

// Errors of the day operations.
var (
	// ErrNoOpenDay: nothing was ever posted and no day opened yet.
	ErrNoOpenDay = errors.New("settle: no business day is open")
	// ErrDayNotClosed: files are made only for closed days (an open day
	// still changes).
	ErrDayNotClosed = errors.New("settle: business day is not closed")
)

// Calendar maps instants to business days: day D runs until D's cutover
// (D at Cutover in Zone); from then on it is D+1.
type Calendar struct {
	loc     *time.Location
	cutover time.Duration
}

// NewCalendar builds the calendar of cfg (Zone must be set).
func NewCalendar(zone, cutover string) (Calendar, error) {
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return Calendar{}, fmt.Errorf("%w: zone %q: %v", ErrConfig, zone, err)
	}
	off, err := parseCutover(cutover)
	if err != nil {
		return Calendar{}, err
	}
	return Calendar{loc: loc, cutover: off}, nil
}

// CloseAt is the instant day closes. A cutover of 00:00 closes at the
// following midnight.
func (c Calendar) CloseAt(day string) (time.Time, error) {
	d, err := time.ParseInLocation(time.DateOnly, day, c.loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("settle: business day %q: %w", day, err)
	}
	off := c.cutover
	if off == 0 {
		off = 24 * time.Hour
	}
	h, m := int(off/time.Hour), int(off%time.Hour/time.Minute)
	// time.Date normalises 24:00 to the next midnight and handles DST.
	return time.Date(d.Year(), d.Month(), d.Day(), h, m, 0, 0, c.loc), nil
}

// DayAt is the business day instant t belongs to.
func (c Calendar) DayAt(t time.Time) string {
	local := t.In(c.loc)
	day := local.Format(time.DateOnly)
	if closeAt, _ := c.CloseAt(day); !t.Before(closeAt) {
		y, m, d := local.Date()
		return time.Date(y, m, d+1, 12, 0, 0, 0, c.loc).Format(time.DateOnly)
	}
	return day
}

// nextDay is the calendar day after day.
func nextDay(day string) string {
	d, _ := time.Parse(time.DateOnly, day)
	return d.AddDate(0, 0, 1).Format(time.DateOnly)
}

// DayLedger is what the day operations read.
type DayLedger interface {
	OpenDay() (string, error)
}

// Days closes business days: on a schedule (Cutover) and on request
// (Close). Both propose the same command, OpCloseDay(open, next); the FSM
// makes a second close of the same day a no-op, so a scheduled close after
// a manual one, or two nodes' tickers, do no harm.
type Days struct {
	cal    Calendar
	ledger DayLedger
	prop   Proposer
	now    func() time.Time
	log    *slog.Logger
	// leading, when set, gates Tick: only the leader's clock closes days
	// (followers would forward the same, harmless, close).
	leading func() bool
}

// OnlyWhen makes Tick do nothing unless leading() (cluster.Node.Leading).
// Call it before the ticker starts.
func (d *Days) OnlyWhen(leading func() bool) { d.leading = leading }

// NewDays builds the day operations.
func NewDays(cal Calendar, ledger DayLedger, prop Proposer, logger *slog.Logger, now func() time.Time) *Days {
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Days{cal: cal, ledger: ledger, prop: prop, now: now, log: logger}
}

// Calendar returns the calendar the days follow.
func (d *Days) Calendar() Calendar { return d.cal }

// DayResult says what a close did.
type DayResult struct {
	Closed string `json:"closed,omitempty"`
	Open   string `json:"open"`
	// AlreadyClosed: the day was closed before (by the schedule or another
	// request); nothing changed.
	AlreadyClosed bool `json:"already_closed,omitempty"`
}

// Close closes the open business day now (or day, which must be the open
// one when given) and opens the next: the later of the calendar's next
// day and the day the clock is in. admin names the operator who asked
// (the day.close audit record shows it); nil is the switch itself, as for
// the cutover (actor "system").
func (d *Days) Close(ctx context.Context, day string, admin *store.Admin) (DayResult, error) {
	open, err := d.ledger.OpenDay()
	if errors.Is(err, store.ErrNotFound) {
		return DayResult{}, ErrNoOpenDay
	}
	if err != nil {
		return DayResult{}, err
	}
	if day == "" {
		day = open
	}
	next := nextDay(day)
	if at := d.cal.DayAt(d.now()); at > next {
		next = at
	}
	return d.propose(ctx, store.Command{Op: store.OpCloseDay, Time: d.now().UnixNano(), BusinessDay: day, NextDay: next, Admin: admin})
}

func (d *Days) propose(ctx context.Context, cmd store.Command) (DayResult, error) {
	res, err := d.prop.Propose(ctx, cmd)
	if err != nil {
		return DayResult{}, err
	}
	if err := res.Status.Err(); err != nil {
		return DayResult{Open: res.Day}, fmt.Errorf("settle: %s %s: %w", cmd.Op, cmd.BusinessDay, err)
	}
	out := DayResult{Open: res.Day, AlreadyClosed: res.Replayed && cmd.Op == store.OpCloseDay}
	if cmd.Op == store.OpCloseDay {
		out.Closed = cmd.BusinessDay
	}
	return out, nil
}

// Tick opens the first day when none is open, and closes the open day
// once its cutover passed. Followers' proposals fail with
// cluster.ErrNotLeader, which is not an error here.
func (d *Days) Tick(ctx context.Context) (DayResult, error) {
	if d.leading != nil && !d.leading() {
		return DayResult{}, nil
	}
	now := d.now()
	open, err := d.ledger.OpenDay()
	var res DayResult
	switch {
	case errors.Is(err, store.ErrNotFound):
		res, err = d.propose(ctx, store.Command{Op: store.OpOpenDay, Time: now.UnixNano(), BusinessDay: d.cal.DayAt(now)})
	case err != nil:
		return DayResult{}, err
	default:
		closeAt, cerr := d.cal.CloseAt(open)
		if cerr != nil {
			return DayResult{}, cerr
		}
		if now.Before(closeAt) {
			return DayResult{Open: open}, nil
		}
		// After downtime the next day is the one the clock is in: days
		// nobody worked are skipped rather than opened and closed empty.
		res, err = d.propose(ctx, store.Command{Op: store.OpCloseDay, Time: now.UnixNano(), BusinessDay: open, NextDay: d.cal.DayAt(now)})
		if err == nil && !res.AlreadyClosed {
			d.log.Info("business day closed", "day", open, "open", res.Open)
		}
	}
	if errors.Is(err, cluster.ErrNotLeader) {
		return DayResult{}, nil
	}
	return res, err
}

// Cutover runs Tick every interval until Close.
type Cutover struct {
	days     *Days
	interval time.Duration
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
}

// StartCutover starts the ticker.
func StartCutover(days *Days, interval time.Duration) *Cutover {
	c := &Cutover{days: days, interval: interval, stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

func (c *Cutover) run() {
	defer close(c.done)
	t := time.NewTicker(c.interval)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			tctx, tcancel := context.WithTimeout(ctx, c.interval+5*time.Second)
			if _, err := c.days.Tick(tctx); err != nil && ctx.Err() == nil {
				c.days.log.Warn("business day cutover failed", "err", err)
			}
			tcancel()
		}
	}
}

// Close stops the ticker and waits for a tick in progress.
func (c *Cutover) Close() {
	c.once.Do(func() { close(c.stop) })
	<-c.done
}
