// Package simtest starts simulated hosts for tests of other packages (apart
// from switchdtest, which packages the simulators import would cycle on).
package simtest

import (
	"testing"

	"github.com/switchd/switchd/sim"
)

// Issuer starts a simulated issuer on a free loopback port, approving
// (it signs connections on before a test switches its mode), and closes
// it at cleanup.
func Issuer(t testing.TB) *sim.Issuer {
	t.Helper()
	cfg := sim.DefaultIssuerConfig()
	cfg.Listen = "127.0.0.1:0"
	iss, err := sim.NewIssuer(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { iss.Close() })
	return iss
}
