package payment

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"

	"github.com/switchd/switchd/outcome"
)

// PAN length bounds: ISO/IEC 7812 card numbers have 12 to 19 digits.
const (
	panDigitsMin = 12
	panDigitsMax = 19
)

// PAN is a full card number, in memory only. Every way fmt, log/slog,
// encoding/json and encoding (text) can render it gives the masked form
// (first 6, last 4), so an Intent can be logged whole and no PAN reaches
// the line (DESIGN.md invariant 6). The digits come out only through
// Digits; the core itself uses them only for the keyed hashes.
//
// The digits sit behind a pointer because fmt prints by reflection, past
// String and Format, in two cases (a bad verb such as %p, and a PAN inside
// an unexported struct field), and a pointer then prints as an address.
// Compare PANs with Digits, not ==. The zero PAN is "no card".
type PAN struct {
	p *string
}

// ParsePAN checks that s is 12..19 digits with a valid Luhn check digit.
// The error wraps outcome.ErrInvalidPAN and never contains s.
func ParsePAN(s string) (PAN, error) {
	if len(s) < panDigitsMin || len(s) > panDigitsMax {
		return PAN{}, fmt.Errorf("%w: %d digits, want %d..%d", outcome.ErrInvalidPAN, len(s), panDigitsMin, panDigitsMax)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return PAN{}, fmt.Errorf("%w: non-digit", outcome.ErrInvalidPAN)
		}
	}
	if !luhnValid(s) {
		return PAN{}, fmt.Errorf("%w: Luhn check failed", outcome.ErrInvalidPAN)
	}
	return PAN{p: &s}, nil
}

// luhnValid reports whether the digit string s passes the Luhn (mod 10)
// check.
func luhnValid(s string) bool {
	sum := 0
	double := false
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// IsZero reports whether p holds no card number.
func (p PAN) IsZero() bool { return p.p == nil }

// Digits returns the full card number. Never log it, put it in an error or
// store it: use Masked, or the core's CardHash.
func (p PAN) Digits() string {
	if p.p == nil {
		return ""
	}
	return *p.p
}

// Masked returns the first 6 and last 4 digits with '*' between.
func (p PAN) Masked() string {
	d := p.Digits()
	n := len(d)
	if n == 0 {
		return ""
	}
	if n < panDigitsMin {
		return strings.Repeat("*", n) // unreachable through ParsePAN
	}
	return d[:6] + strings.Repeat("*", n-10) + d[n-4:]
}

// String returns the masked form.
func (p PAN) String() string { return p.Masked() }

// GoString returns the masked form, so %#v cannot reveal the digits.
func (p PAN) GoString() string { return "payment.PAN(" + strconv.Quote(p.Masked()) + ")" }

// Format writes the masked form for every verb.
func (p PAN) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'):
		io.WriteString(f, p.GoString())
	case verb == 'q':
		io.WriteString(f, strconv.Quote(p.Masked()))
	default:
		io.WriteString(f, p.Masked())
	}
}

// MarshalJSON encodes the masked form. There is no UnmarshalJSON: a masked
// PAN is no card number.
func (p PAN) MarshalJSON() ([]byte, error) { return json.Marshal(p.Masked()) }

// MarshalText returns the masked form.
func (p PAN) MarshalText() ([]byte, error) { return []byte(p.Masked()), nil }

// LogValue makes log/slog record the masked form.
func (p PAN) LogValue() slog.Value { return slog.StringValue(p.Masked()) }
