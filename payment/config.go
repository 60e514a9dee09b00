package payment

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Limits on what config may ask for.
const (
	// holdExpiryMax: card schemes allow holds of at most ~30 days; 90 is
	// generous.
	holdExpiryMax = 90 * 24 * time.Hour
	// cardKeyBytesMin is the least HMAC key for PAN lookup hashes and
	// fingerprints: 128 bits.
	cardKeyBytesMin = 16
)

// ErrConfig is wrapped by every Validate error.
var ErrConfig = errors.New("payment: invalid config")

// Config is the core's configuration. In switchd's config file its keys
// sit under switch: (the ISO 8583 front door's section), where they have
// always been.
type Config struct {
	// CardKey is the hex HMAC key for PAN lookup hashes and request
	// fingerprints. Secret: never logged (String redacts it).
	CardKey Secret `yaml:"card_key"`
	// HoldExpiry is how long an authorization's hold lives without a
	// completion.
	HoldExpiry time.Duration `yaml:"hold_expiry"`
	// BusinessDayZone is the IANA time zone whose calendar date is the
	// business day stamped on transfers.
	BusinessDayZone string `yaml:"business_day_zone"`
}

// Secret is a string that never prints.
type Secret string

// String redacts the secret so it cannot reach a log by accident.
func (Secret) String() string { return "[redacted]" }

// GoString redacts the secret for %#v too.
func (Secret) GoString() string { return "[redacted]" }

// LogValue redacts the secret in log/slog (whose JSON handler would
// otherwise marshal the bare string).
func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// MarshalJSON redacts the secret in JSON.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"[redacted]"`), nil }

// DefaultConfig has no card key: that comes from the config file (the
// embedded demo config provides one).
func DefaultConfig() Config {
	return Config{
		HoldExpiry:      7 * 24 * time.Hour,
		BusinessDayZone: "UTC",
	}
}

// Validate checks the key and the bounds.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	key, err := hex.DecodeString(string(c.CardKey))
	if err != nil || len(key) < cardKeyBytesMin {
		return bad("card_key must be at least %d bytes of hex", cardKeyBytesMin)
	}
	if c.HoldExpiry <= 0 || c.HoldExpiry > holdExpiryMax {
		return bad("hold_expiry %s not in (0, %s]", c.HoldExpiry, holdExpiryMax)
	}
	if _, err := time.LoadLocation(c.BusinessDayZone); err != nil {
		return bad("business_day_zone %q: %v", c.BusinessDayZone, err)
	}
	return nil
}
