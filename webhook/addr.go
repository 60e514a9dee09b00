package webhook

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"syscall"
)

// notPublic are ranges that IsPrivate, IsLoopback and friends do not
// cover but that no partner's public endpoint lives in (RFC 6890).
var notPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"), // NAT64 could reach an internal IPv4
	netip.MustParsePrefix("2001:db8::/32"),
}

// Guard decides which endpoint URLs and addresses deliveries may go to:
// https to public unicast addresses, plus what the config allows (http
// to allow_http_hosts, dialling allow_networks). It is checked at
// registration and again on every dial, after name resolution, so a name
// that later resolves to an internal address is still refused (DNS
// rebinding).
type Guard struct {
	httpHosts []string
	nets      []netip.Prefix
	resolver  *net.Resolver
}

// NewGuard builds the rules of c (c is validated).
func NewGuard(c Config) *Guard {
	g := &Guard{resolver: net.DefaultResolver}
	for _, h := range c.AllowHTTPHosts {
		g.httpHosts = append(g.httpHosts, strings.ToLower(h))
	}
	for _, n := range c.AllowNetworks {
		g.nets = append(g.nets, netip.MustParsePrefix(n).Masked())
	}
	return g
}

// Allowed reports whether a delivery may connect to a.
func (g *Guard) Allowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, n := range g.nets {
		if n.Contains(a) {
			return true
		}
	}
	if !a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() {
		return false
	}
	for _, n := range notPublic {
		if n.Contains(a) {
			return false
		}
	}
	return true
}

// CheckURL refuses (ErrURL) an endpoint URL deliveries could not go to:
// not https (or http to an allowed host), user info, a fragment, or a
// host that is or resolves to an address not Allowed.
func (g *Guard) CheckURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || !u.IsAbs() {
		return fmt.Errorf("%w: not an absolute URL", ErrURL)
	}
	host := strings.ToLower(u.Hostname())
	switch {
	case u.User != nil:
		return fmt.Errorf("%w: no user info in the URL", ErrURL)
	case u.Fragment != "":
		return fmt.Errorf("%w: no fragment", ErrURL)
	case u.Scheme == "https":
	case u.Scheme == "http" && slices.Contains(g.httpHosts, host):
	case u.Scheme == "http":
		return fmt.Errorf("%w: https required (http only to %s)", ErrURL, strings.Join(g.httpHosts, ", "))
	default:
		return fmt.Errorf("%w: scheme %q (https required)", ErrURL, u.Scheme)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if !g.Allowed(a) {
			return fmt.Errorf("%w: address %s is not one deliveries may go to", ErrURL, a)
		}
		return nil
	}
	addrs, err := g.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return fmt.Errorf("%w: host %q does not resolve", ErrURL, host)
	}
	for _, a := range addrs {
		if !g.Allowed(a) {
			return fmt.Errorf("%w: host %q resolves to %s, not an address deliveries may go to", ErrURL, host, a)
		}
	}
	return nil
}

// control is the dialer's check of the address it is about to connect
// to, after resolution.
func (g *Guard) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrAddressNotAllowed, address)
	}
	if !g.Allowed(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrAddressNotAllowed, ap.Addr())
	}
	return nil
}
