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
	if code, out, errOut := ctl("iso", "send", "--addr", iso, "--mti", "0200", "--pan", "4111111111111111", "--pc", "500000",
		"--field", "48=BT=ELEC", "--amount", "60.00", "--stan", "4712", "--rrn", "000000004712"); code != 0 || !strings.Contains(out, "39") {
		t.Fatalf("bill payment: %d %s %s", code, out, errOut)
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
	// Reconciliation: the partner sends our file back with a planted
	// amount difference and a transfer we never saw; the biller's file
	// misses the bill payment.
	planted := strings.Replace(string(csv), ",12.34,USD,", ",12.43,USD,", 1)
	planted = strings.Replace(planted, "\nT,", "\nD,"+day+",demo-acquirer,T99999999999999,financial,0200,000000,999999,999999999999,100001,,,1.00,USD,card-4111,demo-acquirer-settlement,posted,,,,,,\nT,", 1)
	pf, bf := filepath.Join(dir, "partner.csv"), filepath.Join(dir, "biller.csv")
	os.WriteFile(pf, []byte(planted), 0o600)
	os.WriteFile(bf, []byte("rrn,stan,amount,currency,date,status\r\n"), 0o600)
	code, out, errOut = ctl("recon", "run", "--ops", ops, "--day", day, "--partner", "demo-acquirer", "--partner-file", pf, "--biller-file", bf)
	if code != 0 || !regexp.MustCompile(`B1\s+1\s+Ops`).MatchString(out) || !regexp.MustCompile(`B2\s+1\s+Eng`).MatchString(out) ||
		!regexp.MustCompile(`B3\s+1\s+Partner ops`).MatchString(out) || !regexp.MustCompile(`B4\s+0`).MatchString(out) {
		t.Fatalf("recon run: %d %s %s", code, out, errOut)
	}
	id := regexp.MustCompile(`reconciliation (R[0-9a-f]+)`).FindStringSubmatch(out)[1]
	code, out, errOut = ctl("recon", "breaks", id, "--ops", ops, "--code", "B2")
	m = regexp.MustCompile(`(B\d{7})\s+B2\s+Eng\s+biller\s+000000004712\s+004712\s+open`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("breaks: %d %s %s", code, out, errOut)
	}
	if code, out, errOut := ctl("recon", "resolve", id, m[1], "--ops", ops, "--note", "biller posted it late"); code != 0 || !strings.Contains(out, "resolved") {
		t.Errorf("resolve: %d %s %s", code, out, errOut)
	}
	if code, out, _ := ctl("recon", "breaks", id, "--ops", ops, "--csv"); code != 0 || !strings.Contains(out, ",resolved,,biller posted it late,") {
		t.Errorf("breaks csv: %s", out)
	}
	// --biller names whose file it is: the power company's (the bill
	// payment is its: still the B2), the http biller's (it owes none of
	// the power company's postings: no B2), or no biller at all (refused).
	for biller, b2 := range map[string]string{"biller-power-co": "1", "demo-biller": "0"} {
		code, out, errOut := ctl("recon", "run", "--ops", ops, "--day", day, "--partner", "demo-acquirer", "--partner-file", pf, "--biller-file", bf, "--biller", biller)
		if code != 0 || !strings.Contains(out, "partner demo-acquirer  biller "+biller+"  done") || !regexp.MustCompile(`B2\s+`+b2+`\s+Eng`).MatchString(out) ||
			!regexp.MustCompile(`B3\s+1\s+Partner ops`).MatchString(out) {
			t.Errorf("recon run --biller %s: %d %s %s", biller, code, out, errOut)
		}
	}
	if code, out, errOut := ctl("recon", "run", "--ops", ops, "--day", day, "--partner", "demo-acquirer", "--partner-file", pf, "--biller-file", bf, "--biller", "card-4111"); code != 1 ||
		!strings.Contains(errOut, "400") || !strings.Contains(errOut, `biller "card-4111" is an account of kind cardholder`) {
		t.Errorf("recon run --biller card-4111: %d %s %s", code, out, errOut)
	}
	if code, _, errOut := ctl("settlement", "pull", "--ops", ops, "--day", day); code != 2 || !strings.Contains(errOut, "--partner") {
		t.Errorf("missing flag: %d %s", code, errOut)
	}
}
