package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Routes, partners, agents and the audit chain through switchctl against
// a real switchd: set, explain, export → edit → import round trip, a stale
// import refused with the table unchanged, and the audit trail of it all.
func TestAdminAgainstSwitchd(t *testing.T) {
	_, ops := startSwitchd(t)
	must := func(code int, out, errOut string) string {
		t.Helper()
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		return out
	}
	// Each person is an OAuth2 client of their own, made by the admin
	// (the bootstrap client) with switchctl clients create; the audit
	// chain names the client a change's token speaks for.
	creds := map[string]string{}
	for _, who := range []string{"alice", "bob", "carol", "dave"} {
		creds[who] = filepath.Join(t.TempDir(), who+".json")
		out := must(ctl("clients", "create", who, "--scopes", "ops:read,ops:write,routes:write,audit:read", "--out", creds[who], "--ops", ops))
		if !strings.Contains(out, "credentials written to") || strings.Contains(out, "swcs_") {
			t.Fatalf("clients create %s:\n%s", who, out)
		}
	}
	as := func(actor string, args ...string) (int, string, string) {
		return ctl(append(args, "--ops", ops, "--credentials", creds[actor])...)
	}
	out := must(as("alice", "partners", "set", "acme", "--acquirer-ids", "200001", "--lanes", "demo",
		"--settlement-account", "demo-acquirer-settlement", "--payer-type", "bank_customer", "--payer-types", "otc_agent",
		"--withdrawal-max", "500.00", "--reason", "onboarding"))
	if !strings.Contains(out, "partner acme created") || !regexp.MustCompile(`withdrawal max\s+500\.00 USD`).MatchString(out) {
		t.Errorf("partners set:\n%s", out)
	}
	// Only the flags given change.
	out = must(as("alice", "partners", "set", "acme", "--lanes", "demo,backup", "--reason", "second lane"))
	if !regexp.MustCompile(`lanes\s+demo,backup`).MatchString(out) || !regexp.MustCompile(`acquirer ids\s+200001`).MatchString(out) {
		t.Errorf("partners set --lanes:\n%s", out)
	}

	// A partner's own source allowlist; a CIDR with host bits is refused
	// naming the field, and the partner keeps its list.
	out = must(as("alice", "partners", "set", "acme", "--allow", "127.0.0.0/8,2001:db8::/32", "--reason", "partner networks"))
	if !regexp.MustCompile(`allow\s+127\.0\.0\.0/8,2001:db8::/32`).MatchString(out) {
		t.Errorf("partners set --allow:\n%s", out)
	}
	if code, _, errOut := as("alice", "partners", "set", "acme", "--allow", "127.0.0.1/8", "--reason", "typo"); code != 1 || !strings.Contains(errOut, "partner.allow") {
		t.Errorf("--allow with host bits: exit %d %s", code, errOut)
	}

	pin := strings.Repeat("ab", 32)
	out = must(as("alice", "partners", "set", "acme", "--cert-pins", pin+"@2099-01-31T00:00:00Z", "--reason", "mTLS onboarding"))
	if !regexp.MustCompile(`cert pin 1\s+` + pin + ` until 2099-01-31T00:00:00Z \(live\)`).MatchString(out) {
		t.Errorf("partners set --cert-pins:\n%s", out)
	}
	if code, _, errOut := as("alice", "partners", "set", "acme", "--cert-pins", "not-a-pin@2099-01-31T00:00:00Z", "--reason", "typo"); code != 1 || !strings.Contains(errOut, "partner.cert_pins") {
		t.Errorf("--cert-pins not hex: exit %d %s", code, errOut)
	}
	// Rotation: a second live pin is fine, a third is refused naming the
	// limit, and the old one goes with --remove-cert-pin.
	pin2, pin3 := strings.Repeat("cd", 32), strings.Repeat("ef", 32)
	out = must(as("alice", "partners", "set", "acme", "--cert-pins", pin+"@2099-01-31T00:00:00Z,"+pin2+"@2099-06-30T00:00:00Z", "--reason", "rotation"))
	if !regexp.MustCompile(`cert pin 2\s+` + pin2).MatchString(out) {
		t.Errorf("two pins:\n%s", out)
	}
	if code, _, errOut := as("alice", "partners", "set", "acme", "--cert-pins", pin+"@2099-01-31T00:00:00Z,"+pin2+"@2099-06-30T00:00:00Z,"+pin3+"@2099-07-30T00:00:00Z",
		"--reason", "three"); code != 1 || !strings.Contains(errOut, "at most 2") {
		t.Errorf("three live pins: exit %d %s", code, errOut)
	}
	out = must(as("alice", "partners", "set", "acme", "--remove-cert-pin", pin, "--reason", "moved to the new certificate"))
	if strings.Contains(out, pin) || !regexp.MustCompile(`cert pin 1\s+`+pin2).MatchString(out) {
		t.Errorf("--remove-cert-pin:\n%s", out)
	}

	// Accounts: created through the cluster, audited with the actor.
	out = must(as("dave", "accounts", "create", "biller-water-co", "--kind", "biller", "--currency", "USD", "--floor", "-10.00"))
	if !strings.Contains(out, "account biller-water-co: biller USD, posted 0.00") {
		t.Errorf("accounts create:\n%s", out)
	}
	must(as("dave", "accounts", "create", "biller-water-co", "--kind", "biller", "--currency", "USD", "--floor", "-10.00")) // the same again: a no-op
	if code, _, errOut := as("dave", "accounts", "create", "biller-water-co", "--kind", "biller", "--currency", "EUR"); code != 1 ||
		!strings.Contains(errOut, "409") {
		t.Errorf("same id, other content: exit %d %s", code, errOut)
	}
	if out := must(ctl("audit", "list", "--object", "account/biller-water-co", "--ops", ops)); strings.Count(out, "account.create") != 1 ||
		!strings.Contains(out, "dave") {
		t.Errorf("account audit:\n%s", out)
	}

	out = must(as("alice", "routes", "set", "r-water", "--bill-type", "WATER", "--partner", "acme",
		"--settlement-account", "biller-power-co", "--reason", "new water biller"))
	if !strings.Contains(out, "route r-water created") || !regexp.MustCompile(`r-water\s+WATER\s+\*\s+acme\s+ledger\s+biller-power-co`).MatchString(out) {
		t.Errorf("routes set:\n%s", out)
	}
	if out := must(ctl("routes", "get", "r-water", "--ops", ops)); !strings.Contains(out, "biller-power-co") {
		t.Errorf("routes get:\n%s", out)
	}
	if code, _, errOut := as("alice", "routes", "set", "r-x", "--bill-type", "GAS"); code != 2 || !strings.Contains(errOut, "--reason") {
		t.Errorf("routes set without --reason: %d %s", code, errOut)
	}
	if code, _, errOut := as("alice", "routes", "set", "r-x", "--bill-type", "GAS", "--partner", "nobody", "--reason", "x"); code != 1 ||
		!strings.Contains(errOut, "422") || !strings.Contains(errOut, "route.partner") {
		t.Errorf("routes set to an unknown partner: %d %s", code, errOut)
	}

	out = must(ctl("routes", "explain", "--bill-type", "WATER", "--payer-type", "bank_customer", "--partner", "acme", "--ops", ops))
	if !strings.Contains(out, "→ route r-water: destination ledger, settles to biller-power-co") ||
		!regexp.MustCompile(`1\s+WATER\s+bank_customer\s+acme\s+no rule with this key`).MatchString(out) {
		t.Errorf("routes explain:\n%s", out)
	}

	// Export, add a rule to the file, import it; export again.
	dir := t.TempDir()
	first := filepath.Join(dir, "routes.json")
	must(ctl("routes", "export", "--out", first, "--ops", ops))
	tb, err := readRouteFile(first)
	if err != nil {
		t.Fatal(err)
	}
	tb.Routes = append(tb.Routes, route{ID: "r-gas", BillType: "GAS", PayerType: "*", Partner: "acme", Destination: "ledger"})
	edited := filepath.Join(dir, "edited.json")
	writeJSONFile(t, edited, tb)
	out = must(as("bob", "routes", "import", edited, "--reason", "add gas"))
	if !strings.Contains(out, "table version ") {
		t.Errorf("import:\n%s", out)
	}
	second := filepath.Join(dir, "second.json")
	must(ctl("routes", "export", "--out", second, "--ops", ops))
	tb2, err := readRouteFile(second)
	if err != nil {
		t.Fatal(err)
	}
	if tb2.Version != tb.Version+1 || len(tb2.Routes) != len(tb.Routes) || !strings.Contains(mustRead(t, second), `"id": "r-gas"`) {
		t.Errorf("export after import: version %d (was %d), %d rules\n%s", tb2.Version, tb.Version, len(tb2.Routes), mustRead(t, second))
	}
	// The first export is stale now: refused, and the table is as it was.
	if code, _, errOut := as("bob", "routes", "import", first, "--reason", "undo"); code != 1 || !strings.Contains(errOut, "409") {
		t.Errorf("stale import: %d %s", code, errOut)
	}
	third := filepath.Join(dir, "third.json")
	must(ctl("routes", "export", "--out", third, "--ops", ops))
	if mustRead(t, third) != mustRead(t, second) {
		t.Errorf("a refused import changed the table:\n%s\n%s", mustRead(t, second), mustRead(t, third))
	}
	// An export imported as it is round-trips: same rules, next version.
	must(as("bob", "routes", "import", third, "--reason", "no-op reload"))
	fourth := filepath.Join(dir, "fourth.json")
	must(ctl("routes", "export", "--out", fourth, "--ops", ops))
	tb4, _ := readRouteFile(fourth)
	if tb4.Version != tb2.Version+1 || !sameRoutes(tb4.Routes, tb2.Routes) {
		t.Errorf("round trip: %+v, want the rules of %+v at version %d", tb4, tb2, tb2.Version+1)
	}
	if code, _, errOut := as("bob", "routes", "delete", "r-gas"); code != 2 || !strings.Contains(errOut, "--reason") {
		t.Errorf("delete without --reason: %d %s", code, errOut)
	}
	if out := must(as("bob", "routes", "delete", "r-gas", "--reason", "gas biller left")); !strings.Contains(out, "route r-gas deleted") {
		t.Errorf("delete:\n%s", out)
	}

	// Agents: a limit, a settlement the agent cannot cover is refused.
	must(as("carol", "agents", "set", "acme:T1", "--currency", "USD", "--cash-limit", "100.00", "--reason", "new kiosk"))
	if code, _, errOut := as("carol", "agents", "settle", "acme:T1", "--amount", "1.00", "--reference", "SLIP-1"); code != 1 ||
		!strings.Contains(errOut, "422") || !strings.Contains(errOut, "amount") {
		t.Errorf("settle more than held: %d %s", code, errOut)
	}
	if code, _, errOut := as("carol", "agents", "settle", "acme:T1", "--amount", "1.005", "--reference", "SLIP-1"); code != 2 {
		t.Errorf("settle 1.005 USD: %d %s", code, errOut)
	}
	if out := must(ctl("agents", "list", "--ops", ops)); !regexp.MustCompile(`acme:T1\s+acme\s+T1\s+USD\s+100\.00\s+0\.00\s+0\.0%`).MatchString(out) {
		t.Errorf("agents list:\n%s", out)
	}
	if out := must(as("carol", "partners", "suspend", "acme", "--reason", "fraud alert")); !strings.Contains(out, "now suspended") {
		t.Errorf("suspend:\n%s", out)
	}
	if out := must(as("carol", "partners", "resume", "acme", "--reason", "cleared")); !strings.Contains(out, "now active") {
		t.Errorf("resume:\n%s", out)
	}
	if out := must(ctl("transfers", "--payer-type", "otc_agent", "--ops", ops)); !strings.Contains(out, "PAYER") {
		t.Errorf("transfers --payer-type:\n%s", out)
	}

	// The audit trail names who did what and why; the chain verifies.
	out = must(ctl("audit", "list", "--object", "route/r-water", "--ops", ops))
	if !regexp.MustCompile(`alice\s+127\.0\.0\.1:\d+\s+route\.put\s+route/r-water\s+new water biller\s+created`).MatchString(out) {
		t.Errorf("audit list:\n%s", out)
	}
	out = must(ctl("audit", "list", "--object", "partner/acme", "--ops", ops))
	for _, want := range []string{"partner.put", "second lane", "partner.suspend", "fraud alert", "partner.resume",
		"suspended: - → true"} {
		if !strings.Contains(out, want) {
			t.Errorf("partner audit lacks %q:\n%s", want, out)
		}
	}
	out = must(ctl("audit", "list", "--object", "routes", "--json", "--ops", ops))
	if !strings.Contains(out, `"actor": "bob"`) || !strings.Contains(out, `"reason": "add gas"`) || !strings.Contains(out, `"before"`) {
		t.Errorf("audit of the imports:\n%s", out)
	}
	if out := must(ctl("audit", "verify", "--ops", ops)); !strings.HasPrefix(out, "audit chain OK: ") {
		t.Errorf("audit verify:\n%s", out)
	}

	// Clients: rotate alice's secret with an overlap (both work), disable
	// dave (refused at once), and a caller without credentials gets 401
	// with a hint, and changes nothing.
	oldAlice := creds["alice"]
	newAlice := filepath.Join(t.TempDir(), "alice-2.json")
	out = must(ctl("clients", "rotate-secret", "alice", "--overlap", "24h", "--out", newAlice, "--ops", ops))
	if !regexp.MustCompile(`alice\s+\S+\s+2 \(1 until `).MatchString(out) {
		t.Errorf("rotate-secret:\n%s", out)
	}
	for _, f := range []string{oldAlice, newAlice} {
		if code, out, errOut := ctl("accounts", "--ops", ops, "--credentials", f); code != 0 {
			t.Errorf("accounts with %s during the overlap: %d %s%s", f, code, out, errOut)
		}
	}
	must(ctl("clients", "disable", "dave", "--reason", "left the team", "--ops", ops))
	if code, _, errOut := as("dave", "accounts"); code != 1 || !strings.Contains(errOut, "invalid_client") {
		t.Errorf("disabled client: %d %s", code, errOut)
	}
	if code, _, errOut := as("alice", "cluster", "snapshot"); code != 1 || !strings.Contains(errOut, "403") {
		t.Errorf("alice without cluster:admin: %d %s", code, errOut)
	}
	if code, _, errOut := ctl("accounts", "--ops", ops, "--credentials", filepath.Join(t.TempDir(), "missing.json")); code != 2 {
		t.Errorf("a missing credentials file: %d %s", code, errOut)
	}
	t.Setenv("SWITCHCTL_CREDENTIALS", "") // and no data/ops-credentials.json here
	code, _, errOut := ctl("accounts", "create", "nobody-1", "--kind", "cardholder", "--ops", ops)
	if code != 1 || !strings.Contains(errOut, "401") {
		t.Errorf("create without credentials: %d %s", code, errOut)
	}
	out = must(as("alice", "accounts"))
	if strings.Contains(out, "nobody-1") {
		t.Error("an account was created without credentials")
	}
	out = must(ctl("audit", "list", "--object", "client/dave", "--ops", ops, "--credentials", creds["alice"]))
	if !strings.Contains(out, "client.disable") || strings.Contains(out, "argon2id") {
		t.Errorf("client audit:\n%s", out)
	}
}

// verify exits 1 and names the bad record when the chain is broken.
func TestAuditVerifyBroken(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":false,"records":7,"head":"ab","applied_index":42,"bad_seq":3,"problem":"record 3: content does not match its hash"}`))
	}))
	defer srv.Close()
	code, out, errOut := ctl("audit", "verify", "--ops", srv.URL)
	if code != 1 || !strings.Contains(errOut, "BROKEN at record 3: record 3: content does not match its hash") || out != "" {
		t.Errorf("verify of a broken chain: %d %q %q", code, out, errOut)
	}
}

func TestAdminUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"routes"},
		{"routes", "frob"},
		{"routes", "get"},
		{"routes", "import", "--reason", "x"},
		{"routes", "import", "f.json"},
		{"partners", "set", "acme"},
		{"partners", "suspend", "acme"},
		{"agents", "settle", "acme:T1", "--amount", "1.00"},
		{"audit"},
		{"audit", "list", "--from", "yesterday"},
	} {
		if code, _, _ := ctl(args...); code != 2 {
			t.Errorf("switchctl %v: exit %d, want 2", args, code)
		}
	}
}

func writeJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sameRoutes(a, b []route) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
