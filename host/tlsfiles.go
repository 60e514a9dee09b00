package host

import (
	"crypto/tls"
	"fmt"
	"os"
	"strings"
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

// filesStamp says when t's files last changed: their sizes and
// modification times; ok is false when one cannot be read.
func filesStamp(t *TLSConfig) (stamp string, ok bool) {
	var b strings.Builder
	for _, p := range []string{t.CAFile, t.CertFile, t.KeyFile} {
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return "", false
		}
		fmt.Fprintf(&b, "%d.%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String(), true
}
