// Package httptls holds the TLS setup of switchd's HTTPS listeners (the
// ops API and the partner API): a certificate and key from files, TLS 1.2
// or later, and, with a client CA bundle, client certificates verified
// when a client shows one (RFC 8705 tls_client_auth, partners' pins).
package httptls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// ErrFiles is wrapped by every error: the files do not make a listener.
var ErrFiles = errors.New("tls")

// ServerConfig loads certFile and keyFile and, when clientCAFile is set,
// the CAs client certificates must chain to.
func ServerConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFiles, err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrFiles, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrFiles, clientCAFile)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return tc, nil
}
