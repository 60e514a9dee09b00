package currency

import (
	"errors"
	"math"
	"testing"
)

func mustCode(t *testing.T, code string) Currency {
	t.Helper()
	c, err := ByCode(code)
	if err != nil {
		t.Fatalf("ByCode(%q): %v", code, err)
	}
	return c
}

func TestTable(t *testing.T) {
	tests := []struct {
		code, numeric string
		exp           int
	}{
		{"USD", "840", 2}, {"EUR", "978", 2}, {"GBP", "826", 2}, {"JPY", "392", 0},
		{"KWD", "414", 3}, {"BHD", "048", 3}, {"JOD", "400", 3}, {"OMR", "512", 3},
		{"TND", "788", 3}, {"LYD", "434", 3}, {"IQD", "368", 3}, {"CLF", "990", 4},
		{"UYW", "927", 4}, {"CLP", "152", 0}, {"KRW", "410", 0}, {"VND", "704", 0},
		{"ISK", "352", 0}, {"XOF", "952", 0}, {"XAF", "950", 0}, {"ALL", "008", 2},
		{"AUD", "036", 2}, {"INR", "356", 2}, {"NGN", "566", 2}, {"KES", "404", 2},
		{"XCG", "532", 2}, {"ZWG", "924", 2}, {"SLE", "925", 2}, {"VES", "928", 2},
	}
	for _, tt := range tests {
		c := mustCode(t, tt.code)
		if c.Numeric != tt.numeric || c.Exponent != tt.exp {
			t.Errorf("%s: got %+v, want numeric %s exponent %d", tt.code, c, tt.numeric, tt.exp)
		}
		n, err := ByNumeric(tt.numeric)
		if err != nil || n != c {
			t.Errorf("ByNumeric(%s) = %+v, %v; want %+v", tt.numeric, n, err, c)
		}
	}
	if len(All()) < 160 {
		t.Errorf("table has %d currencies, want at least 160", len(All()))
	}
	// XCG replaced ANG under the same numeric code.
	if c, _ := ByNumeric("532"); c.Code != "XCG" {
		t.Errorf("ByNumeric(532) = %s, want XCG", c.Code)
	}
	if _, err := ByCode("ANG"); err != nil {
		t.Errorf("ANG should still resolve by code: %v", err)
	}
}

func TestUnknown(t *testing.T) {
	for _, code := range []string{"", "usd", "XXX", "XAU", "US", "USDD"} {
		if _, err := ByCode(code); !errors.Is(err, ErrUnknown) {
			t.Errorf("ByCode(%q): err %v, want ErrUnknown", code, err)
		}
	}
	for _, num := range []string{"", "36", "0840", "999", "abc"} {
		if _, err := ByNumeric(num); !errors.Is(err, ErrUnknown) {
			t.Errorf("ByNumeric(%q): err %v, want ErrUnknown", num, err)
		}
	}
}

func TestFormatMinor(t *testing.T) {
	usd, jpy, kwd, clf := mustCode(t, "USD"), mustCode(t, "JPY"), mustCode(t, "KWD"), mustCode(t, "CLF")
	tests := []struct {
		minor int64
		c     Currency
		sep   byte
		want  string
	}{
		{-12345, usd, '.', "-123.45"},
		{12345, usd, ',', "123,45"},
		{0, usd, '.', "0.00"},
		{5, usd, '.', "0.05"},
		{-5, usd, '.', "-0.05"},
		{100, usd, '.', "1.00"},
		{12345, jpy, '.', "12345"},
		{-1, jpy, '.', "-1"},
		{1, kwd, '.', "0.001"},
		{1234567, kwd, ',', "1234,567"},
		{1, clf, '.', "0.0001"},
		{math.MaxInt64, usd, '.', "92233720368547758.07"},
		{math.MinInt64, usd, '.', "-92233720368547758.08"},
		{math.MinInt64, jpy, '.', "-9223372036854775808"},
		{math.MaxInt64, clf, ',', "922337203685477,5807"},
	}
	for _, tt := range tests {
		if got := FormatMinor(tt.minor, tt.c, tt.sep); got != tt.want {
			t.Errorf("FormatMinor(%d, %s, %q) = %q, want %q", tt.minor, tt.c.Code, tt.sep, got, tt.want)
		}
	}
}

func TestParseMinor(t *testing.T) {
	usd, jpy, kwd := mustCode(t, "USD"), mustCode(t, "JPY"), mustCode(t, "KWD")
	tests := []struct {
		s     string
		c     Currency
		sep   byte
		want  int64
		valid bool
	}{
		{"123.45", usd, '.', 12345, true},
		{"123,45", usd, ',', 12345, true},
		{"-123.45", usd, '.', -12345, true},
		{"0.05", usd, '.', 5, true},
		{"0.00", usd, '.', 0, true},
		{"12345", jpy, '.', 12345, true},
		{"0.001", kwd, '.', 1, true},
		{"92233720368547758.07", usd, '.', math.MaxInt64, true},
		{"-92233720368547758.08", usd, '.', math.MinInt64, true},
		{"9223372036854775807", jpy, '.', math.MaxInt64, true},
		{"-9223372036854775808", jpy, '.', math.MinInt64, true},
		{"92233720368547758.08", usd, '.', 0, false},
		{"-92233720368547758.09", usd, '.', 0, false},
		{"9223372036854775808", jpy, '.', 0, false},
		{"99999999999999999999", jpy, '.', 0, false},
		{"123.4", usd, '.', 0, false},
		{"123.456", usd, '.', 0, false},
		{"123", usd, '.', 0, false},
		{"123.45", usd, ',', 0, false},
		{".45", usd, '.', 0, false},
		{"-.45", usd, '.', 0, false},
		{"+1.00", usd, '.', 0, false},
		{" 1.00", usd, '.', 0, false},
		{"1.0a", usd, '.', 0, false},
		{"12.5", jpy, '.', 0, false},
		{"", usd, '.', 0, false},
		{"-", jpy, '.', 0, false},
		{"", jpy, '.', 0, false},
		{"1.000", kwd, '.', 1000, true},
	}
	for _, tt := range tests {
		got, err := ParseMinor(tt.s, tt.c, tt.sep)
		if tt.valid && (err != nil || got != tt.want) {
			t.Errorf("ParseMinor(%q, %s) = %d, %v; want %d", tt.s, tt.c.Code, got, err, tt.want)
		}
		if !tt.valid && !errors.Is(err, ErrAmount) {
			t.Errorf("ParseMinor(%q, %s) = %d, %v; want ErrAmount", tt.s, tt.c.Code, got, err)
		}
	}
}

// TestFormatParseRoundTrip: every exponent, edges included.
func TestFormatParseRoundTrip(t *testing.T) {
	values := []int64{0, 1, -1, 9, 10, 99, 100, 101, -100, 123456789, math.MaxInt64, math.MinInt64, math.MaxInt64 - 1, math.MinInt64 + 1}
	for _, c := range All() {
		for _, v := range values {
			for _, sep := range []byte{'.', ','} {
				s := FormatMinor(v, c, sep)
				got, err := ParseMinor(s, c, sep)
				if err != nil || got != v {
					t.Fatalf("%s: ParseMinor(FormatMinor(%d) = %q) = %d, %v", c.Code, v, s, got, err)
				}
			}
		}
	}
}
