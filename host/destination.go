package host

import (
	"time"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/store"
)

// FromDestination is the client config of an iso8583 destination as the
// replicated state holds it; unset tunables take DefaultConfig's values.
// Its Validate is the check only a node can make (the dialect loads):
// the ops API runs it before proposing.
func FromDestination(d *store.Destination) (Config, error) {
	c := DefaultConfig()
	c.Name = d.ID
	h := d.ISO8583
	if d.Kind != store.DestinationKindISO8583 || h == nil {
		return c, ErrConfig
	}
	c.Addrs = h.Addrs
	c.Dialect, c.Header = h.Dialect, codec.Header(h.Header)
	if h.FrameBytesMax > 0 {
		c.FrameBytesMax = h.FrameBytesMax
	}
	if h.TLS != nil {
		c.TLS = &TLSConfig{CAFile: h.TLS.CAFile, CertFile: h.TLS.CertFile, KeyFile: h.TLS.KeyFile, ServerName: h.TLS.ServerName}
	}
	c.PoolSize = h.PoolSize
	c.Timeout = time.Duration(h.TimeoutMs) * time.Millisecond
	c.SignOn = h.SignOn
	c.EchoInterval = time.Duration(h.EchoIntervalMs) * time.Millisecond
	if len(h.Match) > 0 {
		c.Match = h.Match
	}
	if h.BreakerFailures > 0 {
		c.BreakerFailures = h.BreakerFailures
	}
	if h.BreakerCoolMs > 0 {
		c.BreakerCooldown = time.Duration(h.BreakerCoolMs) * time.Millisecond
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	if _, err := codec.Load(c.Dialect); err != nil {
		return c, err
	}
	return c, nil
}
