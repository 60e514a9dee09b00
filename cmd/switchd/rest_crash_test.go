package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchd/switchd/internal/switchdtest"
)

// REST payments survive kill -9 of the node exactly once: during a load of
// POST /v1/payments the process is killed; after the restart every
// request is sent again with its Idempotency-Key, every one acknowledged
// before the crash gets the same payment back (a replay), none is made
// twice, and the card's balance is exactly what the distinct payments say.
func TestKill9RESTPayments(t *testing.T) {
	apiAddr := switchdtest.FreePort(t)
	node := switchdtest.StartWith(t, switchdtest.Build(t), switchdtest.Options{
		Extra: "api:\n  listen: " + apiAddr + "\n  lane: api\n  partners: [demo-acquirer]\n",
	})
	// The partner's client, made by the admin through the ops API.
	secret := switchdtest.PartnerClient(t, node.OpsURL, "demo-acquirer", []string{"payments:write", "payments:read"}, "crash test")
	api := switchdtest.NewAPI(t, node.DataDir, apiAddr, "demo-acquirer", secret)
	hc, base, token := api.HC, api.Base, api.Token
	tok := token()
	pay := func(tok string, n int) (code int, id string, replayed bool, err error) {
		body := fmt.Sprintf(`{"amount":"0.01","currency":"USD","debtor_account":"card-4111","reference":"CR-%d"}`, n)
		req, _ := http.NewRequest("POST", base+"/v1/payments", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("crash-%d", n))
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", false, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var p struct{ ID string }
		json.Unmarshal(b, &p)
		return resp.StatusCode, p.ID, resp.Header.Get("Idempotent-Replayed") == "true", nil
	}

	const clients = 8
	var mu sync.Mutex
	sent, acked := map[int]bool{}, map[int]string{}
	var wg sync.WaitGroup
	stop := time.Now().Add(crashLoad())
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := c*100000 + 1; time.Now().Before(stop); n++ {
				mu.Lock()
				sent[n] = true
				mu.Unlock()
				code, id, _, err := pay(tok, n)
				if err != nil {
					return // the node is gone
				}
				if code == 201 {
					mu.Lock()
					acked[n] = id
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(crashLoad() - crashLoad()/4)
	node.Kill9()
	wg.Wait()
	hc.CloseIdleConnections()
	t.Logf("before kill -9: %d sent, %d acknowledged", len(sent), len(acked))
	if len(acked) == 0 {
		t.Fatal("no payment acknowledged before the crash")
	}

	node.Restart()
	tok = token()
	ids := map[string]int{}
	for n := range sent {
		code, id, replayed, err := pay(tok, n)
		if err != nil || code != 201 {
			t.Fatalf("request %d after the restart: %d %v", n, code, err)
		}
		if want, ok := acked[n]; ok && (id != want || !replayed) {
			t.Errorf("request %d: acknowledged as %s before the crash, now %s (replayed %v)", n, want, id, replayed)
		}
		if other, dup := ids[id]; dup {
			t.Errorf("requests %d and %d are one payment %s", n, other, id)
		}
		ids[id] = n
	}
	resp, err := switchdtest.Get(node.OpsURL + "/v1/accounts/card-4111")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var acct struct{ Posted int64 }
	json.NewDecoder(resp.Body).Decode(&acct)
	if want := int64(100000 - len(ids)); acct.Posted != want {
		t.Fatalf("card-4111 posted %d, want %d (opening 100000 − %d payments of 1)", acct.Posted, want, len(ids))
	}
	t.Logf("after restart: %d requests, %d payments, each once; balance as expected", len(sent), len(ids))
}
