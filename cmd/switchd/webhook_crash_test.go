package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/switchd/switchd/internal/switchdtest"
	"github.com/switchd/switchd/webhook"
)

// kill -9 of the node while deliveries are in flight at the receiver:
// their results were never committed, so after the restart the node (the
// leader again) sends them again with the same webhook-id and bytes. The
// receiver sees every id at least once, and the distinct ids are exactly
// the events the ledger holds, one per state change.
func TestKill9MidWebhookDelivery(t *testing.T) {
	var mu sync.Mutex // protects seen, bodies, killed
	seen := map[string]int{}
	bodies := map[string]string{}
	var secret string
	inFlight := make(chan struct{}, 16)
	release := make(chan struct{})
	killed := false
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		ok := webhook.Verify(secret, b, r.Header) == nil
		id := r.Header.Get("webhook-id")
		if ok {
			seen[id]++
			if prev, dup := bodies[id]; dup && prev != string(b) {
				t.Errorf("%s resent with other bytes", id)
			}
			bodies[id] = string(b)
		}
		hold := !killed
		mu.Unlock()
		if !ok {
			w.WriteHeader(400)
			return
		}
		if hold {
			// Before the kill every delivery hangs here: sent, not answered.
			inFlight <- struct{}{}
			<-release
		}
		w.WriteHeader(204)
	}))
	defer recv.Close()
	defer func() {
		mu.Lock()
		if !killed {
			killed = true
			close(release)
		}
		mu.Unlock()
	}()

	apiAddr := switchdtest.FreePort(t)
	node := switchdtest.StartWith(t, switchdtest.Build(t), switchdtest.Options{
		Extra: "api:\n  listen: " + apiAddr + "\n  lane: api\n  partners: [demo-acquirer]\n" +
			"webhooks:\n  enabled: true\n  allow_http_hosts: [127.0.0.1]\n  allow_networks: [127.0.0.0/8]\n  poll_interval: 50ms\n",
	})
	clientSecret := switchdtest.PartnerClient(t, node.OpsURL, "demo-acquirer", []string{"payments:write", "payments:read", "webhooks:write", "webhooks:read"}, "webhook crash test")
	api := switchdtest.NewAPI(t, node.DataDir, apiAddr, "demo-acquirer", clientSecret)
	call := func(tok, method, path, key, body string) (int, string) {
		t.Helper()
		code, b := api.Call(tok, method, path, key, body)
		return code, string(b)
	}
	token := api.Token
	tok := token()
	code, body := call(tok, "POST", "/v1/webhook-endpoints", "hook-1", `{"url":"`+recv.URL+`/hook","event_types":["payment.completed","payment.partly_refunded"]}`)
	var ep struct{ ID, Secret string }
	json.Unmarshal([]byte(body), &ep)
	if code != 201 || ep.Secret == "" {
		t.Fatalf("endpoint: %d %s", code, body)
	}
	mu.Lock()
	secret = ep.Secret
	mu.Unlock()
	const payments = 6
	for i := 1; i <= payments; i++ {
		code, body := call(tok, "POST", "/v1/payments", fmt.Sprintf("wpay-%d", i), fmt.Sprintf(`{"amount":"1.00","currency":"USD","debtor_account":"card-4111","reference":"WH-%d"}`, i))
		var p struct{ ID string }
		json.Unmarshal([]byte(body), &p)
		if code != 201 {
			t.Fatalf("payment %d: %d %s", i, code, body)
		}
		if i <= 2 {
			if code, body := call(tok, "POST", "/v1/payments/"+p.ID+"/refunds", fmt.Sprintf("wref-%d", i), `{"amount":"0.25"}`); code != 201 {
				t.Fatalf("refund %d: %d %s", i, code, body)
			}
		}
	}
	const events = payments + 2
	select {
	case <-inFlight:
	case <-time.After(30 * time.Second): // a hang guard
		t.Fatal("no delivery reached the receiver")
	}
	node.Kill9()
	api.HC.CloseIdleConnections()
	mu.Lock()
	killed = true
	close(release)
	before := len(seen)
	mu.Unlock()

	node.Restart()
	tok = token()
	var ds struct {
		Deliveries []struct {
			EventID string `json:"event_id"`
			State   string
		}
	}
	deadline := time.Now().Add(60 * time.Second) // a hang guard
	for {
		_, body := call(tok, "GET", "/v1/webhook-endpoints/"+ep.ID+"/deliveries", "", "")
		json.Unmarshal([]byte(body), &ds)
		delivered := 0
		for _, d := range ds.Deliveries {
			if d.State == "delivered" {
				delivered++
			}
		}
		if len(ds.Deliveries) == events && delivered == events {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	resent := 0
	for _, d := range ds.Deliveries {
		if seen[d.EventID] < 1 {
			t.Errorf("event %s never received", d.EventID)
		}
		if seen[d.EventID] > 1 {
			resent++
		}
	}
	if len(seen) != events {
		t.Errorf("%d distinct webhook-ids received, %d events", len(seen), events)
	}
	if resent == 0 {
		t.Error("no delivery in flight at the kill was sent again")
	}
	t.Logf("%d events; %d ids received before kill -9, %d sent again after the restart", events, before, resent)
}
