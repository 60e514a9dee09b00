package main

import (
	"fmt"
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
	n := switchdtest.StartWith(t, bin, switchdtest.Options{Extra: fmt.Sprintf(`mac: {kek_file: %q, generate: true}
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
`, filepath.Join(t.TempDir(), "mac.kek"), issuer.Addr())})
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
