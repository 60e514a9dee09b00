// Package host is switchd's side of an outbound ISO 8583 connection to an
// issuer or biller host (issue 13): persistent connections with sign-on and
// echo, reconnect with backoff, answers matched to requests by a
// correlation key, a per-request timeout and a circuit breaker, so a dead
// host costs a partner an immediate 91, never a wait.
//
// moov-io/iso8583-connection is the library the issue names for this side;
// the Go module proxy here serves no version of it, and it works on moov's
// message type, which our codec (7–24× faster, identical bytes) replaced on
// the lanes. So this package speaks through package codec, the same packer
// and framer as the lanes.
package host

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/switchd/switchd/codec"
)

// Limits.
const (
	// AddrsMax bounds a destination's address list.
	AddrsMax = 8
	// PoolSizeMax bounds connections per destination.
	PoolSizeMax = 64
	// InFlightMax bounds requests awaiting an answer on one connection:
	// a host that stops answering cannot make us hold unbounded state.
	InFlightMax = 4096
	// TimeoutMax bounds the per-request timeout: a partner's own timeout is
	// typically 30–60 s, ours must be well inside it.
	TimeoutMax = 60 * time.Second
	// MatchFieldsMax bounds the fields of one correlation key.
	MatchFieldsMax = 8
	// lateMemory is how long a timed-out request's key is remembered, so
	// an answer after the timeout is told apart from one nobody asked for.
	lateMemory = 10 * time.Minute
	// lateKeysMax bounds that memory.
	lateKeysMax = 100_000
)

// ErrConfig is a configuration that cannot work.
var ErrConfig = errors.New("host: invalid config")

// TLSConfig is the client side of TLS to a host: the CA that signed the
// host's certificate, and our certificate when the host wants mTLS.
type TLSConfig struct {
	CAFile     string `yaml:"ca_file" json:"ca_file,omitempty"`
	CertFile   string `yaml:"cert_file" json:"cert_file,omitempty"`
	KeyFile    string `yaml:"key_file" json:"key_file,omitempty"`
	ServerName string `yaml:"server_name" json:"server_name,omitempty"`
}

// Config is one outbound ISO 8583 destination.
type Config struct {
	// Name names the destination in logs and metrics.
	Name string `yaml:"name" json:"name"`
	// Addrs are host:port addresses; connections are spread over them and
	// a reconnect moves to the next one.
	Addrs []string `yaml:"addrs" json:"addrs"`
	// Dialect is the codec dialect (specs/) and Header the length header.
	Dialect       string       `yaml:"dialect" json:"dialect"`
	Header        codec.Header `yaml:"header" json:"header"`
	FrameBytesMax int          `yaml:"frame_bytes_max" json:"frame_bytes_max,omitempty"`
	TLS           *TLSConfig   `yaml:"tls" json:"tls,omitempty"`
	// PoolSize is how many connections are kept open.
	PoolSize int `yaml:"pool_size" json:"pool_size"`
	// Timeout is how long a request waits for its answer.
	Timeout     time.Duration `yaml:"timeout" json:"timeout"`
	DialTimeout time.Duration `yaml:"dial_timeout" json:"dial_timeout,omitempty"`
	// SignOn sends an 0800 (field 70 = 001) on every new connection and
	// uses the connection only after an 0810 with 00.
	SignOn bool `yaml:"sign_on" json:"sign_on"`
	// EchoInterval sends an 0800 echo (field 70 = 301) on an idle-or-not
	// connection this often; an echo unanswered within Timeout closes the
	// connection. Zero: no echo.
	EchoInterval time.Duration `yaml:"echo_interval" json:"echo_interval,omitempty"`
	// Match names the fields of the correlation key per MTI class (the
	// MTI's first two digits, "02" for 0200/0210); the class is always
	// part of the key, so a reversal (04) that shares a STAN with its
	// original (02) does not collide. Classes not named use
	// DefaultMatchFields.
	Match map[string][]int `yaml:"match" json:"match,omitempty"`
	// BreakerFailures consecutive failures (timeouts, lost connections)
	// open the circuit for BreakerCooldown: requests fail at once with
	// ErrUnavailable. Then one request is let through; its success closes
	// the circuit.
	BreakerFailures int           `yaml:"breaker_failures" json:"breaker_failures"`
	BreakerCooldown time.Duration `yaml:"breaker_cooldown" json:"breaker_cooldown"`
	// ReconnectMin and ReconnectMax bound the backoff between dials
	// (doubling, with full jitter).
	ReconnectMin time.Duration `yaml:"reconnect_min" json:"reconnect_min,omitempty"`
	ReconnectMax time.Duration `yaml:"reconnect_max" json:"reconnect_max,omitempty"`
}

// DefaultMatchFields are STAN, terminal id and RRN.
var DefaultMatchFields = []int{11, 41, 37}

// DefaultConfig is a destination with one connection and a 5 s timeout;
// Name and Addrs are the caller's.
func DefaultConfig() Config {
	return Config{
		Dialect: "iso87ascii", Header: codec.HeaderBinary2, FrameBytesMax: 8192,
		PoolSize: 1, Timeout: 5 * time.Second, DialTimeout: 2 * time.Second,
		SignOn: true, EchoInterval: 30 * time.Second,
		// Network management messages carry no terminal or RRN.
		Match:           map[string][]int{"08": {11}},
		BreakerFailures: 5, BreakerCooldown: 5 * time.Second,
		ReconnectMin: 100 * time.Millisecond, ReconnectMax: 10 * time.Second,
	}
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	bad := func(format string, a ...any) error { return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...)) }
	switch {
	case c.Name == "" || len(c.Name) > 64 || strings.ContainsAny(c.Name, " \t\r\n\x00"):
		return bad("name %q: 1 to 64 characters, no spaces", c.Name)
	case len(c.Addrs) == 0 || len(c.Addrs) > AddrsMax:
		return bad("%s: 1 to %d addrs", c.Name, AddrsMax)
	case c.PoolSize < 1 || c.PoolSize > PoolSizeMax:
		return bad("%s: pool_size %d out of 1..%d", c.Name, c.PoolSize, PoolSizeMax)
	case c.Timeout <= 0 || c.Timeout > TimeoutMax:
		return bad("%s: timeout %s out of (0, %s]", c.Name, c.Timeout, TimeoutMax)
	case c.DialTimeout <= 0 || c.DialTimeout > TimeoutMax:
		return bad("%s: dial_timeout %s out of (0, %s]", c.Name, c.DialTimeout, TimeoutMax)
	case c.EchoInterval < 0:
		return bad("%s: echo_interval %s is negative", c.Name, c.EchoInterval)
	case c.EchoInterval > 0 && c.EchoInterval < c.Timeout:
		return bad("%s: echo_interval %s is shorter than the timeout %s", c.Name, c.EchoInterval, c.Timeout)
	case c.BreakerFailures < 1 || c.BreakerCooldown <= 0:
		return bad("%s: breaker_failures ≥ 1 and breaker_cooldown > 0 needed", c.Name)
	case c.ReconnectMin <= 0 || c.ReconnectMax < c.ReconnectMin:
		return bad("%s: reconnect_min > 0 and reconnect_max ≥ reconnect_min needed", c.Name)
	}
	for _, a := range c.Addrs {
		if _, port, ok := strings.Cut(a, ":"); !ok || port == "" {
			return bad("%s: addr %q is not host:port", c.Name, a)
		}
	}
	if err := (codec.Framer{Header: c.Header, FrameBytesMax: c.FrameBytesMax}).Validate(); err != nil {
		return bad("%s: %v", c.Name, err)
	}
	for class, fields := range c.Match {
		if len(class) != 2 || class[0] < '0' || class[0] > '9' || class[1] < '0' || class[1] > '9' {
			return bad("%s: match class %q is not two digits (e.g. \"02\")", c.Name, class)
		}
		if len(fields) == 0 || len(fields) > MatchFieldsMax {
			return bad("%s: match %s: 1 to %d fields", c.Name, class, MatchFieldsMax)
		}
		for _, f := range fields {
			if f < 2 || f > 128 || f == 65 {
				return bad("%s: match %s: field %d cannot be part of a key", c.Name, class, f)
			}
		}
		if slices.Contains(fields, 39) {
			return bad("%s: match %s: field 39 is the answer, not part of the request", c.Name, class)
		}
	}
	if c.TLS != nil && (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return bad("%s: tls cert_file and key_file go together", c.Name)
	}
	return nil
}

func (c *Config) matchFields(class string) []int {
	if f, ok := c.Match[class]; ok {
		return f
	}
	return DefaultMatchFields
}
