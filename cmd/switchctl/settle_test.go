package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestDayCloseAndSettlementPull(t *testing.T) {
	iso, ops := startSwitchd(t)
	if code, out, errOut := ctl("iso", "send", "--addr", iso, "--mti", "0200", "--pan", "4111111111111111",
		"--amount", "12.34", "--stan", "4711", "--rrn", "600000004711"); code != 0 || !strings.Contains(out, "39") {
		t.Fatalf("purchase: %d %s %s", code, out, errOut)
	}
	code, out, errOut := ctl("day", "status", "--ops", ops)
	m := regexp.MustCompile(`open business day: (\d{4}-\d\d-\d\d)`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("day status: %d %s %s", code, out, errOut)
	}
	day := m[1]
	if code, out, errOut := ctl("settlement", "pull", "--ops", ops, "--day", day, "--partner", "demo-acquirer"); code != 1 ||
		!strings.Contains(errOut, "not closed") {
		t.Errorf("pull of the open day: %d %s %s", code, out, errOut)
	}
	if code, out, errOut := ctl("day", "close", "--ops", ops); code != 0 || !strings.Contains(out, "closed business day "+day) {
		t.Fatalf("day close: %d %s %s", code, out, errOut)
	}
	dir := t.TempDir()
	code, out, errOut = ctl("settlement", "pull", "--ops", ops, "--day", day, "--partner", "demo-acquirer", "--out", dir)
	if code != 0 {
		t.Fatalf("pull: %d %s %s", code, out, errOut)
	}
	csv, err := os.ReadFile(filepath.Join(dir, "demo-acquirer.csv"))
	if err != nil || !strings.Contains(string(csv), ",004711,600000004711,100001,") || !strings.Contains(string(csv), ",12.34,USD,") {
		t.Fatalf("csv %v:\n%s", err, csv)
	}
	if strings.Contains(string(csv), "4111111111111111") {
		t.Error("full PAN in the settlement file")
	}
	if _, err := os.Stat(filepath.Join(dir, "demo-acquirer.json.sha256")); err != nil {
		t.Error(err)
	}
	if code, _, errOut := ctl("settlement", "pull", "--ops", ops, "--day", day); code != 2 || !strings.Contains(errOut, "--partner") {
		t.Errorf("missing flag: %d %s", code, errOut)
	}
}
