// Package card holds the card number (PAN) type: one place that decides how
// a PAN is parsed, hashed and rendered (always masked), shared by the wire
// codecs and the payment core.
package card

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
)

// ErrInvalidPAN means field 2 is not 12–19 digits with a valid Luhn check
// digit. It is distinct from ErrFormat so the switch can answer 14
// (invalid card number) rather than 30.
var ErrInvalidPAN = errors.New("card: invalid PAN")

// PAN length bounds: ISO/IEC 7812 card numbers have 12 to 19 digits (field 2
// is n..19).
const (
	panDigitsMin = 12
	panDigitsMax = 19
)

// PAN holds a full card number in memory only. Every way fmt, log/slog,
// encoding/json and encoding (text) can render it gives the masked form
// (first 6, last 4, '*' between), so a PAN cannot reach a log line or a file
// by accident (DESIGN invariant 6). The digits come out only through Digits.
// The zero PAN is "no PAN" and renders as "".
//
// The digits sit behind a *string because fmt bypasses String and Format in
// two cases — a bad verb such as %p, and a PAN inside an unexported struct
// field — and then prints by reflection, where a pointer to a string (unlike
// a string, or a pointer to a struct) comes out as an address only. Because
// of that pointer, compare PANs with Digits or Hash, not ==.
type PAN struct {
	p *string
}

// ParsePAN checks that s is 12..19 digits with a valid Luhn check digit. The
// error never contains s.
func ParsePAN(s string) (PAN, error) {
	if len(s) < panDigitsMin || len(s) > panDigitsMax {
		return PAN{}, fmt.Errorf("%w: %d digits, want %d..%d", ErrInvalidPAN, len(s), panDigitsMin, panDigitsMax)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return PAN{}, fmt.Errorf("%w: non-digit", ErrInvalidPAN)
		}
	}
	if !luhnValid(s) {
		return PAN{}, fmt.Errorf("%w: Luhn check failed", ErrInvalidPAN)
	}
	return PAN{p: &s}, nil
}

// luhnValid reports whether the digit string s passes the Luhn (mod 10)
// check: doubling every second digit from the right.
func luhnValid(s string) bool {
	sum := 0
	double := false
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// IsZero reports whether p holds no PAN.
func (p PAN) IsZero() bool { return p.p == nil }

func (p PAN) digits() string {
	if p.p == nil {
		return ""
	}
	return *p.p
}

// Masked returns the first 6 and last 4 digits with '*' for each digit
// between: "411111******1111". This is the only form fit for display.
func (p PAN) Masked() string {
	d := p.digits()
	n := len(d)
	if n == 0 {
		return ""
	}
	if n < panDigitsMin {
		// Unreachable through ParsePAN; never reveal a short value.
		return strings.Repeat("*", n)
	}
	return d[:6] + strings.Repeat("*", n-10) + d[n-4:]
}

// Hash returns hex(HMAC-SHA256(key, digits)): the keyed lookup hash we store
// instead of the PAN. Keyed, because the PAN space is small enough to
// brute-force an unkeyed hash.
func (p PAN) Hash(key []byte) string {
	mac := hmac.New(sha256.New, key)
	io.WriteString(mac, p.digits())
	return hex.EncodeToString(mac.Sum(nil))
}

// Digits returns the full card number. Never log it, put it in an error,
// store it or send it anywhere but the wire to an issuer: use Masked or
// Hash instead.
func (p PAN) Digits() string { return p.digits() }

// String returns the masked form.
func (p PAN) String() string { return p.Masked() }

// GoString returns the masked form, so %#v cannot reveal the digits.
func (p PAN) GoString() string { return "card.PAN(" + strconv.Quote(p.Masked()) + ")" }

// Format writes the masked form for every verb (%v %+v %#v %s %q %x %d …);
// fmt never sees the digits.
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

// MarshalJSON encodes the masked form as a JSON string. There is no
// UnmarshalJSON: a masked PAN cannot be turned back into a card number.
func (p PAN) MarshalJSON() ([]byte, error) { return json.Marshal(p.Masked()) }

// MarshalText returns the masked form.
func (p PAN) MarshalText() ([]byte, error) { return []byte(p.Masked()), nil }

// LogValue makes log/slog record the masked form.
func (p PAN) LogValue() slog.Value { return slog.StringValue(p.Masked()) }
