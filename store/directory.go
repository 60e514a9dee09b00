package store

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// The directory is the replicated routing state: partners and routing
// rules. It lives in pebble (one record each, changed only by admin
// commands, see admin.go) and, for the request path, in an immutable
// in-memory index that the store swaps after every batch that changed it.
// A node routes by what it has applied: no cache, no TTL.

// Wildcard matches any value in a route's key fields.
const Wildcard = "*"

// DestinationLedger is the on-us destination: the switch posts the
// transfer in its own ledger. Outbound hosts (issue 13) add others.
const DestinationLedger = "ledger"

// Payer types the switch knows by name. Others are data: any token of
// lower-case letters, digits and '_' up to payerTypeBytesMax is accepted.
const (
	PayerBankCustomer    = "bank_customer"
	PayerMFSUser         = "mfs_user"
	PayerOTCAgent        = "otc_agent"
	PayerCardOnFile      = "card_on_file"
	PayerWalletAggregtor = "wallet_aggregator"
)

const (
	payerTypeBytesMax = 32
	billTypeBytesMax  = 32
	// routesMax bounds the routing table (a bank's has a few hundred
	// rows); a whole table must fit one admin command (adminBytesMax).
	routesMax = 15_000
	// partnerListMax bounds a partner's acquirer ids, lanes and payer types.
	partnerListMax = 64
	// certPinsLiveMax is how many of a partner's pins may be live (before
	// their not-after) at once: the certificate in use and its successor
	// while one rotates to the other. A third is a mistake (or a key
	// nobody retired): expire or remove one first.
	certPinsLiveMax = 2
	// certPinsMax bounds the pins a record keeps, live or past their
	// not-after (those name nobody; the audit chain keeps the history).
	certPinsMax = 8
)

// Route sends requests with a key (bill type, payer type, partner) to a
// destination; "*" in a key field matches anything. The most specific
// matching rule wins (see Directory.Lookup).
type Route struct {
	ID        string `json:"id"`
	BillType  string `json:"bill_type"`
	PayerType string `json:"payer_type"`
	Partner   string `json:"partner"`
	// Destination is where the request goes: "ledger" (on-us).
	Destination string `json:"destination"`
	// SettlementAccount is credited (debited for refunds); empty means the
	// partner's settlement account.
	SettlementAccount string `json:"settlement_account,omitempty"`
}

// RouteKey is what a request is routed by.
type RouteKey struct {
	BillType  string
	PayerType string
	Partner   string
}

// Key is the rule's key with empty fields read as "*".
func (r *Route) Key() RouteKey {
	return RouteKey{BillType: wild(r.BillType), PayerType: wild(r.PayerType), Partner: wild(r.Partner)}
}

func wild(s string) string {
	if s == "" {
		return Wildcard
	}
	return s
}

// Partner is an institution that sends us messages.
type Partner struct {
	ID string `json:"id"`
	// AcquirerIDs are the ISO 8583 field 32 values the partner may send
	// (compared without leading zeros).
	AcquirerIDs []string `json:"acquirer_ids"`
	// Lanes the partner may use, by lane name.
	Lanes []string `json:"lanes"`
	// SettlementAccount is credited for the partner's purchases and
	// withdrawals when the route names no account.
	SettlementAccount string `json:"settlement_account,omitempty"`
	// WithdrawalMax caps one cash withdrawal, minor units; 0 is no cap.
	WithdrawalMax int64 `json:"withdrawal_max,omitempty"`
	// PayerType is the payer type of the partner's messages unless a
	// message refines it to one of PayerTypes.
	PayerType  string   `json:"payer_type"`
	PayerTypes []string `json:"payer_types,omitempty"`
	// Suspended partners are refused on every lane (ISO 62, HTTP 403);
	// their history stays.
	Suspended bool `json:"suspended,omitempty"`
	// Allow, when set, lists the source networks (CIDR or address) the
	// partner's messages may come from, inside its lanes' own allowlists.
	Allow []string `json:"allow,omitempty"`
	// CertPins name the client certificates that speak for the partner
	// on TLS lanes, each until its not-after; two live at once while one
	// is rotated (certPinsLiveMax). A partner with pins is served only
	// over a connection with a live one of them.
	CertPins []CertPin `json:"cert_pins,omitempty"`
	// MAC, when set, is the MAC the partner's financial messages must
	// carry (fields 64/128) and its keys' check values; only OpPutMACKey
	// changes it (mackey.go).
	MAC *PartnerMAC `json:"mac,omitempty"`
	// allow is Allow parsed, filled when the partner enters a directory.
	allow []netip.Prefix
	// macKeys are MAC's keys, wrapped; stored in their own record.
	macKeys *MACKeyMaterial
}

// CertPin is one client certificate of a partner: the SHA-256 (lower-case
// hex) of its public key (SubjectPublicKeyInfo), and the instant from
// which it no longer names the partner (RFC 3339 in JSON, UTC once
// stored). A renewed certificate on the same key keeps its pin; the
// not-after is the operator's, usually the certificate's own.
type CertPin struct {
	SHA256   string    `json:"sha256" yaml:"sha256"`
	NotAfter time.Time `json:"not_after" yaml:"not_after"`
}

// Live reports whether the pin names its partner at t: before its
// not-after.
func (c CertPin) Live(t time.Time) bool { return t.Before(c.NotAfter) }

// Pinned reports whether the client certificate with public-key pin pin,
// presented at the TLS handshake at, speaks for p: one of p's pins, live
// at that instant. The handshake is when TLS checks the certificate
// itself, so a connection admitted under a live pin keeps it until it
// closes (the clock cuts no session short); removing the pin from the
// record is what ends established connections too, at their next
// message. A zero at (a caller that does not say when the certificate
// was presented) names nobody.
func (p *Partner) Pinned(pin string, at time.Time) bool {
	if pin == "" || at.IsZero() {
		return false
	}
	for _, c := range p.CertPins {
		if c.SHA256 == pin && c.Live(at) {
			return true
		}
	}
	return false
}

// AllowsSource reports whether a message of p may come from a: always
// when p has no allowlist of its own.
func (p *Partner) AllowsSource(a netip.Addr) bool {
	if len(p.Allow) == 0 {
		return true
	}
	a = a.Unmap()
	for _, n := range p.allow {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// ParseAllow parses a source allowlist (lanes' and partners'): CIDRs, IPv4
// or IPv6, or bare addresses (one host each). A CIDR with host bits set is
// refused: "10.0.0.1/8" is a typo more often than a network.
func ParseAllow(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			if p != p.Masked() {
				return nil, fmt.Errorf("%q has host bits set (did you mean %s?)", s, p.Masked())
			}
			out = append(out, p)
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is no CIDR or address", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// MayRefineTo reports whether a message of p may name payer type t.
func (p *Partner) MayRefineTo(t string) bool {
	return t == p.PayerType || slices.Contains(p.PayerTypes, t)
}

// OnLane reports whether p may use lane.
func (p *Partner) OnLane(lane string) bool { return slices.Contains(p.Lanes, lane) }

// Directory is an immutable view of the routing state as of one applied
// index. Its methods are safe for concurrent use and allocate nothing.
type Directory struct {
	version   uint64
	routes    map[RouteKey]*Route
	byID      map[string]*Route
	partners  map[string]*Partner
	acquirers map[string]*Partner // acquirer id without leading zeros
	clients   map[string]*Client  // OAuth2 clients of the ops API
	dests     map[string]*Destination
	bins      map[string]*Destination // BIN prefix → destination
	// webhooks are the webhook endpoints by partner (sorted by id) and
	// by id (webhooks.go); nil until the first endpoint.
	webhooks    map[string][]*WebhookEndpoint
	webhookByID map[string]*WebhookEndpoint
}

func newDirectory() *Directory {
	return &Directory{
		routes:    map[RouteKey]*Route{},
		byID:      map[string]*Route{},
		partners:  map[string]*Partner{},
		acquirers: map[string]*Partner{},
		clients:   map[string]*Client{},
		dests:     map[string]*Destination{},
		bins:      map[string]*Destination{},
	}
}

// NewDirectory builds a directory from plain lists (tests and tools; the
// store builds its own from applied state). Later duplicates replace
// earlier ones.
func NewDirectory(partners []Partner, routes []Route) *Directory {
	d := newDirectory()
	for i := range partners {
		p := partners[i]
		d.putPartner(&p)
	}
	for i := range routes {
		r := routes[i]
		d.putRoute(&r)
	}
	return d
}

// clone copies d for a txn to change (the maps, not the records: records
// are replaced, never changed in place).
func (d *Directory) clone() *Directory {
	c := &Directory{
		version:   d.version,
		routes:    make(map[RouteKey]*Route, len(d.routes)),
		byID:      make(map[string]*Route, len(d.byID)),
		partners:  make(map[string]*Partner, len(d.partners)),
		acquirers: make(map[string]*Partner, len(d.acquirers)),
		clients:   make(map[string]*Client, len(d.clients)),
		dests:     make(map[string]*Destination, len(d.dests)),
		bins:      make(map[string]*Destination, len(d.bins)),
	}
	for k, v := range d.dests {
		c.dests[k] = v
	}
	for k, v := range d.bins {
		c.bins[k] = v
	}
	for k, v := range d.clients {
		c.clients[k] = v
	}
	if len(d.webhooks) > 0 {
		c.webhooks = make(map[string][]*WebhookEndpoint, len(d.webhooks))
		c.webhookByID = make(map[string]*WebhookEndpoint, len(d.webhookByID))
		for k, v := range d.webhooks {
			c.webhooks[k] = v // replaced, never changed in place
		}
		for k, v := range d.webhookByID {
			c.webhookByID[k] = v
		}
	}
	for k, v := range d.routes {
		c.routes[k] = v
	}
	for k, v := range d.byID {
		c.byID[k] = v
	}
	for k, v := range d.partners {
		c.partners[k] = v
	}
	for k, v := range d.acquirers {
		c.acquirers[k] = v
	}
	return c
}

func (d *Directory) putRoute(r *Route) {
	if old := d.byID[r.ID]; old != nil {
		delete(d.routes, old.Key())
	}
	d.byID[r.ID] = r
	d.routes[r.Key()] = r
}

func (d *Directory) deleteRoute(id string) {
	if old := d.byID[id]; old != nil {
		delete(d.routes, old.Key())
		delete(d.byID, id)
	}
}

func (d *Directory) putPartner(p *Partner) {
	if len(p.Allow) > 0 && p.allow == nil {
		p.allow, _ = ParseAllow(p.Allow) // checked by CheckPartner before it was stored
	}
	if old := d.partners[p.ID]; old != nil {
		for _, a := range old.AcquirerIDs {
			delete(d.acquirers, TrimZeros(a))
		}
	}
	d.partners[p.ID] = p
	for _, a := range p.AcquirerIDs {
		d.acquirers[TrimZeros(a)] = p
	}
}

// Version counts changes of the routing table; a bulk replace names the
// version it was based on.
func (d *Directory) Version() uint64 { return d.version }

// Partner returns the partner with id.
func (d *Directory) Partner(id string) (*Partner, bool) {
	p, ok := d.partners[id]
	return p, ok
}

// PartnerByAcquirer returns the partner that sends acquirer id acq (field
// 32, leading zeros ignored).
func (d *Directory) PartnerByAcquirer(acq string) (*Partner, bool) {
	p, ok := d.acquirers[TrimZeros(acq)]
	return p, ok
}

// Route returns the rule with id.
func (d *Directory) Route(id string) (*Route, bool) {
	r, ok := d.byID[id]
	return r, ok
}

// Routes returns every rule, by id.
func (d *Directory) Routes() []Route {
	out := make([]Route, 0, len(d.byID))
	for _, r := range d.byID {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Route) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Partners returns every partner, by id.
func (d *Directory) Partners() []Partner {
	out := make([]Partner, 0, len(d.partners))
	for _, p := range d.partners {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b Partner) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// probes is the lookup order: a rule naming more key fields wins; between
// rules naming as many, bill type outranks payer type, which outranks
// partner (a bill payment goes to the biller whoever sends it). Bit 4 is
// bill type, 2 payer type, 1 partner.
var probes = [8]uint8{7, 6, 5, 3, 4, 2, 1, 0}

func probeKey(k RouteKey, mask uint8) RouteKey {
	if mask&4 == 0 {
		k.BillType = Wildcard
	}
	if mask&2 == 0 {
		k.PayerType = Wildcard
	}
	if mask&1 == 0 {
		k.Partner = Wildcard
	}
	return k
}

// Lookup returns the rule that routes k: at most eight map probes, no
// allocation, whatever the size of the table.
func (d *Directory) Lookup(k RouteKey) (*Route, bool) {
	for _, m := range probes {
		if r, ok := d.routes[probeKey(k, m)]; ok {
			return r, true
		}
	}
	return nil, false
}

// Candidate is one step of an explanation: the key probed and the rule
// found there, if any.
type Candidate struct {
	BillType  string `json:"bill_type"`
	PayerType string `json:"payer_type"`
	Partner   string `json:"partner"`
	Route     *Route `json:"route,omitempty"`
	// Why says what this probe means for the lookup.
	Why string `json:"why"`
}

// Explain lists the probes Lookup makes for k, in order, up to and
// including the one that matched: each more specific key that has no rule
// says so. A key probed twice (the request itself has a "*") is listed once.
func (d *Directory) Explain(k RouteKey) (match *Route, steps []Candidate) {
	var seen []RouteKey
	for _, m := range probes {
		pk := probeKey(k, m)
		if slices.Contains(seen, pk) {
			continue // a "*" in the request makes some probes the same key
		}
		seen = append(seen, pk)
		c := Candidate{BillType: pk.BillType, PayerType: pk.PayerType, Partner: pk.Partner}
		r, ok := d.routes[pk]
		if ok {
			rc := *r
			c.Route = &rc
			c.Why = "matches: the most specific rule for this request"
			steps = append(steps, c)
			return &rc, steps
		}
		c.Why = "no rule with this key"
		steps = append(steps, c)
	}
	return nil, steps
}

// TrimZeros drops leading zeros ("000123" → "123", "000" → "0") without
// allocating: acquirer ids are compared that way.
func TrimZeros(s string) string {
	t := strings.TrimLeft(s, "0")
	if t == "" && s != "" {
		return "0"
	}
	return t
}
