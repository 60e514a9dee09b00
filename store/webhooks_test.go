package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

func endpointCmd(key, action string, e WebhookEndpoint, overlap int64) Command {
	c := adminCmd(OpPutWebhookEndpoint, key, &Admin{Webhook: &WebhookChange{Action: action, Endpoint: e, Overlap: overlap}})
	c.Partner = e.Partner
	return c
}

func testEndpoint(id string, types ...string) WebhookEndpoint {
	if len(types) == 0 {
		types = EventTypes
	}
	return WebhookEndpoint{ID: id, Partner: "p1", URL: "http://127.0.0.1:9101/hook", EventTypes: types,
		Secrets: []WebhookSecret{{Wrapped: "d3JhcHBlZC1zZWNyZXQtb25l", KEK: "abc123"}}}
}

func attemptCmd(ep, ev string, n, code int, next int64) Command {
	return Command{Op: OpWebhookAttempt, Time: t0 + int64(n)*hour, Webhook: &WebhookAttempt{Endpoint: ep, Event: ev, Attempt: n,
		StatusCode: code, Class: "http_status", NextAt: next}}
}

func deliveries(t *testing.T, s *Store, ep string) []WebhookDelivery {
	t.Helper()
	out, err := s.WebhookDeliveries(ep, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// One event per status change, in the same apply, with a body fixed from
// the command; the repeat of a command (same key) makes none.
func TestWebhookEventPerChange(t *testing.T) {
	s := fixture(t)
	mustOK(t, s, endpointCmd("we1", WebhookCreate, testEndpoint("ep1"), 0))
	mustOK(t, s, postCardCmd("pay1", "h1", "merch", 1234, "ref-pay1"))
	if r := run1(t, s, postCardCmd("pay1", "h1", "merch", 1234, "ref-pay1")); !r.Replayed {
		t.Fatalf("repeat not replayed: %+v", r)
	}
	mustOK(t, s, reverseCmd("rf1", "ref-pay1", 234))
	mustOK(t, s, reverseCmd("rf2", "ref-pay1", 1000))
	ds := deliveries(t, s, "ep1")
	want := []string{EventPaymentCompleted, EventPaymentPartlyRefund, EventPaymentRefunded}
	if len(ds) != len(want) {
		t.Fatalf("%d deliveries, want %d: %+v", len(ds), len(want), ds)
	}
	ids := map[string]bool{}
	for i, d := range ds {
		if d.Type != want[i] || d.State != DeliveryPending || d.Partner != "p1" {
			t.Errorf("delivery %d: %+v", i, d)
		}
		ids[d.Event] = true
		var body struct {
			ID, Type, Timestamp string
			Data                map[string]string
		}
		if err := json.Unmarshal([]byte(d.Body), &body); err != nil {
			t.Fatal(err)
		}
		if body.ID != d.Event || body.Type != d.Type || body.Data["currency"] != "USD" || body.Data["amount"] != "12.34" ||
			!strings.HasSuffix(body.Timestamp, "Z") {
			t.Errorf("body %d: %s", i, d.Body)
		}
	}
	if len(ids) != 3 {
		t.Errorf("event ids not distinct: %v", ids)
	}
	if !strings.Contains(ds[2].Body, `"status":"refunded","amount":"12.34","refunded":"12.34"`) {
		t.Errorf("refunded body: %s", ds[2].Body)
	}
	q, err := s.WebhookQueue(t0+10*hour, 10, 100)
	if err != nil || q.Pending != 3 || len(q.Due) != 3 || q.FirstDue != t0 {
		t.Fatalf("queue: %+v %v", q, err)
	}
}

// Without an endpoint, or for a type it did not subscribe to, or while
// it is disabled, nothing is written.
func TestWebhookNoEventWithoutSubscription(t *testing.T) {
	s := fixture(t)
	mustOK(t, s, postCardCmd("pay0", "h1", "merch", 100, "ref-0"))
	mustOK(t, s, endpointCmd("we1", WebhookCreate, testEndpoint("ep1", EventPaymentRefunded), 0))
	mustOK(t, s, postCardCmd("pay1", "h1", "merch", 100, "ref-1"))
	other := postCardCmd("pay2", "h1", "merch", 100, "ref-2")
	other.Partner = "p2"
	mustOK(t, s, other)
	if ds := deliveries(t, s, "ep1"); len(ds) != 0 {
		t.Fatalf("unsubscribed events written: %+v", ds)
	}
	ep := testEndpoint("ep1", EventPaymentRefunded)
	ep.Disabled = true
	mustOK(t, s, endpointCmd("we2", WebhookUpdate, ep, 0))
	mustOK(t, s, reverseCmd("rf1", "ref-1", 100))
	if ds := deliveries(t, s, "ep1"); len(ds) != 0 {
		t.Fatalf("event for a disabled endpoint: %+v", ds)
	}
	if e, _ := s.Directory().WebhookEndpoint("ep1"); e.DisabledReason != DisabledByPartner {
		t.Errorf("disabled reason %q", e.DisabledReason)
	}
}

// Replaying log entries the store applied already makes no event, and two
// stores fed the same entries hold the same outbox (state hash).
func TestWebhookDeterministicAndReplay(t *testing.T) {
	a, b := fixture(t), fixture(t)
	entries := [][]Command{
		{endpointCmd("we1", WebhookCreate, testEndpoint("ep1"), 0)},
		{postCardCmd("pay1", "h1", "merch", 500, "ref-1"), reverseCmd("rf1", "ref-1", 100)},
		{attemptCmd("ep1", "evt_0000000000000001", 1, 503, t0+2*hour)},
	}
	for _, s := range []*Store{a, b} {
		for _, cmds := range entries {
			run(t, s, cmds...)
		}
	}
	// The same entries again at their old indexes: skipped.
	base := a.AppliedIndex() - uint64(len(entries)) + 1
	for i, cmds := range entries {
		a.Apply(logEntry(t, base+uint64(i), cmds...))
	}
	_, ha, _ := a.StateHash()
	_, hb, _ := b.StateHash()
	if ha != hb {
		t.Fatal("state hashes differ")
	}
	if ds := deliveries(t, a, "ep1"); len(ds) != 2 || len(ds[0].Attempts) != 1 || ds[0].NextAt != t0+2*hour {
		t.Fatalf("deliveries after replay: %+v", ds)
	}
}

// The outbox and the endpoints survive a snapshot and restore.
func TestWebhookSnapshotRestore(t *testing.T) {
	s := fixture(t)
	mustOK(t, s, endpointCmd("we1", WebhookCreate, testEndpoint("ep1"), 0))
	mustOK(t, s, postCardCmd("pay1", "h1", "merch", 500, "ref-1"))
	_, want, _ := s.StateHash()
	s2 := openTest(t)
	if err := s2.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, s)))); err != nil {
		t.Fatal(err)
	}
	_, got, _ := s2.StateHash()
	if got != want {
		t.Fatal("state hash changed by snapshot/restore")
	}
	if _, ok := s2.Directory().WebhookEndpoint("ep1"); !ok {
		t.Fatal("endpoint lost")
	}
	if ds := deliveries(t, s2, "ep1"); len(ds) != 1 {
		t.Fatalf("outbox lost: %+v", ds)
	}
	// And emission goes on from the restored event sequence.
	mustOK(t, s2, reverseCmd("rf1", "ref-1", 500))
	if ds := deliveries(t, s2, "ep1"); len(ds) != 2 || ds[1].Event != "evt_0000000000000002" {
		t.Fatalf("after restore: %+v", ds)
	}
}

// Attempts: a retry moves the due time, a 2xx delivers, a stale or
// repeated result changes nothing, and giving up fails the delivery.
func TestWebhookAttempts(t *testing.T) {
	s := fixture(t)
	mustOK(t, s, endpointCmd("we1", WebhookCreate, testEndpoint("ep1"), 0))
	mustOK(t, s, postCardCmd("pay1", "h1", "merch", 500, "ref-1"), postCardCmd("pay2", "h1", "merch", 500, "ref-2"))
	ev1, ev2 := "evt_0000000000000001", "evt_0000000000000002"
	mustOK(t, s, attemptCmd("ep1", ev1, 1, 500, t0+3*hour))
	if r := run1(t, s, attemptCmd("ep1", ev1, 1, 200, 0)); !r.Replayed {
		t.Fatalf("a second result for attempt 1 counted: %+v", r)
	}
	q, _ := s.WebhookQueue(t0+2*hour, 10, 100)
	if q.Pending != 2 || len(q.Due) != 1 || q.Due[0].Event != ev2 {
		t.Fatalf("queue: %+v", q)
	}
	mustOK(t, s, attemptCmd("ep1", ev1, 2, 204, 0))
	mustOK(t, s, attemptCmd("ep1", ev2, 1, 0, 0)) // given up
	ds := deliveries(t, s, "ep1")
	if ds[0].State != DeliveryDelivered || len(ds[0].Attempts) != 2 || ds[1].State != DeliveryFailed {
		t.Fatalf("deliveries: %+v", ds)
	}
	if q, _ := s.WebhookQueue(t0+100*hour, 10, 100); q.Pending != 0 {
		t.Fatalf("queue not empty: %+v", q)
	}
	if r := run1(t, s, attemptCmd("ep1", "evt_0000000000000009", 1, 200, 0)); r.Status != StatusNotFound {
		t.Errorf("attempt for no delivery: %v", r.Status)
	}
	bad := attemptCmd("ep1", ev1, 3, 500, t0) // next attempt not after now
	if r := run1(t, s, bad); r.Status != StatusInvalidCommand {
		t.Errorf("next_at in the past: %v", r.Status)
	}
}

// A 410 disables the endpoint (replicated) and fails its other pending
// deliveries in the same apply.
func TestWebhookGoneDisables(t *testing.T) {
	s := fixture(t)
	mustOK(t, s, endpointCmd("we1", WebhookCreate, testEndpoint("ep1"), 0))
	mustOK(t, s, postCardCmd("pay1", "h1", "merch", 500, "ref-1"), postCardCmd("pay2", "h1", "merch", 500, "ref-2"))
	mustOK(t, s, attemptCmd("ep1", "evt_0000000000000001", 1, 410, t0+5*hour))
	e, _ := s.Directory().WebhookEndpoint("ep1")
	if !e.Disabled || e.DisabledReason != DisabledGone {
		t.Fatalf("endpoint after 410: %+v", e)
	}
	for _, d := range deliveries(t, s, "ep1") {
		if d.State != DeliveryFailed {
			t.Errorf("delivery %s %s", d.Event, d.State)
		}
	}
	if q, _ := s.WebhookQueue(t0+100*hour, 10, 100); q.Pending != 0 {
		t.Fatalf("queue: %+v", q)
	}
	mustOK(t, s, postCardCmd("pay3", "h1", "merch", 500, "ref-3"))
	if ds := deliveries(t, s, "ep1"); len(ds) != 2 {
		t.Fatalf("event written for a gone endpoint: %d", len(ds))
	}
}

// Endpoint rules: refusals change nothing; a clear secret is refused; the
// audit record carries no wrapped secret; rotation keeps the old secret
// for the overlap; another partner cannot touch an endpoint.
func TestWebhookEndpointChanges(t *testing.T) {
	s := fixture(t)
	bad := func(name string, e WebhookEndpoint) {
		t.Helper()
		if r := run1(t, s, endpointCmd("bad-"+name, WebhookCreate, e, 0)); r.Status != StatusInvalidChange {
			t.Errorf("%s: %v %s", name, r.Status, r.Detail)
		}
	}
	e := testEndpoint("ep1")
	e.URL = "ftp://x/"
	bad("scheme", e)
	e = testEndpoint("ep1")
	e.URL = "https://x/" + strings.Repeat("a", webhookURLBytesMax)
	bad("long url", e)
	bad("type", testEndpoint("ep1", "payment.nope"))
	e = testEndpoint("ep1")
	e.Secrets = []WebhookSecret{{Wrapped: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", KEK: "abc123"}}
	bad("clear secret", e)
	if _, ok := s.Directory().WebhookEndpoint("ep1"); ok {
		t.Fatal("refused endpoint stored")
	}
	mustOK(t, s, endpointCmd("we1", WebhookCreate, testEndpoint("ep1"), 0))
	if r := run1(t, s, endpointCmd("we1b", WebhookCreate, testEndpoint("ep1"), 0)); r.Status != StatusExists {
		t.Errorf("create twice: %v", r.Status)
	}
	rot := testEndpoint("ep1")
	rot.Secrets = []WebhookSecret{{Wrapped: "d3JhcHBlZC1zZWNyZXQtdHdv", KEK: "abc123"}}
	mustOK(t, s, endpointCmd("we2", WebhookRotateSecret, rot, hour))
	got, _ := s.Directory().WebhookEndpoint("ep1")
	if len(got.Secrets) != 2 || got.Secrets[0].NotAfter != t0+hour || got.Secrets[1].NotAfter != 0 {
		t.Fatalf("secrets after rotation: %+v", got.Secrets)
	}
	theirs := testEndpoint("ep1")
	theirs.Partner = "p2"
	if r := run1(t, s, endpointCmd("we3", WebhookDelete, theirs, 0)); r.Status != StatusNotFound {
		t.Errorf("another partner's delete: %v", r.Status)
	}
	var audit bytes.Buffer
	recs, err := s.Audit(AuditFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		json.NewEncoder(&audit).Encode(r)
	}
	if strings.Contains(audit.String(), "d3JhcHBlZC") || !strings.Contains(audit.String(), "webhook_endpoint.rotate_secret") {
		t.Errorf("audit: %s", audit.String())
	}
	for i := range webhookEndpointsMax - 1 {
		mustOK(t, s, endpointCmd(keyN("we-many", i), WebhookCreate, testEndpoint(keyN("epm", i)), 0))
	}
	if r := run1(t, s, endpointCmd("we-over", WebhookCreate, testEndpoint("ep-over"), 0)); r.Status != StatusInvalidChange {
		t.Errorf("endpoint over the limit: %v", r.Status)
	}
	mustOK(t, s, endpointCmd("we4", WebhookDelete, testEndpoint("ep1"), 0))
	if _, ok := s.Directory().WebhookEndpoint("ep1"); ok {
		t.Fatal("deleted endpoint still there")
	}
}

func TestWebhookAttemptEncoding(t *testing.T) {
	c := attemptCmd("ep1", "evt_0000000000000001", 2, 503, t0+5*hour)
	c.Webhook.Excerpt = "busy \"now\""
	data, err := EncodeBatch([]Command{c})
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeBatch(data)
	if err != nil || got[0].Webhook == nil || *got[0].Webhook != *c.Webhook || got[0].Op != OpWebhookAttempt {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	bad := bytes.Replace(data, []byte(`{"endpoint"`), []byte(`{"endpoint `), 1)
	if _, err := DecodeBatch(bad); !errors.Is(err, ErrCorrupt) {
		t.Errorf("bad blob: %v", err)
	}
	spaced := bytes.Replace(data, []byte(`"attempt":2`), []byte(`"attempt": 2`), 1)
	if _, err := DecodeBatch(spaced); !errors.Is(err, ErrCorrupt) {
		t.Errorf("non-canonical blob decoded: %v", err)
	}
	c.Webhook.Excerpt = strings.Repeat("\x01", webhookAttemptBytesMax)
	if _, err := EncodeBatch([]Command{c}); !errors.Is(err, ErrInvalidCommand) {
		t.Errorf("over-long attempt encoded: %v", err)
	}
}

// Holds: a capture is a completed payment, a voided hold a reversal, a
// lapsed hold an expiry (OpExpire carries no partner: the hold's is used).
func TestWebhookHoldEvents(t *testing.T) {
	s := fixture(t)
	mustOK(t, s, endpointCmd("we1", WebhookCreate, testEndpoint("ep1"), 0))
	mustOK(t, s, authCmd("h1", "h1", "merch", 300, "H1"), authCmd("h2", "h1", "merch", 200, "H2"), authCmd("h3", "h1", "merch", 100, "H3"))
	mustOK(t, s, completeCmd("c1", "H1", 300, true, ""))
	mustOK(t, s, reverseCmd("v2", "H2", 200))
	mustOK(t, s, expireCmd(t0+2*hour, 0))
	var got []string
	for _, d := range deliveries(t, s, "ep1") {
		got = append(got, d.Type+"/"+strings.SplitN(strings.SplitN(d.Body, `"status":"`, 2)[1], `"`, 2)[0])
	}
	want := "payment.completed/completed payment.reversed/reversed payment.expired/expired"
	if strings.Join(got, " ") != want {
		t.Fatalf("events %v, want %s", got, want)
	}
}
