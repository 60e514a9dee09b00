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
	code, out, errOut = ctl("statement", "pull", "--ops", ops, "--day", day, "--account", "card-4111", "--out", dir)
	if code != 0 {
		t.Fatalf("statement pull: %d %s %s", code, out, errOut)
	}
	mt, err := os.ReadFile(filepath.Join(dir, "card-4111-"+day+".mt940"))
	if err != nil || !strings.Contains(string(mt), ":60F:C") || !strings.Contains(string(mt), "D12,34NTRF600000004711//") ||
		!strings.Contains(string(mt), ":62F:C") {
		t.Fatalf("mt940 %v:\n%s", err, mt)
	}
	camt, err := os.ReadFile(filepath.Join(dir, "card-4111-"+day+".camt053.xml"))
	if err != nil || !strings.Contains(string(camt), `<Amt Ccy="USD">12.34</Amt><CdtDbtInd>DBIT</CdtDbtInd>`) {
		t.Fatalf("camt %v:\n%s", err, camt)
	}
	if strings.Contains(string(mt)+string(camt), "4111111111111111") {
		t.Error("full PAN in a statement")
	}
	if code, _, errOut := ctl("settlement", "pull", "--ops", ops, "--day", day); code != 2 || !strings.Contains(errOut, "--partner") {
		t.Errorf("missing flag: %d %s", code, errOut)
	}
}
