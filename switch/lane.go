package switching

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/outcome"
)

// connBufferBytes sizes each connection's read and write buffers: a few
// typical messages, so pipelined partners need few syscalls.
const connBufferBytes = 16 << 10

// Lane is one listener partners connect to, with its dialect and framing.
type Lane struct {
	cfg      LaneConfig
	codec    *codec.Codec
	framer   codec.Framer
	pipe     *Pipeline
	log      *slog.Logger
	m        *Metrics
	partners map[string]bool
	timeout  time.Duration
	msgs     sync.Pool // *codec.Message

	last96       atomic.Int64 // unix nanos of the last "declined with 96" line
	suppressed96 atomic.Int64 // 96 lines left out since then

	ln net.Listener

	mu      sync.Mutex // protects conns and closing
	conns   map[net.Conn]struct{}
	closing bool

	wg   sync.WaitGroup // the accept loop and every connection's serve
	once sync.Once
}

// NewLane prepares a lane; Start listens.
func NewLane(cfg LaneConfig, pipe *Pipeline, requestTimeout time.Duration, logger *slog.Logger, m *Metrics) (*Lane, error) {
	c, err := codec.Load(cfg.Dialect)
	if err != nil {
		return nil, fmt.Errorf("switch: lane %q: %w", cfg.Name, err)
	}
	fr := codec.Framer{Header: cfg.Header, FrameBytesMax: cfg.FrameBytesMax}
	if err := fr.Validate(); err != nil {
		return nil, fmt.Errorf("switch: lane %q: %w", cfg.Name, err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	l := &Lane{
		cfg:      cfg,
		codec:    c,
		framer:   fr,
		pipe:     pipe,
		log:      logger.With("lane", cfg.Name),
		m:        m,
		partners: map[string]bool{},
		timeout:  requestTimeout,
		conns:    map[net.Conn]struct{}{},
	}
	l.msgs.New = func() any { return new(codec.Message) }
	for _, p := range cfg.Partners {
		l.partners[p] = true
	}
	return l, nil
}

// Start listens on the lane's address and serves in the background.
func (l *Lane) Start() error {
	ln, err := net.Listen("tcp", l.cfg.Listen)
	if err != nil {
		return fmt.Errorf("switch: lane %q: %w", l.cfg.Name, err)
	}
	l.ln = ln
	l.wg.Add(1)
	go l.accept()
	l.log.Info("lane listening", "addr", ln.Addr().String(), "dialect", l.cfg.Dialect,
		"header", l.cfg.Header, "frame_bytes_max", l.cfg.FrameBytesMax,
		"conns_max", l.cfg.ConnsMax, "inflight_max", l.cfg.InflightMax)
	return nil
}

// Addr is the listening address (useful with port 0).
func (l *Lane) Addr() net.Addr { return l.ln.Addr() }

// Name is the lane's name.
func (l *Lane) Name() string { return l.cfg.Name }

func (l *Lane) accept() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary accept errors (EMFILE…): back off instead of spinning.
			l.log.Warn("accept failed", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		l.mu.Lock()
		if l.closing || len(l.conns) >= l.cfg.ConnsMax {
			full := !l.closing
			l.mu.Unlock()
			if full {
				l.m.connsRejected.WithLabelValues(l.cfg.Name).Inc()
				l.log.Warn("connection refused: lane full", "remote", c.RemoteAddr().String(), "conns_max", l.cfg.ConnsMax)
			}
			c.Close()
			continue
		}
		l.conns[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		l.m.conns.WithLabelValues(l.cfg.Name).Inc()
		go l.serve(c)
	}
}

// serve reads frames from one connection and answers each on it. Up to
// InflightMax requests run at once; answers go out in completion order
// (partners match them by STAN, as ISO 8583 allows).
func (l *Lane) serve(c net.Conn) {
	remote := c.RemoteAddr().String()
	log := l.log.With("remote", remote)
	log.Info("connection opened")
	defer func() {
		l.mu.Lock()
		delete(l.conns, c)
		l.mu.Unlock()
		c.Close()
		l.m.conns.WithLabelValues(l.cfg.Name).Dec()
		log.Info("connection closed")
		l.wg.Done()
	}()

	out := make(chan []byte, l.cfg.InflightMax) // never blocks a handler: at most InflightMax answers exist
	sem := make(chan struct{}, l.cfg.InflightMax)
	var handlers sync.WaitGroup
	writerDone := make(chan struct{})
	go l.write(c, out, writerDone)

	br := bufio.NewReaderSize(c, connBufferBytes)
	for {
		if err := c.SetReadDeadline(time.Now().Add(l.cfg.IdleTimeout)); err != nil {
			break
		}
		frame, err := l.framer.ReadFrame(br, nil)
		if err != nil {
			l.readFailed(log, err)
			break
		}
		sem <- struct{}{}
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			defer func() { <-sem }()
			if b := l.handle(log, frame); b != nil {
				out <- b
				return
			}
			// Unreadable: no MTI to answer with. Closing is the
			// defined answer; it costs only this connection.
			c.Close()
		}()
	}
	handlers.Wait()
	close(out)
	<-writerDone
}

func (l *Lane) readFailed(log *slog.Logger, err error) {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
	case errors.As(err, &ne) && ne.Timeout():
		l.m.frameErrors.WithLabelValues(l.cfg.Name, "idle").Inc()
		log.Info("closing idle connection", "idle_timeout", l.cfg.IdleTimeout)
	case errors.Is(err, codec.ErrFrameTooLarge):
		l.m.frameErrors.WithLabelValues(l.cfg.Name, "too_large").Inc()
		log.Warn("closing connection: frame too large", "frame_bytes_max", l.cfg.FrameBytesMax)
	case errors.Is(err, codec.ErrFrameEmpty):
		l.m.frameErrors.WithLabelValues(l.cfg.Name, "empty").Inc()
		log.Warn("closing connection: zero-length frame")
	case errors.Is(err, codec.ErrFrameHeader):
		l.m.frameErrors.WithLabelValues(l.cfg.Name, "header").Inc()
		log.Warn("closing connection: bad length header")
	default:
		log.Info("closing connection", "err", err)
	}
}

// write sends answers, flushing when no more are waiting so that a busy
// connection gets many answers per syscall and an idle one no delay.
func (l *Lane) write(c net.Conn, out <-chan []byte, done chan<- struct{}) {
	defer close(done)
	bw := bufio.NewWriterSize(c, connBufferBytes)
	failed := false
	for b := range out {
		if failed {
			continue // drain so handlers finish; the connection is gone
		}
		if err := c.SetWriteDeadline(time.Now().Add(l.cfg.WriteTimeout)); err == nil {
			_, err = bw.Write(b)
			if err == nil && len(out) == 0 {
				err = bw.Flush()
			}
			if err == nil {
				continue
			}
		}
		failed = true
		c.Close() // a partner that does not read its answers loses its connection
	}
	if !failed {
		bw.Flush()
	}
}

// handle answers one frame; nil means the frame could not be answered and
// the connection must close.
func (l *Lane) handle(log *slog.Logger, frame []byte) []byte {
	start := time.Now()
	req := l.msgs.Get().(*codec.Message)
	resp := l.msgs.Get().(*codec.Message)
	defer l.msgs.Put(req)
	defer l.msgs.Put(resp)
	resp.Reset()

	var err error
	if uerr := l.codec.Unpack(frame, req); uerr != nil {
		err = uerr
		mti, stan, ok := l.codec.Peek(frame)
		rmti := string(codec.MTI(mti).Response())
		if rmti == "" {
			rmti = genericResponseMTI(mti)
		}
		if !ok || rmti == "" {
			l.m.frameErrors.WithLabelValues(l.cfg.Name, "unreadable").Inc()
			log.Warn("closing connection: unreadable message", "err", uerr)
			return nil
		}
		resp.MTI = rmti
		resp.Set(11, stan)
		resp.Set(39, outcome.FormatError)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
		err = l.pipe.Process(ctx, l.partners, req, resp)
		cancel()
	}
	packed, perr := l.codec.Pack(nil, resp)
	if perr != nil {
		// Our own answer does not pack: the echoed fields were bad in a
		// way Unpack accepted. Answer with the bare minimum instead.
		log.Warn("answer does not pack", "mti", resp.MTI, "err", perr)
		stan := resp.Get(11)
		mti := resp.MTI
		resp.Reset()
		resp.MTI = mti
		resp.Set(11, stan)
		resp.Set(39, outcome.FormatError)
		if packed, perr = l.codec.Pack(nil, resp); perr != nil {
			return nil
		}
	}
	framed, ferr := l.framer.AppendFrame(nil, packed)
	if ferr != nil {
		log.Error("answer does not frame", "mti", resp.MTI, "err", ferr)
		return nil
	}
	rc := resp.Get(39)
	// Labels come from partner input: only known MTIs and our own codes,
	// so a garbage sender cannot grow the metric's cardinality.
	mtiLabel := req.MTI
	if codec.MTI(mtiLabel).Response() == "" {
		mtiLabel = "other"
	}
	l.m.messages.WithLabelValues(l.cfg.Name, mtiLabel, rc).Inc()
	l.m.latency.WithLabelValues(l.cfg.Name, mtiLabel).Observe(time.Since(start).Seconds())
	if err != nil && rc == outcome.SystemMalfunction {
		l.warn96(log, mtiLabel, req.Get(11), err)
	} else if log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug("answered", "mti", req.MTI, "stan", req.Get(11), "rc", rc, "err", err)
	}
	return framed
}

// warn96Interval is the least time between two "declined with 96" lines of
// one lane: during an election every request is a 96, and a line each would
// flood the log; switchd_lane_messages_total{rc="96"} still counts them all.
const warn96Interval = time.Second

// warn96 logs a 96 decline, at most one line per warn96Interval, saying how
// many it left out since the last.
func (l *Lane) warn96(log *slog.Logger, mti, stan string, err error) {
	now := time.Now().UnixNano()
	last := l.last96.Load()
	if now-last < int64(warn96Interval) || !l.last96.CompareAndSwap(last, now) {
		l.suppressed96.Add(1)
		return
	}
	log.Warn("declined with 96", "mti", mti, "stan", stan, "err", err,
		"suppressed_since_last", l.suppressed96.Swap(0))
}

// Close stops accepting, stops reading every connection, lets requests in
// flight finish and their answers go out, then closes the connections.
func (l *Lane) Close() error {
	l.once.Do(func() {
		l.mu.Lock()
		l.closing = true
		if l.ln != nil {
			l.ln.Close()
		}
		for c := range l.conns {
			// Wake the reader; handlers in flight still answer.
			c.SetReadDeadline(time.Now())
		}
		l.mu.Unlock()
		l.wg.Wait()
	})
	return nil
}

// Metrics are the lanes' Prometheus metrics, shared by all lanes.
type Metrics struct {
	conns         *prometheus.GaugeVec
	connsRejected *prometheus.CounterVec
	frameErrors   *prometheus.CounterVec
	messages      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
}

// NewMetrics creates the lane metrics and registers them with reg (if not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchd_lane_connections", Help: "Open partner connections.",
		}, []string{"lane"}),
		connsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchd_lane_connections_rejected_total", Help: "Connections closed on accept because the lane was full.",
		}, []string{"lane"}),
		frameErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchd_lane_frame_errors_total", Help: "Connections closed for framing or unreadable messages, by reason.",
		}, []string{"lane", "reason"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchd_lane_messages_total", Help: "Requests answered, by request MTI and response code.",
		}, []string{"lane", "mti", "rc"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "switchd_lane_request_seconds", Help: "Time from frame read to answer ready.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"lane", "mti"}),
	}
	if reg != nil {
		reg.MustRegister(m.conns, m.connsRejected, m.frameErrors, m.messages, m.latency)
	}
	return m
}
