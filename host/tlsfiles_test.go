package host

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/switchd/switchd/internal/testpki"
)

// TLSFiles reads its files again when they change: the same
// configuration while they do not, the new certificate once they do; new
// files that do not load, or a file missing mid-rotation, keep the one in
// use (with an error for the first).
func TestTLSFilesReload(t *testing.T) {
	pki := testpki.New(t, "host-ca")
	c1, k1 := pki.Issue(t, "switchd-1", false)
	c2, k2 := pki.Issue(t, "switchd-2", false)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "c.key")
	install := func(c, k string) { testpki.Install(t, c, k, cert, key) }
	install(c1, k1)
	f, err := LoadTLSFiles(&TLSConfig{CAFile: pki.CAFile, CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	first, changed, err := f.Config()
	if err != nil || changed || len(first.Certificates) != 1 {
		t.Fatalf("unchanged files: changed %v, %v", changed, err)
	}

	install(c2, k2)
	second, changed, err := f.Config()
	if err != nil || !changed || bytes.Equal(second.Certificates[0].Certificate[0], first.Certificates[0].Certificate[0]) {
		t.Fatalf("rotated files: changed %v, %v, same certificate %v", changed, err,
			bytes.Equal(second.Certificates[0].Certificate[0], first.Certificates[0].Certificate[0]))
	}
	if again, changed, _ := f.Config(); changed || again != second {
		t.Fatal("read again with nothing changed")
	}

	os.WriteFile(key, []byte("not a key"), 0o600)
	kept, changed, err := f.Config()
	if err == nil || changed || kept != second {
		t.Fatalf("files that do not load: changed %v, err %v, kept %v", changed, err, kept == second)
	}
	os.Remove(key)
	if kept, changed, err := f.Config(); err != nil || changed || kept != second {
		t.Fatalf("a file missing: changed %v, err %v", changed, err)
	}
}
