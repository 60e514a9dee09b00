// Package api is the partner REST front door: the same payment.Core that
// serves ISO 8583 lanes, over HTTPS with OAuth2 bearer tokens, described
// by an OpenAPI 3.1 document generated from the handlers (huma v2,
// github.com/danielgtaylor/huma/v2: the handlers' Go types are the
// schema, so the document cannot drift from the code).
//
// What is REST stays here: JSON shapes, decimal-string money, the
// Idempotency-Key header, RFC 9457 problems. What is decided (partner,
// lane, limits, route, ledger) is the core's, exactly as for a 0200.
package api

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// Limits.
const (
	// bodyBytesMax bounds a request body: a payment is a few hundred bytes.
	bodyBytesMax = 64 << 10
	// bodyBytesHardMax is the listener's backstop for what no operation
	// bounds itself (the token endpoint bounds its form on its own); the
	// largest operation's own bound, a payment batch's.
	bodyBytesHardMax = batchBodyBytesMax
	// idempotencyKeyBytesMax bounds the Idempotency-Key header; the
	// store key it becomes ("partner|rest|" + key) stays far inside the
	// FSM's 256 bytes.
	idempotencyKeyBytesMax = 64
	// referenceBytesMax bounds a payment's reference (an ISO 20022
	// end-to-end id is at most 35 characters).
	referenceBytesMax = 35
	accountIDBytesMax = 64
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	headerBytesMax    = 16 << 10
	// requestTimeoutMax bounds one call's decision (the core's proposal).
	requestTimeoutMax = 15 * time.Second
)

// ErrConfig is wrapped by every Validate error.
var ErrConfig = errors.New("api: invalid config")

// Config is the partner API's listener.
type Config struct {
	// Listen is the HTTPS address; empty disables the partner API.
	Listen string `yaml:"listen"`
	// Lane is the name the core checks against a partner's lanes: a
	// partner calls this API only if its record lists this lane.
	Lane string `yaml:"lane"`
	// Partners may use the API when a new cluster is seeded (the API lane
	// is added to their lanes, as a lane's partners: list does); later,
	// a partner record's lanes decide.
	Partners []string `yaml:"partners"`
	// TLS is the listener's certificate and, optionally, the CAs of
	// partners' client certificates (mutual TLS; tokens of tls_client_auth
	// clients are bound to them). Unset: a certificate from a development
	// CA made under the data dir (the demo).
	TLS *TLSConfig `yaml:"tls"`
}

// TLSConfig names the certificate files.
type TLSConfig struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// DefaultConfig serves the demo's partner API on loopback.
func DefaultConfig() Config { return Config{Listen: "127.0.0.1:8443", Lane: "api"} }

// Validate checks the listen address and the lane name.
func (c Config) Validate() error {
	if c.Listen == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("%w: listen %q: %v", ErrConfig, c.Listen, err)
	}
	if c.Lane == "" {
		return fmt.Errorf("%w: lane is required (the name partners list to use this API)", ErrConfig)
	}
	if c.TLS != nil && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		return fmt.Errorf("%w: tls needs cert_file and key_file", ErrConfig)
	}
	return nil
}
