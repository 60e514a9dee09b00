package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// devCertValidity is how long the demo's certificates live: a demo data
// dir older than that gets new ones on the next start.
const devCertValidity = 90 * 24 * time.Hour

// DevTLS makes (once) a development CA and a server certificate for
// 127.0.0.1 and localhost under dir, and returns the files: what the demo
// serves the partner API with. ca is the CA certificate clients trust
// (curl --cacert). Never for production: the CA key sits next to it.
func DevTLS(dir string) (cfg TLSConfig, ca string, err error) {
	cfg = TLSConfig{CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server.key")}
	ca = filepath.Join(dir, "ca.pem")
	if ok, err := fresh(cfg.CertFile); err != nil || ok {
		return cfg, ca, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return cfg, ca, fmt.Errorf("api: dev TLS: %w", err)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return cfg, ca, err
	}
	caTmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "switchd development CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(devCertValidity), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return cfg, ca, err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return cfg, ca, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "switchd partner API"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(devCertValidity),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return cfg, ca, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return cfg, ca, err
	}
	caKDER, err := x509.MarshalPKCS8PrivateKey(caKey)
	if err != nil {
		return cfg, ca, err
	}
	for _, f := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{
		{filepath.Join(dir, "ca.key"), "PRIVATE KEY", caKDER, 0o600},
		{ca, "CERTIFICATE", caDER, 0o644},
		{cfg.KeyFile, "PRIVATE KEY", kder, 0o600},
		{cfg.CertFile, "CERTIFICATE", der, 0o644}, // last: its presence says the set is whole
	} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			return cfg, ca, fmt.Errorf("api: dev TLS: %w", err)
		}
	}
	return cfg, ca, nil
}

// fresh reports whether the certificate at path exists and is valid for
// another day.
func fresh(path string) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("api: dev TLS: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return false, nil
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return false, nil
	}
	return time.Until(c.NotAfter) > 24*time.Hour, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n
}
