package codec

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/switchd/switchd/currency"
)

func TestMTI(t *testing.T) {
	tests := []struct {
		mti      MTI
		class    string
		repeat   bool
		response MTI
	}{
		{"0100", "010", false, "0110"},
		{"0101", "010", true, "0110"},
		{"0200", "020", false, "0210"},
		{"0201", "020", true, "0210"},
		{"0120", "012", false, "0130"},
		{"0121", "012", true, "0130"},
		{"0220", "022", false, "0230"},
		{"0221", "022", true, "0230"},
		{"0400", "040", false, "0410"},
		{"0401", "040", true, "0410"},
		{"0420", "042", false, "0430"},
		{"0421", "042", true, "0430"},
		{"0800", "080", false, "0810"},
		{"0801", "080", false, ""},
		{"0210", "021", false, ""},
		{"0110", "011", false, ""},
		{"0300", "030", false, ""},
		{"", "", false, ""},
		{"020", "", false, ""},
	}
	for _, tt := range tests {
		if got := tt.mti.Class(); got != tt.class {
			t.Errorf("%q.Class() = %q, want %q", tt.mti, got, tt.class)
		}
		if got := tt.mti.IsRepeat(); got != tt.repeat {
			t.Errorf("%q.IsRepeat() = %v, want %v", tt.mti, got, tt.repeat)
		}
		if got := tt.mti.Response(); got != tt.response {
			t.Errorf("%q.Response() = %q, want %q", tt.mti, got, tt.response)
		}
	}
}

// request returns a valid 0200 Message with the given overrides; a value
// of "-" removes the field.
func request(mti string, overrides map[int]string) *Message {
	m := &Message{MTI: mti}
	base := map[int]string{
		2: testPAN, 3: "003000", 4: "000000012345", 7: "0612143015", 11: "123456",
		12: "143015", 13: "0612", 32: "00123456", 37: "416312000001", 41: "TERM0001",
		42: "MERCHANT0000001", 48: "ref:42", 49: "840",
	}
	if strings.HasPrefix(mti, "08") {
		base = map[int]string{7: "0612143015", 11: "000042", 70: "301"}
	}
	if mti[1] == '2' && mti != "0200" && mti != "0201" || mti[1] == '4' {
		base[90] = "020012345606121430150000012345600000000000"
	}
	for id, v := range overrides {
		base[id] = v
	}
	for id, v := range base {
		if v != "-" {
			m.Set(id, v)
		}
	}
	return m
}

func TestParseRequestValid(t *testing.T) {
	usd, _ := currency.ByCode("USD")
	r, err := ParseRequest(request("0200", nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Request{
		MTI: "0200", ProcCode: ProcCode{"00", "30", "00"}, Amount: 12345, Currency: usd,
		TransmissionTime: "0612143015", STAN: "123456", LocalTime: "143015", LocalDate: "0612",
		Acquirer: "00123456", RRN: "416312000001", Terminal: "TERM0001", Merchant: "MERCHANT0000001",
		AdditionalData: "ref:42",
	}
	if r.PAN.Digits() != testPAN {
		t.Errorf("PAN %v", r.PAN)
	}
	got := *r
	got.PAN = PAN{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}

	r, err = ParseRequest(request("0400", map[int]string{95: "000000002345000000000000000000000000000000"}))
	if err != nil {
		t.Fatal(err)
	}
	wantOrig := Original{MTI: "0200", STAN: "123456", TransmissionTime: "0612143015", Acquirer: "123456", Forwarding: ""}
	if r.Original == nil || *r.Original != wantOrig {
		t.Errorf("Original %+v, want %+v", r.Original, wantOrig)
	}
	if r.ActualAmount == nil || *r.ActualAmount != 2345 {
		t.Errorf("ActualAmount %v", r.ActualAmount)
	}
	if r.Original.Acquirer != strings.TrimLeft(r.Acquirer, "0") {
		t.Errorf("field 90 acquirer %q does not compare with field 32 %q", r.Original.Acquirer, r.Acquirer)
	}

	r, err = ParseRequest(request("0800", nil))
	if err != nil || r.NetworkCode != NetworkEcho || r.STAN != "000042" || !r.PAN.IsZero() {
		t.Errorf("0800: %+v, %v", r, err)
	}

	// Balance inquiry may carry a zero amount.
	if _, err := ParseRequest(request("0100", map[int]string{3: "310000", 4: "000000000000"})); err != nil {
		t.Errorf("balance inquiry with zero amount: %v", err)
	}
	jpy, _ := currency.ByCode("JPY")
	if r, err := ParseRequest(request("0201", map[int]string{49: "392", 4: "999999999999"})); err != nil || r.Currency != jpy || r.Amount != 999999999999 {
		t.Errorf("JPY max amount: %+v %v", r, err)
	}
}

func TestParseRequestErrors(t *testing.T) {
	tests := []struct {
		name      string
		m         *Message
		field     int
		sentinel  error
		sentinel2 error
	}{
		{"unknown MTI", request("0300", nil), 0, ErrUnknownMTI, nil},
		{"response MTI", request("0210", nil), 0, ErrUnknownMTI, nil},
		{"empty MTI", &Message{}, 0, ErrUnknownMTI, nil},
		{"0800 missing 70", request("0800", map[int]string{70: "-"}), 70, ErrMissingField, nil},
		{"0800 missing 7", request("0800", map[int]string{7: "-"}), 7, ErrMissingField, nil},
		{"0800 unknown 70", request("0800", map[int]string{70: "999"}), 70, ErrFormat, nil},
		{"0200 missing 2", request("0200", map[int]string{2: "-"}), 2, ErrMissingField, nil},
		{"0200 missing 49", request("0200", map[int]string{49: "-"}), 49, ErrMissingField, nil},
		{"0100 missing 37", request("0100", map[int]string{37: "-"}), 37, ErrMissingField, nil},
		{"0200 missing 32", request("0200", map[int]string{32: "-"}), 32, ErrMissingField, nil},
		{"0400 missing 90", request("0400", map[int]string{90: "-"}), 90, ErrMissingField, nil},
		{"0220 missing 11", request("0220", map[int]string{11: "-"}), 11, ErrMissingField, nil},
		{"0120 missing 4", request("0120", map[int]string{4: "-"}), 4, ErrMissingField, nil},
		{"0421 missing 90", request("0421", map[int]string{90: "-"}), 90, ErrMissingField, nil},
		{"0400 missing 4", request("0400", map[int]string{4: "-"}), 4, ErrMissingField, nil},
		{"letter in amount", request("0200", map[int]string{4: "00000001234A"}), 4, ErrFormat, nil},
		{"short amount", request("0200", map[int]string{4: "12345"}), 4, ErrFormat, nil},
		{"letter in proc code", request("0200", map[int]string{3: "00300A"}), 3, ErrFormat, nil},
		{"letter in STAN", request("0200", map[int]string{11: "12345X"}), 11, ErrFormat, nil},
		{"bad month in 7", request("0200", map[int]string{7: "1312143015"}), 7, ErrFormat, nil},
		{"bad hour in 12", request("0200", map[int]string{12: "243015"}), 12, ErrFormat, nil},
		{"letter in 32", request("0200", map[int]string{32: "12A"}), 32, ErrFormat, nil},
		{"empty 32", request("0200", map[int]string{32: ""}), 32, ErrFormat, nil},
		{"long 32", request("0200", map[int]string{32: "123456789012"}), 32, ErrFormat, nil},
		{"RRN punctuation", request("0200", map[int]string{37: "41631200000!"}), 37, ErrFormat, nil},
		{"terminal short", request("0200", map[int]string{41: "T1"}), 41, ErrFormat, nil},
		{"letter in 49", request("0200", map[int]string{49: "84O"}), 49, ErrFormat, nil},
		{"unknown currency", request("0200", map[int]string{49: "999"}), 49, ErrUnknownCurrency, nil},
		{"zero amount purchase", request("0200", map[int]string{4: "000000000000"}), 4, ErrInvalidAmount, nil},
		{"bad Luhn", request("0200", map[int]string{2: "4761739001010118"}), 2, ErrInvalidPAN, nil},
		{"short PAN", request("0200", map[int]string{2: "47617390010"}), 2, ErrInvalidPAN, nil},
		{"letter in 90", request("0400", map[int]string{90: "0200123456061214301500000123456000000000X0"}), 90, ErrFormat, nil},
		{"short 90", request("0400", map[int]string{90: "0200123456"}), 90, ErrFormat, nil},
		{"bad time in 90", request("0400", map[int]string{90: "020012345699121430150000012345600000000000"}), 90, ErrFormat, nil},
		{"letter in 95 amount", request("0400", map[int]string{95: "00000000234X000000000000000000000000000000"}), 95, ErrFormat, nil},
		{"95 above 4", request("0400", map[int]string{95: "000000012346000000000000000000000000000000"}), 95, ErrInvalidAmount, nil},
	}
	for _, tt := range tests {
		r, err := ParseRequest(tt.m)
		var fe *FieldError
		if r != nil || !errors.As(err, &fe) || !errors.Is(err, tt.sentinel) {
			t.Errorf("%s: got %v, %v; want *FieldError wrapping %v", tt.name, r, err, tt.sentinel)
			continue
		}
		if fe.Field != tt.field || fe.Offset != -1 {
			t.Errorf("%s: field %d offset %d, want %d -1 (%v)", tt.name, fe.Field, fe.Offset, tt.field, err)
		}
		if want := "codec: field "; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: error %q", tt.name, err)
		}
	}
}

func TestBalances(t *testing.T) {
	usd, _ := currency.ByCode("USD")
	jpy, _ := currency.ByCode("JPY")
	in := []Balance{
		{"00", AmountTypeLedger, usd, 12345},
		{"00", AmountTypeAvailable, usd, -500},
		{"10", AmountTypeAvailable, jpy, 999_999_999_999},
	}
	s := FormatBalances(in)
	const want = "0001840C000000012345" + "0002840D000000000500" + "1002392C999999999999"
	if s != want {
		t.Fatalf("FormatBalances = %q, want %q", s, want)
	}
	out, err := ParseBalances(s)
	if err != nil || !reflect.DeepEqual(out, in) {
		t.Fatalf("ParseBalances = %+v, %v", out, err)
	}

	// Unrepresentable entries are dropped, never written wrong.
	skipped := FormatBalances([]Balance{
		{"00", "01", usd, 1_000_000_000_000},
		{"00", "01", usd, math.MinInt64},
		{"0", "01", usd, 1},
		{"00", "0A", usd, 1},
		{"00", "01", currency.Currency{Code: "XXX"}, 1},
		{"00", "02", usd, 7},
	})
	if skipped != "0002840C000000000007" {
		t.Errorf("FormatBalances with bad entries = %q", skipped)
	}
	many := make([]Balance, 8)
	for i := range many {
		many[i] = Balance{"00", "01", usd, int64(i)}
	}
	if got := FormatBalances(many); len(got) != 120 {
		t.Errorf("eight entries give %d characters, want 120", len(got))
	}
	if FormatBalances(nil) != "" {
		t.Error("no balances")
	}

	bad := []struct {
		s        string
		sentinel error
	}{
		{"0001840C00000001234", ErrFormat},
		{"0001840X000000012345", ErrFormat},
		{"0001840C00000001234A", ErrFormat},
		{"0A01840C000000012345", ErrFormat},
		{"0001999C000000012345", ErrUnknownCurrency},
		{strings.Repeat("0001840C000000012345", 7), ErrFormat},
	}
	for _, tt := range bad {
		if _, err := ParseBalances(tt.s); !errors.Is(err, tt.sentinel) {
			t.Errorf("ParseBalances(%q): err %v, want %v", tt.s, err, tt.sentinel)
		}
	}
	if b, err := ParseBalances(""); err != nil || len(b) != 0 {
		t.Errorf("empty: %v %v", b, err)
	}
}

func TestBuildResponse(t *testing.T) {
	usd, _ := currency.ByCode("USD")
	req := request("0200", map[int]string{35: testPAN + "=2712", 52: "\x01\x02\x03\x04\x05\x06\x07\x08", 43: "SHOP"})
	var out Message
	out.Set(100, "stale")
	BuildResponse(req, Response{Code: "00", AuthCode: "A1B2C3", Balances: []Balance{{"00", "02", usd, 100}}}, &out)
	if out.MTI != "0210" {
		t.Errorf("MTI %q", out.MTI)
	}
	wantIDs := []int{2, 3, 4, 7, 11, 12, 13, 32, 37, 38, 39, 41, 42, 49, 54}
	if !reflect.DeepEqual(out.IDs(), wantIDs) {
		t.Errorf("ids %v, want %v", out.IDs(), wantIDs)
	}
	for _, id := range []int{2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49} {
		if out.Get(id) != req.Get(id) {
			t.Errorf("field %d not echoed", id)
		}
	}
	if out.Get(38) != "A1B2C3" || out.Get(39) != "00" || out.Get(54) != "0002840C000000000100" {
		t.Errorf("38 %q 39 %q 54 %q", out.Get(38), out.Get(39), out.Get(54))
	}

	// Decline: no auth code, no balances; reversal echoes 90 and 95.
	rev := request("0400", map[int]string{95: "000000002345000000000000000000000000000000"})
	BuildResponse(rev, Response{Code: "05"}, &out)
	if out.MTI != "0410" || out.Has(38) || out.Has(54) || out.Get(90) != rev.Get(90) || out.Get(95) != rev.Get(95) || out.Get(39) != "05" {
		t.Errorf("0410: %q %v", out.MTI, out.IDs())
	}

	// Network management echoes 70.
	nm := request("0800", nil)
	BuildResponse(nm, Response{Code: "00"}, &out)
	if out.MTI != "0810" || !reflect.DeepEqual(out.IDs(), []int{7, 11, 39, 70}) || out.Get(70) != "301" {
		t.Errorf("0810: %q %v", out.MTI, out.IDs())
	}

	// The response packs in both dialects.
	for _, dialect := range dialects {
		c := mustLoad(t, dialect)
		BuildResponse(req, Response{Code: "00", AuthCode: "123456"}, &out)
		if _, err := c.Pack(nil, &out); err != nil {
			t.Errorf("%s: pack response: %v", dialect, err)
		}
	}
}

func TestGenericResponseMTI(t *testing.T) {
	for in, want := range map[string]string{"0300": "0310", "0600": "0610", "0810": "", "9999": "", "02": "", "0a00": ""} {
		if got := GenericResponseMTI(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}
