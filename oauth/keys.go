package oauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	jose "github.com/go-jose/go-jose/v4"
)

// KeySet holds the token signing keys: the first signs, all verify.
type KeySet struct {
	signer  jose.Signer
	private *ecdsa.PrivateKey
	kid     string
	public  map[string]*ecdsa.PublicKey // by kid
	jwks    []byte                      // the public JWK set, served as is
}

// pemBytesMax bounds a key file.
const pemBytesMax = 64 << 10

// GenerateKeyFile writes a new ECDSA P-256 private key to path (PKCS#8
// PEM, 0600) unless the file exists. It reports whether it wrote one.
func GenerateKeyFile(path string) (bool, error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("oauth: signing key %s: %w", path, err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return false, fmt.Errorf("oauth: generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return false, fmt.Errorf("oauth: encode signing key: %w", err)
	}
	if err := writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return false, fmt.Errorf("oauth: signing key: %w", err)
	}
	return true, nil
}

// LoadKeys reads the PEM files of ECDSA P-256 private keys; files[0]
// signs.
func LoadKeys(files []string) (*KeySet, error) {
	if len(files) == 0 || len(files) > signingKeysMax {
		return nil, fmt.Errorf("%w: 1 to %d signing keys", ErrConfig, signingKeysMax)
	}
	ks := &KeySet{public: map[string]*ecdsa.PublicKey{}}
	var set jose.JSONWebKeySet
	for i, f := range files {
		k, err := readKey(f)
		if err != nil {
			return nil, err
		}
		pub := jose.JSONWebKey{Key: &k.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
		tp, err := pub.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("oauth: signing key %s: %w", f, err)
		}
		// The key id is the key's RFC 7638 thumbprint: the same key has
		// the same id on every node, whatever its file is called.
		pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
		if _, dup := ks.public[pub.KeyID]; dup {
			return nil, fmt.Errorf("%w: signing key %s is listed twice", ErrConfig, f)
		}
		ks.public[pub.KeyID] = &k.PublicKey
		set.Keys = append(set.Keys, pub)
		if i == 0 {
			ks.kid, ks.private = pub.KeyID, k
			ks.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k, KeyID: pub.KeyID}},
				(&jose.SignerOptions{}).WithType("at+jwt"))
			if err != nil {
				return nil, fmt.Errorf("oauth: signing key %s: %w", f, err)
			}
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("oauth: JWK set: %w", err)
	}
	ks.jwks = b
	return ks, nil
}

// KeyID is the id of the key that signs.
func (ks *KeySet) KeyID() string { return ks.kid }

// JWKS is the public key set as served at /.well-known/jwks.json.
func (ks *KeySet) JWKS() []byte { return ks.jwks }

func readKey(path string) (*ecdsa.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("oauth: signing key: %w", err)
	}
	defer f.Close()
	b := make([]byte, pemBytesMax+1)
	n, _ := f.Read(b)
	if n > pemBytesMax {
		return nil, fmt.Errorf("oauth: signing key %s: larger than %d bytes", path, pemBytesMax)
	}
	blk, _ := pem.Decode(b[:n])
	if blk == nil {
		return nil, fmt.Errorf("oauth: signing key %s: no PEM block", path)
	}
	var key any
	switch blk.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("oauth: signing key %s: PEM block %q, want PRIVATE KEY", path, blk.Type)
	}
	if err != nil {
		// x509's message names the structure, not the key's bytes.
		return nil, fmt.Errorf("oauth: signing key %s: %v", path, err)
	}
	k, ok := key.(*ecdsa.PrivateKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("oauth: signing key %s: want an ECDSA P-256 key (ES256)", path)
	}
	return k, nil
}

// writeFileAtomic writes b to path, 0600, through a temporary file and a
// rename, so a reader never sees half a key or half a credentials file.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
