package oauth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
)

// Client secrets are hashed with Argon2id (RFC 9106) at OWASP's minimum
// (19 MiB, 2 passes, 1 lane): a stolen hash costs an attacker that much
// memory per guess, and a secret is 256 random bits anyway. Only the PHC
// string ($argon2id$v=19$m=…,t=…,p=…$salt$hash) is replicated.
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonKeyBytes  = 32
	argonSaltBytes = 16
	// secretBytes of randomness in a generated secret.
	secretBytes = 32
	// SecretPrefix marks switchd client secrets so that secret scanners
	// can find a leaked one.
	SecretPrefix = "swcs_"
	// secretBytesMax bounds a presented secret before it is hashed.
	secretBytesMax = 256
)

// NewSecret is a new client secret: SecretPrefix and 256 random bits.
func NewSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("oauth: random secret: %w", err)
	}
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// HashSecret is secret's PHC string with a fresh salt.
func HashSecret(secret string) (string, error) {
	salt := make([]byte, argonSaltBytes)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("oauth: random salt: %w", err)
	}
	sum := argon2.IDKey([]byte(secret), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyBytes)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemoryKiB, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(sum)), nil
}

var errHash = errors.New("oauth: not an argon2id hash")

// checkSecret reports whether secret matches the PHC string hash, in time
// independent of where they differ. The parameters are read from the hash,
// so hashes made with other costs keep working.
func checkSecret(hash, secret string) (bool, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errHash
	}
	var v int
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false, errHash
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || m > 256*1024 || t == 0 || t > 16 || p == 0 {
		return false, errHash
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false, errHash
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(want) == 0 || len(want) > 64 {
		return false, errHash
	}
	got := argon2.IDKey([]byte(secret), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// dummyHash is checked against when the client is unknown, so that the
// answer takes as long as for a known client with a wrong secret.
var dummyHash = sync.OnceValue(func() string {
	h, err := HashSecret("unknown client")
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return h
})
