package ops_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchd/switchd/outcome"
)

// POST /v1/lanes/reload runs the node's reload (SIGHUP's code path, handed
// in by main) for a caller that names itself: every lane's result as
// JSON, a lane-reload-failed problem carrying the same results when a
// lane kept its old settings, and an audit record either way. Without a
// token, or with one lacking cluster:admin, nothing is reloaded.
func TestLaneReloadAPI(t *testing.T) {
	tn := newTestNode(t)
	var calls atomic.Int32
	var failing atomic.Bool
	type result struct {
		Lane     string `json:"lane"`
		Reloaded bool   `json:"reloaded"`
		Error    string `json:"error,omitempty"`
	}
	tn.srv.HandleLaneReload(tn.cfg.Cluster.NodeID, func() (any, error) {
		calls.Add(1)
		if failing.Load() {
			return []result{{Lane: "demo", Reloaded: true}, {Lane: "public", Error: "certificate: open lane.pem: no such file"}},
				fmt.Errorf("%w: 1 of 2 lanes kept their old settings: certificate: open lane.pem: no such file", outcome.ErrLaneReload)
		}
		return []result{{Lane: "demo", Reloaded: true}}, nil
	})
	base := tn.start(t)
	defer http.DefaultClient.CloseIdleConnections()

	if code, body, _ := doWith(t, http.Header{}, "POST", base+"/v1/lanes/reload", ""); code != 401 || problemOf(t, body).Type != "unauthenticated" || calls.Load() != 0 {
		t.Fatalf("without a token: %d %s (reloads %d)", code, body, calls.Load())
	}
	if code, body, _ := doWith(t, as(t, "reader"), "POST", base+"/v1/lanes/reload", ""); code != 403 || calls.Load() != 0 {
		t.Fatalf("with ops:read: %d %s (reloads %d)", code, body, calls.Load())
	}
	code, body, _ := do(t, "POST", base+"/v1/lanes/reload", "")
	var ok struct{ Lanes []result }
	if code != 200 || json.Unmarshal([]byte(body), &ok) != nil || len(ok.Lanes) != 1 || !ok.Lanes[0].Reloaded {
		t.Fatalf("reload: %d %s", code, body)
	}
	failing.Store(true)
	code, body, hdr := do(t, "POST", base+"/v1/lanes/reload", "")
	var p struct {
		Type, Detail string
		Lanes        []result
	}
	if code != 422 || json.Unmarshal([]byte(body), &p) != nil || !strings.HasSuffix(p.Type, "/lane-reload-failed") ||
		!strings.Contains(p.Detail, "1 of 2 lanes") || len(p.Lanes) != 2 || p.Lanes[1].Error == "" ||
		hdr.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("partial reload: %d %s", code, body)
	}
	recs := auditOf(t, base, "node/"+tn.cfg.Cluster.NodeID)
	if len(recs) != 2 || recs[0].Action != "lanes.reload" || recs[0].Actor != testActor ||
		!strings.Contains(string(recs[1].After), `"ok":false`) {
		t.Fatalf("audit: %+v", recs)
	}
}

// Pins over the API: [{sha256, not_after}], two live at once (rotation),
// a third live one refused naming the field, nothing proposed.
func TestPartnerPinsAPI(t *testing.T) {
	base := startNode(t)
	defer http.DefaultClient.CloseIdleConnections()
	pin := func(c string, d time.Duration) string {
		return fmt.Sprintf(`{"sha256":%q,"not_after":%q}`, strings.Repeat(c, 64), time.Now().Add(d).UTC().Format(time.RFC3339))
	}
	put := func(pins ...string) (int, string) {
		body := `{"acquirer_ids":["300001"],"lanes":["demo"],"payer_type":"bank_customer","reason":"pins","cert_pins":[` + strings.Join(pins, ",") + `]}`
		code, b, _ := do(t, "PUT", base+"/v1/partners/bank-p", body)
		return code, b
	}
	if code, body := put(pin("a", time.Hour), pin("b", 48*time.Hour)); code != 201 {
		t.Fatalf("two live pins: %d %s", code, body)
	}
	before := snapshotState(t, base)
	code, body := put(pin("a", time.Hour), pin("b", 48*time.Hour), pin("c", 72*time.Hour))
	refused(t, base, "three live pins", code, body, 422, "invalid-change", "partner.cert_pins", before)
	code, body = put(`{"sha256":"` + strings.Repeat("a", 64) + `"}`)
	refused(t, base, "a pin without not_after", code, body, 422, "invalid-change", "partner.cert_pins", before)
	// An expired pin beside two live ones: kept, names nobody.
	if code, body := put(pin("d", -time.Hour), pin("a", time.Hour), pin("b", 48*time.Hour)); code != 200 {
		t.Fatalf("two live and one expired: %d %s", code, body)
	}
}
