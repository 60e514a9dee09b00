package card

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestParsePANLuhn(t *testing.T) {
	tests := []struct {
		pan   string
		valid bool
	}{
		{"4111111111111111", true},
		{"4111111111111112", false},
		{"5555555555554444", true},
		{"378282246310005", true},  // 15 digits, Amex
		{"378282246310006", false}, // check digit off by one
		{"6011111111111117", true},
		{"4761739001010119", true},
		{"4761739001010118", false},
		{"4222222222222", true}, // 13 digits
		{"000000000000", true},  // 12 zeros: Luhn sum 0
		{"79927398713", false},  // valid Luhn, but only 11 digits
		{"7992739871300000000", true},
		{"79927398713000000000", false}, // 20 digits
		{"", false},
		{"4111 1111 1111 1111", false},
		{"411111111111111a", false},
		{"-411111111111111", false},
	}
	for _, tt := range tests {
		p, err := ParsePAN(tt.pan)
		if tt.valid != (err == nil) {
			t.Errorf("ParsePAN(%q): err %v, want valid=%v", tt.pan, err, tt.valid)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidPAN) {
				t.Errorf("ParsePAN(%q): err %v, want ErrInvalidPAN", tt.pan, err)
			}
			if tt.pan != "" && len(tt.pan) >= 6 && strings.Contains(err.Error(), tt.pan[:6]) {
				t.Errorf("ParsePAN(%q): error leaks digits: %v", tt.pan, err)
			}
			if !p.IsZero() {
				t.Errorf("ParsePAN(%q): non-zero PAN on error", tt.pan)
			}
			continue
		}
		if p.Digits() != tt.pan || p.IsZero() {
			t.Errorf("ParsePAN(%q).Digits() = %q", tt.pan, p.Digits())
		}
	}
}

func TestMasked(t *testing.T) {
	tests := map[string]string{
		"4111111111111111":    "411111******1111",
		"378282246310005":     "378282*****0005",
		"000000000000":        "000000**0000",
		"7992739871300000000": "799273*********0000",
	}
	for pan, want := range tests {
		p, err := ParsePAN(pan)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Masked(); got != want {
			t.Errorf("Masked(%s) = %q, want %q", pan, got, want)
		}
	}
	if (PAN{}).Masked() != "" || !(PAN{}).IsZero() {
		t.Error("zero PAN")
	}
}

// TestPANNeverLeaks renders a PAN every way fmt, json and slog can, alone
// and inside structs, and checks the middle digits never appear.
func TestPANNeverLeaks(t *testing.T) {
	const digits = "4761739001010119"
	p, err := ParsePAN(digits)
	if err != nil {
		t.Fatal(err)
	}
	type wrapper struct {
		Card   PAN
		Ptr    *PAN
		Inner  struct{ P PAN }
		hidden PAN // fmt cannot call methods through unexported fields
		ptr    *PAN
	}
	w := wrapper{Card: p, Ptr: &p, hidden: p, ptr: &p}
	w.Inner.P = p
	req := &struct {
		MTI string
		PAN PAN
	}{MTI: "0200", PAN: p} // as a decoded request carries it

	var outputs []string
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10v", "%-30s", "%T %v", "%.3s", "%08d", "%U", "%c", "%o", "%b", "%e", "%p"}
	for _, v := range verbs {
		for _, arg := range []any{p, &p, w, &w, req, []PAN{p}, map[string]PAN{"k": p}} {
			outputs = append(outputs, fmt.Sprintf(v, arg))
		}
	}
	outputs = append(outputs, fmt.Sprint(p), fmt.Sprintln(p, w), p.String(), p.GoString())
	for _, arg := range []any{p, &p, w, req, []PAN{p}, map[string]PAN{"k": p}} {
		b, err := json.Marshal(arg)
		if err != nil {
			t.Fatal(err)
		}
		outputs = append(outputs, string(b))
	}
	text, _ := p.MarshalText()
	outputs = append(outputs, string(text))
	var sb strings.Builder
	for _, h := range []slog.Handler{slog.NewTextHandler(&sb, nil), slog.NewJSONHandler(&sb, nil)} {
		l := slog.New(h)
		l.Info("x", "pan", p, "w", w, "req", req)
		l.Info("y", slog.Any("pan", &p))
	}
	outputs = append(outputs, sb.String())

	for _, out := range outputs {
		if strings.Contains(out, digits) || strings.Contains(out, digits[6:12]) {
			t.Errorf("PAN digits leaked: %q", out)
		}
	}
	if got := fmt.Sprintf("%v|%q|%#v", p, p, p); got != `476173******0119|"476173******0119"|card.PAN("476173******0119")` {
		t.Errorf("formatting: %s", got)
	}
	if b, _ := json.Marshal(p); string(b) != `"476173******0119"` {
		t.Errorf("json: %s", b)
	}
}

func TestPANHash(t *testing.T) {
	p, _ := ParsePAN("4111111111111111")
	q, _ := ParsePAN("5555555555554444")
	h := p.Hash([]byte("key-1"))
	// HMAC-SHA256("key-1", "4111111111111111"), computed independently with
	// openssl dgst -sha256 -hmac key-1.
	const want = "9034db61a4c254b37e4bb1de63523cd3843b52c48944e75d0973d10422ee9fcb"
	if h != want {
		t.Fatalf("Hash = %q, want %q", h, want)
	}
	if h == p.Hash([]byte("key-2")) {
		t.Error("hash does not depend on the key")
	}
	if h == q.Hash([]byte("key-1")) {
		t.Error("different PANs hash alike")
	}
	if h != p.Hash([]byte("key-1")) {
		t.Error("hash not deterministic")
	}
	if strings.Contains(h, "4111111111") {
		t.Error("hash contains digits")
	}
}
