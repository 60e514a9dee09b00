package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchd/switchd/api"
	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/store"
	"github.com/switchd/switchd/webhook"
)

// webhookNode is a node whose API serves webhooks (http allowed to
// loopback, as in the demo).
func webhookNode(t *testing.T) (*node, *webhook.KEK, webhook.Config) {
	t.Helper()
	n, srv := newNode(t)
	kek, err := webhook.NewKEK([]byte(strings.Repeat("w", 32)))
	if err != nil {
		t.Fatal(err)
	}
	wc := webhook.DefaultConfig()
	wc.Enabled, wc.KEKEnv = true, "UNUSED"
	wc.AllowHTTPHosts, wc.AllowNetworks = []string{"127.0.0.1"}, []string{"127.0.0.0/8"}
	srv.HandleWebhooks(&api.Webhooks{KEK: kek, Guard: webhook.NewGuard(wc), Propose: n.cn.Propose, Outbox: n.st})
	n.url = n.listen(t, srv)
	return n, kek, wc
}

const hookBody = `{"url":"http://127.0.0.1:9101/hook","event_types":["payment.completed","payment.refunded"]}`

func decodeEndpoint(t *testing.T, a answer) api.WebhookEndpoint {
	t.Helper()
	var e api.WebhookEndpoint
	if err := json.Unmarshal([]byte(a.body), &e); err != nil {
		t.Fatalf("%d %s", a.code, a.body)
	}
	return e
}

func TestWebhookEndpointsFlow(t *testing.T) {
	n, _, _ := webhookNode(t)
	tok := n.token(t, "demo-acquirer")
	first := n.call(t, tok, "POST", "/v1/webhook-endpoints", "h1", hookBody)
	e := decodeEndpoint(t, first)
	if first.code != 201 || !strings.HasPrefix(e.Secret, "whsec_") || !strings.HasPrefix(e.ID, "we_") || !e.Enabled || len(e.Secrets) != 1 ||
		first.hdr.Get("Location") != "/v1/webhook-endpoints/"+e.ID {
		t.Fatalf("create: %d %s", first.code, first.body)
	}
	again := n.call(t, tok, "POST", "/v1/webhook-endpoints", "h1", hookBody)
	if r := decodeEndpoint(t, again); again.code != 201 || r.ID != e.ID || r.Secret != "" || again.hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %s", again.code, again.body)
	}
	if other := n.call(t, tok, "POST", "/v1/webhook-endpoints", "h1", strings.Replace(hookBody, "9101", "9102", 1)); other.code != 409 || other.problem() != "idempotency-conflict" {
		t.Fatalf("key with another body: %d %s", other.code, other.body)
	}
	if l := n.call(t, tok, "GET", "/v1/webhook-endpoints", "", ""); l.code != 200 || strings.Count(l.body, `"id":"we_`) != 1 || strings.Contains(l.body, "whsec_") {
		t.Fatalf("list: %d %s", l.code, l.body)
	}
	// A payment and a full refund: two events; partly_refunded is not
	// subscribed.
	p := n.call(t, tok, "POST", "/v1/payments", "p1", pay)
	var pm api.Payment
	json.Unmarshal([]byte(p.body), &pm)
	n.call(t, tok, "POST", "/v1/payments/"+pm.ID+"/refunds", "r1", `{"amount":"2.00"}`)
	n.call(t, tok, "POST", "/v1/payments/"+pm.ID+"/refunds", "r2", `{"amount":"10.34"}`)
	d := n.call(t, tok, "GET", "/v1/webhook-endpoints/"+e.ID+"/deliveries", "", "")
	var ds struct{ Deliveries []api.Delivery }
	json.Unmarshal([]byte(d.body), &ds)
	if d.code != 200 || len(ds.Deliveries) != 2 || ds.Deliveries[0].Type != "payment.completed" || ds.Deliveries[1].Type != "payment.refunded" ||
		ds.Deliveries[0].PaymentID != pm.ID || ds.Deliveries[0].State != "pending" || !strings.Contains(string(ds.Deliveries[1].Payload), `"status":"refunded"`) {
		t.Fatalf("deliveries: %d %s", d.code, d.body)
	}
	rot := n.call(t, tok, "POST", "/v1/webhook-endpoints/"+e.ID+"/rotate-secret", "rot1", `{"overlap":"1h"}`)
	re := decodeEndpoint(t, rot)
	if rot.code != 200 || !strings.HasPrefix(re.Secret, "whsec_") || re.Secret == e.Secret || len(re.Secrets) != 2 || re.Secrets[0].NotAfter == "" {
		t.Fatalf("rotate: %d %s", rot.code, rot.body)
	}
	pa := n.call(t, tok, "PATCH", "/v1/webhook-endpoints/"+e.ID, "pa1", `{"event_types":["payment.reversed"],"enabled":false}`)
	if pe := decodeEndpoint(t, pa); pa.code != 200 || pe.Enabled || pe.DisabledReason != "partner" || pe.EventTypes[0] != "payment.reversed" {
		t.Fatalf("patch: %d %s", pa.code, pa.body)
	}
	if del := n.call(t, tok, "DELETE", "/v1/webhook-endpoints/"+e.ID, "del1", ""); del.code != 204 {
		t.Fatalf("delete: %d %s", del.code, del.body)
	}
	if g := n.call(t, tok, "GET", "/v1/webhook-endpoints/"+e.ID, "", ""); g.code != 404 {
		t.Fatalf("after delete: %d %s", g.code, g.body)
	}
	// The audit chain names every change and holds no secret, wrapped or clear.
	recs, err := n.st.Audit(store.AuditFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(recs)
	for _, want := range []string{"webhook_endpoint.create", "webhook_endpoint.rotate_secret", "webhook_endpoint.update", "webhook_endpoint.delete"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("audit lacks %s", want)
		}
	}
	if strings.Contains(string(b), strings.TrimPrefix(e.Secret, "whsec_")) || strings.Contains(string(b), strings.TrimPrefix(re.Secret, "whsec_")) {
		t.Error("a secret in the audit chain")
	}
}

// Every refusal, and that nothing was stored.
func TestWebhookRefusals(t *testing.T) {
	n, _, _ := webhookNode(t)
	tok := n.token(t, "demo-acquirer")
	created := decodeEndpoint(t, n.call(t, tok, "POST", "/v1/webhook-endpoints", "h1", hookBody))
	cases := []struct {
		name, tok, method, path, key, body string
		code                               int
		problem                            string
	}{
		{"no key", tok, "POST", "/v1/webhook-endpoints", "", hookBody, 400, "validation"},
		{"http to a host not allowed", tok, "POST", "/v1/webhook-endpoints", "b1", `{"url":"http://93.184.216.34/h","event_types":["payment.completed"]}`, 400, "webhook-url-not-allowed"},
		{"private address", tok, "POST", "/v1/webhook-endpoints", "b2", `{"url":"https://10.1.2.3/h","event_types":["payment.completed"]}`, 400, "webhook-url-not-allowed"},
		{"metadata address", tok, "POST", "/v1/webhook-endpoints", "b3", `{"url":"https://169.254.169.254/latest","event_types":["payment.completed"]}`, 400, "webhook-url-not-allowed"},
		{"scheme", tok, "POST", "/v1/webhook-endpoints", "b4", `{"url":"ftp://127.0.0.1/h","event_types":["payment.completed"]}`, 400, "webhook-url-not-allowed"},
		{"long url", tok, "POST", "/v1/webhook-endpoints", "b5", `{"url":"https://x.example/` + strings.Repeat("a", 2100) + `","event_types":["payment.completed"]}`, 400, "validation"},
		{"event type", tok, "POST", "/v1/webhook-endpoints", "b6", `{"url":"http://127.0.0.1:9101/h","event_types":["payment.nope"]}`, 400, "validation"},
		{"no event types", tok, "POST", "/v1/webhook-endpoints", "b7", `{"url":"http://127.0.0.1:9101/h","event_types":[]}`, 400, "validation"},
		{"no token", "", "GET", "/v1/webhook-endpoints", "", "", 401, ""},
		{"write without scope", n.token(t, "demo-acquirer", oauth.ScopePaymentsWrite, oauth.ScopeWebhooksRead), "POST", "/v1/webhook-endpoints", "b8", hookBody, 403, ""},
		{"read without scope", n.token(t, "demo-acquirer", oauth.ScopePaymentsRead), "GET", "/v1/webhook-endpoints", "", "", 403, ""},
		{"other partner reads", n.token(t, "demo-agents"), "GET", "/v1/webhook-endpoints/" + created.ID, "", "", 404, "not-found"},
		{"other partner's deliveries", n.token(t, "demo-agents"), "GET", "/v1/webhook-endpoints/" + created.ID + "/deliveries", "", "", 404, "not-found"},
		{"other partner patches", n.token(t, "demo-agents"), "PATCH", "/v1/webhook-endpoints/" + created.ID, "o1", `{"enabled":false}`, 404, "not-found"},
		{"other partner rotates", n.token(t, "demo-agents"), "POST", "/v1/webhook-endpoints/" + created.ID + "/rotate-secret", "o2", `{}`, 404, "not-found"},
		{"other partner deletes", n.token(t, "demo-agents"), "DELETE", "/v1/webhook-endpoints/" + created.ID, "o3", "", 404, "not-found"},
		{"overlap too long", tok, "POST", "/v1/webhook-endpoints/" + created.ID + "/rotate-secret", "r1", `{"overlap":"999h"}`, 400, "validation"},
		{"unknown id", tok, "GET", "/v1/webhook-endpoints/we_nope", "", "", 404, "not-found"},
	}
	for _, c := range cases {
		a := n.call(t, c.tok, c.method, c.path, c.key, c.body)
		if a.code != c.code || c.problem != "" && a.problem() != c.problem {
			t.Errorf("%s: %d %s", c.name, a.code, a.body)
		}
	}
	eps := n.st.Directory().WebhookEndpoints("demo-acquirer")
	if len(eps) != 1 || eps[0].Disabled || len(eps[0].Secrets) != 1 || len(n.st.Directory().WebhookEndpoints("demo-agents")) != 0 {
		t.Fatalf("a refusal changed something: %+v", eps)
	}
	if l := n.call(t, n.token(t, "demo-agents"), "GET", "/v1/webhook-endpoints", "", ""); l.code != 200 || strings.Contains(l.body, created.ID) {
		t.Errorf("another partner lists it: %s", l.body)
	}
}

func TestWebhooksNotEnabled(t *testing.T) {
	n := startNode(t)
	a := n.call(t, n.token(t, "demo-acquirer"), "POST", "/v1/webhook-endpoints", "h1", hookBody)
	if a.code != 404 || a.problem() != "webhooks-not-enabled" {
		t.Fatalf("%d %s", a.code, a.body)
	}
}

// End to end on one node: a payment over the API reaches a receiver
// that verifies the signature with the secret the create answered.
func TestWebhookDeliveredAndVerified(t *testing.T) {
	n, kek, wc := webhookNode(t)
	var mu sync.Mutex
	var verified, bad int
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if err := webhook.Verify(secretOf(t, ""), b, r.Header); err != nil {
			bad++
			w.WriteHeader(400)
			return
		}
		verified++
	}))
	defer recv.Close()
	tok := n.token(t, "demo-acquirer")
	e := decodeEndpoint(t, n.call(t, tok, "POST", "/v1/webhook-endpoints", "h1", `{"url":"`+recv.URL+`/hook","event_types":["payment.completed"]}`))
	secretOf(t, e.Secret)
	wc.PollInterval = 20 * time.Millisecond
	s, err := webhook.New(wc, kek, n.st, n.cn.Propose, n.cn.Leading, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer s.Close()
	n.call(t, tok, "POST", "/v1/payments", "p1", pay)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // a hang guard
	defer cancel()
	for {
		ds, _ := n.st.WebhookDeliveries(e.ID, "", 10)
		if len(ds) == 1 && ds[0].State == store.DeliveryDelivered {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("not delivered: %+v", ds)
		case <-time.After(10 * time.Millisecond):
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if verified != 1 || bad != 0 {
		t.Fatalf("verified %d, bad %d", verified, bad)
	}
}

var (
	secretMu  sync.Mutex // protects secretVal
	secretVal string
)

// secretOf remembers s (when set) and returns the remembered secret: the
// receiver learns it after it started.
func secretOf(_ *testing.T, s string) string {
	secretMu.Lock()
	defer secretMu.Unlock()
	if s != "" {
		secretVal = s
	}
	return secretVal
}
