package codec

import "github.com/switchd/switchd/card"

// PAN is field 2's card number; the type lives in package card so that the
// payment core shares it without importing a wire format.
type PAN = card.PAN

// ErrInvalidPAN means field 2 is not 12–19 digits with a valid Luhn check
// digit. It is distinct from ErrFormat so the switch can answer 14
// (invalid card number) rather than 30.
var ErrInvalidPAN = card.ErrInvalidPAN

// ParsePAN is card.ParsePAN.
func ParsePAN(s string) (PAN, error) { return card.ParsePAN(s) }
