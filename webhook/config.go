// Package webhook delivers the replicated outbox's events (store,
// webhooks.go) to partners' endpoints, the Standard Webhooks way: it runs
// on the raft leader only, signs with every live secret of the endpoint,
// retries with backoff and jitter, and records each attempt through the
// cluster (store.OpWebhookAttempt). It also holds what the API needs to
// register an endpoint: the secret format, the KEK that wraps secrets and
// the address rules (no delivery to an address the config does not allow).
package webhook

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Limits.
const (
	workersMax             = 256
	inflightPerEndpointMax = 64
	scheduleStepsMax       = 15 // the FSM keeps at most 16 attempts
	attemptTimeoutMax      = 2 * time.Minute
	// stepMax is the longest wait the FSM accepts (store webhookBackoffMax).
	stepMax = 48 * time.Hour
	// dueBatchMax bounds the deliveries read per poll; queueCountMax the
	// pending deliveries counted for the queue-depth metric per poll.
	dueBatchMax   = 1024
	queueCountMax = 100_000
	allowListMax  = 64
)

// Sentinel errors.
var (
	// ErrConfig: the webhooks section is unusable.
	ErrConfig = errors.New("webhook: bad config")
	// ErrURL: an endpoint URL the config does not allow (scheme, host,
	// address); registration answers it 400.
	ErrURL = errors.New("webhook: endpoint URL not allowed")
	// ErrAddressNotAllowed: a delivery was refused at dial time because
	// the name resolved to an address the config does not allow (SSRF).
	ErrAddressNotAllowed = errors.New("webhook: address not allowed")
	// ErrNoKEK: webhooks are enabled but the node has no KEK to wrap or
	// unwrap secrets with.
	ErrNoKEK = errors.New("webhook: no key-encryption key (webhooks.kek_file or webhooks.kek_env)")
	// ErrUnwrap: a wrapped secret does not open under this KEK.
	ErrUnwrap = errors.New("webhook: secret does not unwrap under this KEK")
	// ErrDisabled: webhooks are not enabled on this node.
	ErrDisabled = errors.New("webhook: webhooks are not enabled")
)

// Config is the webhooks section.
type Config struct {
	// Enabled turns on the API routes and the sender.
	Enabled bool `yaml:"enabled"`
	// KEKFile holds the key-encryption key of endpoint secrets as 64 hex
	// digits (mode 0600); KEKEnv names an environment variable instead.
	// Every node needs the same one.
	KEKFile string `yaml:"kek_file"`
	KEKEnv  string `yaml:"kek_env"`
	// AllowHTTPHosts may be called over plain http (the demo's loopback
	// receiver); every other endpoint must be https.
	AllowHTTPHosts []string `yaml:"allow_http_hosts"`
	// AllowNetworks are networks a delivery may dial although they are
	// not public (loopback, private, link-local...). By default only
	// public unicast addresses are dialled.
	AllowNetworks []string `yaml:"allow_networks"`
	// Workers bound the attempts in flight; InflightPerEndpoint the ones
	// to one endpoint.
	Workers             int `yaml:"workers"`
	InflightPerEndpoint int `yaml:"inflight_per_endpoint"`
	// AttemptTimeout bounds one attempt (connect, TLS, answer).
	AttemptTimeout time.Duration `yaml:"attempt_timeout"`
	// PollInterval is how often the leader looks for due deliveries.
	PollInterval time.Duration `yaml:"poll_interval"`
	// Schedule is the wait before each retry; after the last one the
	// delivery fails. Jitter (0..1] spreads each wait over
	// [step·(1−jitter), step]: 1 is full jitter.
	Schedule []time.Duration `yaml:"schedule"`
	Jitter   float64         `yaml:"jitter"`
}

// DefaultSchedule is the Standard Webhooks / Svix schedule stretched to
// about three days (DESIGN.md research): 5 s, 5 min, 30 min, 2 h, 5 h,
// 10 h, 14 h, 20 h, 24 h — 75.6 h in all before jitter.
var DefaultSchedule = []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour,
	5 * time.Hour, 10 * time.Hour, 14 * time.Hour, 20 * time.Hour, 24 * time.Hour}

// DefaultConfig is disabled, https to public addresses only.
func DefaultConfig() Config {
	return Config{Workers: 16, InflightPerEndpoint: 4, AttemptTimeout: 10 * time.Second, PollInterval: time.Second,
		Schedule: DefaultSchedule, Jitter: 0.2}
}

// Validate checks the bounds.
func (c Config) Validate() error {
	switch {
	case c.KEKFile != "" && c.KEKEnv != "":
		return fmt.Errorf("%w: webhooks.kek_file and webhooks.kek_env are both set; keep one", ErrConfig)
	case c.Enabled && c.KEKFile == "" && c.KEKEnv == "":
		return fmt.Errorf("%w: webhooks.enabled needs kek_file or kek_env", ErrConfig)
	case c.Workers < 1 || c.Workers > workersMax:
		return fmt.Errorf("%w: webhooks.workers %d not in [1, %d]", ErrConfig, c.Workers, workersMax)
	case c.InflightPerEndpoint < 1 || c.InflightPerEndpoint > inflightPerEndpointMax:
		return fmt.Errorf("%w: webhooks.inflight_per_endpoint %d not in [1, %d]", ErrConfig, c.InflightPerEndpoint, inflightPerEndpointMax)
	case c.AttemptTimeout <= 0 || c.AttemptTimeout > attemptTimeoutMax:
		return fmt.Errorf("%w: webhooks.attempt_timeout %s not in (0, %s]", ErrConfig, c.AttemptTimeout, attemptTimeoutMax)
	case c.PollInterval < 10*time.Millisecond || c.PollInterval > time.Minute:
		return fmt.Errorf("%w: webhooks.poll_interval %s not in [10ms, 1m]", ErrConfig, c.PollInterval)
	case len(c.Schedule) < 1 || len(c.Schedule) > scheduleStepsMax:
		return fmt.Errorf("%w: webhooks.schedule has %d steps, want 1..%d", ErrConfig, len(c.Schedule), scheduleStepsMax)
	case c.Jitter < 0 || c.Jitter > 1:
		return fmt.Errorf("%w: webhooks.jitter %v not in [0, 1]", ErrConfig, c.Jitter)
	case len(c.AllowHTTPHosts) > allowListMax || len(c.AllowNetworks) > allowListMax:
		return fmt.Errorf("%w: at most %d allow_http_hosts and allow_networks", ErrConfig, allowListMax)
	}
	for _, d := range c.Schedule {
		if d < time.Second || d > stepMax {
			return fmt.Errorf("%w: webhooks.schedule step %s not in [1s, %s]", ErrConfig, d, stepMax)
		}
	}
	for _, n := range c.AllowNetworks {
		if _, err := netip.ParsePrefix(n); err != nil {
			return fmt.Errorf("%w: webhooks.allow_networks %q is not a CIDR", ErrConfig, n)
		}
	}
	for _, h := range c.AllowHTTPHosts {
		if h == "" || len(h) > 253 {
			return fmt.Errorf("%w: webhooks.allow_http_hosts %q", ErrConfig, h)
		}
	}
	return nil
}
