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
	"net/url"
	"slices"
	"strings"
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
	// SCA decides which authorizations (POST /v1/authorizations) need
	// strong customer authentication before anything is reserved.
	SCA SCAConfig `yaml:"sca"`
	// PublicURL is the partner API's address as customers' browsers reach
	// it (the SCA redirect URLs are made from it), e.g.
	// "https://api.bank.example"; empty: "https://" + Listen.
	PublicURL string `yaml:"public_url"`
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

// SCAConfig is the strong-customer-authentication rule: an authorization
// needs it when any of its parts says so.
type SCAConfig struct {
	// AmountThresholdMinor: an amount above it, in minor units of the
	// authorization's currency, needs SCA (PSD2's low-value exemption is
	// 30.00 EUR: 3000); 0 makes every amount need it.
	AmountThresholdMinor int64 `yaml:"amount_threshold"`
	// Partners always need SCA, whatever the amount.
	Partners []string `yaml:"partners"`
	// RiskFlags: an authorization whose risk_flag is one of them needs SCA.
	RiskFlags []string `yaml:"risk_flags"`
	// AuthenticationTTL is how long an authorization may wait for its
	// authentication (from its creation); past it every step answers 422
	// authentication-is-no-longer-valid. 0: 15 minutes.
	AuthenticationTTL time.Duration `yaml:"authentication_ttl"`
	// ReturnURLPrefixes, per partner id: when a partner is listed, its
	// redirects' return URLs must start with one of its prefixes (the
	// customer is only ever sent back to the partner's own site).
	ReturnURLPrefixes map[string][]string `yaml:"return_url_prefixes"`
	// AllowLoopbackHTTP lets a return URL be plain http to a loopback
	// host (127.0.0.1, ::1, localhost): development only. Otherwise a
	// return URL must be https.
	AllowLoopbackHTTP bool `yaml:"allow_loopback_http"`
}

// SCA limits.
const (
	// scaAmountThresholdMinorMax bounds the threshold where no amount the
	// ledger holds is above it (10¹⁵ minor units).
	scaAmountThresholdMinorMax = 1_000_000_000_000_000
	// scaPartnersMax and scaRiskFlagsMax bound the rule's lists: they are
	// searched on every authorization.
	scaPartnersMax  = 1024
	scaRiskFlagsMax = 64
	// riskFlagBytesMax bounds a risk flag (a name like "new_device").
	riskFlagBytesMax = 32
	// scaTTLDefault is PSD2's usual authentication window; scaTTLMax the
	// FSM's bound (store.authTTLMax).
	scaTTLDefault = 15 * time.Minute
	scaTTLMax     = 24 * time.Hour
	// returnURLBytesMax bounds a return URL (the request schema's and the
	// FSM's bound); returnURLPrefixesMax bounds one partner's list.
	returnURLBytesMax    = 2048
	returnURLPrefixesMax = 16
	publicURLBytesMax    = 256
)

// DefaultConfig serves the demo's partner API on loopback; authorizations
// above 30.00 (in minor units of any currency) or flagged "high" need SCA.
func DefaultConfig() Config {
	return Config{Listen: "127.0.0.1:8443", Lane: "api", SCA: SCAConfig{AmountThresholdMinor: 3000, RiskFlags: []string{"high"}, AuthenticationTTL: scaTTLDefault}}
}

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
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || len(c.PublicURL) > publicURLBytesMax || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" ||
			u.RawQuery != "" || u.Fragment != "" || strings.TrimSuffix(u.Path, "/") != "" {
			return fmt.Errorf("%w: public_url %q: an http(s) origin without a path, at most %d bytes", ErrConfig, c.PublicURL, publicURLBytesMax)
		}
	}
	return c.SCA.Validate()
}

// Validate checks the rule's bounds: a threshold in [0, 10¹⁵], at most
// scaPartnersMax partners and scaRiskFlagsMax flags, each a valid name.
func (c SCAConfig) Validate() error {
	if c.AmountThresholdMinor < 0 || c.AmountThresholdMinor > scaAmountThresholdMinorMax {
		return fmt.Errorf("%w: sca.amount_threshold %d not in [0, %d]", ErrConfig, c.AmountThresholdMinor, int64(scaAmountThresholdMinorMax))
	}
	if len(c.Partners) > scaPartnersMax {
		return fmt.Errorf("%w: sca.partners: %d is more than %d", ErrConfig, len(c.Partners), scaPartnersMax)
	}
	for _, p := range c.Partners {
		if p == "" || len(p) > accountIDBytesMax {
			return fmt.Errorf("%w: sca.partners: %q is no partner id", ErrConfig, p)
		}
	}
	if len(c.RiskFlags) > scaRiskFlagsMax {
		return fmt.Errorf("%w: sca.risk_flags: %d is more than %d", ErrConfig, len(c.RiskFlags), scaRiskFlagsMax)
	}
	for _, f := range c.RiskFlags {
		if !validRiskFlag(f) || f == "" {
			return fmt.Errorf("%w: sca.risk_flags: %q: 1 to %d of a-z 0-9 _ -", ErrConfig, f, riskFlagBytesMax)
		}
	}
	if c.AuthenticationTTL < 0 || c.AuthenticationTTL > scaTTLMax {
		return fmt.Errorf("%w: sca.authentication_ttl %s not in [0, %s]", ErrConfig, c.AuthenticationTTL, scaTTLMax)
	}
	if len(c.ReturnURLPrefixes) > scaPartnersMax {
		return fmt.Errorf("%w: sca.return_url_prefixes: %d partners is more than %d", ErrConfig, len(c.ReturnURLPrefixes), scaPartnersMax)
	}
	for p, prefixes := range c.ReturnURLPrefixes {
		if p == "" || len(p) > accountIDBytesMax || len(prefixes) == 0 || len(prefixes) > returnURLPrefixesMax {
			return fmt.Errorf("%w: sca.return_url_prefixes: %q: a partner id with 1 to %d prefixes", ErrConfig, p, returnURLPrefixesMax)
		}
		for _, x := range prefixes {
			// A prefix must end its host part, or "https://shop.example"
			// would admit "https://shop.example.evil".
			u, err := url.Parse(x)
			scheme := err == nil && (u.Scheme == "https" || u.Scheme == "http" && c.AllowLoopbackHTTP && loopback(u.Hostname()))
			if !scheme || u.Host == "" || len(x) > returnURLBytesMax || !strings.HasPrefix(strings.TrimPrefix(x, u.Scheme+"://"+u.Host), "/") {
				return fmt.Errorf("%w: sca.return_url_prefixes: %q: an https URL (http only to loopback with allow_loopback_http) with at least a '/' after the host", ErrConfig, x)
			}
		}
	}
	return nil
}

// ttl is the authentication time limit.
func (c SCAConfig) ttl() time.Duration {
	if c.AuthenticationTTL == 0 {
		return scaTTLDefault
	}
	return c.AuthenticationTTL
}

// validRiskFlag: at most riskFlagBytesMax of a-z, 0-9, '_' and '-' (the
// request's schema pattern).
func validRiskFlag(f string) bool {
	if len(f) > riskFlagBytesMax {
		return false
	}
	for i := 0; i < len(f); i++ {
		if c := f[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// required reports whether an authorization of amount minor units by
// partner, flagged riskFlag, needs SCA.
func (c SCAConfig) required(partner string, amount int64, riskFlag string) bool {
	return amount > c.AmountThresholdMinor || slices.Contains(c.Partners, partner) ||
		(riskFlag != "" && slices.Contains(c.RiskFlags, riskFlag))
}
