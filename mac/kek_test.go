package mac

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testKEK = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

func TestWrapUnwrap(t *testing.T) {
	kek, err := NewKEK(unhex(t, testKEK))
	if err != nil {
		t.Fatal(err)
	}
	material := unhex(t, "7962D9ECE03D1ACD4C76089DCE131543")
	w, kcv, err := kek.Wrap("p1", AlgX919, PadMethod1, material)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(w, material[:8]) || len(w) < WrappedBytesMin || len(w) > WrappedBytesMax {
		t.Fatalf("wrapped %x", w)
	}
	k, err := kek.Unwrap("p1", AlgX919, PadMethod1, w)
	if err != nil {
		t.Fatal(err)
	}
	if k.KCV() != kcv || kcv != mustKey(t, AlgX919, PadMethod1, "7962D9ECE03D1ACD4C76089DCE131543").KCV() {
		t.Fatalf("KCV %s after unwrap, %s from wrap", k.KCV(), kcv)
	}
	// Two wraps of one key differ (random nonce), both unwrap.
	w2, _, _ := kek.Wrap("p1", AlgX919, PadMethod1, material)
	if bytes.Equal(w, w2) {
		t.Fatal("two wraps are the same bytes")
	}
	// Bound to partner, algorithm and padding; tamper-evident; KEK-bound.
	other, _ := NewKEK(bytes.Repeat([]byte{7}, 32))
	flipped := bytes.Clone(w)
	flipped[len(flipped)-1] ^= 1
	for name, fn := range map[string]func() (*Key, error){
		"other partner": func() (*Key, error) { return kek.Unwrap("p2", AlgX919, PadMethod1, w) },
		"other padding": func() (*Key, error) { return kek.Unwrap("p1", AlgX919, PadMethod2, w) },
		"other alg":     func() (*Key, error) { return kek.Unwrap("p1", AlgAESCMAC, "", w) },
		"tampered":      func() (*Key, error) { return kek.Unwrap("p1", AlgX919, PadMethod1, flipped) },
		"other KEK":     func() (*Key, error) { return other.Unwrap("p1", AlgX919, PadMethod1, w) },
		"short":         func() (*Key, error) { return kek.Unwrap("p1", AlgX919, PadMethod1, w[:20]) },
	} {
		if k, err := fn(); !errors.Is(err, ErrUnwrap) || k != nil {
			t.Errorf("%s: %v, %v", name, k, err)
		}
	}
	// Bad material is refused before anything is wrapped.
	if _, _, err := kek.Wrap("p1", AlgX919, PadMethod1, material[:8]); !errors.Is(err, ErrKey) {
		t.Errorf("short key wrapped: %v", err)
	}
	if s := kek.String() + " " + kek.GoString(); !strings.Contains(s, kek.ID()) || strings.Contains(s, "0001020304") {
		t.Errorf("KEK prints as %q", s)
	}
}

func TestLoadKEK(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "kek")
	if err := os.WriteFile(good, []byte(testKEK+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := LoadKEK(Config{KEKFile: good})
	if err != nil || k == nil {
		t.Fatalf("%v %v", k, err)
	}
	t.Setenv("SWITCHD_TEST_KEK", testKEK)
	ke, err := LoadKEK(Config{KEKEnv: "SWITCHD_TEST_KEK"})
	if err != nil || ke.ID() != k.ID() {
		t.Fatalf("from env: %v %v", ke, err)
	}
	if k, err := LoadKEK(DefaultConfig()); k != nil || err != nil {
		t.Fatalf("no config: %v %v", k, err)
	}
	open := filepath.Join(dir, "open")
	os.WriteFile(open, []byte(testKEK), 0o644)
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte(testKEK[:32]), 0o600)
	nothex := filepath.Join(dir, "nothex")
	os.WriteFile(nothex, []byte("zz"+testKEK[2:]), 0o600)
	for name, c := range map[string]Config{
		"both":         {KEKFile: good, KEKEnv: "SWITCHD_TEST_KEK"},
		"world-read":   {KEKFile: open},
		"short":        {KEKFile: short},
		"not hex":      {KEKFile: nothex},
		"missing file": {KEKFile: filepath.Join(dir, "none")},
		"unset env":    {KEKEnv: "SWITCHD_TEST_KEK_UNSET"},
	} {
		k, err := LoadKEK(c)
		if !errors.Is(err, ErrConfig) || k != nil {
			t.Errorf("%s: %v %v", name, k, err)
		}
		if err != nil && strings.Contains(err.Error(), testKEK[4:20]) {
			t.Errorf("%s: error shows the KEK: %v", name, err)
		}
	}
}
