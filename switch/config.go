package switching

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/specs"
	"github.com/switchd/switchd/store"
)

// Limits on what config may ask for. Each bounds memory or time a lane can
// spend on one partner.
const (
	connsMaxLimit = 100_000
	// firstFrameTimeoutMin leaves a partner on a slow link (a TLS
	// handshake, then a sign-on over a satellite hop) time to speak.
	firstFrameTimeoutMin = 100 * time.Millisecond
	inflightMaxLimit     = 4096
	retentionMin         = time.Hour // shorter than a partner's retry window loses exactly-once
	housekeepingMin      = 100 * time.Millisecond
	requestTimeoutMax    = time.Minute
	defaultFrameBytesMax = 8192
)

// ErrConfig is wrapped by every Validate error but the payment core's
// own (payment.ErrConfig).
var ErrConfig = errors.New("switch: invalid config")

// Config is the switch's configuration: the payment core's keys (card key,
// hold expiry, business day zone, inline: they sit under switch: as they
// always have), lanes, ledger timing, and the partners and routes that
// seed a new cluster's replicated directory.
type Config struct {
	payment.Config `yaml:",inline"`
	// CardKeyFile names a file holding CardKey (hex, only the owner may
	// read it), so the secret stays out of the config file; config.Load
	// reads it. At most one of the two is set.
	CardKeyFile string `yaml:"card_key_file"`
	// Destinations are the ones the routes may name besides the ledger
	// (the config file's destinations: section, set by package config).
	Destinations []store.Destination `yaml:"-"`
	// IdempotencyRetention is how long a key's answer is kept for repeats.
	// It also bounds a partner's reversal of an off-us card purchase: past
	// it the card number is scrubbed and the reversal is refused with 12
	// (store.ErrReversalWindowClosed; docs/OFFUS.md).
	IdempotencyRetention time.Duration `yaml:"idempotency_retention"`
	// HousekeepingInterval is how often the leader expires holds and prunes
	// idempotency records.
	HousekeepingInterval time.Duration `yaml:"housekeeping_interval"`
	// RequestTimeout bounds one request from frame to answer; past it the
	// partner gets 96 and must repeat.
	RequestTimeout time.Duration `yaml:"request_timeout"`

	Lanes []LaneConfig `yaml:"lanes"`
	// RefusalAudit bounds how lane refusals reach the audit chain.
	RefusalAudit RefusalAuditConfig `yaml:"refusal_audit"`
	// Partners and Routes seed a new cluster's directory (switchd's
	// bootstrapping node, once) and are ignored after that: the
	// replicated directory is what routes, and ops changes it.
	Partners []Partner `yaml:"partners"`
	Routes   []Route   `yaml:"routes"`
}

// Lane kinds: how partners reach the lane. Plain TCP is allowed only on
// private networks (a dedicated line or a site-to-site VPN), and only with
// a source allowlist; a public lane needs TLS with client certificates.
const (
	LaneMPLS   = "mpls"
	LaneIPSec  = "ipsec"
	LanePublic = "public"
	// laneAllowMax bounds one lane's allowlist (a bank lists its few
	// partner networks, not hosts).
	laneAllowMax = 1024
)

// LaneConfig is one listener partners connect to.
type LaneConfig struct {
	Name   string `yaml:"name"`
	Listen string `yaml:"listen"`
	// Kind is mpls, ipsec or public (see LaneMPLS).
	Kind string `yaml:"kind"`
	// Allow lists the source networks (CIDR, IPv4 or IPv6; a bare address
	// is one host) that may connect; any other connection is closed before
	// a byte is read. Default: loopback only.
	Allow   []string `yaml:"allow"`
	Dialect string   `yaml:"dialect"`
	// Header is the length header: binary2, ascii4 or bcd2.
	Header        codec.Header `yaml:"header"`
	FrameBytesMax int          `yaml:"frame_bytes_max"`
	// ConnsMax bounds open connections; more are closed on accept.
	ConnsMax int `yaml:"conns_max"`
	// ConnsPerSourceMax bounds open connections from one remote IP, so
	// one source cannot take every slot of the lane; more are closed on
	// accept. Above conns_max it has no effect.
	ConnsPerSourceMax int `yaml:"conns_per_source_max"`
	// FirstFrameTimeout closes a connection that has not sent a whole
	// first frame (typically its sign-on) this long after it opened; after
	// the first frame, idle_timeout applies. At most idle_timeout.
	FirstFrameTimeout time.Duration `yaml:"first_frame_timeout"`
	// InflightMax bounds requests being processed per connection; past it
	// the lane stops reading that connection (TCP backpressure), which
	// slows only that partner.
	InflightMax int `yaml:"inflight_max"`
	// IdleTimeout closes a connection that sends nothing (not even an echo).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// WriteTimeout bounds writing one answer to a slow reader.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// Partners names the partners that use this lane: a partner without
	// lanes of its own gets the lanes that name it (when the directory is
	// seeded; the replicated partner's lanes are what admits it).
	Partners []string `yaml:"partners"`
	// TLS, when set, makes the lane TLS 1.2+ with client certificates
	// required and verified; a public lane must have it.
	TLS *LaneTLS `yaml:"tls"`
	// RequireSignOn refuses financial messages on a connection (91) until
	// it has signed on (0800 with field 70 = 001); a sign-off (002) ends
	// that session, echoes (301) keep the connection alive, and the
	// session ends with the connection (idle_timeout closes an idle one).
	RequireSignOn bool `yaml:"require_sign_on"`
}

// Partner is an institution that sends us messages (store.Partner once
// seeded).
type Partner struct {
	ID string `yaml:"id"`
	// AcquirerIDs are the field 32 values this partner may send.
	AcquirerIDs []string `yaml:"acquirer_ids"`
	// Lanes the partner may use; empty: the lanes whose partners: list
	// names it.
	Lanes []string `yaml:"lanes"`
	// SettlementAccount is credited for the partner's purchases and
	// withdrawals when the route names no account.
	SettlementAccount string `yaml:"settlement_account"`
	// WithdrawalMax caps one cash withdrawal, minor units; 0 is no cap.
	WithdrawalMax int64 `yaml:"withdrawal_max"`
	// PayerType of the partner's messages (default bank_customer), and
	// PayerTypes those messages may refine it to (field 48 PT=).
	PayerType  string   `yaml:"payer_type"`
	PayerTypes []string `yaml:"payer_types"`
	// Allow, when set, lists the source networks (CIDR or address) the
	// partner's messages may come from, within its lanes' allowlists; a
	// message from elsewhere is declined 63.
	Allow []string `yaml:"allow"`
	// CertPins name the partner's client certificates on TLS lanes, each
	// until its not-after: [{sha256: <SHA-256 of the public key, hex; see
	// CertPin>, not_after: <RFC 3339>}], two live at once while rotating.
	CertPins []store.CertPin `yaml:"cert_pins"`
}

// Route sends a request to a destination (store.Route once seeded).
// Fields may be "*" (any); the most specific matching rule wins, and
// among rules naming as many fields bill type outranks payer type, which
// outranks partner (store.Directory.Lookup).
type Route struct {
	// ID names the rule; default route-N, N its position from 1.
	ID        string `yaml:"id"`
	BillType  string `yaml:"bill_type"`
	PayerType string `yaml:"payer_type"`
	Partner   string `yaml:"partner"`
	// Destination is "ledger" (on-us) for now.
	Destination string `yaml:"destination"`
	// SettlementAccount overrides the partner's account for this route
	// (a biller's account for bill payments).
	SettlementAccount string `yaml:"settlement_account"`
}

// DefaultLane is a lane with the defaults filled in.
func DefaultLane() LaneConfig {
	return LaneConfig{
		Kind: LaneMPLS,
		// Loopback only: a lane open to every address is something an
		// operator writes down, never a default.
		Allow:         []string{"127.0.0.0/8", "::1/128"},
		Dialect:       "iso87ascii",
		Header:        codec.HeaderBinary2,
		FrameBytesMax: defaultFrameBytesMax,
		ConnsMax:      1024,
		// A partner host or concentrator keeps a pool of a few to a few
		// dozen connections per address (jPOS channel pools, ATM
		// concentrators); 64 leaves room for that and a reconnect storm,
		// and one address can hold only 1/16 of the default lane.
		ConnsPerSourceMax: 64,
		InflightMax:       256,
		// A partner signs on right after connecting; 10 s covers a slow
		// link and a TLS handshake, and an idle flood holds a slot for
		// 10 s instead of the 5-minute idle timeout.
		FirstFrameTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		WriteTimeout:      10 * time.Second,
	}
}

// DefaultConfig has no lanes, partners or key: those come from the config
// file (the embedded demo config provides them).
func DefaultConfig() Config {
	return Config{
		Config:               payment.DefaultConfig(),
		IdempotencyRetention: 35 * 24 * time.Hour,
		HousekeepingInterval: 10 * time.Second,
		RequestTimeout:       10 * time.Second,
		RefusalAudit:         DefaultRefusalAuditConfig(),
	}
}

// Validate checks the config and its cross references.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	if err := c.Config.Validate(); err != nil {
		return err
	}
	if c.IdempotencyRetention < retentionMin {
		return bad("idempotency_retention %s below %s", c.IdempotencyRetention, retentionMin)
	}
	if c.HousekeepingInterval < housekeepingMin {
		return bad("housekeeping_interval %s below %s", c.HousekeepingInterval, housekeepingMin)
	}
	if c.RequestTimeout <= 0 || c.RequestTimeout > requestTimeoutMax {
		return bad("request_timeout %s not in (0, %s]", c.RequestTimeout, requestTimeoutMax)
	}
	if err := c.RefusalAudit.Validate(); err != nil {
		return err
	}
	partners := map[string]bool{}
	acquirers := map[string]string{}
	for _, p := range c.Partners {
		if p.ID == "" || partners[p.ID] {
			return bad("partner id %q empty or duplicate", p.ID)
		}
		partners[p.ID] = true
		if len(p.AcquirerIDs) == 0 {
			return bad("partner %q has no acquirer_ids", p.ID)
		}
		for _, a := range p.AcquirerIDs {
			if other, dup := acquirers[a]; dup {
				return bad("acquirer id %q belongs to %q and %q", a, other, p.ID)
			}
			acquirers[a] = p.ID
		}
		if p.WithdrawalMax < 0 {
			return bad("partner %q withdrawal_max is negative", p.ID)
		}
	}
	names := map[string]bool{}
	known := map[string]bool{}
	for _, n := range specs.Names() {
		known[n] = true
	}
	for _, l := range c.Lanes {
		if l.Name == "" || names[l.Name] {
			return bad("lane name %q empty or duplicate", l.Name)
		}
		names[l.Name] = true
		if _, _, err := net.SplitHostPort(l.Listen); err != nil {
			return bad("lane %q listen %q: %v", l.Name, l.Listen, err)
		}
		switch l.Kind {
		case LaneMPLS, LaneIPSec:
		case LanePublic:
			if l.TLS == nil {
				// Plain TCP is never allowed from the internet.
				return bad("lane %q: kind public needs tls: {cert_file, key_file, client_ca_file}", l.Name)
			}
		default:
			return bad("lane %q: kind %q (want %s, %s or %s)", l.Name, l.Kind, LaneMPLS, LaneIPSec, LanePublic)
		}
		if len(l.Allow) == 0 {
			return bad("lane %q: a lane needs an allowlist (allow: [CIDR, ...]; 0.0.0.0/0 and ::/0 for a public lane)", l.Name)
		}
		if l.TLS != nil {
			if _, err := l.TLS.serverConfig(); err != nil {
				return bad("lane %q tls: %v", l.Name, err)
			}
		}
		if len(l.Allow) > laneAllowMax {
			return bad("lane %q: %d allow entries (at most %d)", l.Name, len(l.Allow), laneAllowMax)
		}
		if _, err := store.ParseAllow(l.Allow); err != nil {
			return bad("lane %q allow: %v", l.Name, err)
		}
		if !known[l.Dialect] {
			return bad("lane %q: unknown dialect %q", l.Name, l.Dialect)
		}
		if err := (codec.Framer{Header: l.Header, FrameBytesMax: l.FrameBytesMax}).Validate(); err != nil {
			return bad("lane %q: %v", l.Name, err)
		}
		if l.ConnsMax < 1 || l.ConnsMax > connsMaxLimit {
			return bad("lane %q conns_max %d not in [1, %d]", l.Name, l.ConnsMax, connsMaxLimit)
		}
		if l.ConnsPerSourceMax < 1 || l.ConnsPerSourceMax > connsMaxLimit {
			return bad("lane %q conns_per_source_max %d not in [1, %d]", l.Name, l.ConnsPerSourceMax, connsMaxLimit)
		}
		if l.InflightMax < 1 || l.InflightMax > inflightMaxLimit {
			return bad("lane %q inflight_max %d not in [1, %d]", l.Name, l.InflightMax, inflightMaxLimit)
		}
		if l.IdleTimeout <= 0 || l.WriteTimeout <= 0 {
			return bad("lane %q idle_timeout and write_timeout must be positive", l.Name)
		}
		if l.FirstFrameTimeout < firstFrameTimeoutMin || l.FirstFrameTimeout > l.IdleTimeout {
			return bad("lane %q first_frame_timeout %s not in [%s, idle_timeout %s]", l.Name, l.FirstFrameTimeout, firstFrameTimeoutMin, l.IdleTimeout)
		}
		for _, p := range l.Partners {
			if !partners[p] {
				return bad("lane %q names unknown partner %q", l.Name, p)
			}
		}
	}
	return c.validateDirectory()
}

// allowed reports whether a is in one of the prefixes (an IPv4-mapped
// IPv6 address counts as its IPv4 address).
func allowed(list []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range list {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// LaneTLS is a TLS lane's server side: its certificate and key, and the
// CA bundle client certificates must chain to (mutual TLS is required:
// the certificate is the partner's identity, store.Partner.CertPins).
type LaneTLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// serverConfig loads the files (nil for a plain lane).
func (t *LaneTLS) serverConfig() (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	if t.CertFile == "" || t.KeyFile == "" || t.ClientCAFile == "" {
		return nil, errors.New("cert_file, key_file and client_ca_file are all required (client certificates are)")
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	pem, err := os.ReadFile(t.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("client CA %s: no PEM certificate in it", t.ClientCAFile)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		// Session tickets stay on (Go's default): a partner reconnecting
		// resumes without a full handshake.
	}, nil
}
