package payment

import "github.com/switchd/switchd/card"

// PAN is a full card number, in memory only (package card): every way it
// can be printed, logged or marshalled gives the masked form, so an Intent
// can be logged whole. The core uses the digits only for the keyed hashes.
type PAN = card.PAN

// ParsePAN is card.ParsePAN: 12..19 digits with a valid Luhn check digit;
// the error wraps card.ErrInvalidPAN and never contains s.
func ParsePAN(s string) (PAN, error) { return card.ParsePAN(s) }
