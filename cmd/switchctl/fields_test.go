package main

import (
	"bytes"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/switchd/switchd/codec"
)

func TestFieldValue(t *testing.T) {
	fields, err := dialectFields("iso87ascii")
	if err != nil {
		t.Fatal(err)
	}
	base := func() *codec.Message {
		m := &codec.Message{MTI: "0210"}
		m.Set(49, "840")
		return m
	}
	tests := []struct {
		id            int
		value         string
		wantValue     string
		wantNote      string
		wantName      string
		mustNotAppear string
	}{
		{id: 2, value: "4111111111111111", wantValue: "411111******1111", wantName: "primary account number (PAN)", mustNotAppear: "4111111111111111"},
		{id: 2, value: "5500000000000004123", wantValue: "550000*********4123", mustNotAppear: "5500000000000004123"},
		// A PAN failing Luhn is still masked; a short one is starred out.
		{id: 2, value: "4111111111111112", wantValue: "411111******1112", mustNotAppear: "4111111111111112"},
		{id: 2, value: "41111111", wantValue: "********", mustNotAppear: "41111111"},
		{id: 35, value: "4111111111111111=2512101", wantValue: "[redacted]", wantNote: "24 characters", mustNotAppear: "41111111"},
		{id: 52, value: "\x12\x34\x56\x78\x9a\xbc\xde\xf0", wantValue: "[redacted]", wantNote: "8 characters", mustNotAppear: "123456"},
		{id: 3, value: "310000", wantValue: "310000", wantNote: "balance inquiry", wantName: "processing code"},
		{id: 3, value: "990000", wantValue: "990000", wantNote: ""},
		{id: 4, value: "000000001234", wantValue: "000000001234", wantNote: "12.34 USD"},
		{id: 7, value: "1121120000", wantNote: "11-21 12:00:00 UTC", wantValue: "1121120000"},
		{id: 39, value: "00", wantValue: "00", wantNote: "approved", wantName: "response code"},
		{id: 39, value: "51", wantValue: "51", wantNote: "insufficient funds"},
		{id: 39, value: "Z9", wantValue: "Z9", wantNote: "unknown code"},
		{id: 49, value: "840", wantValue: "840", wantNote: "USD"},
		{id: 54, value: "0001840C0000000987660002840D000000000100", wantValue: "0001840C0000000987660002840D000000000100",
			wantNote: "ledger 987.66 USD, available -1.00 USD"},
		{id: 54, value: "garbage", wantValue: "garbage", wantNote: "malformed"},
		// Field 55 is LLL characters (EMV data hex-encoded), as jPOS and moov-io read it.
		{id: 55, value: "9F2608", wantValue: "9F2608", wantName: "ICC data (EMV)"},
		{id: 70, value: "301", wantValue: "301", wantNote: "echo test"},
		{id: 90, value: "010000001011211200000000010000100000000000", wantValue: "010000001011211200000000010000100000000000",
			wantNote: "original 0100, STAN 000010, sent 11-21 12:00:00 UTC, acquirer 100001"},
		{id: 95, value: "000000006000000000000000C00000000C00000000", wantValue: "000000006000000000000000C00000000C00000000",
			wantNote: "actual amount 60.00 USD"},
	}
	for _, tt := range tests {
		m := base()
		m.Set(tt.id, tt.value)
		value, note := fieldValue(tt.id, m, fields[tt.id])
		if value != tt.wantValue || note != tt.wantNote {
			t.Errorf("field %d %q: got %q (%q), want %q (%q)", tt.id, tt.value, value, note, tt.wantValue, tt.wantNote)
		}
		if tt.wantName != "" && fields[tt.id].name != tt.wantName {
			t.Errorf("field %d name %q, want %q", tt.id, fields[tt.id].name, tt.wantName)
		}
		var out bytes.Buffer
		writeMessage(&out, m, fields)
		if tt.mustNotAppear != "" && strings.Contains(out.String(), tt.mustNotAppear) {
			t.Errorf("field %d: printed message reveals %q:\n%s", tt.id, tt.mustNotAppear, out.String())
		}
	}
}

func TestWriteMessage(t *testing.T) {
	fields, err := dialectFields("iso87ascii")
	if err != nil {
		t.Fatal(err)
	}
	m := &codec.Message{MTI: "0210"}
	m.Set(2, "4111111111111111")
	m.Set(39, "00")
	m.Set(38, "AB12CD")
	m.Set(120, "x") // a field without a name in our table still prints
	var out bytes.Buffer
	writeMessage(&out, m, fields)
	got := out.String()
	want := []string{
		"    2  primary account number (PAN)               411111******1111\n",
		"   38  authorization identification response      AB12CD\n",
		"   39  response code                              00 (approved)\n",
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("output lacks %q:\n%s", w, got)
		}
	}
	// Field order is ascending.
	if strings.Index(got, " 2 ") > strings.Index(got, " 39 ") {
		t.Errorf("fields out of order:\n%s", got)
	}
}

func TestBuildMessage(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	f := isoSendFlags{mti: "0400", pan: "4111111111111111", amount: "100", ccy: "USD", pc: "000000",
		stan: "33", acquirer: "100001", terminal: "TERM0001", originalSTAN: "32", originalTime: "1121120200",
		actual: "60.00", fields: fieldList{"48=BT=ELEC"}}
	m, err := buildMessage(&f, now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]string{
		2: "4111111111111111", 3: "000000", 4: "000000010000", 7: "1121120000", 11: "000033",
		32: "100001", 37: "632512000033", 41: "TERM0001", 48: "BT=ELEC", 49: "840",
		90: "020000003211211202000000010000100000000000",
		95: "000000006000000000000000C00000000C00000000",
	}
	for id, v := range want {
		if got := m.Get(id); got != v {
			t.Errorf("field %d = %q, want %q", id, got, v)
		}
	}
	if _, err := codec.ParseRequest(m); err != nil {
		t.Errorf("built request does not parse: %v", err)
	}

	// 0800 carries only network fields.
	f = isoSendFlags{mti: "0800", network: "301"}
	if m, err = buildMessage(&f, now); err != nil {
		t.Fatal(err)
	}
	if got := m.IDs(); len(got) != 3 || m.Get(70) != "301" {
		t.Errorf("0800 fields %v, 70=%q", got, m.Get(70))
	}

	for _, bad := range []isoSendFlags{
		{mti: "0200", amount: "1.00", ccy: "USD"},                                             // no PAN
		{mti: "0200", pan: "4111111111111111", ccy: "USD"},                                    // no amount
		{mti: "0200", pan: "4111111111111111", amount: "1.234", ccy: "USD"},                   // 3 decimals
		{mti: "0200", pan: "4111111111111111", amount: "1.00", ccy: "USD", stan: "1234567"},   // long STAN
		{mti: "0220", pan: "4111111111111111", amount: "1.00", ccy: "USD", originalSTAN: "1"}, // no original time
		{mti: "200", pan: "4111111111111111", amount: "1.00", ccy: "USD"},
		{mti: "0200", pan: "4111111111111111", amount: "1.00", ccy: "USD", fields: fieldList{"x=1"}},
	} {
		if _, err := buildMessage(&bad, now); err == nil {
			t.Errorf("buildMessage accepted %+v", bad)
		}
	}
}

func TestParseArgsInterspersed(t *testing.T) {
	var o opsFlags
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	o.register(fs)
	pos, err := parseArgs(fs, []string{"card-4111", "--json", "--ops", "http://x:1"})
	if err != nil || len(pos) != 1 || pos[0] != "card-4111" || !o.json || o.base != "http://x:1" {
		t.Fatalf("parseArgs = %v, %v; json=%v ops=%q", pos, err, o.json, o.base)
	}
}
