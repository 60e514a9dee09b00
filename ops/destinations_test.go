package ops_test

import (
	"net/http"
	"strings"
	"testing"
)

const issuerBody = `{"kind":"iso8583","settlement_account":"demo-acquirer-settlement","bins":["510000"],` +
	`"iso8583":{"addrs":["127.0.0.1:9583"],"dialect":"iso87ascii","header":"binary2","pool_size":2,"timeout_ms":5000,"sign_on":true,"echo_interval_ms":30000},"reason":"new issuer"}`

// Destinations are put, listed, named by routes, refused when wrong
// (nothing changes, no audit record), not deleted while a route names
// them, and every change is in the audit chain.
func TestDestinationsAPI(t *testing.T) {
	base := startNode(t)
	defer http.DefaultClient.CloseIdleConnections()
	code, body, _ := do(t, "PUT", base+"/v1/destinations/test-issuer", issuerBody)
	if code != 201 || !strings.Contains(body, `"bins":["510000"]`) {
		t.Fatalf("put: %d %s", code, body)
	}
	if code, body, _ := do(t, "PUT", base+"/v1/destinations/test-issuer", issuerBody); code != 200 {
		t.Fatalf("put again: %d %s", code, body)
	}
	if code, body, _ := do(t, "GET", base+"/v1/destinations", ""); code != 200 || !strings.Contains(body, `"id":"test-issuer"`) {
		t.Fatalf("list: %d %s", code, body)
	}
	if code, body, _ := do(t, "PUT", base+"/v1/routes/water", `{"bill_type":"WATER","destination":"test-issuer","settlement_account":"biller-power-co","reason":"water via the issuer host"}`); code != 201 && code != 200 {
		t.Fatalf("route naming the destination: %d %s", code, body)
	}
	before := snapshotState(t, base)
	dest := func() string { _, b, _ := do(t, "GET", base+"/v1/destinations", ""); return b }
	destBefore := dest()
	for _, c := range []struct {
		name, method, path, body string
		code                     int
		typ, field               string
	}{
		{"no reason", "PUT", "/v1/destinations/x", strings.Replace(issuerBody, `"new issuer"`, `""`, 1), 422, "invalid-change", "reason"},
		{"unknown dialect", "PUT", "/v1/destinations/x", strings.NewReplacer(`iso87ascii`, `iso99`, `510000`, `520000`).Replace(issuerBody), 422, "invalid-change", "iso8583.dialect"},
		{"bin taken", "PUT", "/v1/destinations/x", issuerBody, 422, "invalid-change", "bins"},
		{"no account", "PUT", "/v1/destinations/x", strings.NewReplacer(`demo-acquirer-settlement`, `nope`, `510000`, `520000`).Replace(issuerBody), 422, "invalid-change", "settlement_account"},
		{"float timeout", "PUT", "/v1/destinations/x", strings.NewReplacer(`"timeout_ms":5000`, `"timeout_ms":5.5`, `510000`, `520000`).Replace(issuerBody), 400, "bad-request", ""},
		{"unknown field", "PUT", "/v1/destinations/x", strings.Replace(issuerBody, `"kind"`, `"password":"x","kind"`, 1), 400, "bad-request", ""},
		{"delete in use", "DELETE", "/v1/destinations/test-issuer", `{"reason":"gone"}`, 422, "invalid-change", "id"},
		{"delete unknown", "DELETE", "/v1/destinations/nobody", `{"reason":"gone"}`, 404, "not-found", ""},
	} {
		code, body, _ := do(t, c.method, base+c.path, c.body)
		refused(t, base, c.name, code, body, c.code, c.typ, c.field, before)
		if dest() != destBefore {
			t.Errorf("%s: the destinations changed", c.name)
		}
	}
	if code, body, _ := do(t, "DELETE", base+"/v1/routes/water", `{"reason":"back on us"}`); code != 200 {
		t.Fatalf("delete route: %d %s", code, body)
	}
	if code, body, _ := do(t, "DELETE", base+"/v1/destinations/test-issuer", `{"reason":"host retired"}`); code != 200 {
		t.Fatalf("delete: %d %s", code, body)
	}
	if code, _, _ := do(t, "GET", base+"/v1/destinations/test-issuer", ""); code != 404 {
		t.Fatalf("after delete: %d", code)
	}
	recs := auditOf(t, base, "destination/test-issuer")
	if len(recs) != 3 || recs[0].Action != "destination.put" || recs[2].Action != "destination.delete" || recs[2].Reason != "host retired" || recs[0].Actor != testActor {
		t.Errorf("audit: %+v", recs)
	}
}
