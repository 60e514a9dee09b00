package webhook

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"os"
)

const (
	// SecretFileBytesMax bounds a secret file's read: a whsec_ secret is
	// under 100 bytes, so anything larger is the wrong file.
	SecretFileBytesMax = 1024
	// SecretBytesMin is the shortest secret accepted (Standard Webhooks
	// asks for 24 to 64 bytes).
	SecretBytesMin = 24
)

// ReadSecretFile reads a signing secret file: Standard Webhooks'
// whsec_<base64>, or raw bytes. It is read at each use, so a rotated file
// takes effect without a restart. Errors name the file, never its
// content.
func ReadSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, SecretFileBytesMax+1))
	if err != nil || len(raw) > SecretFileBytesMax {
		return nil, fmt.Errorf("secret file %s: unreadable or over %d bytes", path, SecretFileBytesMax)
	}
	raw = bytes.TrimSpace(raw)
	if enc, ok := bytes.CutPrefix(raw, []byte("whsec_")); ok {
		if raw, err = base64.StdEncoding.DecodeString(string(enc)); err != nil {
			return nil, fmt.Errorf("secret file %s: whsec_ is not followed by base64", path)
		}
	}
	if len(raw) < SecretBytesMin {
		return nil, fmt.Errorf("secret file %s: under %d bytes", path, SecretBytesMin)
	}
	return raw, nil
}
