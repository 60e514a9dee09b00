package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// TLSConfig secures node-to-node traffic: raft and forwarding share one
// listener (transport.go), so one mutually authenticated TLS session
// carries both. Both ends must present a certificate signed by the CA.
type TLSConfig struct {
	// Mode: "" or "off" (plain TCP: tests, a single node), "dev" (a
	// development CA under DevCADir, created on first start, signs a fresh
	// certificate for this node at every start), "files" (CertFile,
	// KeyFile and CAFile from config: production).
	Mode string `yaml:"mode"`
	// DevCADir holds the development CA (ca.pem: certificate and key).
	// Every node of a dev cluster must point at the same directory.
	// Empty: "ca" beside the node's raft directory.
	DevCADir string `yaml:"dev_ca_dir"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`
}

const (
	devCAValidity   = 10 * 365 * 24 * time.Hour
	devCertValidity = 365 * 24 * time.Hour
	// nodeServerName is in every dev node certificate besides its IP, so
	// a node can be reached by any loopback or host address in a demo.
	nodeServerName = "switchd-node"
)

func (t TLSConfig) validate() error {
	switch t.Mode {
	case "", "off", "dev":
	case "files":
		if t.CertFile == "" || t.KeyFile == "" || t.CAFile == "" {
			return errors.New("mode files needs cert_file, key_file and ca_file")
		}
	default:
		return fmt.Errorf("mode %q is not one of off, dev, files", t.Mode)
	}
	return nil
}

// tlsConfigs builds the server and client TLS configs (nil, nil: plain).
func (c Config) tlsConfigs(logger *slog.Logger) (server, client *tls.Config, err error) {
	var cert tls.Certificate
	pool := x509.NewCertPool()
	switch c.TLS.Mode {
	case "", "off":
		return nil, nil, nil
	case "dev":
		dir := c.TLS.DevCADir
		if dir == "" {
			dir = filepath.Join(filepath.Dir(c.Dir), "ca")
		}
		ca, caKey, created, err := loadOrCreateDevCA(dir)
		if err != nil {
			return nil, nil, fmt.Errorf("cluster: dev CA: %w", err)
		}
		if created {
			if logger != nil {
				logger.Warn("created a DEVELOPMENT node CA; use tls.mode files in production", "dir", dir)
			}
		}
		if cert, err = devNodeCert(c.NodeID, c.RaftAddr, ca, caKey); err != nil {
			return nil, nil, fmt.Errorf("cluster: dev node certificate: %w", err)
		}
		pool.AddCert(ca)
	case "files":
		if cert, err = tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile); err != nil {
			return nil, nil, fmt.Errorf("cluster: node certificate: %w", err)
		}
		b, err := os.ReadFile(c.TLS.CAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("cluster: node CA: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, nil, fmt.Errorf("cluster: node CA %s holds no certificate", c.TLS.CAFile)
		}
	}
	server = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}
	client = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
	}
	return server, client, nil
}

// clientFor is cfg for dialling addr: the peer's certificate must name
// the host we dial (an IP or a DNS name in its SANs).
func clientFor(cfg *tls.Config, addr string) *tls.Config {
	c := cfg.Clone()
	if c.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		c.ServerName = host
	}
	return c
}

// loadOrCreateDevCA reads dir/ca.pem or creates it. Creation writes a
// temporary file and links it into place, so nodes starting at the same
// time all end up with the one CA that won.
func loadOrCreateDevCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, bool, error) {
	path := filepath.Join(dir, "ca.pem")
	if ca, key, err := readDevCA(path); err == nil {
		return ca, key, false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, false, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, false, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "switchd development node CA", Organization: []string{"switchd (DEVELOPMENT ONLY)"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(devCAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, false, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, false, err
	}
	tmp, err := os.CreateTemp(dir, "ca-*.tmp")
	if err != nil {
		return nil, nil, false, err
	}
	defer os.Remove(tmp.Name())
	err = errors.Join(
		pem.Encode(tmp, &pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.Encode(tmp, &pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		tmp.Sync(), tmp.Close())
	if err != nil {
		return nil, nil, false, err
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, nil, false, err
	}
	ca, key2, err := readDevCA(path) // ours, or the one another node linked first
	return ca, key2, err == nil, err
}

func readDevCA(path string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var ca *x509.Certificate
	var key *ecdsa.PrivateKey
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "CERTIFICATE":
			ca, err = x509.ParseCertificate(blk.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(blk.Bytes)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if ca == nil || key == nil {
		return nil, nil, fmt.Errorf("%s: want a certificate and an EC private key", path)
	}
	return ca, key, nil
}

// devNodeCert issues this node a certificate for both ends of mutual TLS,
// naming its raft host, loopback and nodeServerName.
func devNodeCert(nodeID, raftAddr string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: nodeID, Organization: []string{"switchd (DEVELOPMENT ONLY)"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(devCertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{nodeServerName, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if host, _, err := net.SplitHostPort(raftAddr); err == nil {
		if ip := net.ParseIP(host); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if host != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, host)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}
