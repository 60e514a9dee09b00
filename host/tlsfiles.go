package host

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"sync"
)

// TLSFiles is the client side of TLS read from files (TLSConfig), read
// again when they change so a certificate rotated in place needs no
// restart: a host's connections take the new one when they next connect
// (established ones stay), an HTTP biller's client is made again
// (forward/http.go). Safe for concurrent use.
type TLSFiles struct {
	cfg TLSConfig

	mu    sync.Mutex
	tc    *tls.Config
	stamp string
}

// LoadTLSFiles reads the files t names.
func LoadTLSFiles(t *TLSConfig) (*TLSFiles, error) {
	stamp, _ := filesStamp(t)
	tc, err := ClientTLS(t)
	if err != nil {
		return nil, err
	}
	return &TLSFiles{cfg: *t, tc: tc, stamp: stamp}, nil
}

// Config is the TLS configuration for a new connection. When the files
// changed since they were last read they are read again: changed says
// so; if they do not load (a rotation half done), the configuration in
// use stays and err says why.
func (f *TLSFiles) Config() (tc *tls.Config, changed bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	stamp, ok := filesStamp(&f.cfg)
	if !ok || stamp == f.stamp {
		return f.tc, false, nil
	}
	next, err := ClientTLS(&f.cfg)
	if err != nil {
		return f.tc, false, fmt.Errorf("tls files changed but do not load, the ones in use stay: %w", err)
	}
	f.tc, f.stamp = next, stamp
	return next, true, nil
}

// filesStamp is a digest of t's files' contents (file modification
// times are too coarse: two writes in the same few milliseconds share
// one); ok is false when one cannot be read. The files are small
// (certificates and a key, bounded by tlsFileBytesMax).
func filesStamp(t *TLSConfig) (stamp string, ok bool) {
	h := sha256.New()
	for _, p := range []string{t.CAFile, t.CertFile, t.KeyFile} {
		if p == "" {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			return "", false
		}
		n, err := io.Copy(h, io.LimitReader(f, tlsFileBytesMax))
		f.Close()
		if err != nil {
			return "", false
		}
		fmt.Fprintf(h, "\x00%d\x00", n)
	}
	return string(h.Sum(nil)), true
}

// tlsFileBytesMax bounds the part of a TLS file that is hashed: a CA
// bundle of a few hundred certificates.
const tlsFileBytesMax = 1 << 20
