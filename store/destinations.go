package store

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

// Destinations (issue 13): where a route sends a request. "ledger" is
// built in (on-us: switchd is the issuer or biller, as before); the others
// are replicated, ops-managed records like routes and partners, audited
// the same way: an ISO 8583 issuer or biller host, or an HTTP biller
// endpoint. The FSM checks their shape; the ops API also checks what only
// a node can (the dialect loads, the files exist) before it proposes.
//
// Secrets never enter the record: a host's client certificate and key are
// files on each node, an HTTP endpoint's bearer token and signing secret
// are named by environment variables each node reads.

const (
	// OpPutDestination creates or replaces Admin.Destination.
	OpPutDestination Op = 24
	// OpDeleteDestination deletes destination Admin.ID; refused while a
	// route names it.
	OpDeleteDestination Op = 25
)

const pfxDestination = 'D' // D<destination id> → destination (JSON)

// Destination kinds.
const (
	DestinationKindLedger  = "ledger"
	DestinationKindISO8583 = "iso8583"
	DestinationKindHTTP    = "http"
)

// Limits of destinations.
const (
	destinationsMax   = 256
	destAddrsMax      = 8
	destPoolMax       = 64
	destTimeoutMsMax  = 60_000
	destBINsMax       = 1000
	binDigitsMin      = 6
	binDigitsMax      = 11
	destMatchMax      = 8
	destURLBytesMax   = 2048
	destPathBytesMax  = 1024
	destEchoMsMax     = 3_600_000
	destCooldownMsMax = 600_000
)

// Destination is one place requests are forwarded to.
type Destination struct {
	ID   string `json:"id" yaml:"id"`
	Kind string `json:"kind" yaml:"kind"`
	// SettlementAccount is credited with what the host authorized (and
	// debited for reversals): the destination's position, so settlement
	// files and three-way reconciliation see forwarded traffic.
	SettlementAccount string `json:"settlement_account" yaml:"settlement_account"`
	// BINs are card-number prefixes (6 to 11 digits) whose card requests
	// go here instead of the ledger; the longest matching prefix wins. A
	// prefix belongs to one destination.
	BINs []string `json:"bins,omitempty" yaml:"bins"`
	// Disabled destinations answer 91 at once (ops took them out).
	Disabled bool             `json:"disabled,omitempty" yaml:"disabled"`
	ISO8583  *HostDestination `json:"iso8583,omitempty" yaml:"iso8583"`
	HTTP     *HTTPDestination `json:"http,omitempty" yaml:"http"`
}

// HostDestination is an ISO 8583 host (package host's Config, in the
// form replicated state can hold: durations as milliseconds).
type HostDestination struct {
	Addrs         []string `json:"addrs" yaml:"addrs"`
	Dialect       string   `json:"dialect" yaml:"dialect"`
	Header        string   `json:"header" yaml:"header"`
	FrameBytesMax int      `json:"frame_bytes_max,omitempty" yaml:"frame_bytes_max"`
	// TLS files are paths on each node.
	TLS             *HostTLS         `json:"tls,omitempty" yaml:"tls"`
	PoolSize        int              `json:"pool_size" yaml:"pool_size"`
	TimeoutMs       int64            `json:"timeout_ms" yaml:"timeout_ms"`
	SignOn          bool             `json:"sign_on" yaml:"sign_on"`
	EchoIntervalMs  int64            `json:"echo_interval_ms,omitempty" yaml:"echo_interval_ms"`
	Match           map[string][]int `json:"match,omitempty" yaml:"match"`
	BreakerFailures int              `json:"breaker_failures,omitempty" yaml:"breaker_failures"`
	BreakerCoolMs   int64            `json:"breaker_cooldown_ms,omitempty" yaml:"breaker_cooldown_ms"`
	// TimeoutCode is the field 39 a partner gets when the host does not
	// answer in time: "91" (issuer unavailable, the default) or "68"
	// (response received too late).
	TimeoutCode string `json:"timeout_code,omitempty" yaml:"timeout_code"`
}

// HostTLS is the client side of TLS to a host.
type HostTLS struct {
	CAFile     string `json:"ca_file,omitempty" yaml:"ca_file"`
	CertFile   string `json:"cert_file,omitempty" yaml:"cert_file"`
	KeyFile    string `json:"key_file,omitempty" yaml:"key_file"`
	ServerName string `json:"server_name,omitempty" yaml:"server_name"`
}

// HTTPDestination is a biller's HTTP endpoint.
type HTTPDestination struct {
	URL       string `json:"url" yaml:"url"`
	TimeoutMs int64  `json:"timeout_ms" yaml:"timeout_ms"`
	// TokenEnv names the environment variable with the bearer token sent
	// to the biller; SigningSecretEnv the one with the HMAC secret that
	// signs each request (Standard Webhooks headers). Empty: none.
	TokenEnv         string `json:"token_env,omitempty" yaml:"token_env"`
	SigningSecretEnv string `json:"signing_secret_env,omitempty" yaml:"signing_secret_env"`
	// SigningSecretFile is SigningSecretEnv's secret in a file on each
	// node instead (whsec_<base64> or raw bytes), read at each call so a
	// rotated file takes effect without a restart; at most one of the two.
	SigningSecretFile string `json:"signing_secret_file,omitempty" yaml:"signing_secret_file"`
	// TLS is the client side of TLS to the biller (an https URL): the CA
	// its certificate chains to (empty: the system's roots) and our
	// certificate when it wants mutual TLS; paths on each node, read when
	// the destination changes or the node starts.
	TLS *HostTLS `json:"tls,omitempty" yaml:"tls"`
	// ReversalSecretFile is the file on each node with the secret the
	// biller signs its reversals with (Standard Webhooks: whsec_<base64>
	// or raw bytes); empty: its reversals are refused (401).
	ReversalSecretFile string `json:"reversal_secret_file,omitempty" yaml:"reversal_secret_file"`
}

// Destination returns destination id.
func (d *Directory) Destination(id string) (*Destination, bool) {
	x, ok := d.dests[id]
	return x, ok
}

// Destinations lists every destination by id.
func (d *Directory) Destinations() []Destination {
	out := make([]Destination, 0, len(d.dests))
	for _, x := range d.dests {
		out = append(out, *x)
	}
	slices.SortFunc(out, func(a, b Destination) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// DestinationForPAN is the destination whose longest BIN prefixes pan;
// false: the card is on-us (the ledger). At most six map probes.
func (d *Directory) DestinationForPAN(pan string) (*Destination, bool) {
	if len(d.bins) == 0 {
		return nil, false
	}
	for n := min(binDigitsMax, len(pan)); n >= binDigitsMin; n-- {
		if x, ok := d.bins[pan[:n]]; ok {
			return x, true
		}
	}
	return nil, false
}

func (d *Directory) putDestination(x *Destination) {
	if old := d.dests[x.ID]; old != nil {
		for _, b := range old.BINs {
			delete(d.bins, b)
		}
	}
	d.dests[x.ID] = x
	for _, b := range x.BINs {
		d.bins[b] = x
	}
}

func (d *Directory) deleteDestination(id string) {
	if old := d.dests[id]; old != nil {
		for _, b := range old.BINs {
			delete(d.bins, b)
		}
		delete(d.dests, id)
	}
}

// knownDestination: the built-in ledger or a stored destination.
func (d *Directory) knownDestination(id string) bool {
	_, ok := d.dests[id]
	return id == DestinationLedger || ok
}

func (d *Directory) destinationIDs() string {
	ids := []string{DestinationLedger}
	for id := range d.dests {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return strings.Join(ids, ", ")
}

// CheckDestination reports whether x may be stored in d: the FSM's own
// rules, so the ops API can refuse a bad change before proposing it.
func (d *Directory) CheckDestination(x Destination, accounts AccountLookup) error {
	if !validToken(x.ID, idBytesMax) {
		return changeError("id", "%q: letters, digits, '_', '-', '.', at most %d", x.ID, idBytesMax)
	}
	if x.ID == DestinationLedger {
		return changeError("id", "%q is built in", x.ID)
	}
	if _, exists := d.dests[x.ID]; !exists && len(d.dests) >= destinationsMax {
		return changeError("id", "at most %d destinations", destinationsMax)
	}
	if _, ok := accounts(x.SettlementAccount); !ok {
		return changeError("settlement_account", "no account %q", x.SettlementAccount)
	}
	if len(x.BINs) > destBINsMax {
		return changeError("bins", "%d prefixes, at most %d", len(x.BINs), destBINsMax)
	}
	seen := map[string]bool{}
	for _, b := range x.BINs {
		if len(b) < binDigitsMin || len(b) > binDigitsMax || strings.Trim(b, "0123456789") != "" {
			return changeError("bins", "%q is not %d to %d digits", b, binDigitsMin, binDigitsMax)
		}
		if seen[b] {
			return changeError("bins", "%q twice", b)
		}
		seen[b] = true
		if other, ok := d.bins[b]; ok && other.ID != x.ID {
			return changeError("bins", "%q belongs to destination %q", b, other.ID)
		}
	}
	switch x.Kind {
	case DestinationKindISO8583:
		if x.HTTP != nil || x.ISO8583 == nil {
			return changeError("iso8583", "required for kind iso8583 (and no http)")
		}
		return checkHost(x.ISO8583)
	case DestinationKindHTTP:
		if x.ISO8583 != nil || x.HTTP == nil {
			return changeError("http", "required for kind http (and no iso8583)")
		}
		if len(x.BINs) > 0 {
			return changeError("bins", "card prefixes route to ISO 8583 hosts, not http endpoints")
		}
		return checkHTTPDestination(x.HTTP)
	}
	return changeError("kind", "%q: %s or %s", x.Kind, DestinationKindISO8583, DestinationKindHTTP)
}

func checkHost(h *HostDestination) error {
	if len(h.Addrs) == 0 || len(h.Addrs) > destAddrsMax {
		return changeError("iso8583.addrs", "1 to %d host:port", destAddrsMax)
	}
	for _, a := range h.Addrs {
		host, port, err := net.SplitHostPort(a)
		if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p < 1 || p > 65535 || len(a) > idBytesMax {
			return changeError("iso8583.addrs", "%q is not host:port", a)
		}
	}
	if !validToken(h.Dialect, idBytesMax) {
		return changeError("iso8583.dialect", "%q is not a dialect name", h.Dialect)
	}
	switch h.Header {
	case "binary2", "ascii4", "bcd2":
	default:
		return changeError("iso8583.header", "%q: binary2, ascii4 or bcd2", h.Header)
	}
	if h.FrameBytesMax < 0 || h.FrameBytesMax > 65535 {
		return changeError("iso8583.frame_bytes_max", "%d out of 0..65535", h.FrameBytesMax)
	}
	if h.PoolSize < 1 || h.PoolSize > destPoolMax {
		return changeError("iso8583.pool_size", "%d out of 1..%d", h.PoolSize, destPoolMax)
	}
	if h.TimeoutMs < 1 || h.TimeoutMs > destTimeoutMsMax {
		return changeError("iso8583.timeout_ms", "%d out of 1..%d", h.TimeoutMs, destTimeoutMsMax)
	}
	if h.EchoIntervalMs < 0 || h.EchoIntervalMs > destEchoMsMax || h.EchoIntervalMs > 0 && h.EchoIntervalMs < h.TimeoutMs {
		return changeError("iso8583.echo_interval_ms", "%d: 0 (none) or from timeout_ms to %d", h.EchoIntervalMs, destEchoMsMax)
	}
	if h.BreakerFailures < 0 || h.BreakerFailures > 1000 || h.BreakerCoolMs < 0 || h.BreakerCoolMs > destCooldownMsMax {
		return changeError("iso8583.breaker_failures", "0..1000 failures, cooldown 0..%d ms", destCooldownMsMax)
	}
	switch h.TimeoutCode {
	case "", "91", "68":
	default:
		return changeError("iso8583.timeout_code", "%q: 91 or 68", h.TimeoutCode)
	}
	for class, fields := range h.Match {
		if len(class) != 2 || strings.Trim(class, "0123456789") != "" {
			return changeError("iso8583.match", "class %q is not two digits", class)
		}
		if len(fields) == 0 || len(fields) > destMatchMax {
			return changeError("iso8583.match", "%s: 1 to %d fields", class, destMatchMax)
		}
		for _, f := range fields {
			if f < 2 || f > 128 || f == 39 || f == 65 {
				return changeError("iso8583.match", "%s: field %d cannot be part of a key", class, f)
			}
		}
	}
	return checkHostTLS("iso8583.tls", h.TLS)
}

// checkHostTLS checks the client TLS settings of a destination (field
// names them in errors).
func checkHostTLS(field string, t *HostTLS) error {
	if t == nil {
		return nil
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return changeError(field, "cert_file and key_file go together")
	}
	for _, p := range []string{t.CAFile, t.CertFile, t.KeyFile, t.ServerName} {
		if len(p) > destPathBytesMax || strings.ContainsRune(p, 0) {
			return changeError(field, "a path or name over %d bytes", destPathBytesMax)
		}
	}
	return nil
}

func checkHTTPDestination(h *HTTPDestination) error {
	if len(h.URL) > destURLBytesMax || !(strings.HasPrefix(h.URL, "https://") || strings.HasPrefix(h.URL, "http://")) {
		return changeError("http.url", "an http(s) URL of at most %d bytes", destURLBytesMax)
	}
	if h.TimeoutMs < 1 || h.TimeoutMs > destTimeoutMsMax {
		return changeError("http.timeout_ms", "%d out of 1..%d", h.TimeoutMs, destTimeoutMsMax)
	}
	for _, e := range []string{h.TokenEnv, h.SigningSecretEnv} {
		if e != "" && !validEnvName(e) {
			return changeError("http", "%q is not an environment variable name", e)
		}
	}
	if len(h.ReversalSecretFile) > destURLBytesMax || strings.ContainsRune(h.ReversalSecretFile, 0) {
		return changeError("http.reversal_secret_file", "a path of at most %d bytes", destURLBytesMax)
	}
	if len(h.SigningSecretFile) > destURLBytesMax || strings.ContainsRune(h.SigningSecretFile, 0) {
		return changeError("http.signing_secret_file", "a path of at most %d bytes", destURLBytesMax)
	}
	if h.SigningSecretFile != "" && h.SigningSecretEnv != "" {
		return changeError("http.signing_secret_file", "set with signing_secret_env: one secret signs the calls")
	}
	if h.TLS != nil && !strings.HasPrefix(h.URL, "https://") {
		return changeError("http.tls", "set for %s: TLS settings need an https URL", h.URL)
	}
	return checkHostTLS("http.tls", h.TLS)
}

func validEnvName(s string) bool {
	if s == "" || len(s) > 128 || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// cloneDestination detaches x from the log entry it was decoded from.
func cloneDestination(x *Destination) *Destination {
	b := mustJSON(x)
	out := new(Destination)
	if err := json.Unmarshal(b, out); err != nil {
		panic(err) // it was just encoded
	}
	return out
}

func (t *txn) putDestination(c *Command) Result {
	if c.Admin.Destination == nil {
		return changeErr("destination", "required")
	}
	x := cloneDestination(c.Admin.Destination)
	if err := t.directory().CheckDestination(*x, t.lookup); err != nil {
		return resultOf(err)
	}
	d := t.dirForChange()
	before, _ := d.Destination(x.ID)
	d.putDestination(x)
	t.set(skey1(pfxDestination, x.ID), mustJSON(x))
	t.appendAudit(c, "destination.put", "destination/"+x.ID, jsonOrNil(before), mustJSON(x))
	return Result{Status: StatusOK}
}

func (t *txn) deleteDestination(c *Command) Result {
	d := t.directory()
	before, ok := d.Destination(c.Admin.ID)
	if !ok {
		return Result{Status: StatusNotFound, Detail: fmt.Sprintf("id: no destination %q", c.Admin.ID)}
	}
	for _, r := range d.Routes() {
		if r.Destination == before.ID {
			return changeErr("id", "destination %q is used by route %q", before.ID, r.ID)
		}
	}
	if r, busy := t.destinationBusy(before.ID); busy {
		return r
	}
	d = t.dirForChange()
	d.deleteDestination(before.ID)
	t.del(skey1(pfxDestination, before.ID))
	t.appendAudit(c, "destination.delete", "destination/"+before.ID, mustJSON(before), nil)
	return Result{Status: StatusOK}
}

// pendingScanMax bounds the pending forwards a destination's deletion
// reads (each one's record) to find one of its own; past it the deletion
// is refused: the FSM is not held up by an unbounded walk, and ops retry
// once the hosts have answered.
const pendingScanMax = 4096

// destinationBusy refuses the deletion of destination id while it has
// advices in its SAF queue, or requests that wait for its answer. Its
// SAF sender stops with it: a queued advice — a timeout's 0420, a
// partner's reversal or completion — or the reversal a pending request's
// timeout would queue, would never reach the host, which would keep money
// the partner was told came back.
func (t *txn) destinationBusy(id string) (Result, bool) {
	lo := []byte(skeyIndex2(pfxSAFQueue, id, ""))
	if q := t.scanKeys(lo, prefixEnd(lo), 1); len(q) > 0 {
		return changeErr("id", "destination %q has advices queued for its host (switchctl saf list --dest %s): let them be delivered, or drop them, first",
			id, id), true
	}
	lo = []byte{pfxForwardDue}
	due := t.scanKeys(lo, prefixEnd(lo), pendingScanMax+1)
	for i, k := range due {
		if i == pendingScanMax {
			return changeErr("id", "more than %d requests wait for their hosts' answers: retry the deletion of %q once they are answered", pendingScanMax, id), true
		}
		if f := t.forwardRecord(k[9:]); f != nil && f.Destination == id {
			return changeErr("id", "destination %q has requests waiting for its answer (forward %s): retry once they are answered or timed out", id, f.ID), true
		}
	}
	return Result{}, false
}

func loadDestinations(r pebble.Reader, d *Directory) error {
	lo := []byte{pfxDestination}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		x := new(Destination)
		if err := json.Unmarshal(it.Value(), x); err != nil {
			return fmt.Errorf("%w: destination: %v", ErrCorrupt, err)
		}
		d.putDestination(x)
	}
	return it.Error()
}

// WithDestinations adds xs to d (NewDirectory's lists, for tools that
// check a seed: a route may name a destination seeded beside it).
func (d *Directory) WithDestinations(xs []Destination) *Directory {
	for i := range xs {
		x := xs[i]
		d.putDestination(&x)
	}
	return d
}
