package sim

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchd/switchd/card"
	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/httptls"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/specs"
)

// Limits on an issuer's config. Each bounds memory or goroutines one
// simulator may spend on its callers.
const (
	issuerConnsMaxLimit = 100_000
	// issuerInflightMaxLimit bounds answers waiting out a latency or a late
	// delay on one connection (one timer goroutine each); past the
	// configured value the connection is not read (TCP backpressure).
	issuerInflightMaxLimit = 4096
	idleTimeoutMax         = 24 * time.Hour
	writeTimeoutMax        = time.Minute
	// adviceKeysMax bounds the distinct reversal advices remembered for
	// the exactly-once check; past it new keys are counted as dropped.
	adviceKeysMax        = 1_000_000
	issuerFrameBytesMax  = 8192 // a lane's default frame_bytes_max
	readBufferBytes      = 16 << 10
	writeBufferBytes     = 16 << 10
	issuerWriteTimeout   = 5 * time.Second
	issuerInflightMax    = 256
	issuerConnsMax       = 1024
	defaultIssuerListen  = "127.0.0.1:9583"
	authCodeModulus      = 1_000_000 // field 38 is six characters
	approvalOutcome      = "approved"
	declineOutcome       = "declined"
	unansweredOutcome    = "unanswered"
	disconnectOutcome    = "disconnected"
	notSignedOnOutcome   = "not_signed_on"
	unsupportedOutcome   = "unsupported"
	downOutcome          = "down"
	responseCodeField    = 39
	networkCodeField     = 70
	originalDataField    = 90
	stanField            = 11
	terminalField        = 41
	rrnField             = 37
	panField             = 2
	approvalCodeField    = 38
	declineCodeDefault   = outcome.DoNotHonor
	adviceRefusedDefault = outcome.IssuerUnavailable
)

// ErrConfig is wrapped by every Validate error of this package's configs.
var ErrConfig = errors.New("sim: invalid config")

// TLSFiles names a simulator's certificate and key and, optionally, the
// CAs client certificates must chain to. On the issuer a client CA makes
// client certificates required (mTLS, as on a public lane).
type TLSFiles struct {
	CertFile     string `json:"cert_file"`
	KeyFile      string `json:"key_file"`
	ClientCAFile string `json:"client_ca_file"`
}

// IssuerConfig is an issuer simulator's configuration.
type IssuerConfig struct {
	// Listen is the ISO 8583 address.
	Listen string
	// Dialect and Header are as on a lane (switch.LaneConfig): the
	// dialect file in specs/ and the length header.
	Dialect       string
	Header        codec.Header
	FrameBytesMax int
	// Behavior is the behaviour at start; the control API changes it.
	Behavior Behavior
	// Seed seeds the ratio draws (the same seed and request order give
	// the same fates).
	Seed uint64
	// DeclineCode is field 39 of a declined request.
	DeclineCode string
	// AdviceRefusedCode is field 39 when an advice (0220, 0420, 0421) is
	// declined: an advice reports something that already happened, so
	// the issuer cannot refuse it, only ask for it again later — 91 is the
	// code a store-and-forward queue resends without counting an attempt.
	AdviceRefusedCode string
	// RequireSignOn answers financial messages 91 until the connection
	// signed on (0800, field 70 = 001), as a real issuer host does.
	RequireSignOn bool
	// ConnsMax bounds open connections; more are closed on accept.
	ConnsMax int
	// InflightMax bounds delayed answers per connection.
	InflightMax int
	// IdleTimeout closes a connection silent this long (0: never).
	IdleTimeout time.Duration
	// WriteTimeout bounds writing one answer.
	WriteTimeout time.Duration
	// TLS, when set, makes the listener TLS 1.2+.
	TLS *TLSFiles
}

// DefaultIssuerConfig approves at once on 127.0.0.1:9583 in iso87ascii with
// a 2-byte binary header, the default lane's framing.
func DefaultIssuerConfig() IssuerConfig {
	return IssuerConfig{
		Listen:            defaultIssuerListen,
		Dialect:           "iso87ascii",
		Header:            codec.HeaderBinary2,
		FrameBytesMax:     issuerFrameBytesMax,
		Behavior:          DefaultBehavior(),
		Seed:              1,
		DeclineCode:       declineCodeDefault,
		AdviceRefusedCode: adviceRefusedDefault,
		ConnsMax:          issuerConnsMax,
		InflightMax:       issuerInflightMax,
		WriteTimeout:      issuerWriteTimeout,
	}
}

// Validate reports whether c is usable.
func (c IssuerConfig) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("%w: listen %q: %v", ErrConfig, c.Listen, err)
	}
	known := false
	for _, n := range specs.Names() {
		known = known || n == c.Dialect
	}
	if !known {
		return fmt.Errorf("%w: dialect %q (want one of %s)", ErrConfig, c.Dialect, strings.Join(specs.Names(), ", "))
	}
	if err := (codec.Framer{Header: c.Header, FrameBytesMax: c.FrameBytesMax}).Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if err := c.Behavior.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	for _, rc := range []struct{ name, v string }{{"decline code", c.DeclineCode}, {"advice refused code", c.AdviceRefusedCode}} {
		if !validResponseCode(rc.v) || rc.v == outcome.Approved {
			return fmt.Errorf("%w: %s %q must be two letters or digits other than 00", ErrConfig, rc.name, rc.v)
		}
	}
	if c.ConnsMax < 1 || c.ConnsMax > issuerConnsMaxLimit {
		return fmt.Errorf("%w: conns max %d out of range 1..%d", ErrConfig, c.ConnsMax, issuerConnsMaxLimit)
	}
	if c.InflightMax < 1 || c.InflightMax > issuerInflightMaxLimit {
		return fmt.Errorf("%w: inflight max %d out of range 1..%d", ErrConfig, c.InflightMax, issuerInflightMaxLimit)
	}
	if c.IdleTimeout < 0 || c.IdleTimeout > idleTimeoutMax {
		return fmt.Errorf("%w: idle timeout %v out of range 0..%v", ErrConfig, c.IdleTimeout, idleTimeoutMax)
	}
	if c.WriteTimeout <= 0 || c.WriteTimeout > writeTimeoutMax {
		return fmt.Errorf("%w: write timeout %v out of range (0, %v]", ErrConfig, c.WriteTimeout, writeTimeoutMax)
	}
	if c.TLS != nil && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		return fmt.Errorf("%w: TLS needs a certificate and a key file", ErrConfig)
	}
	return nil
}

// validResponseCode: field 39 is an 2.
func validResponseCode(s string) bool {
	if len(s) != 2 {
		return false
	}
	for i := 0; i < 2; i++ {
		ch := s[i]
		if !(ch >= '0' && ch <= '9' || ch >= 'A' && ch <= 'Z') {
			return false
		}
	}
	return true
}

// Issuer is an ISO 8583 issuer host simulator. It answers 0800 (sign-on,
// sign-off, echo) with 0810, 0100 with 0110, 0200 with 0210, 0220 with
// 0230, 0400 with 0410 and 0420/0421 with 0430, echoing the fields a
// response echoes (codec.BuildResponse) and setting 39 (and 38 on approved
// 0110 and 0210). Network messages follow the mode's timing (timeout,
// late, latency) but are never declined or drawn for ratios, so echoes do
// not shift the fates of financial messages. It is safe for concurrent use.
type Issuer struct {
	cfg    IssuerConfig
	codec  *codec.Codec
	framer codec.Framer
	log    *slog.Logger
	state  *behaviorState
	gate   *gate

	ctx    context.Context // canceled by Close: delayed answers give up
	cancel context.CancelFunc
	wg     sync.WaitGroup // connection goroutines and their delayed answers

	authSeq atomic.Uint64 // field 38 of approvals

	mu    sync.Mutex // protects stats and advices
	stats issuerCounters

	connsMu sync.Mutex           // protects conns
	conns   map[*issuerConn]bool // the switch's connections, for SendReversal
}

type issuerCounters struct {
	accepted, refused, malformed, late, lost int64
	messages                                 map[string]map[string]int64
	advices                                  map[string]int64 // original key → deliveries
	// fresh are the originals an advice presented as new (0420, not
	// 0421); freshTwice counts those presented as new more than once.
	fresh                         map[string]bool
	freshTwice                    int64
	adviceReceived, adviceRetrans int64
	adviceDropped                 int64
	// hostReversals counts the 0430s our own 0420s got, by code.
	hostReversals map[string]int64
}

func newIssuerCounters() issuerCounters {
	return issuerCounters{messages: make(map[string]map[string]int64), advices: make(map[string]int64), fresh: make(map[string]bool),
		hostReversals: make(map[string]int64)}
}

// NewIssuer starts an issuer listening on cfg.Listen (unless the starting
// mode is down). Close stops it.
func NewIssuer(cfg IssuerConfig, logger *slog.Logger) (*Issuer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c, err := codec.Load(cfg.Dialect)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	var tcfg *tls.Config
	if cfg.TLS != nil {
		tcfg, err = httptls.ServerConfig(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		if tcfg.ClientCAs != nil {
			// An issuer link is mutually authenticated or not at all.
			tcfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Issuer{
		cfg: cfg, codec: c, log: logger,
		framer: codec.Framer{Header: cfg.Header, FrameBytesMax: cfg.FrameBytesMax},
		state:  newBehaviorState(cfg.Behavior, cfg.Seed),
		ctx:    ctx, cancel: cancel,
		stats: newIssuerCounters(), conns: map[*issuerConn]bool{},
	}
	s.gate = newGate(cfg.Listen, tcfg, s.acceptLoop)
	if cfg.Behavior.Mode != ModeDown {
		if err := s.gate.open(); err != nil {
			cancel()
			return nil, err
		}
	}
	logger.Info("issuer simulator listening", "addr", s.gate.address(), "dialect", cfg.Dialect, "header", cfg.Header,
		"frame_bytes_max", cfg.FrameBytesMax, "mode", cfg.Behavior.Mode, "latency", time.Duration(cfg.Behavior.Latency),
		"late_delay", time.Duration(cfg.Behavior.LateDelay), "decline_ratio", cfg.Behavior.DeclineRatio,
		"timeout_ratio", cfg.Behavior.TimeoutRatio, "disconnect_ratio", cfg.Behavior.DisconnectRatio,
		"seed", cfg.Seed, "require_sign_on", cfg.RequireSignOn, "tls", tcfg != nil)
	return s, nil
}

// Addr is the ISO 8583 address (the bound one when Listen asked for port 0).
func (s *Issuer) Addr() string { return s.gate.address() }

// Behavior returns the current behaviour.
func (s *Issuer) Behavior() Behavior { return s.state.get() }

// SetBehavior switches the behaviour at once: messages read after it
// returns get the new one. Down closes the listener and every connection;
// leaving down listens again on the same address.
func (s *Issuer) SetBehavior(b Behavior) error {
	if err := setBehavior(s.gate, s.state, b); err != nil {
		return err
	}
	s.log.Info("issuer simulator mode", "mode", b.Mode, "latency", time.Duration(b.Latency), "late_delay", time.Duration(b.LateDelay),
		"decline_ratio", b.DeclineRatio, "timeout_ratio", b.TimeoutRatio, "disconnect_ratio", b.DisconnectRatio)
	return nil
}

// Reset zeroes the counters and the advice record and restarts the ratio
// draws from the seed; the behaviour stays.
func (s *Issuer) Reset() {
	s.mu.Lock()
	s.stats = newIssuerCounters()
	s.mu.Unlock()
	s.state.reseed()
	s.authSeq.Store(0)
}

// Close stops listening, closes every connection, drops delayed answers
// and waits for every goroutine. It is safe to call more than once.
func (s *Issuer) Close() error {
	s.gate.close()
	s.cancel()
	s.wg.Wait()
	return nil
}

func (s *Issuer) acceptLoop(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A failed accept (out of descriptors) must not spin.
			s.log.Warn("issuer simulator accept", "err", err)
			select {
			case <-time.After(10 * time.Millisecond):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		if s.gate.connCount() >= s.cfg.ConnsMax {
			c.Close()
			s.count(func(st *issuerCounters) { st.refused++ })
			continue
		}
		if !s.gate.track(c) {
			continue
		}
		s.count(func(st *issuerCounters) { st.accepted++ })
		s.wg.Add(1)
		go s.serveConn(c)
	}
}

func (s *Issuer) count(f func(*issuerCounters)) {
	s.mu.Lock()
	f(&s.stats)
	s.mu.Unlock()
}

func (s *Issuer) countMessage(mti, result string) {
	s.mu.Lock()
	m := s.stats.messages[mti]
	if m == nil {
		m = make(map[string]int64)
		s.stats.messages[mti] = m
	}
	m[result]++
	s.mu.Unlock()
}

// issuerConn is one connection's state.
type issuerConn struct {
	c        net.Conn
	done     chan struct{} // closed when the read loop ends
	sem      chan struct{} // delayed answers in flight
	pending  sync.WaitGroup
	signedOn bool // read loop only

	req codec.Message // the message being decided (read loop only)

	wmu  sync.Mutex // serializes writes; protects bw, resp, wbuf and fbuf
	bw   *bufio.Writer
	resp codec.Message
	wbuf []byte // packed answer
	fbuf []byte // framed answer
}

func (s *Issuer) serveConn(c net.Conn) {
	defer s.wg.Done()
	cs := &issuerConn{c: c, done: make(chan struct{}), sem: make(chan struct{}, s.cfg.InflightMax),
		bw: bufio.NewWriterSize(c, writeBufferBytes)}
	s.connsMu.Lock()
	s.conns[cs] = true
	s.connsMu.Unlock()
	defer func() {
		s.connsMu.Lock()
		delete(s.conns, cs)
		s.connsMu.Unlock()
		// Answers already given go out before the connection closes.
		cs.flush(s.cfg.WriteTimeout)
		close(cs.done)
		c.Close()
		cs.pending.Wait()
		s.gate.untrack(c)
	}()
	var buf []byte
	// Buffered: a header and its body are one read, and pipelined
	// requests arrive in one read instead of two each.
	br := bufio.NewReaderSize(c, readBufferBytes)
	for {
		if s.cfg.IdleTimeout > 0 {
			c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		}
		frame, err := s.framer.ReadFrame(br, buf[:0])
		if errors.Is(err, codec.ErrFrameEmpty) {
			continue
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
				s.log.Debug("issuer simulator connection closed", "remote", c.RemoteAddr().String(), "err", err)
			}
			return
		}
		buf = frame
		// An answer given at once reuses the connection's message; a
		// delayed one takes a copy (answer).
		req := &cs.req
		if err := s.codec.Unpack(frame, req); err != nil {
			// The error names a field and offset, never a value.
			s.log.Warn("issuer simulator: malformed message, closing", "remote", c.RemoteAddr().String(), "err", err)
			s.count(func(st *issuerCounters) { st.malformed++ })
			return
		}
		if !s.handle(cs, req) {
			return
		}
		// Answers given at once are written when no further request is
		// already buffered: pipelined requests get their answers in one
		// write instead of one each.
		if br.Buffered() == 0 && !cs.flush(s.cfg.WriteTimeout) {
			s.count(func(st *issuerCounters) { st.lost++ })
			return
		}
	}
}

// flush writes what is buffered; false when the write failed.
func (cs *issuerConn) flush(timeout time.Duration) bool {
	cs.wmu.Lock()
	defer cs.wmu.Unlock()
	if cs.bw.Buffered() == 0 {
		return true
	}
	cs.c.SetWriteDeadline(time.Now().Add(timeout))
	return cs.bw.Flush() == nil
}

// handle decides one message; false ends the connection.
func (s *Issuer) handle(cs *issuerConn, req *codec.Message) bool {
	mti := codec.MTI(req.MTI)
	if req.MTI == "0430" {
		// The switch's answer to a reversal we sent (SendReversal).
		s.count(func(st *issuerCounters) { st.hostReversals[req.Get(39)]++ })
		return true
	}
	if mti.Response() == "" {
		s.countMessage(req.MTI, unsupportedOutcome)
		if codec.GenericResponseMTI(req.MTI) == "" {
			return true // a response or garbage MTI: nothing to answer
		}
		return s.answer(cs, req, outcome.Code(outcome.ErrUnsupported), decision{})
	}
	class := mti.Class()
	if class == "080" {
		return s.network(cs, req)
	}
	if s.cfg.RequireSignOn && !cs.signedOn {
		s.countMessage(req.MTI, notSignedOnOutcome)
		return s.answer(cs, req, outcome.Code(outcome.ErrNotSignedOn), decision{})
	}
	advice := class == "022" || class == "042"
	if class == "042" {
		s.recordAdvice(req)
	}
	d := s.state.decide()
	switch d.act {
	case actTimeout:
		s.countMessage(req.MTI, unansweredOutcome)
		return true
	case actDisconnect:
		s.countMessage(req.MTI, disconnectOutcome)
		return false
	case actDown:
		s.countMessage(req.MTI, downOutcome)
		return false
	case actDecline:
		s.countMessage(req.MTI, declineOutcome)
		code := s.cfg.DeclineCode
		if advice {
			code = s.cfg.AdviceRefusedCode
		}
		return s.answer(cs, req, code, d)
	}
	s.countMessage(req.MTI, approvalOutcome)
	return s.answer(cs, req, outcome.Approved, d)
}

// network answers 0800: sign-on, sign-off and echo are approved (after the
// mode's timing), anything else is unsupported.
func (s *Issuer) network(cs *issuerConn, req *codec.Message) bool {
	code := outcome.Approved
	switch req.Get(networkCodeField) {
	case codec.NetworkSignOn:
		cs.signedOn = true
	case codec.NetworkSignOff:
		cs.signedOn = false
	case codec.NetworkEcho:
	default:
		code = outcome.Code(outcome.ErrUnsupported)
	}
	b := s.state.get()
	var d decision
	switch b.Mode {
	case ModeTimeout:
		s.countMessage(req.MTI, unansweredOutcome)
		return true
	case ModeDown:
		s.countMessage(req.MTI, downOutcome)
		return false
	case ModeLate:
		d = decision{delay: time.Duration(b.LateDelay), late: true}
	default:
		d = decision{delay: time.Duration(b.Latency)}
	}
	if code == outcome.Approved {
		s.countMessage(req.MTI, approvalOutcome)
	} else {
		s.countMessage(req.MTI, unsupportedOutcome)
	}
	return s.answer(cs, req, code, d)
}

// adviceKey is how the exactly-once check names a reversal advice's
// original: field 90 (original data elements) plus 11, 41 and 37, so a
// retransmission (0421, same fields) lands on the same key and two
// reversals of different originals never do.
func adviceKey(req *codec.Message) string {
	return strings.Join([]string{req.Get(originalDataField), req.Get(stanField), req.Get(terminalField), req.Get(rrnField)}, "|")
}

func (s *Issuer) recordAdvice(req *codec.Message) {
	key := adviceKey(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.adviceReceived++
	if req.MTI == "0421" {
		s.stats.adviceRetrans++
	}
	if _, seen := s.stats.advices[key]; !seen && len(s.stats.advices) >= adviceKeysMax {
		s.stats.adviceDropped++
		return
	}
	s.stats.advices[key]++
	if req.MTI[3] == '0' {
		if s.stats.fresh[key] {
			s.stats.freshTwice++
		}
		s.stats.fresh[key] = true
	}
}

// answer writes req's response with code after d's delay; false when the
// connection should end (a write failed).
func (s *Issuer) answer(cs *issuerConn, req *codec.Message, code string, d decision) bool {
	if d.delay <= 0 {
		return s.write(cs, req, code, false) // the read loop flushes
	}
	select {
	case cs.sem <- struct{}{}:
	case <-s.ctx.Done():
		return false
	}
	req = new(codec.Message)
	*req = cs.req // the read loop reuses cs.req for the next message
	cs.pending.Add(1)
	go func() {
		defer cs.pending.Done()
		defer func() { <-cs.sem }()
		t := time.NewTimer(d.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-cs.done:
			s.count(func(st *issuerCounters) { st.lost++ })
			return
		case <-s.ctx.Done():
			s.count(func(st *issuerCounters) { st.lost++ })
			return
		}
		if d.late {
			s.count(func(st *issuerCounters) { st.late++ })
		}
		if !s.write(cs, req, code, true) {
			cs.c.Close() // the read loop sees it and ends the connection
		}
	}()
	return true
}

func (s *Issuer) write(cs *issuerConn, req *codec.Message, code string, flush bool) bool {
	cs.wmu.Lock()
	defer cs.wmu.Unlock()
	resp := &cs.resp
	out := codec.Response{Code: code}
	mti := codec.MTI(req.MTI)
	if code == outcome.Approved && (mti.Class() == "010" || mti.Class() == "020") {
		out.AuthCode = fmt.Sprintf("%06d", s.authSeq.Add(1)%authCodeModulus)
	}
	codec.BuildResponse(req, out, resp)
	if resp.MTI == "" {
		resp.MTI = codec.GenericResponseMTI(req.MTI)
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("issuer simulator answer", "mti", resp.MTI, "stan", req.Get(stanField), "pan", maskedPAN(req.Get(panField)), "rc", code)
	}
	payload, err := s.codec.Pack(cs.wbuf[:0], resp)
	if err != nil {
		// The request's echoed fields came through our own codec, so this
		// is a field the response MTI does not allow; say where, not what.
		s.log.Warn("issuer simulator: cannot pack answer", "mti", resp.MTI, "err", err)
		s.count(func(st *issuerCounters) { st.lost++ })
		return false
	}
	cs.wbuf = payload
	frame, err := s.framer.AppendFrame(cs.fbuf[:0], payload)
	if err != nil {
		s.count(func(st *issuerCounters) { st.lost++ })
		return false
	}
	cs.fbuf = frame
	// A bufio.Writer writes through when its buffer fills; the deadline
	// bounds that write too.
	cs.c.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	if _, err := cs.bw.Write(frame); err != nil {
		s.count(func(st *issuerCounters) { st.lost++ })
		return false
	}
	if flush {
		if err := cs.bw.Flush(); err != nil {
			s.count(func(st *issuerCounters) { st.lost++ })
			return false
		}
	}
	return true
}

// maskedPAN is field 2 as logs may show it: first 6 and last 4 (package
// card), or nothing when it is not a card number.
func maskedPAN(f2 string) string {
	if f2 == "" {
		return ""
	}
	p, err := card.ParsePAN(f2)
	if err != nil {
		return ""
	}
	return p.Masked()
}

// IssuerStats is a snapshot of an issuer's counters (GET /stats).
type IssuerStats struct {
	Mode        Mode   `json:"mode"`
	Addr        string `json:"addr"`
	Connections int    `json:"connections"`
	Accepted    int64  `json:"accepted"`
	// Refused connections were over conns max.
	Refused   int64 `json:"refused"`
	Malformed int64 `json:"malformed"`
	// Messages counts by request MTI and outcome (approved, declined,
	// unanswered, disconnected, not_signed_on, unsupported, down).
	Messages map[string]map[string]int64 `json:"messages"`
	// Late answers were sent after the late delay; Lost answers were never
	// written (the connection closed first, or a write failed).
	Late    int64       `json:"late"`
	Lost    int64       `json:"lost"`
	Advices AdviceStats `json:"advices"`
	// HostReversals counts the answers (0430) to the issuer's own
	// reversals (SendReversal), by response code.
	HostReversals map[string]int64 `json:"host_reversals"`
}

// AdviceStats is the exactly-once record of reversal advices (0420, 0421).
type AdviceStats struct {
	// Received counts every advice; Distinct the originals they named;
	// Duplicates is Received − Distinct (deliveries beyond the first);
	// Retransmissions counts 0421s; NewTwice counts the originals
	// presented as new (0420) more than once, which a host may take as
	// two reversals: a store-and-forward queue must keep it at 0.
	Received        int64 `json:"received"`
	Distinct        int64 `json:"distinct"`
	Duplicates      int64 `json:"duplicates"`
	Retransmissions int64 `json:"retransmissions"`
	NewTwice        int64 `json:"new_twice"`
	// Dropped advices named a new original past adviceKeysMax.
	Dropped int64 `json:"dropped"`
	// ByKey counts deliveries per original key (fields 90|11|41|37).
	ByKey map[string]int64 `json:"by_key"`
}

// Stats returns a snapshot of the counters.
func (s *Issuer) Stats() IssuerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := IssuerStats{
		Mode: s.state.get().Mode, Addr: s.gate.address(), Connections: s.gate.connCount(),
		Accepted: s.stats.accepted, Refused: s.stats.refused, Malformed: s.stats.malformed,
		Late: s.stats.late, Lost: s.stats.lost,
		Messages: make(map[string]map[string]int64, len(s.stats.messages)),
	}
	for mti, m := range s.stats.messages {
		c := make(map[string]int64, len(m))
		for k, v := range m {
			c[k] = v
		}
		st.Messages[mti] = c
	}
	a := AdviceStats{Received: s.stats.adviceReceived, Retransmissions: s.stats.adviceRetrans, Dropped: s.stats.adviceDropped, NewTwice: s.stats.freshTwice,
		Distinct: int64(len(s.stats.advices)), ByKey: make(map[string]int64, len(s.stats.advices))}
	var delivered int64
	for k, v := range s.stats.advices {
		a.ByKey[k] = v
		delivered += v
	}
	a.Duplicates = delivered - a.Distinct
	st.Advices = a
	st.HostReversals = make(map[string]int64, len(s.stats.hostReversals))
	for k, v := range s.stats.hostReversals {
		st.HostReversals[k] = v
	}
	return st
}

// ErrNoConnection: the issuer has no connection to send on.
var ErrNoConnection = errors.New("sim: no connection from the switch")

// SendReversal sends the switch an 0420 reversing the switch's own
// request with RRN rrn (a host taking back what it approved), on one of
// the switch's connections; the 0430 is counted in HostReversals.
func (s *Issuer) SendReversal(rrn string) error {
	if len(rrn) != 12 {
		return fmt.Errorf("%w: rrn must be 12 digits", ErrBehavior)
	}
	s.connsMu.Lock()
	var cs *issuerConn
	for c := range s.conns {
		cs = c
		break
	}
	s.connsMu.Unlock()
	if cs == nil {
		return ErrNoConnection
	}
	now := time.Now().UTC()
	stan := fmt.Sprintf("%06d", s.authSeq.Add(1)%authCodeModulus)
	m := &codec.Message{MTI: "0420"}
	m.Set(7, now.Format("0102150405"))
	m.Set(11, stan)
	m.Set(37, rrn)
	// The original: the switch's 0200 and its STAN, the RRN's last six.
	m.Set(90, "0200"+rrn[6:]+strings.Repeat("0", 32))
	cs.wmu.Lock()
	defer cs.wmu.Unlock()
	payload, err := s.codec.Pack(nil, m)
	if err != nil {
		return err
	}
	frame, err := s.framer.AppendFrame(nil, payload)
	if err != nil {
		return err
	}
	cs.c.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	if _, err := cs.bw.Write(frame); err != nil {
		return err
	}
	return cs.bw.Flush()
}

func (s *Issuer) statsJSON() any { return s.Stats() }
