package store

import "time"

// mDays is the model's view of business days: the open one and every day
// ever opened, with whether it closed.
type mDays struct {
	open   string
	closed map[string]bool // day → closed (present: opened at some point)
}

func (d *mDays) init() {
	if d.closed == nil {
		d.closed = map[string]bool{}
	}
}

func (m *model) stampDay(c *Command) {
	switch c.Op {
	case OpAuthorize, OpPost, OpComplete, OpReverse:
	default:
		return
	}
	m.days.init()
	if m.days.open != "" {
		c.BusinessDay = m.days.open
	} else if ValidDay(c.BusinessDay) {
		m.days.open = c.BusinessDay
		m.days.closed[c.BusinessDay] = false
	}
}

func (m *model) dayOp(c Command) Result {
	m.days.init()
	d := &m.days
	if !ValidDay(c.BusinessDay) {
		return Result{Status: StatusInvalidCommand}
	}
	closed, known := d.closed[c.BusinessDay]
	if c.Op == OpOpenDay {
		if d.open == c.BusinessDay {
			return Result{Status: StatusOK, Replayed: true, Day: d.open}
		}
		if d.open != "" || known {
			return Result{Status: StatusDayMismatch, Day: d.open}
		}
		d.open, d.closed[c.BusinessDay] = c.BusinessDay, false
		return Result{Day: d.open}
	}
	if !ValidDay(c.NextDay) || c.NextDay <= c.BusinessDay {
		return Result{Status: StatusInvalidCommand}
	}
	if known && closed {
		return Result{Status: StatusOK, Replayed: true, Day: d.open}
	}
	if _, nextKnown := d.closed[c.NextDay]; (d.open != "" && d.open != c.BusinessDay) || nextKnown {
		return Result{Status: StatusDayMismatch, Day: d.open}
	}
	d.closed[c.BusinessDay] = true
	d.open, d.closed[c.NextDay] = c.NextDay, false
	return Result{Day: d.open}
}

// genDay is the n-th business day of the generator.
func genDay(n int) string {
	return time.Date(2026, 3, 2+n, 0, 0, 0, 0, time.UTC).Format(time.DateOnly)
}

// dayCmd mostly closes the open day (the cutover); sometimes it repeats an
// old close (a scheduled close after a manual one), opens a day while one
// is open, or closes a day that is not open.
func (g *gen) dayCmd() Command {
	c := Command{Op: OpCloseDay, Time: g.now}
	switch g.rng.IntN(6) {
	case 0:
		c.BusinessDay, c.NextDay = genDay(max(0, g.daysShut-1)), genDay(max(1, g.daysShut))
	case 1:
		c.Op, c.BusinessDay = OpOpenDay, genDay(g.daysShut+g.rng.IntN(2))
	case 2:
		c.BusinessDay, c.NextDay = genDay(g.daysShut+1), genDay(g.daysShut+2)
	default:
		c.BusinessDay, c.NextDay = genDay(g.daysShut), genDay(g.daysShut+1)
		g.daysShut++
	}
	return c
}
