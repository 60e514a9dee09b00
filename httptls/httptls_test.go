package httptls_test

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/switchd/switchd/api"
	"github.com/switchd/switchd/httptls"
)

// The listener's files: a working pair with and without a client CA,
// and each kind of bad file refused with ErrFiles.
func TestServerConfig(t *testing.T) {
	f, ca, err := api.DevTLS(filepath.Join(t.TempDir(), "dev"))
	if err != nil {
		t.Fatal(err)
	}
	tc, err := httptls.ServerConfig(f.CertFile, f.KeyFile, "")
	if err != nil || tc.MinVersion != tls.VersionTLS12 || tc.ClientAuth != tls.NoClientCert {
		t.Fatalf("no client CA: %+v %v", tc, err)
	}
	if tc, err = httptls.ServerConfig(f.CertFile, f.KeyFile, ca); err != nil || tc.ClientAuth != tls.VerifyClientCertIfGiven || tc.ClientCAs == nil {
		t.Fatalf("client CA: %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.pem")
	os.WriteFile(junk, []byte("not a certificate"), 0o600)
	for name, args := range map[string][3]string{
		"missing key":       {f.CertFile, junk, ""},
		"missing cert":      {filepath.Join(t.TempDir(), "none.pem"), f.KeyFile, ""},
		"missing client CA": {f.CertFile, f.KeyFile, filepath.Join(t.TempDir(), "none.pem")},
		"client CA no PEM":  {f.CertFile, f.KeyFile, junk},
	} {
		if _, err := httptls.ServerConfig(args[0], args[1], args[2]); !errors.Is(err, httptls.ErrFiles) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
