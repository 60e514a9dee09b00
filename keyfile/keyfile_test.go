package keyfile

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

// A key file readable by its owner only is read, trimmed; one readable by
// others, too large or missing is refused with an error that names the
// setting and the path, never the content.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return p
	}
	b, err := Read(write("ok", " "+key+"\n", 0o600), "x.kek_file", 1024)
	if err != nil || string(b) != key {
		t.Fatalf("owner-only file: %q %v", b, err)
	}
	p := write("open", key+"\n", 0o644)
	_, err = Read(p, "x.kek_file", 1024)
	if !errors.Is(err, ErrReadable) || !strings.Contains(err.Error(), "x.kek_file "+p) || strings.Contains(err.Error(), key[:16]) {
		t.Fatalf("file readable by others: %v", err)
	}
	p = write("big", strings.Repeat(key, 20), 0o600)
	if _, err = Read(p, "x.kek_file", 1024); err == nil || !strings.Contains(err.Error(), "not a key file") || strings.Contains(err.Error(), key[:16]) {
		t.Fatalf("oversized file: %v", err)
	}
	if _, err = Read(filepath.Join(dir, "absent"), "x.kek_file", 1024); !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "x.kek_file: ") {
		t.Fatalf("missing file: %v", err)
	}
}

// Generate makes an owner-only file of n random bytes in hex, in a
// directory it makes, and never overwrites one that exists.
func TestGenerate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "kek")
	made, err := Generate(p, 32)
	if err != nil || !made {
		t.Fatalf("first: %v %v", made, err)
	}
	b, err := Read(p, "kek", 1024)
	if err != nil {
		t.Fatal(err)
	}
	if raw, err := hex.DecodeString(string(b)); err != nil || len(raw) != 32 {
		t.Fatalf("content %q: %v", b, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(filepath.Dir(p)); fi.Mode().Perm() != 0o700 {
		t.Fatalf("directory mode %v", fi.Mode().Perm())
	}
	made, err = Generate(p, 32)
	again, _ := Read(p, "kek", 1024)
	if err != nil || made || string(again) != string(b) {
		t.Fatalf("second: made %v %v, content changed %v", made, err, string(again) != string(b))
	}
}

// GenerateEncoded writes the encoding of the random bytes (a webhook
// secret's "whsec_" + base64), owner-only, once.
func TestGenerateEncoded(t *testing.T) {
	p := filepath.Join(t.TempDir(), "biller.secret")
	enc := func(b []byte) string { return "whsec_" + base64.StdEncoding.EncodeToString(b) }
	made, err := GenerateEncoded(p, 32, enc)
	if err != nil || !made {
		t.Fatalf("first: %v %v", made, err)
	}
	b, err := Read(p, "reversal_secret_file", 1024)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(string(b), "whsec_"))
	if !strings.HasPrefix(string(b), "whsec_") || err != nil || len(raw) != 32 {
		t.Fatalf("content %q: %v", b, err)
	}
	if made, err := GenerateEncoded(p, 32, enc); err != nil || made {
		t.Fatalf("second: made %v %v", made, err)
	}
}
