package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchd/switchd/internal/switchdtest"
)

// End to end through the switchd binary: a MAC key set with switchctl
// (from a file, never argv), shown by its KCV, a MACed 0200 approved with
// a MACed answer; the wrong key or no MAC is declined 63, nothing posted.
func TestMACEndToEnd(t *testing.T) {
	dir := t.TempDir()
	kek := filepath.Join(dir, "mac.kek")
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("mac.kek", strings.Repeat("5a", 32))
	key := write("partner.key", "7962D9ECE03D1ACD4C76089DCE131543")
	wrong := write("wrong.key", "0123456789ABCDEFFEDCBA9876543210")
	n := switchdtest.StartWith(t, switchdtest.Build(t), switchdtest.Options{Extra: "mac:\n  kek_file: " + kek + "\n"})
	ops := []string{"--ops", n.OpsURL, "--credentials", n.Credentials}

	args := append([]string{"partners", "mac-key", "set", "--partner", "demo-acquirer", "--alg", "x919", "--key-file", key,
		"--kcv", "000000", "--reason", "onboarding"}, ops...)
	if code, out, errOut := ctl(args...); code == 0 || !strings.Contains(out+errOut, "check value is") {
		t.Fatalf("wrong --kcv: exit %d\n%s%s", code, out, errOut)
	}
	args = append([]string{"partners", "mac-key", "set", "--partner", "demo-acquirer", "--alg", "x919", "--key-file", key,
		"--reason", "onboarding"}, ops...)
	code, out, errOut := ctl(args...)
	if code != 0 || !strings.Contains(out, "x919 padding m1, key KCV ") {
		t.Fatalf("mac-key set: exit %d\n%s%s", code, out, errOut)
	}
	if code, show, _ := ctl(append([]string{"partners", "show", "demo-acquirer"}, ops...)...); code != 0 || !strings.Contains(show, "key KCV") ||
		strings.Contains(strings.ToUpper(show), "7962D9EC") {
		t.Fatalf("partners show: %s", show)
	}
	balance := func() string {
		_, out, _ := ctl(append([]string{"accounts"}, ops...)...)
		return out
	}
	before := balance()
	send := func(extra ...string) (int, string) {
		code, out, errOut := ctl(append([]string{"iso", "send", "--addr", n.LaneAddr, "--pan", "4111111111111111", "--amount", "1.00"}, extra...)...)
		return code, out + errOut
	}
	if code, out := send("--mac-key-file", key, "--expect", "00"); code != 0 || !strings.Contains(out, "answer's field 64 verifies") {
		t.Fatalf("MACed 0200: exit %d\n%s", code, out)
	}
	after := balance()
	if after == before {
		t.Fatal("the approved purchase moved nothing")
	}
	for name, extra := range map[string][]string{"wrong key": {"--mac-key-file", wrong}, "no MAC": nil} {
		if code, out := send(append(extra, "--expect", "63")...); code != 0 {
			t.Errorf("%s: exit %d\n%s", name, code, out)
		}
	}
	if balance() != after {
		t.Error("a declined MAC moved money")
	}
	if code, out, _ := ctl("iso", "send", "--addr", n.LaneAddr, "--pan", "4111111111111111", "--amount", "1.00", "--mac-alg", "x919"); code == 0 {
		t.Errorf("--mac-alg without a key file: %s", out)
	}
}
