package mac

import (
	"bytes"
	"errors"
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
