package switching

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/mac"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
)

// connBufferBytes sizes each connection's read and write buffers: a few
// typical messages, so pipelined partners need few syscalls.
const connBufferBytes = 16 << 10

// Closing after bad input: the lane half-closes (FIN after the answers it
// owes), then reads and discards what the partner still sends until the
// partner closes too. Closing with unread bytes in the kernel's receive
// buffer would send a reset instead, and a reset makes the partner's
// kernel drop answers it has received but not yet read (and ours drop
// the ones not yet sent). Both bounds keep a partner that never closes
// from holding the connection.
const (
	closeLingerTimeout  = 2 * time.Second
	closeLingerBytesMax = 1 << 20
)

// refusalLogInterval is the least time between two "connections refused"
// lines of one lane: an idle-connection flood is thousands of refusals a
// second, and a line each would be a second flood, in the log;
// switchd_lane_connections_rejected_total still counts every one.
const refusalLogInterval = 10 * time.Second

// Reasons a connection is refused (label values of
// switchd_lane_connections_rejected_total and keys of the log summary).
const (
	refusedLaneFull     = "lane_full"           // conns_max reached
	refusedSourceFull   = "source_full"         // conns_per_source_max reached for the remote IP
	refusedNoFirstFrame = "first_frame_timeout" // nothing sent within first_frame_timeout
	refusedNotAllowed   = "not_allowed"         // the source is outside the lane's allowlist
	refusedTLSHandshake = "tls_handshake"       // no, an expired, or an untrusted client certificate, or no TLS at all
)

var refusalReasons = []string{refusedLaneFull, refusedSourceFull, refusedNoFirstFrame, refusedNotAllowed, refusedTLSHandshake}

// Sources refused by the allowlist are logged once per source per
// notAllowedLogEvery; notAllowedSourcesMax bounds the sources remembered
// (a scan from a whole network forgets the oldest).
const (
	notAllowedLogEvery   = time.Minute
	notAllowedSourcesMax = 4096
)

// Lane is one listener partners connect to, with its dialect and framing.
type Lane struct {
	cfg     LaneConfig
	codec   *codec.Codec
	framer  codec.Framer
	mac     macLayout // where the dialect puts fields 64/128 (mac.go)
	pipe    *Pipeline
	log     *slog.Logger
	m       *Metrics
	timeout time.Duration
	msgs    sync.Pool // *codec.Message

	last96       atomic.Int64 // unix nanos of the last "declined with 96" line
	suppressed96 atomic.Int64 // 96 lines left out since then

	refusals refusalLog
	// audit records the security refusals in the audit chain (nil: none);
	// set by AuditRefusals before Start.
	audit *RefusalAudit

	// allow and tls are what Reload swaps: a new connection reads them
	// once; established connections keep what they were admitted with.
	allow      atomic.Pointer[[]netip.Prefix]
	notAllowed sourceLog
	// securityLog limits security-violation lines to one per source per
	// minute (switchd_lane_security_violations_total counts each).
	securityLog sourceLog
	// tls is the lane's server config (nil: plain TCP).
	tls atomic.Pointer[tls.Config]

	ln net.Listener

	// stopping is set once Close begins; a reader checks it after each
	// read deadline it sets, so Close's wake-up cannot be overwritten.
	stopping atomic.Bool

	mu       sync.Mutex // protects conns, sessions, bySource and closing
	conns    map[net.Conn]struct{}
	sessions map[*session]struct{}
	bySource map[string]int // open connections per remote IP
	closing  bool

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
	lay, err := macLayoutOf(c)
	if err != nil {
		return nil, fmt.Errorf("switch: lane %q: %w", cfg.Name, err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	allow, err := store.ParseAllow(cfg.Allow)
	if err != nil || len(allow) == 0 {
		return nil, fmt.Errorf("switch: lane %q: allowlist: %v", cfg.Name, err)
	}
	tcfg, err := cfg.TLS.serverConfig()
	if err != nil {
		return nil, fmt.Errorf("switch: lane %q: %w", cfg.Name, err)
	}
	l := &Lane{
		cfg:      cfg,
		codec:    c,
		framer:   fr,
		mac:      lay,
		pipe:     pipe,
		log:      logger.With("lane", cfg.Name),
		m:        m,
		timeout:  requestTimeout,
		conns:    map[net.Conn]struct{}{},
		sessions: map[*session]struct{}{},
		bySource: map[string]int{},
	}
	l.allow.Store(&allow)
	l.tls.Store(tcfg)
	l.certExpiry(tcfg)
	l.refusals = refusalLog{log: l.log, every: refusalLogInterval, counts: map[string]int64{}}
	l.notAllowed = sourceLog{every: notAllowedLogEvery, max: notAllowedSourcesMax, last: map[netip.Addr]time.Time{}}
	l.securityLog = sourceLog{every: notAllowedLogEvery, max: notAllowedSourcesMax, last: map[netip.Addr]time.Time{}}
	l.msgs.New = func() any { return new(codec.Message) }
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
	l.log.Info("lane listening", "addr", ln.Addr().String(), "kind", l.cfg.Kind, "allow", l.cfg.Allow, "dialect", l.cfg.Dialect,
		"header", l.cfg.Header, "frame_bytes_max", l.cfg.FrameBytesMax,
		"conns_max", l.cfg.ConnsMax, "conns_per_source_max", l.cfg.ConnsPerSourceMax,
		"inflight_max", l.cfg.InflightMax, "first_frame_timeout", l.cfg.FirstFrameTimeout,
		"idle_timeout", l.cfg.IdleTimeout, "write_timeout", l.cfg.WriteTimeout)
	return nil
}

// AuditRefusals has the lane record its security refusals (source not
// allowed, TLS handshake failed, certificate or source not the claimed
// partner's) in a, aggregated (refusalaudit.go). Call it before Start;
// close a after the lane.
func (l *Lane) AuditRefusals(a *RefusalAudit) { l.audit = a }

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
		ip, ok := remoteIP(c.RemoteAddr())
		if !ok || !allowed(*l.allow.Load(), ip) {
			// Before a byte is read: a stranger learns nothing but that
			// the port is open (a firewall in front should not let it in).
			// The line, then the count, then the close: whoever sees the
			// connection closed sees the count, and whoever sees the count
			// sees the line.
			if l.notAllowed.due(ip, time.Now()) {
				l.log.Warn("connection refused: source not in the lane's allowlist", "source", ip.String(),
					"next_line_for_this_source_after", notAllowedLogEvery)
			}
			l.refuse(refusedNotAllowed)
			l.audit.Refused(l.cfg.Name, refusedNotAllowed, ip, "")
			c.Close()
			continue
		}
		src := sourceOf(c.RemoteAddr())
		l.mu.Lock()
		refused := ""
		switch {
		case l.closing:
		case len(l.conns) >= l.cfg.ConnsMax:
			refused = refusedLaneFull
		case l.bySource[src] >= l.cfg.ConnsPerSourceMax:
			refused = refusedSourceFull
		default:
			l.conns[c] = struct{}{}
			l.bySource[src]++
			l.wg.Add(1)
			l.mu.Unlock()
			l.m.conns.WithLabelValues(l.cfg.Name).Inc()
			go l.serve(c, src, ip)
			continue
		}
		l.mu.Unlock()
		if refused != "" {
			l.refuse(refused) // counted before the close, as above
		}
		// Nothing was read: a plain close (no linger) is safe and cheap.
		c.Close()
	}
}

// refuse counts a refused connection and adds it to the log summary.
func (l *Lane) refuse(reason string) {
	l.m.connsRejected.WithLabelValues(l.cfg.Name, reason).Inc()
	l.refusals.add(reason)
}

// securityReason labels a security-violation decline ("" for others).
func securityReason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, outcome.ErrCertMismatch):
		return "certificate"
	case errors.Is(err, outcome.ErrSourceNotAllowed):
		return "source"
	}
	return macReason(err)
}

// session is one connection's financial session: signed on or not.
type session struct {
	signedOn atomic.Bool
	// certPin is the client certificate's public key pin on a TLS lane
	// and certAt when the handshake presented it (set before the first
	// frame is read).
	certPin string
	certAt  time.Time
	// violations counts security-violation declines; closeAfter is set
	// when they reach securityViolationsMax.
	violations atomic.Int32
	closeAfter atomic.Bool
	// client describes the TLS client certificate (nil on plain lanes);
	// written before the session is registered, read under Lane.mu.
	client *ClientCert
	// partner is the partner the connection's first approved financial
	// message was admitted as (nil until then), for lane status.
	partner atomic.Pointer[string]
}

// network records a network management message the pipeline approved.
func (s *session) network(l *Lane, code string) {
	switch code {
	case codec.NetworkSignOn:
		if !s.signedOn.Swap(true) {
			l.m.signedOn.WithLabelValues(l.cfg.Name).Inc()
		}
	case codec.NetworkSignOff:
		s.end(l)
	}
}

// end closes the session (sign-off, or the connection closing).
func (s *session) end(l *Lane) {
	if s.signedOn.Swap(false) {
		l.m.signedOn.WithLabelValues(l.cfg.Name).Dec()
	}
}

// remoteIP is the connection's source address.
func remoteIP(a net.Addr) (netip.Addr, bool) {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, ok := netip.AddrFromSlice(ta.IP)
		return ip.Unmap(), ok
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap(), err == nil
}

// sourceLog says when a source is due another log line: at most once per
// every, remembering at most max sources.
type sourceLog struct {
	every time.Duration
	max   int
	mu    sync.Mutex
	last  map[netip.Addr]time.Time
}

func (s *sourceLog) due(a netip.Addr, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.last[a]; ok && now.Sub(t) < s.every {
		return false
	}
	if len(s.last) >= s.max {
		for k, t := range s.last {
			if now.Sub(t) >= s.every {
				delete(s.last, k)
			}
		}
		if len(s.last) >= s.max {
			clear(s.last) // a scan of a whole network: start over
		}
	}
	s.last[a] = now
	return true
}

// sourceOf is the key conns_per_source_max counts by: the remote IP.
func sourceOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// Why a connection's reader stopped, beyond what its read error says.
const (
	stopNone       int32 = iota
	stopUnreadable       // a handler found a frame it cannot answer
	stopSecurity         // the connection kept claiming what it may not (security violations)
)

// securityViolationsMax is how many security-violation declines (63: a
// certificate or source that does not speak for the claimed partner) one
// connection gets before the lane closes it, after answering them.
const securityViolationsMax = 3

// serve reads frames from one connection and answers each on it. Up to
// InflightMax requests run at once; answers go out in completion order
// (partners match them by STAN, as ISO 8583 allows).
//
// However reading ends (EOF, a bad frame, an unreadable message, the lane
// closing), every request already read is answered before the connection
// closes: the reader stops, the requests in flight finish (each bounded by
// the request timeout), the writer flushes their answers (each write
// bounded by write_timeout), and only then is the connection closed.
func (l *Lane) serve(c net.Conn, src string, ip netip.Addr) {
	remote := c.RemoteAddr().String()
	log := l.log.With("remote", remote)
	// A connection is logged at info once it has sent a frame: one that
	// never does is a refusal, and those are logged as a summary, so that
	// a flood of silent connections does not flood the log.
	log.Debug("connection accepted")
	frames := 0
	var lingered bool
	sess := &session{}
	defer func() {
		sess.end(l) // handlers are done: the session ends with the connection
		l.mu.Lock()
		delete(l.sessions, sess)
		delete(l.conns, c)
		if l.bySource[src]--; l.bySource[src] <= 0 {
			delete(l.bySource, src)
		}
		l.mu.Unlock()
		c.Close()
		l.m.conns.WithLabelValues(l.cfg.Name).Dec()
		level := slog.LevelInfo
		if frames == 0 {
			level = slog.LevelDebug
		}
		log.Log(context.Background(), level, "connection closed", "frames", frames, "lingered", lingered)
		l.wg.Done()
	}()

	conn := c // what messages flow over: TLS on a TLS lane
	if tcfg := l.tls.Load(); tcfg != nil {
		tc, pin, ok := l.handshake(log, tcfg, c, ip)
		if !ok {
			return
		}
		conn, sess.certPin, sess.certAt = tc, pin, time.Now()
		leaf := tc.ConnectionState().PeerCertificates[0]
		sess.client = &ClientCert{Pin: pin, Subject: leaf.Subject.String(), NotAfter: leaf.NotAfter.UTC(), Source: ip.String()}
	}
	l.mu.Lock()
	l.sessions[sess] = struct{}{}
	l.mu.Unlock()

	out := make(chan []byte, l.cfg.InflightMax) // never blocks a handler: at most InflightMax answers exist
	sem := make(chan struct{}, l.cfg.InflightMax)
	var handlers sync.WaitGroup
	var stop atomic.Int32 // stopNone or why a handler stopped the reader
	writerDone := make(chan struct{})
	writeFailed := false
	go func() {
		defer close(writerDone)
		writeFailed = !l.write(conn, out)
	}()

	// Until the first frame arrives the connection gets only
	// first_frame_timeout (whole, not per byte): a connection that never
	// speaks must not hold a slot for the idle timeout.
	deadline := l.cfg.FirstFrameTimeout
	linger := false
	br := bufio.NewReaderSize(conn, connBufferBytes)
	for {
		if err := conn.SetReadDeadline(time.Now().Add(deadline)); err != nil {
			break
		}
		// Checked after setting the deadline: a handler or Close that
		// wakes the reader sets its flag first and the deadline after,
		// so either the flag is seen here or the wake-up deadline wins.
		if stop.Load() != stopNone || l.stopping.Load() {
			linger = true
			break
		}
		frame, err := l.framer.ReadFrame(br, nil)
		if err != nil {
			linger = l.readFailed(log, err, frames, stop.Load())
			break
		}
		if frames++; frames == 1 {
			log.Info("connection opened")
			deadline = l.cfg.IdleTimeout
		}
		sem <- struct{}{}
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			defer func() { <-sem }()
			if b := l.handle(log, ip, sess, frame); b != nil {
				out <- b
				if sess.closeAfter.Load() && stop.CompareAndSwap(stopNone, stopSecurity) {
					conn.SetReadDeadline(time.Now()) // answered; now close
				}
				return
			}
			// Unreadable: no MTI to answer with. Closing is the
			// defined answer, after the answers this connection is
			// owed; it costs only this connection.
			if stop.CompareAndSwap(stopNone, stopUnreadable) {
				conn.SetReadDeadline(time.Now())
			}
		}()
	}
	handlers.Wait()
	close(out)
	<-writerDone
	if linger && !writeFailed {
		lingered = true
		lingerClose(conn)
	}
}

// handshake runs the TLS handshake of a connection the allowlist let in,
// within first_frame_timeout, and returns the TLS connection and the pin
// (SHA-256 of the public key, hex) of the client certificate, which the
// handshake verified against the lane's client CA (chain, expiry, usage).
// A failed handshake is a refusal: counted (tls_handshake), summarized in
// the log, nothing read.
func (l *Lane) handshake(log *slog.Logger, tcfg *tls.Config, c net.Conn, ip netip.Addr) (*tls.Conn, string, bool) {
	tc := tls.Server(c, tcfg)
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.FirstFrameTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		l.refuse(refusedTLSHandshake)
		log.Debug("TLS handshake failed", "err", err)
		l.audit.Refused(l.cfg.Name, refusedTLSHandshake, ip, handshakeCause(err))
		return nil, "", false
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 { // RequireAndVerifyClientCert makes this unreachable
		l.refuse(refusedTLSHandshake)
		l.audit.Refused(l.cfg.Name, refusedTLSHandshake, ip, "no_certificate")
		return nil, "", false
	}
	pin := CertPin(certs[0])
	// Days to expiry of every client certificate in use, by pin prefix
	// (the CA decides how many exist): rotate before it reaches zero.
	l.m.clientCertNotAfter.WithLabelValues(l.cfg.Name, pin[:16]).Set(float64(certs[0].NotAfter.Unix()))
	return tc, pin, true
}

// LaneStatus is what `switchctl lanes status` shows of one lane.
type LaneStatus struct {
	Name          string   `json:"name"`
	Kind          string   `json:"kind"`
	Listen        string   `json:"listen"`
	TLS           bool     `json:"tls"`
	Allow         []string `json:"allow"`
	RequireSignOn bool     `json:"require_sign_on"`
	Connections   int      `json:"connections"`
	SignedOn      int      `json:"signed_on"`
	// CertNotAfter is the lane's own certificate's expiry (TLS lanes).
	CertNotAfter *time.Time `json:"cert_not_after,omitempty"`
	// Clients are the client certificates of the open connections.
	Clients []ClientCert `json:"clients,omitempty"`
	// Partners are the open connections by the partner they speak for
	// ("" for those that have not had a financial message approved yet).
	Partners []PartnerConns `json:"partners,omitempty"`
}

// ClientCert is one open connection's client certificate.
type ClientCert struct {
	Pin      string    `json:"pin"`
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"not_after"`
	Source   string    `json:"source"`
	// Partner is who the connection speaks for, once known.
	Partner string `json:"partner,omitempty"`
}

// PartnerConns is one partner's open connections on a lane.
type PartnerConns struct {
	Partner     string `json:"partner"`
	Connections int    `json:"connections"`
	SignedOn    int    `json:"signed_on"`
	// CertNotAfter is the earliest expiry of the client certificates its
	// connections present (TLS lanes).
	CertNotAfter *time.Time `json:"cert_not_after,omitempty"`
}

// Status reports the lane's settings and open connections.
func (l *Lane) Status() LaneStatus {
	st := LaneStatus{Name: l.cfg.Name, Kind: l.cfg.Kind, Listen: l.Addr().String(), TLS: l.tls.Load() != nil,
		RequireSignOn: l.cfg.RequireSignOn}
	for _, p := range *l.allow.Load() {
		st.Allow = append(st.Allow, p.String())
	}
	if tcfg := l.tls.Load(); tcfg != nil && len(tcfg.Certificates) > 0 {
		if leaf, err := x509.ParseCertificate(tcfg.Certificates[0].Certificate[0]); err == nil {
			na := leaf.NotAfter.UTC()
			st.CertNotAfter = &na
		}
	}
	byPartner := map[string]*PartnerConns{}
	l.mu.Lock()
	st.Connections = len(l.conns)
	for s := range l.sessions {
		id := ""
		if p := s.partner.Load(); p != nil {
			id = *p
		}
		pc := byPartner[id]
		if pc == nil {
			pc = &PartnerConns{Partner: id}
			byPartner[id] = pc
		}
		pc.Connections++
		if s.signedOn.Load() {
			st.SignedOn++
			pc.SignedOn++
		}
		if s.client != nil {
			c := *s.client
			c.Partner = id
			st.Clients = append(st.Clients, c)
			if pc.CertNotAfter == nil || c.NotAfter.Before(*pc.CertNotAfter) {
				na := c.NotAfter
				pc.CertNotAfter = &na
			}
		}
	}
	l.mu.Unlock()
	for _, pc := range byPartner {
		st.Partners = append(st.Partners, *pc)
	}
	slices.SortFunc(st.Partners, func(a, b PartnerConns) int { return strings.Compare(a.Partner, b.Partner) })
	slices.SortFunc(st.Clients, func(a, b ClientCert) int { return strings.Compare(a.Pin+a.Source, b.Pin+b.Source) })
	return st
}

// Reload takes a lane's new allowlist and TLS files (certificate, key,
// client CA bundle) without a restart: connections accepted from now on
// get them, established ones keep going. The listener, kind, dialect and
// limits are not reloadable (restart for those), and a plain lane stays
// plain: Reload refuses such a change and keeps the old settings.
func (l *Lane) Reload(cfg LaneConfig) error {
	if cfg.Name != l.cfg.Name || cfg.Listen != l.cfg.Listen || cfg.Kind != l.cfg.Kind || (cfg.TLS == nil) != (l.cfg.TLS == nil) {
		return fmt.Errorf("switch: lane %q: only allow and the tls files reload; restart to change name, listen, kind or transport", l.cfg.Name)
	}
	allow, err := store.ParseAllow(cfg.Allow)
	if err != nil || len(allow) == 0 {
		return fmt.Errorf("switch: lane %q: allowlist: %v", l.cfg.Name, err)
	}
	tcfg, err := cfg.TLS.serverConfig()
	if err != nil {
		return fmt.Errorf("switch: lane %q: %w", l.cfg.Name, err)
	}
	l.allow.Store(&allow)
	l.tls.Store(tcfg)
	l.certExpiry(tcfg)
	l.log.Info("lane reloaded", "allow", cfg.Allow, "tls", cfg.TLS != nil)
	return nil
}

// LaneReload is what reloading one lane did: Reloaded, or Error says why
// it kept its old settings.
type LaneReload struct {
	Lane     string `json:"lane"`
	Reloaded bool   `json:"reloaded"`
	Error    string `json:"error,omitempty"`
}

// ReloadLanes gives each running lane its settings from cfgs, by name
// (Lane.Reload): what SIGHUP and POST /v1/lanes/reload both do. A lane
// missing from cfgs keeps serving as it is until a restart, and says so.
// The error, wrapping outcome.ErrLaneReload, names every lane that kept
// its old settings; the others reloaded all the same.
func ReloadLanes(lanes []*Lane, cfgs []LaneConfig) ([]LaneReload, error) {
	byName := make(map[string]LaneConfig, len(cfgs))
	for _, lc := range cfgs {
		byName[lc.Name] = lc
	}
	out := make([]LaneReload, 0, len(lanes))
	var failed []string
	for _, l := range lanes {
		r := LaneReload{Lane: l.Name()}
		lc, ok := byName[l.Name()]
		var err error
		if !ok {
			err = fmt.Errorf("switch: lane %q is no longer in the config: it keeps serving as it is until a restart", l.Name())
		} else {
			err = l.Reload(lc)
		}
		if err != nil {
			r.Error = err.Error()
			failed = append(failed, r.Error)
		}
		r.Reloaded = err == nil
		out = append(out, r)
	}
	if len(failed) > 0 {
		return out, fmt.Errorf("%w: %d of %d lanes kept their old settings: %s", outcome.ErrLaneReload, len(failed), len(lanes), strings.Join(failed, "; "))
	}
	return out, nil
}

// certExpiry publishes when the lane's own certificate expires.
func (l *Lane) certExpiry(tcfg *tls.Config) {
	if tcfg == nil || len(tcfg.Certificates) == 0 {
		return
	}
	if leaf, err := x509.ParseCertificate(tcfg.Certificates[0].Certificate[0]); err == nil {
		l.m.laneCertNotAfter.WithLabelValues(l.cfg.Name).Set(float64(leaf.NotAfter.Unix()))
	}
}

// CertPin is how a partner's record names a client certificate: the
// SHA-256 of its public key (SubjectPublicKeyInfo) in lower-case hex, the
// value `openssl x509 -pubkey -noout | openssl pkey -pubin -outform der |
// openssl dgst -sha256` prints. A renewed certificate on the same key
// keeps its pin.
func CertPin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// lingerClose sends FIN after everything written and discards what the
// partner still sends until it closes, closeLingerTimeout passes or
// closeLingerBytesMax arrive, so that the final close sends no reset.
func lingerClose(c net.Conn) {
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	if c.SetReadDeadline(time.Now().Add(closeLingerTimeout)) != nil {
		return
	}
	io.CopyN(io.Discard, c, closeLingerBytesMax)
}

// readFailed logs and counts why reading stopped after frames good ones,
// and says whether unread input may be left (close with a linger).
func (l *Lane) readFailed(log *slog.Logger, err error, frames int, stop int32) (linger bool) {
	var ne net.Error
	switch {
	case stop == stopUnreadable || stop == stopSecurity:
		return true // the handler counted and logged it
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return false
	case errors.As(err, &ne) && ne.Timeout():
		if l.stopping.Load() {
			return true // Close woke us; partners may be mid-pipeline
		}
		if frames == 0 {
			l.refuse(refusedNoFirstFrame)
			return false
		}
		l.m.frameErrors.WithLabelValues(l.cfg.Name, "idle").Inc()
		log.Info("closing idle connection", "idle_timeout", l.cfg.IdleTimeout)
		return false
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
	return true
}

// write sends answers, flushing when no more are waiting so that a busy
// connection gets many answers per syscall and an idle one no delay. It
// reports whether every answer was written.
func (l *Lane) write(c net.Conn, out <-chan []byte) bool {
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
	if failed {
		return false
	}
	if c.SetWriteDeadline(time.Now().Add(l.cfg.WriteTimeout)) != nil {
		return false
	}
	return bw.Flush() == nil
}

// handle answers one frame; nil means the frame could not be answered and
// the connection must close.
func (l *Lane) handle(log *slog.Logger, ip netip.Addr, sess *session, frame []byte) []byte {
	start := time.Now()
	req := l.msgs.Get().(*codec.Message)
	resp := l.msgs.Get().(*codec.Message)
	defer l.msgs.Put(req)
	defer l.msgs.Put(resp)
	resp.Reset()

	var err error
	var key *mac.Key // signs the answer: the key the request's MAC verified under
	if uerr := l.codec.Unpack(frame, req); uerr != nil {
		err = uerr
		mti, stan, ok := l.codec.Peek(frame)
		rmti := string(codec.MTI(mti).Response())
		if rmti == "" {
			rmti = codec.GenericResponseMTI(mti)
		}
		if !ok || rmti == "" {
			l.m.frameErrors.WithLabelValues(l.cfg.Name, "unreadable").Inc()
			log.Warn("closing connection: unreadable message", "err", uerr)
			return nil
		}
		resp.MTI = rmti
		resp.Set(11, stan)
		resp.Set(39, outcome.FormatError)
	} else if network := codec.MTI(req.MTI).Class() == "080"; l.cfg.RequireSignOn && !network && !sess.signedOn.Load() {
		err = fmt.Errorf("%w: send 0800 with field 70 = %s first", outcome.ErrNotSignedOn, codec.NetworkSignOn)
		respond(req, resp, err, "", nil) // answered like every other decline
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
		origin := payment.Origin{Lane: l.cfg.Name, Source: ip, CertPin: sess.certPin, CertAt: sess.certAt}
		key, err = l.pipe.processMAC(ctx, origin, l.mac, frame, req, resp)
		if err == nil && !network && sess.partner.Load() == nil {
			// Once per connection: who it speaks for, for lane status.
			if p, aerr := l.pipe.core.Admit(ctx, origin, req.Get(32)); aerr == nil {
				sess.partner.Store(&p.ID)
			}
		}
		cancel()
		if network && err == nil {
			sess.network(l, req.Get(70))
		}
		if reason := securityReason(err); reason != "" {
			l.m.security.WithLabelValues(l.cfg.Name, reason).Inc()
			l.audit.Refused(l.cfg.Name, reason, ip, claimCause(req.Get(32)))
			n := sess.violations.Add(1)
			if l.securityLog.due(ip, time.Now()) {
				log.Warn("security violation: declined 63", "reason", reason, "acquirer", req.Get(32),
					"violations_on_connection", n, "err", err)
			}
			if n >= securityViolationsMax && !sess.closeAfter.Swap(true) {
				log.Warn("closing connection after repeated security violations", "violations", n)
			}
		}
	}
	packed, perr := l.packAnswer(resp, key)
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
		if packed, perr = l.packAnswer(resp, key); perr != nil {
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
		l.stopping.Store(true)
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
		l.refusals.close()
	})
	return nil
}

// refusalLog turns refusals into at most one log line per interval with
// the counts by reason; what is left over at the end of an interval is
// logged then (a timer), so the last burst is not lost from the log.
type refusalLog struct {
	log   *slog.Logger
	every time.Duration

	mu     sync.Mutex // protects the following fields
	counts map[string]int64
	last   time.Time   // when the last line was logged
	timer  *time.Timer // pending flush, nil when none
	closed bool
}

func (r *refusalLog) add(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[reason]++
	if r.timer != nil || r.closed {
		return
	}
	if wait := r.every - time.Since(r.last); wait > 0 {
		r.timer = time.AfterFunc(wait, r.flush)
		return
	}
	r.flushLocked()
}

func (r *refusalLog) flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timer = nil
	r.flushLocked()
}

func (r *refusalLog) flushLocked() {
	var total int64
	attrs := make([]any, 0, 2*len(refusalReasons)+4)
	for _, reason := range refusalReasons {
		if n := r.counts[reason]; n > 0 {
			attrs = append(attrs, reason, n)
			total += n
		}
	}
	if total == 0 {
		return
	}
	clear(r.counts)
	r.last = time.Now()
	r.log.Warn("connections refused", append(attrs, "total", total, "interval", r.every.String())...)
}

// close logs what is left and stops the pending flush.
func (r *refusalLog) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.flushLocked()
}

// Metrics are the lanes' Prometheus metrics, shared by all lanes.
type Metrics struct {
	conns    *prometheus.GaugeVec
	signedOn *prometheus.GaugeVec
	security *prometheus.CounterVec
	// laneCertNotAfter and clientCertNotAfter are unix times: alert on
	// (value - time()) / 86400 < 30.
	laneCertNotAfter   *prometheus.GaugeVec
	clientCertNotAfter *prometheus.GaugeVec
	connsRejected      *prometheus.CounterVec
	frameErrors        *prometheus.CounterVec
	messages           *prometheus.CounterVec
	latency            *prometheus.HistogramVec
	// auditRecords and auditDropped are the refusal audit's (refusalaudit.go).
	auditRecords *prometheus.CounterVec
	auditDropped *prometheus.CounterVec
}

// NewMetrics creates the lane metrics and registers them with reg (if not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchd_lane_connections", Help: "Open partner connections.",
		}, []string{"lane"}),
		security: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchd_lane_security_violations_total",
			Help: "Messages declined 63: a client certificate (certificate) or source address (source) that does not speak for the partner claimed, or a MAC that is missing (mac_missing) or does not verify (mac_invalid).",
		}, []string{"lane", "reason"}),
		laneCertNotAfter: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchd_lane_certificate_not_after_seconds", Help: "When the lane's own TLS certificate expires (unix time).",
		}, []string{"lane"}),
		clientCertNotAfter: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchd_lane_client_certificate_not_after_seconds",
			Help: "When each client certificate seen on the lane expires (unix time), by the first 16 hex digits of its public-key pin.",
		}, []string{"lane", "pin"}),
		signedOn: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchd_lane_sessions_signed_on", Help: "Connections signed on (0800/001, not yet signed off or closed).",
		}, []string{"lane"}),
		connsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchd_lane_connections_rejected_total",
			Help: "Connections refused: on accept (lane_full, source_full, not_allowed) or closed before their first frame (first_frame_timeout).",
		}, []string{"lane", "reason"}),
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
	m.auditRecords, m.auditDropped = auditMetrics()
	if reg != nil {
		reg.MustRegister(m.conns, m.signedOn, m.security, m.laneCertNotAfter, m.clientCertNotAfter, m.connsRejected, m.frameErrors, m.messages, m.latency,
			m.auditRecords, m.auditDropped)
	}
	return m
}
