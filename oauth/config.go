// Package oauth is the ops API's OAuth2 authorization server and resource
// check: the client credentials grant (RFC 6749 §4.4) at /oauth/token,
// with a client secret (stored only as an Argon2id hash) or a TLS client
// certificate (RFC 8705 tls_client_auth, tokens bound by cnf.x5t#S256);
// ES256-signed JWT access tokens (RFC 9068) valid at most 15 minutes,
// their public keys at /.well-known/jwks.json; and the check of a bearer
// token, its audience, its certificate binding and its scopes on every
// call. Clients are replicated state (store.Client, OpPutClient).
//
// JWTs are built and checked with go-jose (github.com/go-jose/go-jose/v4):
// a well-kept library that does JWS, JWT claims and JWK sets in one
// module, with an algorithm allowlist at parse time (no "alg: none").
package oauth

import (
	"errors"
	"fmt"
	"time"
)

// Scopes of the ops API. Every route needs one (ops.routeScopes); a
// client holds a subset, a token carries a subset of its client's.
const (
	ScopeOpsRead      = "ops:read"      // read accounts, transfers, routes, partners, agents, lanes, days, files, cluster status
	ScopeOpsWrite     = "ops:write"     // create accounts
	ScopeRoutesWrite  = "routes:write"  // change routes, partners, agents
	ScopeSettleWrite  = "settle:write"  // close days, upload files, reconcile, resolve breaks
	ScopeClusterAdmin = "cluster:admin" // membership, snapshots, lane reload, profiling
	ScopeAuditRead    = "audit:read"    // read and verify the audit chain
	ScopeClientsAdmin = "clients:admin" // manage OAuth2 clients
	ScopeKeysWrite    = "keys:write"    // change partners' MAC keys
)

// Partner API scopes (package api): what partners' clients hold.
const (
	ScopePaymentsWrite = "payments:write" // make payments, bill payments and refunds
	ScopePaymentsRead  = "payments:read"  // read payments
	ScopeAccountsRead  = "accounts:read"  // check funds
	// Webhooks get scopes of their own: registering an endpoint decides
	// where payment data is sent, which a client that only makes payments
	// need not be able to do.
	ScopeWebhooksWrite = "webhooks:write" // register, change, rotate and delete webhook endpoints
	ScopeWebhooksRead  = "webhooks:read"  // read webhook endpoints and their deliveries
)

// PartnerScopes is every partner API scope.
var PartnerScopes = []string{ScopePaymentsWrite, ScopePaymentsRead, ScopeAccountsRead, ScopeWebhooksWrite, ScopeWebhooksRead}

// Scopes is every ops scope, for the bootstrap admin client and validation.
var Scopes = []string{ScopeOpsRead, ScopeOpsWrite, ScopeRoutesWrite, ScopeSettleWrite,
	ScopeClusterAdmin, ScopeAuditRead, ScopeClientsAdmin, ScopeKeysWrite}

// Limits.
const (
	// TokenTTLMax is the 15 minutes: a stolen token is short-lived,
	// and there is no refresh token to steal (RFC 6749 §4.4.3).
	TokenTTLMax = 15 * time.Minute
	// clockLeeway tolerates small clock steps between issuing and checking
	// (one node does both; several share keys only if configured to).
	clockLeeway = 5 * time.Second
	// tokenBytesMax bounds a bearer token before it is parsed.
	tokenBytesMax = 4096
	// formBytesMax bounds a token request's body.
	formBytesMax = 4096
	// hashConcurrencyMax bounds Argon2id hashes running at once: each
	// takes argonMemoryKiB of memory, so a flood of token requests queues
	// instead of exhausting memory.
	hashConcurrencyMax = 2
	// hashWaitMax bounds the wait for a hashing slot; past it the token
	// request is refused (503-style, "temporarily_unavailable").
	hashWaitMax = 5 * time.Second
	// verifiedCacheMax bounds the tokens whose signature check is
	// remembered (a few hundred bytes each).
	verifiedCacheMax = 10000
	// signingKeysMax: the key that signs and the ones still verifying
	// tokens issued before a rotation.
	signingKeysMax = 4
)

// ErrConfig is wrapped by every Validate error.
var ErrConfig = errors.New("oauth: invalid config")

// Config is the authorization server's configuration.
type Config struct {
	// Issuer is the tokens' iss.
	Issuer string `yaml:"issuer"`
	// Audience is the tokens' aud; tokens for another audience are refused.
	Audience string `yaml:"audience"`
	// TokenTTL is how long an access token is valid, at most TokenTTLMax.
	TokenTTL time.Duration `yaml:"token_ttl"`
	// SigningKeys are PEM files of ECDSA P-256 private keys: the first
	// signs new tokens, all of them verify (rotation with overlap: put the
	// new key first and keep the old one until its tokens expired). Empty:
	// one key generated on first start in the data dir. Give every node of
	// a cluster the same files to make a token valid on all of them.
	SigningKeys []string `yaml:"signing_keys"`
	// BootstrapCredentials, when set, is where a new cluster's first node
	// writes the credentials of the admin client it creates (0600), once,
	// while the cluster has no client at all.
	BootstrapCredentials string `yaml:"bootstrap_credentials"`
	// BootstrapPartnerClients are partner ids that get a client with every
	// partner API scope on the bootstrapping node's first start (the demo:
	// demo-acquirer), their credentials in clients/<id>.json beside
	// BootstrapCredentials.
	BootstrapPartnerClients []string `yaml:"bootstrap_partner_clients"`
}

// DefaultConfig issues 15-minute tokens for the audience "switchd-ops".
func DefaultConfig() Config {
	return Config{Issuer: "switchd", Audience: "switchd-ops", TokenTTL: TokenTTLMax}
}

// Validate checks the settings.
func (c Config) Validate() error {
	if c.Issuer == "" || c.Audience == "" {
		return fmt.Errorf("%w: issuer and audience are required", ErrConfig)
	}
	if c.TokenTTL <= 0 || c.TokenTTL > TokenTTLMax {
		return fmt.Errorf("%w: token_ttl %s: more than 0, at most %s", ErrConfig, c.TokenTTL, TokenTTLMax)
	}
	if len(c.SigningKeys) > signingKeysMax {
		return fmt.Errorf("%w: signing_keys: at most %d", ErrConfig, signingKeysMax)
	}
	return nil
}

// Sentinel errors of the resource check; package outcome maps each to its
// HTTP problem (401 or 403).
var (
	ErrNoToken           = errors.New("oauth: no bearer token")
	ErrInvalidToken      = errors.New("oauth: invalid token")
	ErrTokenExpired      = errors.New("oauth: token expired")
	ErrWrongAudience     = errors.New("oauth: token is for another audience")
	ErrCertBinding       = errors.New("oauth: token is bound to another certificate")
	ErrClientDisabled    = errors.New("oauth: client disabled or unknown")
	ErrInsufficientScope = errors.New("oauth: insufficient scope")
)
