package webhook

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A secret file holds whsec_<base64> (Standard Webhooks) or raw bytes;
// a short secret, bad base64, an oversized or missing file is refused
// with an error that names the file and never holds its content.
func TestReadSecretFile(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for name, content := range map[string]string{
		"whsec": "whsec_" + base64.StdEncoding.EncodeToString(secret) + "\n",
		"raw":   "  " + string(secret) + "\n",
	} {
		got, err := ReadSecretFile(write(name, content))
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("%s: %q %v", name, got, err)
		}
	}
	for name, content := range map[string]string{
		"short":      "short-secret-content",
		"bad base64": "whsec_not*base64*secret-content-here",
		"oversized":  strings.Repeat("x", SecretFileBytesMax+1),
	} {
		p := write(strings.ReplaceAll(name, " ", "-"), content)
		_, err := ReadSecretFile(p)
		if err == nil || !strings.Contains(err.Error(), p) || strings.Contains(err.Error(), content[:12]) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if _, err := ReadSecretFile(filepath.Join(dir, "absent")); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("absent: %v", err)
	}
}
