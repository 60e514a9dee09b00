package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchd/switchd/internal/simtest"
	"github.com/switchd/switchd/internal/switchdtest"
	"github.com/switchd/switchd/sim"
)

// Issue 13's walk-through with the real binary: an off-us purchase
// approved by the (simulated) issuer; the issuer stops answering and the
// next purchase gets 91 with its 0420 in `saf list`; the issuer recovers
// and the advice is delivered; `destinations status` shows the host; a
// retry or drop needs a reason, and a delivered advice cannot be dropped.
func TestSAFWalkThrough(t *testing.T) {
	bin := switchdtest.Build(t) // skips under -short
	issuer := simtest.Issuer(t)
	n := offUsNode(t, bin, issuer.Addr())
	t.Setenv("SWITCHCTL_CREDENTIALS", n.Credentials)
	ops := []string{"--ops", n.OpsURL}
	buy := func(stan, want string) string {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			code, o, e := ctl("iso", "send", "--addr", n.LaneAddr, "--mti", "0200", "--pan", "4000000000000002",
				"--amount", "5.00", "--stan", stan, "--expect", want)
			if code == 0 {
				return o
			}
			if time.Now().After(deadline) {
				t.Fatalf("purchase %s: want %s, exit %d\n%s%s", stan, want, code, o, e)
			}
			time.Sleep(200 * time.Millisecond) // the host connection comes up after start
		}
	}
	buy("1", "00")
	code, out, _ := ctl(append([]string{"destinations", "status"}, ops...)...)
	if code != 0 || !strings.Contains(out, "demo-issuer") || !strings.Contains(out, "true") || !strings.Contains(out, "closed") {
		t.Fatalf("destinations status: exit %d\n%s", code, out)
	}

	b := issuer.Behavior()
	b.Mode = sim.ModeTimeout
	if err := issuer.SetBehavior(b); err != nil {
		t.Fatal(err)
	}
	buy("2", "91")
	code, out, _ = ctl(append([]string{"saf", "list", "--state", "queued"}, ops...)...)
	if code != 0 || !strings.Contains(out, "0420") || !strings.Contains(out, "400000******0002") || !strings.Contains(out, "5.00") {
		t.Fatalf("saf list: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "4000000000000002") {
		t.Fatal("saf list printed the card number")
	}
	id := strings.Fields(strings.Split(out, "\n")[1])[0]
	if code, _, errOut := ctl(append([]string{"saf", "retry", id}, ops...)...); code != 2 || !strings.Contains(errOut, "--reason") {
		t.Fatalf("retry without a reason: exit %d %s", code, errOut)
	}

	b.Mode = sim.ModeApprove
	if err := issuer.SetBehavior(b); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, out, _ = ctl(append([]string{"saf", "list", "--state", "delivered"}, ops...)...)
		if code == 0 && strings.Contains(out, id) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("advice %s not delivered:\n%s", id, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if a := issuer.Stats().Advices; a.Distinct != 1 || a.NewTwice != 0 {
		t.Fatalf("issuer advices %+v", a)
	}
	if code, _, errOut := ctl(append([]string{"saf", "drop", id, "--reason", "confirmed by phone"}, ops...)...); code == 0 {
		t.Fatalf("dropped a delivered advice: %s", errOut)
	}
}

// offUsNode starts switchd with the demo's issuer destination pointed at
// a simulated issuer (500 ms timeout, a quick SAF).
func offUsNode(t *testing.T, bin, issuerAddr string) *switchdtest.Node {
	t.Helper()
	return switchdtest.StartWith(t, bin, switchdtest.Options{Extra: fmt.Sprintf(`mac: {kek_file: %q, generate: true}
forward:
  saf: {retry_min: 100ms, retry_max: 500ms, poll: 50ms}
destinations:
  - id: demo-issuer
    kind: iso8583
    settlement_account: demo-issuer-settlement
    bins: ["400000"]
    iso8583: {addrs: [%q], dialect: iso87ascii, header: binary2, pool_size: 1, timeout_ms: 500, sign_on: true, timeout_code: "91"}
  - id: demo-biller # the demo's WATER route names it
    kind: http
    settlement_account: demo-biller-settlement
    http: {url: "http://127.0.0.1:9/payments", timeout_ms: 3000}
`, filepath.Join(t.TempDir(), "mac.kek"), issuerAddr)})
}

// Destinations are managed like routes: list and get show them; get's
// JSON is what put reads back; disable answers the issuer's cards 91 at
// once and sends the host nothing, enable brings it back; put creates
// from YAML and replaces; a file with an unknown key, a put or disable
// without a reason, and the delete of a destination a route names are
// refused and change nothing; every change is in the audit chain.
func TestDestinationsManaged(t *testing.T) {
	bin := switchdtest.Build(t) // skips under -short
	issuer := simtest.Issuer(t)
	n := offUsNode(t, bin, issuer.Addr())
	t.Setenv("SWITCHCTL_CREDENTIALS", n.Credentials)
	ops := []string{"--ops", n.OpsURL}
	sw := func(want int, args ...string) string {
		t.Helper()
		code, out, errOut := ctl(append(args, ops...)...)
		if code != want {
			t.Fatalf("switchctl %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, out, errOut)
		}
		return out + errOut
	}
	buy := func(stan, want string, wait time.Duration) {
		t.Helper()
		deadline := time.Now().Add(wait)
		for {
			code, o, e := ctl("iso", "send", "--addr", n.LaneAddr, "--mti", "0200", "--pan", "4000000000000002",
				"--amount", "2.00", "--stan", stan, "--expect", want)
			if code == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("purchase %s: want %s, exit %d\n%s%s", stan, want, code, o, e)
			}
			time.Sleep(200 * time.Millisecond) // the host connection comes up after start
		}
	}
	sent := func() int64 {
		var total int64
		for _, byOutcome := range issuer.Stats().Messages {
			for _, c := range byOutcome {
				total += c
			}
		}
		return total
	}
	buy("1", "00", 15*time.Second)

	if out := sw(0, "destinations", "list"); !strings.Contains(out, "demo-issuer") || !strings.Contains(out, issuer.Addr()) || !strings.Contains(out, "enabled") {
		t.Fatalf("list:\n%s", out)
	}
	saved := filepath.Join(t.TempDir(), "demo-issuer.json")
	if err := os.WriteFile(saved, []byte(sw(0, "destinations", "get", "demo-issuer")), 0o600); err != nil {
		t.Fatal(err)
	}

	sw(2, "destinations", "disable", "demo-issuer") // no reason
	if out := sw(0, "destinations", "disable", "demo-issuer", "--reason", "issuer maintenance"); !strings.Contains(out, "demo-issuer replaced") || !strings.Contains(out, "disabled") {
		t.Fatalf("disable: %s", out)
	}
	if out := sw(0, "destinations", "disable", "demo-issuer", "--reason", "again"); !strings.Contains(out, "already disabled") {
		t.Fatalf("disable twice: %s", out)
	}
	before := sent()
	buy("2", "91", 0)
	if got := sent(); got != before {
		t.Fatalf("a disabled destination's host got %d messages", got-before)
	}
	// get's JSON, put back: the saved (enabled) destination.
	if out := sw(0, "destinations", "put", "demo-issuer", "--file", saved, "--reason", "maintenance over"); !strings.Contains(out, "enabled") {
		t.Fatalf("put back: %s", out)
	}
	buy("3", "00", 15*time.Second)

	dir := t.TempDir()
	yml := filepath.Join(dir, "b.yaml")
	os.WriteFile(yml, []byte("kind: http\nsettlement_account: demo-biller-settlement\nhttp: {url: \"https://biller.example/payments\", timeout_ms: 2000}\n"), 0o600)
	if out := sw(0, "destinations", "put", "gas-biller", "--file", yml, "--reason", "new biller"); !strings.Contains(out, "gas-biller created") {
		t.Fatalf("put new: %s", out)
	}
	if out := sw(0, "destinations", "put", "gas-biller", "--file", yml, "--reason", "same again"); !strings.Contains(out, "gas-biller replaced") {
		t.Fatalf("put again: %s", out)
	}
	typo := filepath.Join(dir, "typo.yaml")
	os.WriteFile(typo, []byte("kind: http\nsettlement_account: demo-biller-settlement\nhttp: {url: \"https://x/p\", timeout_msec: 2000}\n"), 0o600)
	if out := sw(2, "destinations", "put", "typo-biller", "--file", typo, "--reason", "x"); !strings.Contains(out, "timeout_msec") {
		t.Fatalf("unknown key: %s", out)
	}
	if out := sw(2, "destinations", "put", "other", "--file", saved, "--reason", "x"); !strings.Contains(out, `"demo-issuer", not "other"`) {
		t.Fatalf("another destination's file: %s", out)
	}
	if out := sw(1, "destinations", "delete", "demo-biller", "--reason", "a route names it"); !strings.Contains(out, "water") {
		t.Fatalf("delete of a routed destination: %s", out)
	}
	if out := sw(0, "destinations", "delete", "gas-biller", "--reason", "contract ended"); !strings.Contains(out, "gas-biller deleted") {
		t.Fatalf("delete: %s", out)
	}
	out := sw(0, "destinations", "list")
	if strings.Contains(out, "gas-biller") || strings.Contains(out, "typo-biller") || !strings.Contains(out, "demo-issuer") || !strings.Contains(out, "demo-biller") {
		t.Fatalf("list after the changes:\n%s", out)
	}
	audit := sw(0, "audit", "list", "--object", "destination/demo-issuer")
	// The seed, the disable and the put back; the second disable changed
	// nothing and is not there.
	if strings.Count(audit, "destination.put") != 3 || !strings.Contains(audit, "issuer maintenance") || !strings.Contains(audit, "maintenance over") ||
		strings.Contains(audit, "again") || strings.Contains(audit, "destination.delete") {
		t.Fatalf("audit of demo-issuer:\n%s", audit)
	}
}
