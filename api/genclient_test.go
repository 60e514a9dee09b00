package api_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchd/switchd/api"
)

// genclientTimeout bounds the Node flow: a dozen calls on one node take
// well under a second; a hung client must not hang the package.
const genclientTimeout = time.Minute

// A client made from the live OpenAPI document by an npm library
// (openapi-client-axios, which builds one method per operationId from the
// document at run time) runs the payment flow: a payment with an
// Idempotency-Key, its replay, the key with another body (409), a part
// refund, one over what is left (422), a read, a bill payment and funds
// checks, asserting every answer (api/testdata/genclient/flow.cjs). The
// ledger then shows exactly the money that flow implies, refusals none.
// .ci/run installs the modules, pinned, in SWITCHD_GENCLIENT_DIR.
func TestGeneratedClientFlow(t *testing.T) {
	dir := os.Getenv("SWITCHD_GENCLIENT_DIR")
	if dir == "" {
		if os.Getenv("SWITCHD_REQUIRE_GENCLIENT") == "1" {
			t.Fatal("SWITCHD_GENCLIENT_DIR is not set")
		}
		t.Skip("no npm OpenAPI client (SWITCHD_GENCLIENT_DIR; .ci/run installs one)")
	}
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("SWITCHD_GENCLIENT_DIR is set but there is no node: %v", err)
	}
	modules, err := filepath.Abs(filepath.Join(dir, "node_modules"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(modules, "openapi-client-axios", "package.json")); err != nil {
		t.Fatalf("openapi-client-axios is not installed in %s: %v", dir, err)
	}
	n := startNode(t)
	a := n.call(t, "", "GET", "/v1/openapi.json", "", "")
	if a.code != 200 {
		t.Fatalf("document: %d", a.code)
	}
	doc := filepath.Join(t.TempDir(), "openapi.json")
	if err := os.WriteFile(doc, []byte(a.body), 0o600); err != nil {
		t.Fatal(err)
	}
	accounts := []string{"card-4111", "demo-acquirer-settlement", "biller-power-co"}
	before := map[string]int64{}
	for _, id := range accounts {
		before[id] = balance(t, n.st, id)
	}

	ctx, cancel := context.WithTimeout(context.Background(), genclientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, filepath.Join("testdata", "genclient", "flow.cjs"), doc)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules, "SWITCHD_API_URL="+n.url,
		"SWITCHD_API_TOKEN="+n.token(t, "demo-acquirer"), "SWITCHD_FLOW_RUN=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("flow.cjs: %v\n%s%s", err, out, stderr.String())
	}
	var made struct {
		Payment, Refund, Bill string
		Funds                 map[string]string
	}
	if err := json.Unmarshal(out, &made); err != nil || made.Payment == "" || made.Refund == "" || made.Bill == "" {
		t.Fatalf("flow.cjs printed %q: %v", out, err)
	}

	// 12.34 paid once for three posts of it, 2.00 of it refunded, the
	// refund over the rest refused, 25.00 to the biller; funds checks
	// hold nothing.
	want := map[string]int64{"card-4111": -1234 + 200 - 2500, "demo-acquirer-settlement": 1234 - 200, "biller-power-co": 2500}
	for _, id := range accounts {
		if got := balance(t, n.st, id) - before[id]; got != want[id] {
			t.Errorf("%s moved %d, want %d", id, got, want[id])
		}
	}
	g := n.call(t, n.token(t, "demo-acquirer"), "GET", "/v1/payments/"+made.Payment, "", "")
	var p api.Payment
	if err := json.Unmarshal([]byte(g.body), &p); err != nil || g.code != 200 || p.Refunded != "2.00" || p.Status != "partly_refunded" {
		t.Errorf("the payment after the flow: %d %s", g.code, g.body)
	}
	if a, err := n.st.Account("card-4111"); err != nil || a.DebitsPending != 0 {
		t.Errorf("a funds check held money: %+v %v", a, err)
	}
}
