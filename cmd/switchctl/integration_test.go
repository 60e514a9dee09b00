package main

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/switchd/switchd/internal/switchdtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startSwitchd runs the switchd binary built from this checkout on free
// ports with the demo accounts; it returns the lane address and ops URL.
// switchctl authenticates as the node's bootstrap admin client (the
// credentials file it wrote), as a user of `make run` would.
func startSwitchd(t *testing.T) (isoAddr, opsURL string) {
	t.Helper()
	n := switchdtest.Start(t, switchdtest.Build(t))
	t.Setenv("SWITCHCTL_CREDENTIALS", n.Credentials)
	return n.LaneAddr, n.OpsURL
}

// ctl runs switchctl in-process and returns exit code, stdout and stderr.
func ctl(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestAgainstSwitchd(t *testing.T) {
	iso, ops := startSwitchd(t)

	// A purchase on the demo card is approved; the PAN is never printed.
	code, out, errOut := ctl("iso", "send", "--addr", iso, "--mti", "0200", "--pan", "4111111111111111",
		"--amount", "12.34", "--stan", "1", "--field", "7=1121120000")
	if code != 0 {
		t.Fatalf("iso send 0200: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "← 0210") || !strings.Contains(out, "00 (approved)") {
		t.Errorf("0200 not approved:\n%s", out)
	}
	if strings.Contains(out+errOut, "4111111111111111") || !strings.Contains(out, "411111******1111") {
		t.Errorf("PAN not masked:\n%s", out)
	}

	// Its repeat gets the same answer, approval code included.
	code, rep, _ := ctl("iso", "send", "--addr", iso, "--mti", "0201", "--pan", "4111111111111111",
		"--amount", "12.34", "--stan", "1", "--field", "7=1121120000", "--rrn", fieldOf(out, 37))
	if code != 0 || fieldOf(rep, 38) != fieldOf(out, 38) || fieldOf(out, 38) == "" {
		t.Errorf("repeat: exit %d, 38 %q vs original %q\n%s", code, fieldOf(rep, 38), fieldOf(out, 38), rep)
	}

	// Network management echo.
	code, out, errOut = ctl("iso", "send", "--addr", iso, "--mti", "0800", "--network", "301")
	if code != 0 || !strings.Contains(out, "← 0810") || !strings.Contains(out, "00 (approved)") {
		t.Errorf("0800 echo: exit %d\n%s%s", code, out, errOut)
	}

	// A card failing Luhn is sent anyway and declined 14 by the switch.
	code, out, _ = ctl("iso", "send", "--addr", iso, "--pan", "4111111111111112", "--amount", "1.00")
	if code != 0 || !strings.Contains(out, "14 (invalid card number)") || strings.Contains(out, "4111111111111112") {
		t.Errorf("bad Luhn: exit %d\n%s", code, out)
	}
	// lanes status: this node's lane, plain TCP on its allowlist.
	if code, out, errOut := ctl("lanes", "status", "--ops", ops); code != 0 || !regexp.MustCompile(`test\s+mpls\s+\S+\s+tcp\s+127\.0\.0\.0/8,::1/128`).MatchString(out) {
		t.Errorf("lanes status: exit %d\n%s%s", code, out, errOut)
	}
	// --expect turns the answer into the exit status.
	if code, _, errOut := ctl("iso", "send", "--addr", iso, "--pan", "4111111111111112", "--amount", "1.00", "--expect", "14"); code != 0 {
		t.Errorf("--expect 14 of a 14: exit %d %s", code, errOut)
	}
	if code, _, errOut := ctl("iso", "send", "--addr", iso, "--pan", "4111111111111112", "--amount", "1.00", "--expect", "00"); code != 1 ||
		!strings.Contains(errOut, `response code "14", expected "00"`) {
		t.Errorf("--expect 00 of a 14: exit %d %s", code, errOut)
	}

	// The purchase shows in the account and transfer views.
	code, out, errOut = ctl("accounts", "card-4111", "--ops", ops)
	if code != 0 || !strings.Contains(out, "987.66") || !strings.Contains(out, "411111******1111") {
		t.Errorf("accounts card-4111: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = ctl("accounts", "--ops", ops)
	if code != 0 || !strings.Contains(out, "card-4111") || !strings.Contains(out, "bank-funding-usd") {
		t.Errorf("accounts: exit %d\n%s", code, out)
	}
	code, out, _ = ctl("transfers", "--ops", ops, "--account", "card-4111")
	if code != 0 || !strings.Contains(out, "12.34") || !strings.Contains(out, "0200") {
		t.Errorf("transfers: exit %d\n%s", code, out)
	}
	code, out, _ = ctl("accounts", "card-4111", "--json", "--ops", ops)
	if code != 0 || !strings.Contains(out, `"posted": 98766`) {
		t.Errorf("accounts --json: exit %d\n%s", code, out)
	}
	code, out, _ = ctl("cluster", "status", "--ops", ops)
	if code != 0 || !strings.Contains(out, "Leader") || !strings.Contains(out, "ready") {
		t.Errorf("cluster status: exit %d\n%s", code, out)
	}
	code, out, _ = ctl("cluster", "snapshot", "--ops", ops)
	if code != 0 || !strings.HasPrefix(out, "snapshot at index ") {
		t.Errorf("cluster snapshot: exit %d\n%s", code, out)
	}

	// Failures: exit 1 with a message that says what was tried.
	code, _, errOut = ctl("accounts", "no-such-account", "--ops", ops)
	if code != 1 || !strings.Contains(errOut, "404") {
		t.Errorf("unknown account: exit %d, %q", code, errOut)
	}
	dead := switchdtest.FreePort(t)
	code, _, errOut = ctl("accounts", "--ops", "http://"+dead)
	if code != 1 || !strings.Contains(errOut, "connection refused") || !strings.Contains(errOut, dead) {
		t.Errorf("ops down: exit %d, %q", code, errOut)
	}
	code, _, errOut = ctl("iso", "send", "--addr", dead, "--pan", "4111111111111111", "--amount", "1")
	if code != 1 || !strings.Contains(errOut, "connection refused") || !strings.Contains(errOut, dead) {
		t.Errorf("switch down: exit %d, %q", code, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"frobnicate"},
		{"iso"},
		{"iso", "send", "--no-such-flag"},
		{"iso", "send", "--amount", "1"}, // no PAN
		{"accounts", "a", "b"},
		{"transfers", "positional"},
		{"cluster"},
	} {
		if code, _, _ := ctl(args...); code != 2 {
			t.Errorf("switchctl %v: exit %d, want 2", args, code)
		}
	}
	if code, out, _ := ctl("iso", "send", "-h"); code != 0 || !strings.Contains(out, "--original-stan") && !strings.Contains(out, "-original-stan") {
		t.Errorf("iso send -h: exit %d\n%s", code, out)
	}
}

// fieldOf returns field id's value from the answer part of printed output.
func fieldOf(out string, id int) string {
	_, answer, _ := strings.Cut(out, "←")
	for _, line := range strings.Split(answer, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == fmt.Sprint(id) {
			// The value is the first token after the name: find it by
			// position of the two-space gap after the name column.
			rest := strings.TrimSpace(line[strings.Index(line, f[0])+len(f[0]):])
			rest = strings.TrimSpace(rest[min(len(rest), nameWidth):])
			v, _, _ := strings.Cut(rest, " ")
			return v
		}
	}
	return ""
}
