package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Administrative state: routes, partners and OTC agents, changed only by
// these commands. Each one carries an Admin (who asked, from where, why)
// and appends its audit record (audit.go) in the same apply, so a change
// and its record are one raft entry: there is no change without a record
// and no record of a change that did not happen.

const (
	// OpPutRoute creates or replaces Admin.Route.
	OpPutRoute Op = 10
	// OpDeleteRoute deletes the route Admin.ID.
	OpDeleteRoute Op = 11
	// OpReplaceRoutes replaces the whole routing table with Admin.Routes
	// when the table's version is still Admin.BaseVersion.
	OpReplaceRoutes Op = 12
	// OpPutPartner creates or replaces Admin.Partner (suspension included).
	OpPutPartner Op = 13
	// OpPutAgent creates Admin.Agent or changes its cash limit.
	OpPutAgent Op = 14
	// OpSettleAgent records cash an agent handed in (Admin.Settlement),
	// freeing that much of its limit.
	OpSettleAgent Op = 15
	// OpAudit records an administrative change made outside the FSM
	// (cluster membership lives in raft's configuration) in the chain.
	OpAudit Op = 16
)

// Statuses of admin commands and agent limits.
const (
	// StatusVersionConflict: a bulk replace based on a stale table.
	StatusVersionConflict Status = 13
	// StatusNotFound: the change names a route, partner or agent that does
	// not exist.
	StatusNotFound Status = 14
	// StatusAgentLimit: the posting would take the agent's cash above its
	// limit.
	StatusAgentLimit Status = 15
	// StatusUnknownAgent: the payer is an OTC agent the switch does not
	// know (no limit set up for it).
	StatusUnknownAgent Status = 16
	// StatusInvalidChange: the admin change breaks a rule; Result.Detail
	// names the field.
	StatusInvalidChange Status = 17
)

var (
	ErrVersionConflict = errors.New("store: routing table changed since the version the change was based on")
	ErrAgentLimit      = errors.New("store: agent cash limit exceeded")
	ErrUnknownAgent    = errors.New("store: unknown agent")
	ErrInvalidChange   = errors.New("store: invalid change")
)

const (
	pfxRoute   = 'r' // r<route id> → route (JSON)
	pfxPartner = 'p' // p<partner id> → partner (JSON)
	pfxAgent   = 'g' // g<agent id> → agent (JSON)
	// adminBytesMax bounds one encoded Admin: a 10,000-rule replace is
	// about 1.2 MB.
	adminBytesMax  = 8 << 20
	reasonBytesMax = 1024
	// cashLimitMax keeps limit arithmetic far from int64 overflow.
	cashLimitMax = amountMax
)

var keyRoutesVersion = []byte{pfxMeta, 'r', 'v'}

// Admin is an administrative change and who asked for it.
type Admin struct {
	// Actor is the caller's identity as the ops API knows it; Remote is
	// the address it called from.
	Actor  string `json:"actor"`
	Remote string `json:"remote,omitempty"`
	// Reason is mandatory for route and partner changes.
	Reason string `json:"reason,omitempty"`

	Route       *Route   `json:"route,omitempty"`
	ID          string   `json:"id,omitempty"`
	Routes      []Route  `json:"routes,omitempty"`
	BaseVersion uint64   `json:"base_version,omitempty"`
	Partner     *Partner `json:"partner,omitempty"`
	// Suspend, with ID and no Partner, suspends (true) or resumes (false)
	// partner ID as it stands when the command applies: a suspension
	// never carries a stale copy of the rest of the record.
	Suspend    *bool            `json:"suspend,omitempty"`
	Agent      *Agent           `json:"agent,omitempty"`
	Settlement *AgentSettlement `json:"settlement,omitempty"`
	Event      *AuditEvent      `json:"event,omitempty"`
	// ClientChange is an OpPutClient's change (clients.go).
	ClientChange *ClientChange `json:"client_change,omitempty"`
	// Destination is OpPutDestination's record (destinations.go).
	Destination *Destination `json:"destination,omitempty"`
	// MACKey is OpPutMACKey's change (mackey.go).
	MACKey *MACKeyChange `json:"mac_key,omitempty"`
	// Webhook is OpPutWebhookEndpoint's change (webhooks.go).
	Webhook *WebhookChange `json:"webhook,omitempty"`
}

// AuditEvent is what OpAudit records.
type AuditEvent struct {
	Action string          `json:"action"`
	Object string          `json:"object"`
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after,omitempty"`
}

// Agent is an OTC agent: a terminal under a partner that collects cash.
// CashHeld is cash it collected and has not handed in; a posting that
// would take it above CashLimit is refused until the agent settles.
type Agent struct {
	ID        string `json:"id"`
	Partner   string `json:"partner"`
	Terminal  string `json:"terminal"`
	Currency  string `json:"currency"`
	CashLimit int64  `json:"cash_limit"`
	CashHeld  int64  `json:"cash_held"`
	// Settled is the total handed in so far.
	Settled int64 `json:"settled"`
	// OfflineLimit bounds OfflineHeld: the cash the agent may have
	// collected offline and reported by advice (advice.go) without having
	// handed it in. 0 refuses every offline advice.
	OfflineLimit int64 `json:"offline_limit,omitempty"`
	// OfflineHeld is the part of CashHeld accepted by offline advices and
	// not yet settled (a settlement reduces it first; it never exceeds
	// CashHeld).
	OfflineHeld int64 `json:"offline_held,omitempty"`
}

// AgentID is the id of the agent at terminal under partner.
func AgentID(partner, terminal string) string { return partner + ":" + terminal }

// AgentSettlement is cash an agent handed in.
type AgentSettlement struct {
	Agent     string `json:"agent"`
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	Reference string `json:"reference"`
}

func (e *enc) blob(b []byte) {
	e.uvar(uint64(len(b)))
	e.b = append(e.b, b...)
}

func decodeAdmin(d *dec) *Admin {
	n := d.uvar()
	if d.err != nil {
		return nil
	}
	if n > adminBytesMax || n > uint64(len(d.b)-d.off) {
		d.fail("admin length")
		return nil
	}
	raw := d.b[d.off : d.off+int(n)]
	a := new(Admin)
	dj := json.NewDecoder(bytes.NewReader(raw))
	dj.DisallowUnknownFields()
	if err := dj.Decode(a); err != nil || dj.More() {
		d.fail("admin")
		return nil
	}
	// One encoding per value, like every other field: what the proposer
	// marshalled, byte for byte (no other spacing, key order or escapes).
	if !bytes.Equal(adminJSON(a), raw) {
		d.fail("admin encoding")
		return nil
	}
	d.off += int(n)
	return a
}

func adminJSON(a *Admin) []byte {
	b, err := json.Marshal(a)
	if err != nil {
		panic(err) // plain structs: cannot fail
	}
	return b
}

// IsAdmin reports whether op is an administrative change.
func (o Op) IsAdmin() bool {
	return o >= OpPutRoute && o <= OpAudit || o == OpPutMACKey || o == OpPutClient ||
		o == OpPutDestination || o == OpDeleteDestination || o == OpPutWebhookEndpoint
}

// changeErr builds StatusInvalidChange naming the field at fault.
func changeErr(field, format string, args ...any) Result {
	return Result{Status: StatusInvalidChange, Detail: field + ": " + fmt.Sprintf(format, args...)}
}

// validToken: lower or upper letters, digits, '_', '-', '.'; what ids,
// bill types and payer types are made of.
func validToken(s string, maxBytes int) bool {
	if s == "" || len(s) > maxBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func validKeyField(s string, maxBytes int) bool { return s == Wildcard || validToken(s, maxBytes) }

// dirForChange is the txn's own copy of the directory, made on the first
// change in the batch.
func (t *txn) dirForChange() *Directory {
	if t.dir == nil {
		t.dir = t.baseDir.clone()
	}
	return t.dir
}

// directory is the directory as of this txn.
func (t *txn) directory() *Directory {
	if t.dir != nil {
		return t.dir
	}
	return t.baseDir
}

// adminOp applies an admin command; c.Key and c.Admin are checked.
func (t *txn) adminOp(c *Command) Result {
	a := c.Admin
	if len(a.Actor) == 0 || len(a.Actor) > idBytesMax || len(a.Remote) > idBytesMax || len(a.Reason) > reasonBytesMax {
		return changeErr("actor", "required, at most %d bytes", idBytesMax)
	}
	switch c.Op {
	case OpPutRoute, OpDeleteRoute, OpReplaceRoutes, OpPutPartner, OpPutMACKey, OpPutDestination, OpDeleteDestination:
		if strings.TrimSpace(a.Reason) == "" {
			return changeErr("reason", "required for route, partner and destination changes")
		}
	}
	switch c.Op {
	case OpPutRoute:
		return t.putRoute(c)
	case OpDeleteRoute:
		return t.deleteRoute(c)
	case OpReplaceRoutes:
		return t.replaceRoutes(c)
	case OpPutPartner:
		return t.putPartner(c)
	case OpPutAgent:
		return t.putAgent(c)
	case OpSettleAgent:
		return t.settleAgent(c)
	case OpPutClient:
		return t.putClient(c)
	case OpPutMACKey:
		return t.putMACKey(c) // mackey.go
	case OpPutDestination:
		return t.putDestination(c) // destinations.go
	case OpDeleteDestination:
		return t.deleteDestination(c)
	case OpPutWebhookEndpoint:
		return t.putWebhookEndpoint(c) // webhooks.go
	case OpAudit:
		ev := a.Event
		if ev == nil || !validToken(ev.Action, idBytesMax) || !validOptional(ev.Object, keyBytesMax) {
			return changeErr("event", "action and object required")
		}
		t.appendAudit(c, ev.Action, ev.Object, ev.Before, ev.After)
		return Result{Status: StatusOK}
	}
	return invalid()
}

// ChangeError is why an admin change is refused: the field at fault and
// what is wrong with it. It wraps ErrInvalidChange.
type ChangeError struct {
	Field string
	Msg   string
}

func (e *ChangeError) Error() string { return "store: invalid change: " + e.Field + ": " + e.Msg }
func (e *ChangeError) Unwrap() error { return ErrInvalidChange }

func changeError(field, format string, args ...any) error {
	return &ChangeError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// resultOf turns a validation error into the FSM's answer.
func resultOf(err error) Result {
	var ce *ChangeError
	if errors.As(err, &ce) {
		return Result{Status: StatusInvalidChange, Detail: ce.Field + ": " + ce.Msg}
	}
	return Result{Status: StatusInvalidChange, Detail: err.Error()}
}

// AccountLookup finds an account for validation.
type AccountLookup func(id string) (Account, bool)

func (t *txn) lookup(id string) (Account, bool) {
	if a := t.account(id); a != nil {
		return *a, true
	}
	return Account{}, false
}

// CheckRoute reports whether r may be stored in d: the same rules the FSM
// applies, so the ops API can refuse a bad change before proposing it
// (field names are prefixed with field). A route being replaced keeps its
// own key.
func (d *Directory) CheckRoute(r Route, accounts AccountLookup, field string) error {
	if !validToken(r.ID, idBytesMax) {
		return changeError(field+".id", "%q: letters, digits, '_', '-', '.', at most %d", r.ID, idBytesMax)
	}
	if !validKeyField(wild(r.BillType), billTypeBytesMax) {
		return changeError(field+".bill_type", "%q is not a bill type or *", r.BillType)
	}
	if !validKeyField(wild(r.PayerType), payerTypeBytesMax) {
		return changeError(field+".payer_type", "%q is not a payer type or *", r.PayerType)
	}
	var partner *Partner
	if p := wild(r.Partner); p != Wildcard {
		var ok bool
		if partner, ok = d.Partner(p); !ok {
			return changeError(field+".partner", "no partner %q", p)
		}
	}
	if !d.knownDestination(r.Destination) {
		return changeError(field+".destination", "no destination %q (known: %s)", r.Destination, d.destinationIDs())
	}
	if r.SettlementAccount != "" {
		acct, ok := accounts(r.SettlementAccount)
		if !ok {
			return changeError(field+".settlement_account", "no account %q", r.SettlementAccount)
		}
		if partner != nil && partner.SettlementAccount != "" {
			if pa, ok := accounts(partner.SettlementAccount); ok && pa.Currency != acct.Currency {
				return changeError(field+".settlement_account", "%q is in %s, partner %q settles in %s",
					acct.ID, acct.Currency, partner.ID, pa.Currency)
			}
		}
	} else if partner != nil && partner.SettlementAccount == "" {
		return changeError(field+".settlement_account", "required: partner %q has no settlement account", partner.ID)
	}
	if other, ok := d.routes[r.Key()]; ok && other.ID != r.ID {
		k := r.Key()
		return changeError(field, "route %q already has key (bill_type %s, payer_type %s, partner %s)",
			other.ID, k.BillType, k.PayerType, k.Partner)
	}
	return nil
}

// normRoute copies r with its key fields normalized and its strings
// detached from the log entry.
func normRoute(r *Route) *Route {
	return &Route{
		ID: strings.Clone(r.ID), BillType: strings.Clone(wild(r.BillType)), PayerType: strings.Clone(wild(r.PayerType)),
		Partner: strings.Clone(wild(r.Partner)), Destination: strings.Clone(r.Destination),
		SettlementAccount: strings.Clone(r.SettlementAccount),
	}
}

func (t *txn) bumpRoutesVersion(d *Directory) {
	d.version++
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], d.version)
	t.set(string(keyRoutesVersion), b[:])
}

func (t *txn) putRoute(c *Command) Result {
	if c.Admin.Route == nil {
		return changeErr("route", "required")
	}
	r := normRoute(c.Admin.Route)
	if err := t.directory().CheckRoute(*r, t.lookup, "route"); err != nil {
		return resultOf(err)
	}
	d := t.dirForChange()
	before, _ := d.Route(r.ID)
	d.putRoute(r)
	t.set(skey1(pfxRoute, r.ID), mustJSON(r))
	t.bumpRoutesVersion(d)
	t.appendAudit(c, "route.put", "route/"+r.ID, jsonOrNil(before), mustJSON(r))
	return Result{Status: StatusOK, Version: d.version}
}

func (t *txn) deleteRoute(c *Command) Result {
	d := t.directory()
	before, ok := d.Route(c.Admin.ID)
	if !ok {
		return Result{Status: StatusNotFound, Detail: fmt.Sprintf("id: no route %q", c.Admin.ID)}
	}
	d = t.dirForChange()
	d.deleteRoute(before.ID)
	t.del(skey1(pfxRoute, before.ID))
	t.bumpRoutesVersion(d)
	t.appendAudit(c, "route.delete", "route/"+before.ID, mustJSON(before), nil)
	return Result{Status: StatusOK, Version: d.version}
}

// tableSummary stands for a whole table in the audit record: the records
// of the rules themselves are what GET /v1/routes shows.
type tableSummary struct {
	Version uint64 `json:"version"`
	Rules   int    `json:"rules"`
	SHA256  string `json:"sha256"`
}

func summarize(d *Directory) json.RawMessage {
	rs := d.Routes()
	return mustJSON(tableSummary{Version: d.version, Rules: len(rs), SHA256: sha256Hex(mustJSON(rs))})
}

func (t *txn) replaceRoutes(c *Command) Result {
	old := t.directory()
	if old.version != c.Admin.BaseVersion {
		return Result{Status: StatusVersionConflict,
			Detail: fmt.Sprintf("base_version: %d, the table is at version %d", c.Admin.BaseVersion, old.version)}
	}
	if len(c.Admin.Routes) > routesMax {
		return changeErr("routes", "%d rules, at most %d", len(c.Admin.Routes), routesMax)
	}
	// Validate against a directory that holds the partners but only the
	// new rules, so a key taken by a rule being replaced is free.
	nd := old.clone()
	nd.routes, nd.byID = make(map[RouteKey]*Route, len(c.Admin.Routes)), make(map[string]*Route, len(c.Admin.Routes))
	for i := range c.Admin.Routes {
		r := normRoute(&c.Admin.Routes[i])
		field := fmt.Sprintf("routes[%d]", i)
		if _, dup := nd.byID[r.ID]; dup {
			return changeErr(field+".id", "%q appears twice", r.ID)
		}
		if err := nd.CheckRoute(*r, t.lookup, field); err != nil {
			return resultOf(err)
		}
		nd.putRoute(r)
	}
	before := summarize(old)
	for id := range old.byID {
		if _, keep := nd.byID[id]; !keep {
			t.del(skey1(pfxRoute, id))
		}
	}
	for id, r := range nd.byID {
		if o, ok := old.byID[id]; !ok || *o != *r {
			t.set(skey1(pfxRoute, id), mustJSON(r))
		}
	}
	t.dir = nd
	t.bumpRoutesVersion(nd)
	t.appendAudit(c, "routes.replace", "routes", before, summarize(nd))
	return Result{Status: StatusOK, Version: nd.version}
}

func (t *txn) putPartner(c *Command) Result {
	in := c.Admin.Partner
	if in == nil && c.Admin.Suspend != nil {
		cur, ok := t.directory().Partner(c.Admin.ID)
		if !ok {
			return Result{Status: StatusNotFound, Detail: fmt.Sprintf("id: no partner %q", c.Admin.ID)}
		}
		p := *cur
		p.Suspended = *c.Admin.Suspend
		in = &p
	}
	if in == nil {
		return changeErr("partner", "required")
	}
	p := &Partner{
		ID: strings.Clone(in.ID), SettlementAccount: strings.Clone(in.SettlementAccount),
		WithdrawalMax: in.WithdrawalMax, PayerType: strings.Clone(in.PayerType), Suspended: in.Suspended,
	}
	for _, l := range [...]struct {
		in   []string
		out  *[]string
		name string
	}{{in.AcquirerIDs, &p.AcquirerIDs, "acquirer_ids"}, {in.Lanes, &p.Lanes, "lanes"}, {in.PayerTypes, &p.PayerTypes, "payer_types"}, {in.Allow, &p.Allow, "allow"}} {
		if len(l.in) > partnerListMax {
			return changeErr("partner."+l.name, "%d entries, at most %d", len(l.in), partnerListMax)
		}
		for _, s := range l.in {
			*l.out = append(*l.out, strings.Clone(s))
		}
	}
	if len(in.CertPins) > certPinsMax {
		return changeErr("partner.cert_pins", "%d entries, at most %d", len(in.CertPins), certPinsMax)
	}
	for _, c := range in.CertPins {
		// UTC: one stored form whatever offset the proposer wrote.
		p.CertPins = append(p.CertPins, CertPin{SHA256: strings.Clone(c.SHA256), NotAfter: c.NotAfter.UTC()})
	}
	d := t.directory()
	// Which pins are live is judged at the command's time (the proposer's
	// clock, inside the entry): every replica decides alike. A suspension
	// or resumption flips one flag of a record checked when it was stored:
	// it is not checked again, so a proposer whose clock is behind the
	// last writer's cannot be refused a suspension over pins.
	if c.Admin.Partner != nil {
		if err := d.CheckPartner(*p, t.lookup, time.Unix(0, c.Time)); err != nil {
			return resultOf(err)
		}
	}
	before, existed := d.Partner(p.ID)
	if existed {
		// The MAC keys change only through OpPutMACKey.
		p.MAC, p.macKeys = before.MAC, before.macKeys
	}
	action := "partner.put"
	if existed {
		same := *before
		same.Suspended = p.Suspended
		if before.Suspended != p.Suspended && slices.Equal(same.AcquirerIDs, p.AcquirerIDs) &&
			slices.Equal(same.Lanes, p.Lanes) && slices.Equal(same.PayerTypes, p.PayerTypes) && slices.Equal(same.Allow, p.Allow) && slices.EqualFunc(same.CertPins, p.CertPins, CertPin.equal) &&
			same.SettlementAccount == p.SettlementAccount && same.WithdrawalMax == p.WithdrawalMax &&
			same.PayerType == p.PayerType {
			action = map[bool]string{true: "partner.suspend", false: "partner.resume"}[p.Suspended]
		}
	}
	nd := t.dirForChange()
	nd.putPartner(p)
	t.set(skey1(pfxPartner, p.ID), mustJSON(p))
	var b json.RawMessage
	if existed {
		b = mustJSON(before)
	}
	t.appendAudit(c, action, "partner/"+p.ID, b, mustJSON(p))
	return Result{Status: StatusOK}
}

// CheckPartner reports whether p may be stored in d (see CheckRoute), now
// being the time of the change: the FSM passes the command's, the ops API
// and config checks the clock's.
func (d *Directory) CheckPartner(p Partner, accounts AccountLookup, now time.Time) error {
	if !validToken(p.ID, idBytesMax) {
		return changeError("partner.id", "%q: letters, digits, '_', '-', '.'", p.ID)
	}
	if len(p.AcquirerIDs) == 0 {
		return changeError("partner.acquirer_ids", "at least one")
	}
	for _, a := range p.AcquirerIDs {
		if len(a) == 0 || len(a) > 11 || strings.Trim(a, "0123456789") != "" {
			return changeError("partner.acquirer_ids", "%q is not 1 to 11 digits", a)
		}
		if other, ok := d.PartnerByAcquirer(a); ok && other.ID != p.ID {
			return changeError("partner.acquirer_ids", "%q belongs to partner %q", a, other.ID)
		}
	}
	for _, l := range p.Lanes {
		if !validToken(l, idBytesMax) {
			return changeError("partner.lanes", "%q is not a lane name", l)
		}
	}
	if !validToken(p.PayerType, payerTypeBytesMax) {
		return changeError("partner.payer_type", "%q is not a payer type", p.PayerType)
	}
	for _, pt := range p.PayerTypes {
		if !validToken(pt, payerTypeBytesMax) {
			return changeError("partner.payer_types", "%q is not a payer type", pt)
		}
	}
	if len(p.Allow) > partnerListMax {
		return changeError("partner.allow", "%d entries, at most %d", len(p.Allow), partnerListMax)
	}
	if _, err := ParseAllow(p.Allow); err != nil {
		return changeError("partner.allow", "%v", err)
	}
	if err := checkCertPins(p.CertPins, now); err != nil {
		return err
	}
	if p.SettlementAccount != "" && !hasAccount(accounts, p.SettlementAccount) {
		return changeError("partner.settlement_account", "no account %q", p.SettlementAccount)
	}
	if p.WithdrawalMax < 0 || p.WithdrawalMax > amountMax {
		return changeError("partner.withdrawal_max", "%d not in [0, %d]", p.WithdrawalMax, int64(amountMax))
	}
	return nil
}

// checkCertPins: at most certPinsMax pins, each a SHA-256 in lower-case
// hex with a not-after, none twice, and at most certPinsLiveMax of them
// live at now. Pins past their not-after may stay (a record written
// before the instant must still be rewritable after it, a suspension
// for one); they name nobody.
func checkCertPins(pins []CertPin, now time.Time) error {
	if len(pins) > certPinsMax {
		return changeError("partner.cert_pins", "%d entries, at most %d", len(pins), certPinsMax)
	}
	live := 0
	for i, c := range pins {
		if b, err := hex.DecodeString(c.SHA256); err != nil || len(b) != sha256.Size || c.SHA256 != strings.ToLower(c.SHA256) {
			return changeError("partner.cert_pins", "%q is not a SHA-256 in lower-case hex (64 characters)", c.SHA256)
		}
		if c.NotAfter.IsZero() {
			return changeError("partner.cert_pins", "%s…: not_after is required (RFC 3339, e.g. the certificate's own expiry)", c.SHA256[:16])
		}
		for _, o := range pins[:i] {
			if o.SHA256 == c.SHA256 {
				return changeError("partner.cert_pins", "%s… appears twice", c.SHA256[:16])
			}
		}
		if c.Live(now) {
			live++
		}
	}
	if live > certPinsLiveMax {
		return changeError("partner.cert_pins", "%d pins live at once, at most %d (the certificate in use and its successor): remove or expire one first", live, certPinsLiveMax)
	}
	return nil
}

func (c CertPin) equal(o CertPin) bool { return c.SHA256 == o.SHA256 && c.NotAfter.Equal(o.NotAfter) }

func hasAccount(accounts AccountLookup, id string) bool {
	_, ok := accounts(id)
	return ok
}

func (t *txn) agent(id string) *Agent {
	v, ok := t.get(skey1(pfxAgent, id))
	if !ok {
		return nil
	}
	var a Agent
	mustDecode(json.Unmarshal(v, &a))
	return &a
}

func (t *txn) putAgentRecord(a *Agent) { t.set(skey1(pfxAgent, a.ID), mustJSON(a)) }

func (t *txn) putAgent(c *Command) Result {
	in := c.Admin.Agent
	if in == nil {
		return changeErr("agent", "required")
	}
	p, ok := t.directory().Partner(in.Partner)
	if !ok {
		return changeErr("agent.partner", "no partner %q", in.Partner)
	}
	if !p.MayRefineTo(PayerOTCAgent) {
		return changeErr("agent.partner", "partner %q has no payer type %s", p.ID, PayerOTCAgent)
	}
	if !validToken(in.Terminal, idBytesMax) {
		return changeErr("agent.terminal", "%q is not a terminal id", in.Terminal)
	}
	if !validCurrency(in.Currency) {
		return changeErr("agent.currency", "%q is not an ISO 4217 code", in.Currency)
	}
	if in.CashLimit < 0 || in.CashLimit > cashLimitMax {
		return changeErr("agent.cash_limit", "%d not in [0, %d]", in.CashLimit, int64(cashLimitMax))
	}
	if in.OfflineLimit < 0 || in.OfflineLimit > cashLimitMax {
		return changeErr("agent.offline_limit", "%d not in [0, %d]", in.OfflineLimit, int64(cashLimitMax))
	}
	id := AgentID(p.ID, in.Terminal)
	a := &Agent{ID: strings.Clone(id), Partner: strings.Clone(p.ID), Terminal: strings.Clone(in.Terminal),
		Currency: strings.Clone(in.Currency), CashLimit: in.CashLimit, OfflineLimit: in.OfflineLimit}
	var before json.RawMessage
	if old := t.agent(id); old != nil {
		if old.Currency != a.Currency && old.CashHeld != 0 {
			return changeErr("agent.currency", "agent holds %d %s not settled", old.CashHeld, old.Currency)
		}
		a.CashHeld, a.Settled, a.OfflineHeld = old.CashHeld, old.Settled, old.OfflineHeld
		before = mustJSON(old)
	}
	t.putAgentRecord(a)
	t.appendAudit(c, "agent.put", "agent/"+id, before, mustJSON(a))
	return Result{Status: StatusOK}
}

func (t *txn) settleAgent(c *Command) Result {
	s := c.Admin.Settlement
	if s == nil {
		return changeErr("settlement", "required")
	}
	a := t.agent(s.Agent)
	if a == nil {
		return Result{Status: StatusNotFound, Detail: fmt.Sprintf("agent: no agent %q", s.Agent)}
	}
	if !validAmount(s.Amount) {
		return changeErr("amount", "must be positive minor units")
	}
	if s.Currency != a.Currency {
		return changeErr("currency", "%q, the agent's cash is in %s", s.Currency, a.Currency)
	}
	if s.Amount > a.CashHeld {
		return changeErr("amount", "%d is more than the %d the agent holds", s.Amount, a.CashHeld)
	}
	if !validToken(s.Reference, idBytesMax) {
		return changeErr("reference", "required: letters, digits, '_', '-', '.'")
	}
	before := mustJSON(a)
	a.CashHeld -= s.Amount
	a.Settled += s.Amount
	a.settleOffline(s.Amount) // advice.go
	t.putAgentRecord(a)
	after := mustJSON(struct {
		*Agent
		Settlement *AgentSettlement `json:"settlement"`
	}{a, s})
	t.appendAudit(c, "agent.settle", "agent/"+a.ID, before, after)
	return Result{Status: StatusOK}
}

// chargeAgent counts amt against the agent's cash limit (OpPost by an OTC
// agent), or, collected offline, against its offline limit (advice.go);
// it returns a decline status when it may not.
func (t *txn) chargeAgent(c *Command, amt int64) Status {
	a := t.agent(c.Agent)
	if a == nil {
		return StatusUnknownAgent
	}
	if a.Currency != c.Currency {
		return StatusCurrencyMismatch
	}
	switch {
	case c.Offline && amt > a.OfflineLimit-a.OfflineHeld:
		return StatusOfflineLimit
	case !c.Offline && amt > a.CashLimit-a.CashHeld:
		return StatusAgentLimit
	}
	a.CashHeld += amt
	if c.Offline {
		a.OfflineHeld += amt
	}
	t.putAgentRecord(a)
	return StatusOK
}

// refundAgent gives back limit when an agent's posting is reversed.
func (t *txn) refundAgent(id string, amt int64) {
	a := t.agent(id)
	if a == nil {
		return
	}
	a.CashHeld = max(0, a.CashHeld-amt)
	a.OfflineHeld = min(a.OfflineHeld, a.CashHeld) // offline cash is part of the cash held
	t.putAgentRecord(a)
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func jsonOrNil[T any](p *T) json.RawMessage {
	if p == nil {
		return nil
	}
	return mustJSON(p)
}

// loadDirectory reads the routing state from r (at open and restore).
func loadDirectory(r pebble.Reader) (*Directory, error) {
	d := newDirectory()
	if v, closer, err := r.Get(keyRoutesVersion); err == nil {
		if len(v) == 8 {
			d.version = binary.BigEndian.Uint64(v)
		}
		_ = closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return nil, err
	}
	scan := func(pfx byte, fn func([]byte) error) error {
		lo := []byte{pfx}
		it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok; ok = it.Next() {
			if err := fn(it.Value()); err != nil {
				return fmt.Errorf("%w: %v", ErrCorrupt, err)
			}
		}
		return it.Error()
	}
	if err := scan(pfxPartner, func(v []byte) error {
		p := new(Partner)
		if err := json.Unmarshal(v, p); err != nil {
			return err
		}
		d.putPartner(p)
		return nil
	}); err != nil {
		return nil, err
	}
	if err := loadMACKeys(r, d); err != nil {
		return nil, err
	}
	if err := loadDestinations(r, d); err != nil {
		return nil, err
	}
	if err := loadWebhooks(r, d); err != nil {
		return nil, err
	}

	if err := scan(pfxClient, func(v []byte) error {
		c := new(Client)
		if err := json.Unmarshal(v, c); err != nil {
			return err
		}
		d.clients[c.ID] = c
		return nil
	}); err != nil {
		return nil, err
	}
	if err := scan(pfxRoute, func(v []byte) error {
		r := new(Route)
		if err := json.Unmarshal(v, r); err != nil {
			return err
		}
		d.putRoute(r)
		return nil
	}); err != nil {
		return nil, err
	}
	return d, nil
}

// Directory returns the routing state as of the last applied batch.
func (s *Store) Directory() *Directory { return s.dir.Load() }

// Agent returns one agent, or ErrNotFound.
func (s *Store) Agent(id string) (Agent, error) {
	var a Agent
	err := s.read(func(db *pebble.DB) error {
		var err error
		a, err = getRecord(db, key1(pfxAgent, id), func(b []byte) (Agent, error) {
			var a Agent
			err := json.Unmarshal(b, &a)
			return a, err
		})
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return Agent{}, fmt.Errorf("agent %q: %w", id, ErrNotFound)
	}
	return a, err
}

// Agents returns up to limit agents after the id after, by id.
func (s *Store) Agents(after string, limit int) ([]Agent, error) {
	limit = clampLimit(limit)
	var out []Agent
	err := s.read(func(db *pebble.DB) error {
		lo := key1(pfxAgent, after)
		if after != "" {
			lo = append(lo, 0)
		}
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd([]byte{pfxAgent})})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
			var a Agent
			if err := json.Unmarshal(it.Value(), &a); err != nil {
				return fmt.Errorf("%w: agent: %v", ErrCorrupt, err)
			}
			out = append(out, a)
		}
		return it.Error()
	})
	return out, err
}
