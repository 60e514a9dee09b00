package webhook

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/switchd/switchd/keyfile"
	"github.com/switchd/switchd/store"
)

const (
	kekBytes        = 32 // AES-256
	kekFileBytesMax = 1 << 10
	nonceBytes      = 12
	// secretBytes is a secret's size: Standard Webhooks secrets are
	// "whsec_" + base64 of 24..64 random bytes; 32 is HMAC-SHA256's block
	// half and what Svix makes.
	secretBytes  = 32
	secretPrefix = "whsec_"
)

// KEK wraps endpoint secrets (AES-256-GCM, bound to the endpoint id), so
// the replicated state holds them only wrapped: HMAC signing needs the
// clear secret, which a hash would not give back. Safe for concurrent use.
type KEK struct {
	aead cipher.AEAD
	id   string
}

// NewKEK makes a KEK of 32 bytes.
func NewKEK(b []byte) (*KEK, error) {
	if len(b) != kekBytes {
		return nil, fmt.Errorf("%w: the KEK is %d bytes, want %d (64 hex digits)", ErrConfig, len(b), kekBytes)
	}
	blk, err := aes.NewCipher(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	sum := sha256.Sum256(append([]byte("switchd/webhook-kek-id\x00"), b...))
	return &KEK{aead: aead, id: hex.EncodeToString(sum[:6])}, nil
}

// LoadKEK reads the KEK c names; nil (and no error) when c names none.
func LoadKEK(c Config) (*KEK, error) {
	var text string
	switch {
	case c.KEKFile != "":
		b, err := keyfile.Read(c.KEKFile, "webhooks.kek_file", kekFileBytesMax)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		text = string(b)
		clear(b)
	case c.KEKEnv != "":
		v, ok := os.LookupEnv(c.KEKEnv)
		if !ok {
			return nil, fmt.Errorf("%w: webhooks.kek_env: $%s is not set", ErrConfig, c.KEKEnv)
		}
		text = v
	default:
		return nil, nil
	}
	b, err := hex.DecodeString(strings.TrimSpace(text))
	if err != nil {
		return nil, fmt.Errorf("%w: the webhook KEK is not hex (want 64 hex digits)", ErrConfig)
	}
	defer clear(b)
	return NewKEK(b)
}

// GenerateKEKFile writes a new random KEK to path (0600) unless the file
// exists; made reports whether it wrote one. The demo's KEK is made this
// way under its data dir.
func GenerateKEKFile(path string) (made bool, err error) {
	made, err = keyfile.Generate(path, kekBytes)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return made, nil
}

// ID names the KEK without its material.
func (k *KEK) ID() string { return k.id }

// String names the KEK without its material.
func (k *KEK) String() string { return "webhook KEK " + k.id }

// GoString keeps %#v from printing the cipher state.
func (k *KEK) GoString() string { return k.String() }

func aad(endpoint string) []byte { return []byte("switchd/webhook-secret/v1\x00" + endpoint) }

// NewSecret makes a secret in the Standard Webhooks format: "whsec_" +
// base64 of 32 random bytes. It is shown to the partner once and
// replicated only wrapped (Wrap).
func NewSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("webhook: random secret: %w", err)
	}
	defer clear(b)
	return secretPrefix + base64.StdEncoding.EncodeToString(b), nil
}

// Wrap encrypts secret (the whsec_ form) for endpoint under the KEK.
func (k *KEK) Wrap(endpoint, secret string) (store.WebhookSecret, error) {
	raw, err := secretBytesOf(secret)
	if err != nil {
		return store.WebhookSecret{}, err
	}
	defer clear(raw)
	nonce := make([]byte, nonceBytes, nonceBytes+len(raw)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return store.WebhookSecret{}, fmt.Errorf("webhook: wrap: random nonce: %w", err)
	}
	sealed := k.aead.Seal(nonce, nonce, raw, aad(endpoint))
	return store.WebhookSecret{Wrapped: base64.StdEncoding.EncodeToString(sealed), KEK: k.id}, nil
}

// Unwrap gives back the raw secret bytes Wrap sealed for endpoint.
func (k *KEK) Unwrap(endpoint string, s store.WebhookSecret) ([]byte, error) {
	sealed, err := base64.StdEncoding.DecodeString(s.Wrapped)
	if err != nil || len(sealed) < nonceBytes+k.aead.Overhead() {
		return nil, fmt.Errorf("%w: endpoint %s: malformed", ErrUnwrap, endpoint)
	}
	raw, err := k.aead.Open(nil, sealed[:nonceBytes], sealed[nonceBytes:], aad(endpoint))
	if err != nil {
		return nil, fmt.Errorf("%w: endpoint %s (wrapped under KEK %s, this node has %s)", ErrUnwrap, endpoint, s.KEK, k.id)
	}
	return raw, nil
}

// secretBytesOf decodes a whsec_ secret (the prefix is optional, as the
// Standard Webhooks libraries accept).
func secretBytesOf(secret string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, secretPrefix))
	if err != nil || len(raw) < 24 || len(raw) > 64 {
		return nil, fmt.Errorf("%w: a secret is whsec_ + base64 of 24 to 64 bytes", ErrConfig)
	}
	return raw, nil
}

// CheckSecret refuses a secret that is not in the Standard Webhooks
// format (whsec_ + base64 of 24..64 bytes), for tools that take one.
func CheckSecret(secret string) error {
	raw, err := secretBytesOf(secret)
	clear(raw)
	return err
}
