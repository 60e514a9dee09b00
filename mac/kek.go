package mac

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/switchd/switchd/keyfile"
)

// A KEK (key-encryption key) keeps MAC keys encrypted wherever they rest:
// the replicated state, snapshots, the raft log. It comes from the node's
// config (a file readable by its owner only, or an environment variable),
// is the same on every node of a cluster, and never enters the replicated
// state itself; a wrapped key names the KEK it is wrapped under by the
// KEK's check value.
//
// Wrapping is AES-256-GCM with a random 96-bit nonce and, as additional
// data, what the key is for (partner, algorithm, padding): a wrapped key
// copied onto another partner, or relabelled as another algorithm, does not
// unwrap. GCM rather than RFC 3394 key wrap because the binding to the
// partner needs the additional data, which RFC 3394 has no place for.

// kekBytes is the KEK's size: AES-256.
const kekBytes = 32

// kekFileBytesMax bounds a KEK file: 64 hex digits and a newline, with room.
const kekFileBytesMax = 1 << 10

// WrappedBytesMin and WrappedBytesMax bound a wrapped key: nonce, 16 to 32
// bytes of key, GCM tag.
const (
	nonceBytes      = 12
	gcmTagBytes     = 16
	WrappedBytesMin = nonceBytes + 16 + gcmTagBytes
	WrappedBytesMax = nonceBytes + 32 + gcmTagBytes
)

var (
	// ErrNoKEK: MAC keys are configured but this node has no KEK (mac.kek_file
	// or mac.kek_env), so it can neither wrap nor unwrap them.
	ErrNoKEK = errors.New("mac: no key-encryption key configured (mac.kek_file or mac.kek_env)")
	// ErrUnwrap: a wrapped key does not open under this KEK for this
	// partner and algorithm (another KEK, or the record was tampered with).
	ErrUnwrap = errors.New("mac: wrapped key does not unwrap")
	// ErrConfig: the KEK settings or the KEK itself are unusable.
	ErrConfig = errors.New("mac: invalid config")
)

// Config says where the node's KEK comes from. Both empty: no KEK, and
// partners that require a MAC are declined on this node (96) until it has
// one.
type Config struct {
	// KEKFile holds the KEK as 64 hex digits (32 bytes); it must not be
	// readable by group or others.
	KEKFile string `yaml:"kek_file"`
	// KEKEnv names an environment variable holding the KEK instead.
	KEKEnv string `yaml:"kek_env"`
	// Generate makes KEKFile (0600, 32 random bytes) when it does not
	// exist: for the demo and development only, where one node makes its
	// own. A cluster shares one KEK, made and distributed by its operators.
	Generate bool `yaml:"generate"`
}

// DefaultConfig is no KEK: the demo has no MAC partners.
func DefaultConfig() Config { return Config{} }

// Validate refuses both sources at once: which one wins would be a guess.
func (c Config) Validate() error {
	if c.KEKFile != "" && c.KEKEnv != "" {
		return fmt.Errorf("%w: mac.kek_file and mac.kek_env are both set; keep one", ErrConfig)
	}
	if c.Generate && c.KEKFile == "" {
		return fmt.Errorf("%w: mac.generate needs mac.kek_file (where to make it)", ErrConfig)
	}
	return nil
}

// KEK wraps and unwraps MAC keys. It is safe for concurrent use; its
// String shows its check value only.
type KEK struct {
	aead cipher.AEAD
	id   string
	rand io.Reader
}

// NewKEK makes a KEK of 32 bytes.
func NewKEK(b []byte) (*KEK, error) {
	if len(b) != kekBytes {
		return nil, fmt.Errorf("%w: the KEK is %d bytes, want %d (64 hex digits)", ErrConfig, len(b), kekBytes)
	}
	blk, _ := aes.NewCipher(b) // 32 bytes: cannot fail
	aead, _ := cipher.NewGCM(blk)
	// Its id is its own check value, as an AES-CMAC key: operators compare
	// it across nodes without seeing the key.
	k, err := NewKey(AlgAESCMAC, "", b)
	if err != nil {
		return nil, err
	}
	return &KEK{aead: aead, id: k.KCV(), rand: rand.Reader}, nil
}

// LoadKEK reads the KEK c names; nil (and no error) when c names none.
func LoadKEK(c Config) (*KEK, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Generate {
		if _, err := keyfile.Generate(c.KEKFile, kekBytes); err != nil {
			return nil, fmt.Errorf("%w: mac.generate: %w", ErrConfig, err)
		}
	}
	var text string
	switch {
	case c.KEKFile != "":
		b, err := keyfile.Read(c.KEKFile, "mac.kek_file", kekFileBytesMax)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		text = string(b)
		clear(b)
	case c.KEKEnv != "":
		v, ok := os.LookupEnv(c.KEKEnv)
		if !ok {
			return nil, fmt.Errorf("%w: mac.kek_env: $%s is not set", ErrConfig, c.KEKEnv)
		}
		text = v
	default:
		return nil, nil
	}
	b, err := hex.DecodeString(strings.TrimSpace(text))
	if err != nil {
		// Not the decoder's message: it quotes the offending byte.
		return nil, fmt.Errorf("%w: the KEK is not hex (want 64 hex digits)", ErrConfig)
	}
	return NewKEK(b)
}

// ID is the KEK's check value (6 hex digits): wrapped keys name the KEK
// they are wrapped under by it.
func (k *KEK) ID() string { return k.id }

// String names the KEK without its material.
func (k *KEK) String() string { return "KEK " + k.id }

// GoString keeps %#v from printing the cipher state.
func (k *KEK) GoString() string { return k.String() }

// aad binds a wrapped key to what it is for.
func aad(partner string, alg Alg, pad Padding) []byte {
	return []byte("switchd/mac-key/v1\x00" + partner + "\x00" + string(alg) + "\x00" + string(pad))
}

// Wrap encrypts material, a key of alg and pad for partner, under the KEK:
// nonce ‖ ciphertext ‖ tag. It checks the material first (NewKey) and
// returns the key's KCV with it.
func (k *KEK) Wrap(partner string, alg Alg, pad Padding, material []byte) (wrapped []byte, kcv string, err error) {
	key, err := NewKey(alg, pad, material)
	if err != nil {
		return nil, "", err
	}
	nonce := make([]byte, nonceBytes, nonceBytes+len(material)+gcmTagBytes)
	if _, err := io.ReadFull(k.rand, nonce); err != nil {
		return nil, "", fmt.Errorf("mac: wrap: random nonce: %w", err)
	}
	return k.aead.Seal(nonce, nonce, material, aad(partner, alg, pad)), key.KCV(), nil
}

// Unwrap decrypts a key Wrap made for partner, alg and pad, and sets it up.
func (k *KEK) Unwrap(partner string, alg Alg, pad Padding, wrapped []byte) (*Key, error) {
	if len(wrapped) < WrappedBytesMin || len(wrapped) > WrappedBytesMax {
		return nil, fmt.Errorf("%w: %d bytes", ErrUnwrap, len(wrapped))
	}
	material, err := k.aead.Open(nil, wrapped[:nonceBytes], wrapped[nonceBytes:], aad(partner, alg, pad))
	if err != nil {
		return nil, fmt.Errorf("%w: partner %s, %s (wrapped under another KEK than %s?)", ErrUnwrap, partner, alg, k.id)
	}
	defer clear(material)
	return NewKey(alg, pad, material)
}

// SealedBytesMax bounds what Seal accepts: card numbers and secrets of
// that size, never bulk data.
const SealedBytesMax = 256

// Seal encrypts plaintext under the KEK for purpose ("pan" for card
// numbers in forwarded requests and SAF entries) bound to context (the
// record it belongs to), so a sealed value cannot be moved to another
// record or used for another purpose: nonce ‖ ciphertext ‖ tag. The
// additional data's domain differs from MAC keys', so neither can be
// unwrapped as the other.
func (k *KEK) Seal(purpose, context string, plaintext []byte) ([]byte, error) {
	if len(plaintext) == 0 || len(plaintext) > SealedBytesMax {
		return nil, fmt.Errorf("%w: seal %d bytes (1..%d)", ErrKey, len(plaintext), SealedBytesMax)
	}
	nonce := make([]byte, nonceBytes, nonceBytes+len(plaintext)+gcmTagBytes)
	if _, err := io.ReadFull(k.rand, nonce); err != nil {
		return nil, fmt.Errorf("mac: seal: random nonce: %w", err)
	}
	return k.aead.Seal(nonce, nonce, plaintext, sealAAD(purpose, context)), nil
}

// Open decrypts what Seal made for purpose and context.
func (k *KEK) Open(purpose, context string, sealed []byte) ([]byte, error) {
	if len(sealed) < nonceBytes+gcmTagBytes+1 || len(sealed) > nonceBytes+gcmTagBytes+SealedBytesMax {
		return nil, fmt.Errorf("%w: sealed value of %d bytes", ErrUnwrap, len(sealed))
	}
	out, err := k.aead.Open(nil, sealed[:nonceBytes], sealed[nonceBytes:], sealAAD(purpose, context))
	if err != nil {
		return nil, fmt.Errorf("%w: %s sealed for another record or under another KEK than %s", ErrUnwrap, purpose, k.id)
	}
	return out, nil
}

func sealAAD(purpose, context string) []byte {
	return []byte("switchd/sealed/v1\x00" + purpose + "\x00" + context)
}
