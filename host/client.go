package host

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchd/switchd/codec"
)

// Errors of Send. The switch maps them through the one code table
// (package outcome): unavailable and lost to 91, a timeout to 91 or 68.
var (
	// ErrUnavailable: no connection is up, or the circuit is open. Send
	// returns it at once, without waiting.
	ErrUnavailable = errors.New("host: destination unavailable")
	// ErrTimeout: no answer within the destination's timeout. The host may
	// still have acted on the request: the caller must reverse it.
	ErrTimeout = errors.New("host: no answer within the timeout")
	// ErrConnectionLost: the connection closed while the request waited;
	// like a timeout, the host may have acted on it.
	ErrConnectionLost = errors.New("host: connection lost before the answer")
	// ErrInFlight: a request with the same correlation key is already
	// waiting for its answer; the answer could not be told apart.
	ErrInFlight = errors.New("host: a request with the same correlation key is in flight")
	// ErrBusy: the connection has InFlightMax requests waiting.
	ErrBusy = errors.New("host: too many requests in flight")
	// ErrSignOnRefused: the host answered the sign-on with another code
	// than 00.
	ErrSignOnRefused = errors.New("host: sign-on refused")
	// ErrClosed: the client is closed.
	ErrClosed = errors.New("host: client closed")
)

// StrayKind says why an answer matched no waiting request.
type StrayKind string

const (
	// StrayLate answers a request that had already timed out: the host
	// acted on something the partner was told failed (a break for
	// reconciliation; the SAF reversal covers it).
	StrayLate StrayKind = "late"
	// StrayUnmatched answers nothing we sent.
	StrayUnmatched StrayKind = "unmatched"
	// StrayRequest is a request from the host other than an echo (e.g. a
	// biller's 0420), which the client does not answer itself.
	StrayRequest StrayKind = "request"
)

// Stray is a message from the host that no Send was waiting for. It is
// never dropped silently: the client counts it and hands it to
// Options.OnStray.
type Stray struct {
	Kind    StrayKind
	Key     string
	Message *codec.Message
	conn    *conn // the connection it came on (Reply)
}

// ErrNoReply: Reply on a stray that came on no connection, or after it
// closed.
var ErrNoReply = errors.New("host: cannot reply: the connection is gone")

// Reply answers a host's request (a StrayRequest) on the connection it
// came on, as the host expects (an 0430 to its 0420).
func (s Stray) Reply(m *codec.Message) error {
	if s.conn == nil {
		return ErrNoReply
	}
	return s.conn.write(m)
}

// Options are a Client's collaborators.
type Options struct {
	Logger *slog.Logger
	// OnStray receives late and unmatched answers and host requests, on
	// the connection's reader goroutine: it must not block for long.
	OnStray func(Stray)
	// Now is the clock (field 7 of network messages); nil: time.Now.
	Now func() time.Time
	// Dial replaces net.Dialer (tests, network namespaces); nil: TCP.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// Client keeps cfg.PoolSize connections to one destination and sends
// requests over them.
type Client struct {
	cfg    Config
	codec  *codec.Codec
	fr     codec.Framer
	tls    *TLSFiles
	opt    Options
	log    *slog.Logger
	conns  []*conn
	next   atomic.Uint32
	stan   atomic.Uint32
	brk    breaker
	late   lateKeys
	stats  counters
	stop   chan struct{}
	wg     sync.WaitGroup
	closed atomic.Bool
}

// New starts the client's connections in the background; Ready reports
// whether one is up. Close stops them.
func New(cfg Config, opt Options) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cd, err := codec.Load(cfg.Dialect)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, cfg.Name, err)
	}
	c := &Client{cfg: cfg, codec: cd, fr: codec.Framer{Header: cfg.Header, FrameBytesMax: cfg.FrameBytesMax}, opt: opt, stop: make(chan struct{})}
	if cfg.TLS != nil {
		if c.tls, err = LoadTLSFiles(cfg.TLS); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrConfig, cfg.Name, err)
		}
	}
	c.log = opt.Logger
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("destination", cfg.Name)
	if c.opt.Now == nil {
		c.opt.Now = time.Now
	}
	if c.opt.Dial == nil {
		d := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
		c.opt.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	c.brk.failuresMax, c.brk.cooldown = cfg.BreakerFailures, cfg.BreakerCooldown
	c.late.init()
	for i := range cfg.PoolSize {
		cn := &conn{c: c, slot: i}
		c.conns = append(c.conns, cn)
		c.wg.Add(1)
		go cn.run()
	}
	return c, nil
}

// ClientTLS is the client side of TLS that t describes: TLS 1.2 or
// later, t's CA (the system roots when none), and t's certificate when
// the peer wants mutual TLS. The forwarder's HTTP billers use it too.
func ClientTLS(t *TLSConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca_file %s holds no PEM certificate", t.CAFile)
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Name is the destination's name.
func (c *Client) Name() string { return c.cfg.Name }

// Ready reports whether a connection is up (signed on when SignOn).
func (c *Client) Ready() bool {
	for _, cn := range c.conns {
		if cn.isReady() {
			return true
		}
	}
	return false
}

// Close stops every connection; requests waiting get ErrConnectionLost.
func (c *Client) Close() {
	if c.closed.Swap(true) {
		return
	}
	close(c.stop)
	for _, cn := range c.conns {
		cn.close()
	}
	c.wg.Wait()
}

// Send sends req and waits for its answer, at most cfg.Timeout (or until
// ctx ends). With no connection up or the circuit open it fails at once
// with ErrUnavailable. req must carry the fields of its correlation key.
func (c *Client) Send(ctx context.Context, req *codec.Message) (*codec.Message, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if !c.brk.allow(c.opt.Now()) {
		c.stats.unavailable.Add(1)
		return nil, fmt.Errorf("%w: %s: circuit open", ErrUnavailable, c.cfg.Name)
	}
	n := len(c.conns)
	start := int(c.next.Add(1))
	for i := range n {
		cn := c.conns[(start+i)%n]
		if !cn.isReady() {
			continue
		}
		t0 := time.Now()
		ans, err := cn.exchange(ctx, req, c.cfg.Timeout)
		switch {
		case err == nil:
			c.brk.success()
			c.stats.answered.Add(1)
			c.stats.latency.observe(time.Since(t0))
		case errors.Is(err, ErrTimeout):
			c.brk.failure(c.opt.Now())
			c.stats.timeouts.Add(1)
		case errors.Is(err, ErrConnectionLost):
			c.brk.failure(c.opt.Now())
			c.stats.lost.Add(1)
		}
		return ans, err
	}
	c.brk.release() // a half-open probe that found no connection
	c.stats.unavailable.Add(1)
	return nil, fmt.Errorf("%w: %s: no connection up", ErrUnavailable, c.cfg.Name)
}

// key is the correlation key of m: the MTI class (version and class
// digits) and the configured fields.
func (c *Client) key(m *codec.Message) string {
	if len(m.MTI) != 4 {
		return ""
	}
	class := m.MTI[:2]
	var b strings.Builder
	b.WriteString(class)
	for _, f := range c.cfg.matchFields(class) {
		b.WriteByte('|')
		b.WriteString(m.Get(f))
	}
	return b.String()
}

// network is an 0800 of the given function (field 70): 001 sign-on,
// 301 echo.
func (c *Client) network(code string) *codec.Message {
	m := &codec.Message{MTI: "0800"}
	m.Set(7, c.opt.Now().UTC().Format("0102150405"))
	m.Set(11, fmt.Sprintf("%06d", c.stan.Add(1)%1_000_000))
	m.Set(70, code)
	return m
}

// conn is one connection slot: it dials, signs on, serves requests and
// echoes until the connection fails, then dials again with backoff.
type conn struct {
	c    *Client
	slot int

	mu      sync.Mutex
	nc      net.Conn
	w       *wire // nc's writer
	ready   bool
	pending map[string]chan *codec.Message
}

// wire writes frames to one connection from a goroutine of its own,
// combining them: whatever callers queued while a write was under way
// goes out in the next one. Alone a frame goes out at once; under load
// one write system call carries every frame queued meanwhile (the
// simulated issuer answers the same way), and no caller is held to write
// the others' frames.
type wire struct {
	nc      net.Conn
	timeout time.Duration // of one write

	mu    sync.Mutex
	next  []byte // frames for the next write
	spare []byte // the last write's buffer, reused
	err   error  // the connection failed: every later send too

	kick    chan struct{} // cap 1: frames are waiting
	stop    chan struct{}
	stopped chan struct{}
}

func newWire(nc net.Conn, timeout time.Duration) *wire {
	w := &wire{nc: nc, timeout: timeout, kick: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	go w.run()
	return w
}

// send queues payload framed by fr (a copy is kept). nil means it is
// queued: a frame lost with the connection fails its waiter through the
// connection's end (ErrConnectionLost); an error that this connection
// failed before (ErrConnectionLost) or that payload cannot be framed
// (nothing queued).
func (w *wire) send(fr codec.Framer, payload []byte) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	next, err := fr.AppendFrame(w.next, payload)
	if err != nil {
		w.mu.Unlock()
		return err // too long for the header: nothing appended
	}
	w.next = next
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default: // the writer has been told already
	}
	return nil
}

// run writes what is queued until close, or until a write fails (then
// it closes the connection: a half-written frame leaves the stream
// unusable, and the reader's end fails every waiter).
func (w *wire) run() {
	defer close(w.stopped)
	for {
		select {
		case <-w.kick:
		case <-w.stop:
			return
		}
		for {
			w.mu.Lock()
			b := w.next
			if len(b) == 0 {
				w.mu.Unlock()
				break
			}
			w.next = w.spare[:0]
			w.mu.Unlock()
			w.nc.SetWriteDeadline(time.Now().Add(w.timeout))
			_, err := w.nc.Write(b)
			w.mu.Lock()
			w.spare = b[:0]
			if err != nil {
				w.err, w.next = fmt.Errorf("%w: write: %v", ErrConnectionLost, err), nil
			}
			w.mu.Unlock()
			if err != nil {
				w.nc.Close()
				return
			}
		}
	}
}

// close stops the writer and waits for it (frames still queued are
// dropped with the connection).
func (w *wire) close() {
	close(w.stop)
	<-w.stopped
}

func (cn *conn) isReady() bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.ready
}

func (cn *conn) close() {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.nc != nil {
		cn.nc.Close()
	}
}

func (cn *conn) run() {
	c := cn.c
	defer c.wg.Done()
	backoff := c.cfg.ReconnectMin
	for attempt := cn.slot; ; attempt++ {
		select {
		case <-c.stop:
			return
		default:
		}
		addr := c.cfg.Addrs[attempt%len(c.cfg.Addrs)]
		up, err := cn.session(addr)
		if up {
			backoff = c.cfg.ReconnectMin
		}
		if err != nil {
			c.log.Warn("host connection down", "addr", addr, "slot", cn.slot, "err", err)
		}
		// Full jitter: a pool of connections to a host that just came back
		// does not dial in lock step.
		wait := time.Duration(rand.Int64N(int64(backoff)) + 1)
		backoff = min(2*backoff, c.cfg.ReconnectMax)
		select {
		case <-c.stop:
			return
		case <-time.After(wait):
		}
	}
}

// session is one connection's life; up reports whether it got as far as
// serving requests.
func (cn *conn) session(addr string) (up bool, err error) {
	c := cn.c
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.DialTimeout)
	nc, err := c.opt.Dial(ctx, addr)
	if err == nil && c.tls != nil {
		// Read again if the files changed: a rotated certificate is
		// taken by the next connection made.
		cur, changed, terr := c.tls.Config()
		if terr != nil {
			c.log.Error("host TLS files", "destination", c.cfg.Name, "err", terr)
		} else if changed {
			c.log.Info("host TLS files loaded again", "destination", c.cfg.Name)
		}
		tc := cur.Clone()
		if tc.ServerName == "" {
			tc.ServerName, _, _ = strings.Cut(addr, ":")
		}
		tl := tls.Client(nc, tc)
		if err = tl.HandshakeContext(ctx); err != nil {
			nc.Close()
		}
		nc = tl
	}
	cancel()
	if err != nil {
		c.stats.dialFailures.Add(1)
		return false, err
	}
	cn.mu.Lock()
	if c.closed.Load() {
		cn.mu.Unlock()
		nc.Close()
		return false, nil
	}
	w := newWire(nc, c.cfg.Timeout)
	cn.nc, cn.w, cn.pending = nc, w, map[string]chan *codec.Message{}
	cn.mu.Unlock()
	readerDone := make(chan error, 1)
	go func() { readerDone <- cn.read(nc) }()
	defer func() {
		nc.Close()
		w.close()
		rerr := <-readerDone
		if err == nil && !c.closed.Load() {
			err = rerr
		}
		cn.mu.Lock()
		cn.ready, cn.nc, cn.w = false, nil, nil
		for k, ch := range cn.pending {
			close(ch) // the waiter sees ErrConnectionLost
			delete(cn.pending, k)
		}
		cn.mu.Unlock()
		c.stats.connsUp.Add(-1)
	}()
	c.stats.connsUp.Add(1)
	c.stats.connects.Add(1)
	if c.cfg.SignOn {
		ans, err := cn.exchange(context.Background(), c.network("001"), c.cfg.Timeout)
		if err != nil {
			return false, fmt.Errorf("sign-on: %w", err)
		}
		if rc := ans.Get(39); rc != "00" {
			return false, fmt.Errorf("%w: 0810 answered %q", ErrSignOnRefused, rc)
		}
	}
	cn.mu.Lock()
	cn.ready = true
	cn.mu.Unlock()
	c.log.Info("host connection up", "addr", addr, "slot", cn.slot)
	var echo <-chan time.Time
	if c.cfg.EchoInterval > 0 {
		t := time.NewTicker(c.cfg.EchoInterval)
		defer t.Stop()
		echo = t.C
	}
	for {
		select {
		case <-c.stop:
			return true, nil
		case err := <-readerDone:
			readerDone <- err // for the deferred wait
			return true, err
		case <-echo:
			ans, err := cn.exchange(context.Background(), c.network("301"), c.cfg.Timeout)
			if err == nil && ans.Get(39) != "00" {
				err = fmt.Errorf("echo answered %q", ans.Get(39))
			}
			if err != nil {
				c.stats.echoFailures.Add(1)
				return true, fmt.Errorf("echo: %w", err)
			}
		}
	}
}

// exchange sends m on this connection and waits for the answer with its
// key.
func (cn *conn) exchange(ctx context.Context, m *codec.Message, timeout time.Duration) (*codec.Message, error) {
	c := cn.c
	key := c.key(m)
	ch := make(chan *codec.Message, 1)
	cn.mu.Lock()
	w := cn.w
	switch {
	case w == nil:
		cn.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrConnectionLost, c.cfg.Name)
	case cn.pending[key] != nil:
		cn.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrInFlight, key)
	case len(cn.pending) >= InFlightMax:
		cn.mu.Unlock()
		return nil, ErrBusy
	}
	cn.pending[key] = ch
	cn.mu.Unlock()

	bp := packBuffers.Get().(*[]byte)
	payload, err := c.codec.Pack((*bp)[:0], m)
	if err == nil {
		err = w.send(c.fr, payload)
	}
	*bp = payload[:0]
	packBuffers.Put(bp)
	if err != nil {
		cn.forget(key, ch)
		return nil, err
	}
	c.stats.sent.Add(1)

	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case ans, ok := <-ch:
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrConnectionLost, c.cfg.Name)
		}
		return ans, nil
	case <-t.C:
		err = fmt.Errorf("%w: %s after %s", ErrTimeout, c.cfg.Name, timeout)
	case <-ctx.Done():
		err = fmt.Errorf("%w: %s: %v", ErrTimeout, c.cfg.Name, ctx.Err())
	}
	if cn.forget(key, ch) {
		c.late.add(key, c.opt.Now())
		return nil, err
	}
	// The answer and the timeout crossed: the answer is here.
	if ans, ok := <-ch; ok {
		return ans, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrConnectionLost, c.cfg.Name)
}

// forget removes key's waiter if it is still ch; false when the reader
// (or the connection's end) took it first.
func (cn *conn) forget(key string, ch chan *codec.Message) bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.pending[key] == ch {
		delete(cn.pending, key)
		return true
	}
	return false
}

// read hands every frame of nc to its waiter until nc fails.
func (cn *conn) read(nc net.Conn) error {
	c := cn.c
	br := bufio.NewReader(nc)
	var buf []byte
	for {
		frame, err := c.fr.ReadFrame(br, buf[:0])
		if err != nil {
			if errors.Is(err, codec.ErrFrameEmpty) {
				continue // a keep-alive some hosts send
			}
			return err
		}
		buf = frame
		m := new(codec.Message)
		if err := c.codec.Unpack(frame, m); err != nil {
			c.stats.malformed.Add(1)
			return fmt.Errorf("answer does not decode: %w", err)
		}
		if isRequest(m.MTI) {
			cn.serveHost(m)
			continue
		}
		key := c.key(m)
		cn.mu.Lock()
		ch := cn.pending[key]
		delete(cn.pending, key)
		cn.mu.Unlock()
		if ch != nil {
			ch <- m
			continue
		}
		kind := StrayUnmatched
		if c.late.take(key, c.opt.Now()) {
			kind = StrayLate
			c.stats.late.Add(1)
		} else {
			c.stats.unmatched.Add(1)
		}
		c.log.Warn("host answer matched no request", "kind", kind, "mti", m.MTI, "stan", m.Get(11), "rrn", m.Get(37), "rc", m.Get(39))
		if c.opt.OnStray != nil {
			c.opt.OnStray(Stray{Kind: kind, Key: key, Message: m})
		}
	}
}

// serveHost answers a host's echo itself and hands other host requests
// to OnStray.
func (cn *conn) serveHost(m *codec.Message) {
	c := cn.c
	if m.MTI == "0800" {
		ans := &codec.Message{MTI: "0810"}
		for _, f := range []int{7, 11, 70} {
			if m.Has(f) {
				ans.Set(f, m.Get(f))
			}
		}
		ans.Set(39, "00")
		cn.write(ans)
		return
	}
	c.stats.hostRequests.Add(1)
	if c.opt.OnStray != nil {
		c.opt.OnStray(Stray{Kind: StrayRequest, Key: c.key(m), Message: m, conn: cn})
	}
}

// write sends m on the connection, unless it is closed.
func (cn *conn) write(m *codec.Message) error {
	c := cn.c
	payload, err := c.codec.Pack(nil, m)
	if err != nil {
		return err
	}
	cn.mu.Lock()
	w := cn.w
	cn.mu.Unlock()
	if w == nil {
		return ErrNoReply
	}
	return w.send(c.fr, payload)
}

// packBuffers hold requests being packed: one a request in flight at
// most, reused (send copies the frame).
var packBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// isRequest: the MTI's function digit (third) is even (0200, 0420, 0800).
func isRequest(mti string) bool { return len(mti) == 4 && (mti[2]-'0')%2 == 0 }

// breaker is the circuit breaker: closed, open until a time, or half-open
// with one probe in flight.
type breaker struct {
	failuresMax int
	cooldown    time.Duration

	mu        sync.Mutex
	failures  int
	openUntil time.Time
	probing   bool
	opens     uint64
}

func (b *breaker) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < b.failuresMax {
		return true
	}
	if now.Before(b.openUntil) || b.probing {
		return false
	}
	b.probing = true // half-open: this request is the probe
	return true
}

func (b *breaker) success() {
	b.mu.Lock()
	b.failures, b.probing = 0, false
	b.mu.Unlock()
}

func (b *breaker) release() {
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

func (b *breaker) failure(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures++
	b.probing = false
	if b.failures >= b.failuresMax {
		if !now.Before(b.openUntil) {
			b.opens++
		}
		b.openUntil = now.Add(b.cooldown)
	}
}

func (b *breaker) state(now time.Time) (open bool, opens uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failures >= b.failuresMax && now.Before(b.openUntil), b.opens
}

// lateKeys remembers keys of timed-out requests for lateMemory, at most
// lateKeysMax of them (the oldest go first).
type lateKeys struct {
	mu    sync.Mutex
	at    map[string]time.Time
	order []lateKey
}

type lateKey struct {
	key string
	at  time.Time
}

func (l *lateKeys) init() { l.at = map[string]time.Time{} }

func (l *lateKeys) add(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.order) > 0 && (len(l.order) >= lateKeysMax || now.Sub(l.order[0].at) > lateMemory) {
		if old := l.order[0]; l.at[old.key].Equal(old.at) {
			delete(l.at, old.key) // not if the key was added again since
		}
		l.order = l.order[1:]
	}
	l.order = append(l.order, lateKey{key, now})
	l.at[key] = now
}

func (l *lateKeys) take(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.at[key]
	delete(l.at, key)
	return ok && now.Sub(t) <= lateMemory
}
