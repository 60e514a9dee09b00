package main

import (
	"bufio"
	"errors"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/switchd/switchd/codec"
)

// Connection tuning.
const (
	// connBufferBytes: a few dozen messages per syscall when pipelining.
	connBufferBytes = 32 << 10
	dialTimeout     = 5 * time.Second
	// redialBackoffMin and redialBackoffMax bound the wait between
	// reconnect attempts (doubling from min to max).
	redialBackoffMin = 100 * time.Millisecond
	redialBackoffMax = 2 * time.Second
	// scanInterval is how often a connection looks for timed-out requests
	// and resends that are due: the resolution of --timeout.
	scanInterval = 50 * time.Millisecond
	// rc96Backoff is the pause before repeating a request answered 96,
	// times the sends so far: the switch said it could not decide now
	// (overload, leader change), and an instant repeat would add to the load.
	rc96Backoff = 200 * time.Millisecond
)

// errConnBroken: the reader saw the connection end.
var errConnBroken = errors.New("switchload: connection broken")

// conn is one pipelined connection to the lane. It owns the requests it
// sent until they have a final answer, across reconnects: a request that
// times out or whose connection drops is repeated on the same conn.
type conn struct {
	id    int
	addr  string // the lane it dials, and redials after a break: laneAddr(e.addrs, id)
	e     *engine
	slots chan struct{} // a counting semaphore of --inflight: send takes a slot, receive gives one back
	kick  chan struct{} // wakes the writer when resend gets an entry

	mu      sync.Mutex          // protects pending and resend, and the wire state of the requests in them
	pending map[string]*request // by match key (STAN + field 7); each holds a slot
	resend  []*request          // subset of pending waiting to be written again
}

func newConn(id int, e *engine) *conn {
	return &conn{
		id:      id,
		addr:    laneAddr(e.addrs, id),
		e:       e,
		slots:   make(chan struct{}, e.cfg.Inflight),
		kick:    make(chan struct{}, 1),
		pending: make(map[string]*request, e.cfg.Inflight),
	}
}

// outstanding is how many requests wait for a final answer.
func (c *conn) outstanding() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

func (c *conn) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// queueLocked puts r on the resend queue. Each pending request is queued
// at most once, so the queue never outgrows --inflight.
func (c *conn) queueLocked(r *request) {
	r.queued, r.onWire = true, false
	c.resend = append(c.resend, r)
}

func (c *conn) unqueueLocked(r *request) {
	if !r.queued {
		return
	}
	r.queued = false
	if i := slices.Index(c.resend, r); i >= 0 {
		c.resend = slices.Delete(c.resend, i, i+1)
	}
}

// popResend takes the next request to write again and marks it as on the
// wire, with the repeat MTI.
func (c *conn) popResend(now time.Time) *request {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.resend) == 0 {
		return nil
	}
	r := c.resend[0]
	c.resend = slices.Delete(c.resend, 0, 1)
	r.queued, r.onWire = false, true
	r.sends++
	r.due = now.Add(c.e.cfg.Timeout)
	r.msg.MTI = repeatMTI(r.mti)
	return r
}

// register makes r pending and on the wire, holding the slot its caller
// took.
func (c *conn) register(r *request, now time.Time) {
	r.sends, r.onWire, r.due = 1, true, now.Add(c.e.cfg.Timeout)
	c.mu.Lock()
	c.pending[r.key] = r
	c.mu.Unlock()
}

// requeueAll queues every pending request after a reconnect: the old
// connection may or may not have delivered them, so they go out again as
// repeats.
func (c *conn) requeueAll() {
	c.mu.Lock()
	for _, r := range c.pending {
		if !r.queued {
			c.queueLocked(r)
		}
	}
	n := len(c.resend)
	c.mu.Unlock()
	if n > 0 {
		c.wake()
	}
}

// scan handles deadlines: an answer overdue is a timeout and the request
// is queued for a repeat; a 96 backoff that ran out is queued too; a
// request out of sends is given up as unknown.
func (c *conn) scan(now time.Time) {
	var gaveUp []*request
	var timeouts int64
	queued := false
	c.mu.Lock()
	for key, r := range c.pending {
		if r.queued || now.Before(r.due) {
			continue
		}
		if r.onWire {
			timeouts++
		}
		if r.sends >= sendsMax {
			delete(c.pending, key)
			gaveUp = append(gaveUp, r)
			continue
		}
		c.queueLocked(r)
		queued = true
	}
	c.mu.Unlock()
	if timeouts > 0 {
		c.e.stats.add(&c.e.stats.timeouts, timeouts)
	}
	if queued {
		c.wake()
	}
	for _, r := range gaveUp {
		<-c.slots
		c.e.unknown(r)
	}
}

// abandon gives up on everything still pending (the drain ran out of time).
func (c *conn) abandon() {
	c.mu.Lock()
	left := make([]*request, 0, len(c.pending))
	for _, r := range c.pending {
		left = append(left, r)
	}
	clear(c.pending)
	c.resend = nil
	c.mu.Unlock()
	for _, r := range left {
		<-c.slots
		c.e.unknown(r)
	}
}

// watch runs scan until done.
func (c *conn) watch(done <-chan struct{}) {
	t := time.NewTicker(scanInterval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			c.scan(now)
		}
	}
}

// run serves nc, and reconnects whenever the connection breaks, until
// done. tickets is nil in closed loop; in open loop each ticket is the
// intended send time of one new request.
func (c *conn) run(nc net.Conn, tickets <-chan time.Time, stopNew, done <-chan struct{}) {
	for {
		broken := make(chan struct{})
		var reader sync.WaitGroup
		reader.Add(1)
		go func() {
			defer reader.Done()
			defer close(broken)
			c.read(nc)
		}()
		err := c.write(nc, broken, tickets, stopNew, done)
		nc.Close()
		reader.Wait()
		if err == nil {
			return
		}
		c.e.stats.add(&c.e.stats.connLost, 1)
		c.e.logf("conn %d: %v; reconnecting", c.id, err)
		if nc = c.redial(done); nc == nil {
			return
		}
		c.requeueAll()
	}
}

func (c *conn) redial(done <-chan struct{}) net.Conn {
	backoff := redialBackoffMin
	for {
		nc, err := net.DialTimeout("tcp", c.addr, dialTimeout)
		if err == nil {
			return nc
		}
		c.e.logf("conn %d: %v", c.id, err)
		select {
		case <-done:
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, redialBackoffMax)
	}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// write is the connection's only writer. Resends go first; new requests
// need a slot and, in open loop, a ticket. The buffer is flushed whenever
// the writer would wait, so a busy connection batches and an idle one does
// not delay. It returns nil when done closes and an error when the
// connection broke.
func (c *conn) write(nc net.Conn, broken <-chan struct{}, tickets <-chan time.Time, stopNew, done <-chan struct{}) error {
	bw := bufio.NewWriterSize(nc, connBufferBytes)
	var payload, frame []byte
	// send writes r to the buffer. A message that does not pack is a bug
	// here, not a network problem: it is counted and dropped, and the
	// connection carries on.
	send := func(r *request) error {
		var err error
		payload, err = c.e.codec.Pack(payload[:0], &r.msg)
		if err == nil {
			frame, err = c.e.framer.AppendFrame(frame[:0], payload)
		}
		if err != nil {
			c.e.stats.add(&c.e.stats.packErrors, 1)
			c.e.logf("conn %d: dropping a %s that does not pack: %v", c.id, r.msg.MTI, err)
			c.drop(r)
			return nil
		}
		if err := c.writeDeadline(nc); err != nil {
			return err
		}
		_, err = bw.Write(frame)
		return err
	}
	flush := func() error {
		if err := c.writeDeadline(nc); err != nil {
			return err
		}
		return bw.Flush()
	}
	for {
		if r := c.popResend(time.Now()); r != nil {
			c.e.stats.add(&c.e.stats.resent, 1)
			if err := send(r); err != nil {
				return err
			}
			continue
		}
		if closed(stopNew) {
			// Draining: only resends from here on.
			if err := flush(); err != nil {
				return err
			}
			select {
			case <-c.kick:
				continue
			case <-broken:
				return errConnBroken
			case <-done:
				return nil
			}
		}
		select {
		case c.slots <- struct{}{}:
		default:
			if err := flush(); err != nil {
				return err
			}
			select {
			case c.slots <- struct{}{}:
			case <-c.kick:
				continue
			case <-stopNew:
				continue
			case <-broken:
				return errConnBroken
			case <-done:
				return nil
			}
		}
		// Holding a slot: a new request.
		var intended time.Time
		if tickets == nil {
			intended = time.Now()
		} else {
			select {
			case intended = <-tickets:
			default:
				if err := flush(); err != nil {
					<-c.slots
					return err
				}
				select {
				case intended = <-tickets:
				case <-c.kick:
					<-c.slots
					continue
				case <-stopNew:
					<-c.slots
					continue
				case <-broken:
					<-c.slots
					return errConnBroken
				case <-done:
					<-c.slots
					return nil
				}
			}
		}
		now := time.Now()
		r := c.e.book.next(now, intended)
		c.register(r, now)
		c.e.stats.sentOne()
		if err := send(r); err != nil {
			return err
		}
	}
}

// writeDeadline bounds the next write: a switch that stops reading must
// not block the writer for ever (done could not stop it). Past --timeout
// the connection counts as broken and is redialled.
func (c *conn) writeDeadline(nc net.Conn) error {
	return nc.SetWriteDeadline(time.Now().Add(c.e.cfg.Timeout))
}

// drop gives up on a request that cannot be written.
func (c *conn) drop(r *request) {
	c.mu.Lock()
	_, ok := c.pending[r.key]
	delete(c.pending, r.key)
	c.unqueueLocked(r)
	c.mu.Unlock()
	if ok {
		<-c.slots
		c.e.unknown(r)
	}
}

// read matches answers to pending requests by STAN and field 7 until the
// connection ends.
func (c *conn) read(nc net.Conn) {
	br := bufio.NewReaderSize(nc, connBufferBytes)
	var buf []byte
	var msg codec.Message
	for {
		b, err := c.e.framer.ReadFrame(br, buf)
		if err != nil {
			return
		}
		buf = b
		msg.Reset()
		if err := c.e.codec.Unpack(b, &msg); err != nil {
			c.e.stats.add(&c.e.stats.badAnswers, 1)
			continue
		}
		c.answer(&msg, time.Now())
	}
}

// answer settles the request msg answers. A 96 is repeated while the
// request has sends left: the switch could not decide (DESIGN.md invariant
// 1 says the partner retries with the same key).
func (c *conn) answer(msg *codec.Message, now time.Time) {
	key := msg.Get(11) + msg.Get(7)
	rc := msg.Get(39)
	c.mu.Lock()
	r := c.pending[key]
	if r == nil {
		c.mu.Unlock()
		c.e.stats.add(&c.e.stats.late, 1)
		return
	}
	if rc == "96" && r.sends < sendsMax {
		if r.onWire {
			r.onWire = false
			r.due = now.Add(time.Duration(r.sends) * rc96Backoff)
		}
		c.mu.Unlock()
		c.e.stats.add(&c.e.stats.rc96, 1)
		return
	}
	delete(c.pending, key)
	c.unqueueLocked(r)
	c.mu.Unlock()
	<-c.slots
	c.e.finish(r, msg, now)
}
