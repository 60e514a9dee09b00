package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/switchd/switchd/currency"
)

// Webhooks (issue 12): partners register endpoints (replicated, audited
// admin state, OpPutWebhookEndpoint) and the FSM writes an outbox entry in
// the same apply that changes a payment's status, so every replica holds
// the same event with the same id and the same body bytes, and a leader
// change redelivers exactly those bytes. The leader's sender (package
// webhook) delivers them and records each attempt (OpWebhookAttempt,
// machine state). Delivery is at least once: an attempt whose result was
// not committed before a leader change is made again by the next leader;
// receivers de-duplicate on webhook-id (the event id), which is the same
// across every retry and every leader.

const (
	// OpPutWebhookEndpoint creates, changes, rotates the secret of or
	// deletes the endpoint Admin.Webhook names (WebhookChange).
	OpPutWebhookEndpoint Op = 19
	// OpWebhookAttempt records one delivery attempt's result
	// (Command.Webhook). Machine state: not audited, no idempotency key;
	// idempotent by content (an attempt number that is not the next one
	// changes nothing).
	OpWebhookAttempt Op = 20
)

const (
	pfxWebhookEndpoint = 'h' // h<endpoint id> → endpoint (JSON)
	pfxWebhookDelivery = 'w' // w<endpoint id>\x00<event id> → delivery (JSON)
	pfxWebhookDue      = 'W' // W<next attempt u64><endpoint id>\x00<event id> → "" (pending only)
)

// keyEventSeq is the last event number: event ids come from it, so they
// are the same on every replica and never made twice.
var keyEventSeq = []byte{pfxMeta, 'e', 'v', 's'}

// Event types. A type names what happened to the payment (a transfer);
// issue 13's biller reversals add theirs through the same emitEvent.
const (
	EventPaymentCompleted     = "payment.completed"
	EventPaymentRefunded      = "payment.refunded"
	EventPaymentPartlyRefund  = "payment.partly_refunded"
	EventPaymentReversed      = "payment.reversed"
	EventPaymentHoldExpired   = "payment.expired"
	webhookEventTypeBytesMax  = 64
	webhookEndpointsMax       = 16   // per partner: each is a delivery per event
	webhookURLBytesMax        = 2048 // what browsers and proxies reliably pass
	webhookEventTypesMax      = 16
	webhookSecretsMax         = 2 // the current secret and one being rotated out
	webhookWrappedBytesMax    = 128
	webhookAttemptsMax        = 16  // the sender's schedule has ~9 steps
	webhookExcerptBytesMax    = 256 // a short excerpt of an answer, never more
	webhookClassBytesMax      = 32
	webhookOverlapMax         = int64(7 * 24 * time.Hour)
	webhookBackoffMax         = int64(48 * time.Hour) // the longest single wait the FSM accepts
	webhookFailOnDisableMax   = 1024                  // due-index entries looked at in the apply that disables; the sender fails the rest as they come due
	webhookDisabledGone       = "gone"                // the endpoint answered 410
	webhookDisabledByPartner  = "partner"
	webhookDeliveryPending    = "pending"
	webhookDeliveryDelivered  = "delivered"
	webhookDeliveryFailed     = "failed"
	webhookEndpointIDBytesMax = 64
)

// EventTypes are the types a partner may subscribe to.
var EventTypes = []string{EventPaymentCompleted, EventPaymentRefunded, EventPaymentPartlyRefund, EventPaymentReversed, EventPaymentHoldExpired}

// Delivery states as the API shows them.
const (
	DeliveryPending   = webhookDeliveryPending
	DeliveryDelivered = webhookDeliveryDelivered
	DeliveryFailed    = webhookDeliveryFailed
	// DisabledGone is WebhookEndpoint.DisabledReason after a 410.
	DisabledGone = webhookDisabledGone
	// DisabledByPartner: the partner disabled it (PATCH enabled=false).
	DisabledByPartner = webhookDisabledByPartner
)

// WebhookEndpoint is a partner's endpoint.
type WebhookEndpoint struct {
	ID         string   `json:"id"`
	Partner    string   `json:"partner"`
	URL        string   `json:"url"`
	EventTypes []string `json:"event_types"`
	Disabled   bool     `json:"disabled,omitempty"`
	// DisabledReason: DisabledGone or DisabledByPartner.
	DisabledReason string `json:"disabled_reason,omitempty"`
	// Secrets are the signing secrets wrapped under the nodes' webhook
	// KEK (AES-256-GCM, package webhook): HMAC needs the clear secret, so
	// a hash would not do, and the FSM holds no KEK.
	Secrets []WebhookSecret `json:"secrets,omitempty"`
	Created int64           `json:"created"`
}

// WebhookSecret is one wrapped secret and, while it is rotated out, the
// time after which deliveries are no longer signed with it (unix ns).
type WebhookSecret struct {
	Wrapped  string `json:"wrapped"` // base64 (std) of nonce ‖ ciphertext ‖ tag
	KEK      string `json:"kek"`     // the KEK's id it is wrapped under
	NotAfter int64  `json:"not_after,omitempty"`
}

// Valid reports whether s still signs at now (unix ns).
func (s WebhookSecret) Valid(now int64) bool { return s.NotAfter == 0 || now < s.NotAfter }

// Subscribed reports whether e wants events of typ.
func (e *WebhookEndpoint) Subscribed(typ string) bool { return slices.Contains(e.EventTypes, typ) }

// Redacted is e without its wrapped secrets (how many, until when, is
// kept): what audit records and the API show.
func (e WebhookEndpoint) Redacted() WebhookEndpoint {
	out := e
	out.Secrets = nil
	for _, s := range e.Secrets {
		out.Secrets = append(out.Secrets, WebhookSecret{Wrapped: "redacted", KEK: s.KEK, NotAfter: s.NotAfter})
	}
	return out
}

// WebhookChange is what an OpPutWebhookEndpoint does.
type WebhookChange struct {
	// Action: "create", "update" (event types, enabled), "rotate_secret"
	// or "delete".
	Action   string          `json:"action"`
	Endpoint WebhookEndpoint `json:"endpoint"`
	// Overlap is how long the replaced secret still signs after a
	// rotate_secret (ns).
	Overlap int64 `json:"overlap,omitempty"`
}

// Webhook change actions.
const (
	WebhookCreate       = "create"
	WebhookUpdate       = "update"
	WebhookRotateSecret = "rotate_secret"
	WebhookDelete       = "delete"
)

// WebhookAttempt is an OpWebhookAttempt: what one delivery attempt got.
type WebhookAttempt struct {
	Endpoint string `json:"endpoint"`
	Event    string `json:"event"`
	// Attempt is this attempt's number (1 for the first); a result whose
	// number is not the delivery's next (a former leader's, recorded
	// late) changes nothing.
	Attempt    int    `json:"attempt"`
	StatusCode int    `json:"status_code,omitempty"`
	Class      string `json:"class"` // ok, http_status, timeout, connect, refused_address, tls, endpoint_disabled, other
	Excerpt    string `json:"excerpt,omitempty"`
	// NextAt is when to try again (unix ns), chosen by the proposer with
	// its backoff and jitter; 0 gives up (the delivery fails).
	NextAt int64 `json:"next_at,omitempty"`
}

// WebhookAttemptRecord is an attempt as the delivery keeps it.
type WebhookAttemptRecord struct {
	Attempt    int    `json:"attempt"`
	Time       int64  `json:"time"`
	StatusCode int    `json:"status_code,omitempty"`
	Class      string `json:"class"`
	Excerpt    string `json:"excerpt,omitempty"`
}

// WebhookDelivery is one event for one endpoint: the outbox entry.
type WebhookDelivery struct {
	Event    string `json:"event"`
	Endpoint string `json:"endpoint"`
	Partner  string `json:"partner"`
	Type     string `json:"type"`
	Transfer string `json:"transfer"`
	// Body is the request body, fixed at apply time (a string, so the
	// bytes sent are exactly the bytes stored).
	Body     string                 `json:"body"`
	Created  int64                  `json:"created"`
	State    string                 `json:"state"`
	NextAt   int64                  `json:"next_at,omitempty"`
	Attempts []WebhookAttemptRecord `json:"attempts,omitempty"`
}

// CheckWebhookEndpoint reports whether e is an endpoint the FSM would
// store. Whether its URL's host is allowed is the proposer's config
// (package webhook), checked again when it dials.
func CheckWebhookEndpoint(e *WebhookEndpoint) error {
	if !validToken(e.ID, webhookEndpointIDBytesMax) {
		return changeError("endpoint.id", "letters, digits, '_', '-', '.', at most %d", webhookEndpointIDBytesMax)
	}
	if !validToken(e.Partner, idBytesMax) {
		return changeError("endpoint.partner", "required")
	}
	if len(e.URL) > webhookURLBytesMax {
		return changeError("url", "at most %d bytes", webhookURLBytesMax)
	}
	u, err := url.Parse(e.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return changeError("url", "an absolute http(s) URL without user info or fragment")
	}
	if len(e.EventTypes) == 0 || len(e.EventTypes) > webhookEventTypesMax {
		return changeError("event_types", "1 to %d of %s", webhookEventTypesMax, strings.Join(EventTypes, ", "))
	}
	for i, typ := range e.EventTypes {
		if !slices.Contains(EventTypes, typ) {
			return changeError("event_types", "%q is not one of %s", typ, strings.Join(EventTypes, ", "))
		}
		if slices.Contains(e.EventTypes[:i], typ) {
			return changeError("event_types", "%q twice", typ)
		}
	}
	if len(e.Secrets) == 0 || len(e.Secrets) > webhookSecretsMax {
		return changeError("secrets", "1 to %d", webhookSecretsMax)
	}
	for _, s := range e.Secrets {
		if s.Wrapped == "" || len(s.Wrapped) > webhookWrappedBytesMax || strings.HasPrefix(s.Wrapped, "whsec_") || !validToken(s.KEK, idBytesMax) {
			return changeError("secrets", "a secret is stored wrapped under the webhook KEK, never in clear")
		}
	}
	if e.DisabledReason != "" && !e.Disabled || e.Disabled && e.DisabledReason != webhookDisabledGone && e.DisabledReason != webhookDisabledByPartner {
		return changeError("disabled_reason", "%q with disabled %v", e.DisabledReason, e.Disabled)
	}
	return nil
}

func cloneEndpoint(in *WebhookEndpoint) *WebhookEndpoint {
	e := *in
	e.ID, e.Partner, e.URL, e.DisabledReason = strings.Clone(in.ID), strings.Clone(in.Partner), strings.Clone(in.URL), strings.Clone(in.DisabledReason)
	e.EventTypes = nil
	for _, s := range in.EventTypes {
		e.EventTypes = append(e.EventTypes, strings.Clone(s))
	}
	e.Secrets = nil
	for _, s := range in.Secrets {
		e.Secrets = append(e.Secrets, WebhookSecret{Wrapped: strings.Clone(s.Wrapped), KEK: strings.Clone(s.KEK), NotAfter: s.NotAfter})
	}
	return &e
}

// WebhookEndpoint returns the endpoint with id.
func (d *Directory) WebhookEndpoint(id string) (*WebhookEndpoint, bool) {
	e, ok := d.webhookByID[id]
	return e, ok
}

// WebhookEndpoints returns partner's endpoints, by id.
func (d *Directory) WebhookEndpoints(partner string) []WebhookEndpoint {
	var out []WebhookEndpoint
	for _, e := range d.webhooks[partner] {
		out = append(out, *e)
	}
	return out
}

// putWebhook sets e (nil: deletes id) in d's maps; d is the txn's copy.
func (d *Directory) putWebhook(id, partner string, e *WebhookEndpoint) {
	if d.webhooks == nil {
		d.webhooks = map[string][]*WebhookEndpoint{}
	}
	if d.webhookByID == nil {
		d.webhookByID = map[string]*WebhookEndpoint{}
	}
	list := slices.DeleteFunc(slices.Clone(d.webhooks[partner]), func(x *WebhookEndpoint) bool { return x.ID == id })
	if e != nil {
		list = append(list, e)
		slices.SortFunc(list, func(a, b *WebhookEndpoint) int { return strings.Compare(a.ID, b.ID) })
		d.webhookByID[id] = e
	} else {
		delete(d.webhookByID, id)
	}
	if len(list) == 0 {
		delete(d.webhooks, partner)
	} else {
		d.webhooks[partner] = list
	}
}

// putWebhookEndpoint applies an OpPutWebhookEndpoint.
func (t *txn) putWebhookEndpoint(c *Command) Result {
	ch := c.Admin.Webhook
	if ch == nil {
		return changeErr("webhook", "required")
	}
	if ch.Overlap < 0 || ch.Overlap > webhookOverlapMax {
		return changeErr("overlap", "0 to %d hours", webhookOverlapMax/int64(time.Hour))
	}
	d := t.directory()
	in := cloneEndpoint(&ch.Endpoint)
	cur, exists := d.WebhookEndpoint(in.ID)
	if exists && cur.Partner != in.Partner {
		// Another partner's endpoint is none of this one's business.
		exists, cur = false, nil
	}
	var next *WebhookEndpoint
	switch ch.Action {
	case WebhookCreate:
		if _, taken := d.WebhookEndpoint(in.ID); taken {
			return Result{Status: StatusExists, Detail: fmt.Sprintf("endpoint.id: %q exists", in.ID)}
		}
		if len(d.webhooks[in.Partner]) >= webhookEndpointsMax {
			return changeErr("endpoints", "at most %d per partner", webhookEndpointsMax)
		}
		if len(in.Secrets) != 1 || in.Disabled {
			return changeErr("secrets", "a new endpoint has one secret and is enabled")
		}
		in.Created = c.Time
		next = in
	case WebhookUpdate, WebhookRotateSecret, WebhookDelete:
		if !exists {
			return Result{Status: StatusNotFound, Detail: fmt.Sprintf("endpoint.id: no endpoint %q", in.ID)}
		}
		next = cloneEndpoint(cur)
		switch ch.Action {
		case WebhookUpdate:
			next.EventTypes = in.EventTypes
			if next.Disabled != in.Disabled {
				next.Disabled, next.DisabledReason = in.Disabled, ""
				if in.Disabled {
					next.DisabledReason = webhookDisabledByPartner
				}
			}
		case WebhookRotateSecret:
			if len(in.Secrets) != 1 {
				return changeErr("secrets", "a rotation carries exactly one new wrapped secret")
			}
			next.Secrets = rotate(cur.Secrets, in.Secrets, c.Time, ch.Overlap,
				func(s WebhookSecret) string { return s.Wrapped },
				func(s WebhookSecret) int64 { return s.NotAfter },
				func(s WebhookSecret, na int64) WebhookSecret { s.NotAfter = na; return s })
		case WebhookDelete:
			next = nil
		}
	default:
		return changeErr("webhook.action", "%q: create, update, rotate_secret or delete", ch.Action)
	}
	var before json.RawMessage
	if exists {
		before = mustJSON(cur.Redacted())
	}
	nd := t.dirForChange()
	if next == nil {
		nd.putWebhook(cur.ID, cur.Partner, nil)
		t.del(skey1(pfxWebhookEndpoint, cur.ID))
		t.appendAudit(c, "webhook_endpoint.delete", "webhook_endpoint/"+cur.ID, before, nil)
		return Result{Status: StatusOK}
	}
	if err := CheckWebhookEndpoint(next); err != nil {
		return resultOf(err)
	}
	nd.putWebhook(next.ID, next.Partner, next)
	t.set(skey1(pfxWebhookEndpoint, next.ID), mustJSON(next))
	t.appendAudit(c, "webhook_endpoint."+ch.Action, "webhook_endpoint/"+next.ID, before, mustJSON(next.Redacted()))
	return Result{Status: StatusOK}
}

// emitEvent writes an event of typ about transfer tr into the outbox of
// every enabled endpoint of tr's partner that subscribed to typ. With no
// endpoint for the partner it costs one map probe: this runs on the
// ISO 8583 hot path. The body is fixed here (time from the command), so
// every replica and every retry sends the same bytes.
func (t *txn) emitEvent(c *Command, typ string, tr *Transfer) {
	eps := t.directory().webhooks[tr.Partner]
	if len(eps) == 0 {
		return
	}
	var body string
	var id string
	for _, e := range eps {
		if e.Disabled || !e.Subscribed(typ) {
			continue
		}
		if id == "" {
			id = t.nextEventID()
			body = eventBody(id, typ, c.Time, tr)
		}
		dl := WebhookDelivery{Event: id, Endpoint: e.ID, Partner: tr.Partner, Type: typ, Transfer: tr.ID,
			Body: body, Created: c.Time, State: webhookDeliveryPending, NextAt: c.Time}
		t.set(skeyIndex2(pfxWebhookDelivery, e.ID, id), mustJSON(&dl))
		t.set(skeyTimed(pfxWebhookDue, c.Time, e.ID+"\x00"+id), []byte{})
	}
}

func (t *txn) nextEventID() string {
	var n uint64
	if v, ok := t.get(string(keyEventSeq)); ok {
		var err error
		n, err = strconv.ParseUint(string(v), 10, 64)
		mustDecode(err)
	}
	n++
	t.set(string(keyEventSeq), strconv.AppendUint(nil, n, 10))
	return fmt.Sprintf("evt_%016d", n)
}

// eventData is an event's data member: the payment as it stands after
// the change.
type eventData struct {
	PaymentID   string `json:"payment_id"`
	Status      string `json:"status"`
	Amount      string `json:"amount"`
	Refunded    string `json:"refunded"`
	Currency    string `json:"currency"`
	Reference   string `json:"reference,omitempty"`
	BusinessDay string `json:"business_day,omitempty"`
}

type eventEnvelope struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	Timestamp string    `json:"timestamp"`
	Data      eventData `json:"data"`
}

// PaymentStatus is the status the partner API shows for t. byHost says
// that the destination's host (a biller's reversal, an issuer's 0420)
// took back what was left of it: a payment taken back as a whole by its
// host is "reversed", like a voided hold, where the partner's own refunds
// make it "refunded".
func PaymentStatus(t *Transfer, byHost bool) string {
	switch {
	case t.Status == TransferPending:
		return "pending"
	case t.Status == TransferVoided:
		return "reversed"
	case t.Status == TransferExpired:
		return "expired"
	case t.Reversed > 0 && t.Reversed >= t.Amount && byHost:
		return "reversed"
	case t.Reversed > 0 && t.Reversed >= t.Amount:
		return "refunded"
	case t.Reversed > 0:
		return "partly_refunded"
	}
	return "completed"
}

func eventBody(id, typ string, now int64, tr *Transfer) string {
	ccy, err := currency.ByCode(tr.Currency)
	amount, refunded := strconv.FormatInt(tr.Amount, 10), strconv.FormatInt(tr.Reversed, 10)
	if err == nil {
		amount, refunded = currency.FormatMinor(tr.Amount, ccy, '.'), currency.FormatMinor(tr.Reversed, ccy, '.')
	}
	env := eventEnvelope{ID: id, Type: typ, Timestamp: time.Unix(0, now).UTC().Format(time.RFC3339Nano),
		Data: eventData{PaymentID: tr.ID, Status: PaymentStatus(tr, typ == EventPaymentReversed), Amount: amount, Refunded: refunded,
			Currency: tr.Currency, Reference: tr.Ref.RRN, BusinessDay: tr.BusinessDay}}
	return string(mustJSON(&env))
}

// webhookAttempt applies an OpWebhookAttempt.
func (t *txn) webhookAttempt(c *Command) Result {
	a := c.Webhook
	if a == nil || !validToken(a.Endpoint, webhookEndpointIDBytesMax) || !strings.HasPrefix(a.Event, "evt_") ||
		len(a.Event) > idBytesMax || a.Attempt < 1 || a.StatusCode < 0 || a.StatusCode > 999 ||
		len(a.Excerpt) > webhookExcerptBytesMax || !validToken(a.Class, webhookClassBytesMax) ||
		a.NextAt != 0 && (a.NextAt <= c.Time || a.NextAt > c.Time+webhookBackoffMax) {
		return invalid()
	}
	k := skeyIndex2(pfxWebhookDelivery, a.Endpoint, a.Event)
	v, ok := t.get(k)
	if !ok {
		return Result{Status: StatusNotFound}
	}
	var dl WebhookDelivery
	mustDecode(json.Unmarshal(v, &dl))
	if dl.State != webhookDeliveryPending || a.Attempt != len(dl.Attempts)+1 {
		// A result for an attempt already recorded (a former leader's,
		// committed late, or a repeat): the first one counts.
		return Result{Status: StatusOK, Replayed: true}
	}
	t.del(skeyTimed(pfxWebhookDue, dl.NextAt, a.Endpoint+"\x00"+a.Event))
	dl.Attempts = append(dl.Attempts, WebhookAttemptRecord{Attempt: a.Attempt, Time: c.Time, StatusCode: a.StatusCode,
		Class: strings.Clone(a.Class), Excerpt: strings.Clone(a.Excerpt)})
	ep, epOK := t.directory().WebhookEndpoint(a.Endpoint)
	switch {
	case a.StatusCode >= 200 && a.StatusCode < 300:
		dl.State, dl.NextAt = webhookDeliveryDelivered, 0
	case a.StatusCode == 410:
		dl.State, dl.NextAt = webhookDeliveryFailed, 0
		if epOK && !ep.Disabled {
			t.disableGone(ep, a.Event)
		}
	case !epOK || ep.Disabled || a.NextAt == 0 || a.Attempt >= webhookAttemptsMax:
		dl.State, dl.NextAt = webhookDeliveryFailed, 0
	default:
		dl.NextAt = a.NextAt
		t.set(skeyTimed(pfxWebhookDue, dl.NextAt, a.Endpoint+"\x00"+a.Event), []byte{})
	}
	t.set(k, mustJSON(&dl))
	return Result{Status: StatusOK}
}

// disableGone disables ep after a 410 (the receiver says it is gone for
// good) and fails its other pending deliveries among the first
// webhookFailOnDisableMax of the due index (the pending ones only, never
// the endpoint's history, so the apply stays bounded); the sender fails
// the rest as they come due (an attempt on a disabled endpoint fails its
// delivery).
func (t *txn) disableGone(ep *WebhookEndpoint, except string) {
	next := cloneEndpoint(ep)
	next.Disabled, next.DisabledReason = true, webhookDisabledGone
	t.dirForChange().putWebhook(next.ID, next.Partner, next)
	t.set(skey1(pfxWebhookEndpoint, next.ID), mustJSON(next))
	lo := []byte{pfxWebhookDue}
	for _, k := range t.scanKeys(lo, prefixEnd(lo), webhookFailOnDisableMax) {
		epID, evID, _ := strings.Cut(k[9:], "\x00")
		if epID != ep.ID || evID == except {
			continue
		}
		dk := skeyIndex2(pfxWebhookDelivery, epID, evID)
		v, ok := t.get(dk)
		if !ok {
			panic("store: apply: webhook due index names a missing delivery")
		}
		var dl WebhookDelivery
		mustDecode(json.Unmarshal(v, &dl))
		t.del(k)
		dl.State, dl.NextAt = webhookDeliveryFailed, 0
		dl.Attempts = append(dl.Attempts, WebhookAttemptRecord{Attempt: len(dl.Attempts) + 1, Class: "endpoint_disabled"})
		t.set(dk, mustJSON(&dl))
	}
}

func loadWebhooks(r pebble.Reader, d *Directory) error {
	lo := []byte{pfxWebhookEndpoint}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		e := new(WebhookEndpoint)
		if err := json.Unmarshal(it.Value(), e); err != nil {
			return fmt.Errorf("%w: webhook endpoint: %v", ErrCorrupt, err)
		}
		d.putWebhook(e.ID, e.Partner, e)
	}
	return it.Error()
}

// WebhookDeliveries returns up to limit deliveries of endpoint after the
// event id after, in event order.
func (s *Store) WebhookDeliveries(endpoint, after string, limit int) ([]WebhookDelivery, error) {
	lo := []byte(skeyIndex2(pfxWebhookDelivery, endpoint, ""))
	hi := prefixEnd(lo)
	start := lo
	if after != "" {
		start = append([]byte(skeyIndex2(pfxWebhookDelivery, endpoint, after)), 0)
	}
	var out []WebhookDelivery
	err := s.scanValues(start, hi, limit, func(_, v []byte) error {
		var dl WebhookDelivery
		if err := json.Unmarshal(v, &dl); err != nil {
			return fmt.Errorf("%w: webhook delivery: %v", ErrCorrupt, err)
		}
		out = append(out, dl)
		return nil
	})
	return out, err
}

// WebhookDelivery returns endpoint's delivery of event.
func (s *Store) WebhookDelivery(endpoint, event string) (WebhookDelivery, error) {
	var dl WebhookDelivery
	v, err := s.get([]byte(skeyIndex2(pfxWebhookDelivery, endpoint, event)))
	if err != nil {
		return dl, err
	}
	if err := json.Unmarshal(v, &dl); err != nil {
		return dl, fmt.Errorf("%w: webhook delivery: %v", ErrCorrupt, err)
	}
	return dl, nil
}

// WebhookQueue is the outbox as the sender sees it.
type WebhookQueue struct {
	// Due are up to the limit's deliveries whose next attempt is at or
	// before now, earliest first.
	Due []WebhookDelivery
	// Pending counts pending deliveries, up to the count limit.
	Pending int
	// FirstDue is the earliest next attempt of a pending delivery (0: none).
	FirstDue int64
}

// WebhookQueue reads the outbox: deliveries due at now (at most due) and
// the pending count (counted up to count).
func (s *Store) WebhookQueue(now int64, due, count int) (WebhookQueue, error) {
	var q WebhookQueue
	lo := []byte{pfxWebhookDue}
	var keys [][]byte
	err := s.scanValues(lo, prefixEnd(lo), count, func(k, _ []byte) error {
		if q.Pending == 0 {
			q.FirstDue = int64(decodeOrderedTime(k[1:9]))
		}
		q.Pending++
		if len(keys) < due && int64(decodeOrderedTime(k[1:9])) <= now {
			keys = append(keys, bytes.Clone(k[9:]))
		}
		return nil
	})
	if err != nil {
		return q, err
	}
	for _, k := range keys {
		ep, ev, _ := bytes.Cut(k, []byte{sep})
		dl, err := s.WebhookDelivery(string(ep), string(ev))
		if err != nil {
			return q, err
		}
		q.Due = append(q.Due, dl)
	}
	return q, nil
}

func decodeOrderedTime(b []byte) uint64 {
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v ^ (1 << 63)
}

// scanValues calls fn for up to limit pairs in [lo, hi), from one
// pebble snapshot.
func (s *Store) scanValues(lo, hi []byte, limit int, fn func(k, v []byte) error) error {
	return s.read(func(db *pebble.DB) error {
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return err
		}
		defer it.Close()
		n := 0
		for ok := it.First(); ok && n < limit; ok = it.Next() {
			if err := fn(it.Key(), it.Value()); err != nil {
				return err
			}
			n++
		}
		return it.Error()
	})
}

// get reads key's value (a copy), or ErrNotFound.
func (s *Store) get(key []byte) ([]byte, error) {
	var out []byte
	err := s.read(func(db *pebble.DB) (err error) {
		out, err = getRecord(db, key, func(b []byte) ([]byte, error) { return bytes.Clone(b), nil })
		return err
	})
	return out, err
}

// webhookAttemptBytesMax bounds one encoded WebhookAttempt: ids, a class
// and an excerpt of at most webhookExcerptBytesMax (JSON escapes can
// multiply it by 6).
const webhookAttemptBytesMax = 4096
