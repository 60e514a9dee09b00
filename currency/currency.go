// Package currency is the ISO 4217 table switchd needs to turn ISO 8583
// amounts (field 4 is minor units, field 49 a numeric currency code) into
// exact money and back. Amounts are int64 minor units; there is no float
// anywhere, because a float cannot hold 0.10 exactly and money must add up.
package currency

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Currency is one ISO 4217 currency.
type Currency struct {
	Code     string // alphabetic code, e.g. "USD"
	Numeric  string // numeric code as three digits, e.g. "840"; ISO 8583 field 49 carries this
	Exponent int    // number of minor-unit digits: 2 for USD, 0 for JPY, 3 for KWD
}

// ErrUnknown is returned for a code that is not in the table.
var ErrUnknown = errors.New("currency: unknown currency")

// ErrAmount is returned by ParseMinor for text that is not an amount in the
// currency's format, or that does not fit in int64 minor units.
var ErrAmount = errors.New("currency: invalid amount")

// exponentMax bounds Exponent: ISO 4217 has nothing above 4 (CLF, UYW), and
// the bound keeps 10^Exponent far inside int64.
const exponentMax = 4

var (
	byCode    = make(map[string]Currency, len(table))
	byNumeric = make(map[string]Currency, len(table))
)

func init() {
	for _, c := range table {
		if _, dup := byCode[c.Code]; dup {
			panic("currency: duplicate code " + c.Code)
		}
		if len(c.Code) != 3 || len(c.Numeric) != 3 || c.Exponent < 0 || c.Exponent > exponentMax {
			panic("currency: malformed table entry " + c.Code)
		}
		byCode[c.Code] = c
		// The first entry for a numeric code wins: see XCG/ANG in the table.
		if _, dup := byNumeric[c.Numeric]; !dup {
			byNumeric[c.Numeric] = c
		}
	}
}

// ByCode looks a currency up by its alphabetic code ("USD"). Codes are
// upper case, as ISO 4217 writes them; "usd" is unknown.
func ByCode(code string) (Currency, error) {
	c, ok := byCode[code]
	if !ok {
		return Currency{}, ErrUnknown
	}
	return c, nil
}

// ByNumeric looks a currency up by its three-digit numeric code ("840"), the
// form ISO 8583 fields 49–51 carry. "36" is not "036": the code must have
// exactly three digits, because that is what a valid field 49 holds.
func ByNumeric(num string) (Currency, error) {
	c, ok := byNumeric[num]
	if !ok {
		return Currency{}, ErrUnknown
	}
	return c, nil
}

// All returns a copy of the table.
func All() []Currency {
	return append([]Currency(nil), table...)
}

// FormatMinor renders minor units exactly, with sep ('.' or ',') between the
// major and minor digits: FormatMinor(-12345, USD, '.') == "-123.45",
// FormatMinor(5, USD, '.') == "0.05". A currency with exponent 0 has no
// separator. Every int64, math.MinInt64 included, formats exactly.
func FormatMinor(minor int64, c Currency, sep byte) string {
	var buf [32]byte
	return string(AppendMinor(buf[:0], minor, c, sep))
}

// AppendMinor is FormatMinor appending to dst, for writers that build files
// without a string per amount.
func AppendMinor(dst []byte, minor int64, c Currency, sep byte) []byte {
	// The magnitude of math.MinInt64 does not fit in int64; uint64 holds it.
	mag := uint64(minor)
	if minor < 0 {
		dst = append(dst, '-')
		mag = -mag
	}
	var digits [24]byte
	d := strconv.AppendUint(digits[:0], mag, 10)
	e := c.Exponent
	if e <= 0 {
		return append(dst, d...)
	}
	// Left-pad with zeros so there is at least one major digit.
	for len(d) < e+1 {
		d = append(d, 0)
		copy(d[1:], d)
		d[0] = '0'
	}
	dst = append(dst, d[:len(d)-e]...)
	dst = append(dst, sep)
	return append(dst, d[len(d)-e:]...)
}

// ParseMinor parses an amount written like FormatMinor writes it: an optional
// '-', at least one digit, then sep and exactly Exponent digits (no separator
// at all when Exponent is 0). "123.45" in USD is 12345. "123.4", "123",
// "1.234", "+1.00", " 1.00" and amounts beyond int64 are errors wrapping
// ErrAmount: guessing at a malformed amount is how money goes missing.
func ParseMinor(s string, c Currency, sep byte) (int64, error) {
	neg := false
	rest := s
	if len(rest) > 0 && rest[0] == '-' {
		neg = true
		rest = rest[1:]
	}
	e := c.Exponent
	intPart, frac := rest, ""
	if e > 0 {
		if len(rest) < e+2 || rest[len(rest)-e-1] != sep {
			return 0, fmt.Errorf("%w: want %d decimals after %q", ErrAmount, e, sep)
		}
		intPart, frac = rest[:len(rest)-e-1], rest[len(rest)-e:]
	}
	if intPart == "" {
		return 0, fmt.Errorf("%w: no digits", ErrAmount)
	}
	// Accumulate the magnitude in uint64; the negative range is one larger.
	limit := uint64(math.MaxInt64)
	if neg {
		limit++
	}
	var mag uint64
	for _, part := range [2]string{intPart, frac} {
		for i := 0; i < len(part); i++ {
			ch := part[i]
			if ch < '0' || ch > '9' {
				return 0, fmt.Errorf("%w: not a digit", ErrAmount)
			}
			if mag > (limit-uint64(ch-'0'))/10 {
				return 0, fmt.Errorf("%w: out of range", ErrAmount)
			}
			mag = mag*10 + uint64(ch-'0')
		}
	}
	if neg {
		return int64(-mag), nil // -(1<<63) wraps to math.MinInt64, as intended
	}
	return int64(mag), nil
}
