package mac

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// Seal and Open round trip; a sealed value opens only for its own purpose
// and record, under its own KEK, and never as a MAC key.
func TestSealOpen(t *testing.T) {
	k, err := NewKEK(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewKEK(bytes.Repeat([]byte{8}, 32))
	pan := []byte("4000000000000002")
	s, err := k.Seal("pan", "p1|k1", pan)
	if err != nil || bytes.Contains(s, pan) {
		t.Fatalf("seal: %v", err)
	}
	if got, err := k.Open("pan", "p1|k1", s); err != nil || !bytes.Equal(got, pan) {
		t.Fatalf("open: %q %v", got, err)
	}
	for name, open := range map[string]func() ([]byte, error){
		"other record":  func() ([]byte, error) { return k.Open("pan", "p1|k2", s) },
		"other purpose": func() ([]byte, error) { return k.Open("secret", "p1|k1", s) },
		"other KEK":     func() ([]byte, error) { return other.Open("pan", "p1|k1", s) },
		"truncated":     func() ([]byte, error) { return k.Open("pan", "p1|k1", s[:len(s)-1]) },
		"as a MAC key": func() ([]byte, error) {
			_, err := k.Unwrap("p1|k1", AlgAESCMAC, "", s)
			return nil, err
		},
	} {
		if _, err := open(); !errors.Is(err, ErrUnwrap) {
			t.Errorf("%s: %v, want ErrUnwrap", name, err)
		}
	}
	if _, err := k.Seal("pan", "x", nil); !errors.Is(err, ErrKey) {
		t.Errorf("empty: %v", err)
	}
	if _, err := k.Seal("pan", "x", make([]byte, SealedBytesMax+1)); !errors.Is(err, ErrKey) {
		t.Errorf("too long: %v", err)
	}
}

// mac.generate makes the KEK file once (0600) and loads the same key on
// the next start; it needs a file to make.
func TestGenerateKEK(t *testing.T) {
	path := t.TempDir() + "/sub/mac.kek"
	k1, err := LoadKEK(Config{KEKFile: path, Generate: true})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kek file: %v %v", fi, err)
	}
	k2, err := LoadKEK(Config{KEKFile: path, Generate: true})
	if err != nil || k2.ID() != k1.ID() {
		t.Fatalf("second start made another key: %v %v", k2, err)
	}
	if err := (Config{Generate: true}).Validate(); !errors.Is(err, ErrConfig) {
		t.Fatalf("generate without a file: %v", err)
	}
}
