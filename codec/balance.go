package codec

import (
	"fmt"
	"strings"

	"github.com/switchd/switchd/currency"
)

// Balance is one entry of field 54 (additional amounts): account type (2),
// amount type (2: "01" ledger, "02" available), currency numeric (3), sign
// 'C' (credit, positive) or 'D' (debit, negative) (1), amount in minor units
// (12 digits): 20 characters per entry.
type Balance struct {
	AccountType string
	AmountType  string
	Currency    currency.Currency
	Minor       int64
}

// Field 54 geometry: field 54 is an..120, six 20-character entries.
const (
	balanceEntryLen   = 20
	balanceEntriesMax = 6
	balanceMinorMax   = 999_999_999_999 // 12 digits
	balanceField      = 54
)

// Amount types of a Balance.
const (
	AmountTypeLedger    = "01"
	AmountTypeAvailable = "02"
)

// FormatBalances renders entries for field 54. Field 54 is informational (a
// balance on a receipt or ATM screen) and has no room for errors, so an
// entry that cannot be written faithfully — account or amount type not two
// digits, a currency without a three-digit numeric code, a magnitude above
// 12 digits — is left out rather than written wrong, and entries beyond the
// sixth are dropped (120 characters). Callers that must know validate with
// ParseBalances(FormatBalances(b)).
func FormatBalances(b []Balance) string {
	var sb strings.Builder
	sb.Grow(min(len(b), balanceEntriesMax) * balanceEntryLen)
	n := 0
	for _, e := range b {
		if n == balanceEntriesMax {
			break
		}
		if len(e.AccountType) != 2 || len(e.AmountType) != 2 || len(e.Currency.Numeric) != 3 ||
			!validClass(classN, e.AccountType) || !validClass(classN, e.AmountType) ||
			!validClass(classN, e.Currency.Numeric) ||
			e.Minor > balanceMinorMax || e.Minor < -balanceMinorMax {
			continue
		}
		sign, mag := byte('C'), e.Minor
		if mag < 0 {
			sign, mag = 'D', -mag
		}
		fmt.Fprintf(&sb, "%s%s%s%c%012d", e.AccountType, e.AmountType, e.Currency.Numeric, sign, mag)
		n++
	}
	return sb.String()
}

// ParseBalances parses field 54. The length must be a multiple of 20 and
// at most 120; each entry must have digit types, a known currency, sign C or
// D and 12 digits. Errors wrap ErrFormat or ErrUnknownCurrency and name the
// entry, never its content.
func ParseBalances(s string) ([]Balance, error) {
	if len(s)%balanceEntryLen != 0 || len(s) > balanceEntryLen*balanceEntriesMax {
		return nil, fieldErr(balanceField, -1, formatf("length %d is not a multiple of %d up to %d", len(s), balanceEntryLen, balanceEntryLen*balanceEntriesMax))
	}
	out := make([]Balance, 0, len(s)/balanceEntryLen)
	for i := 0; i < len(s); i += balanceEntryLen {
		e := s[i : i+balanceEntryLen]
		entry := i / balanceEntryLen
		if !validClass(classN, e[0:7]) || !validClass(classN, e[8:20]) {
			return nil, fieldErr(balanceField, -1, formatf("entry %d: non-digit", entry))
		}
		if e[7] != 'C' && e[7] != 'D' {
			return nil, fieldErr(balanceField, -1, formatf("entry %d: sign must be C or D", entry))
		}
		cur, err := currency.ByNumeric(e[4:7])
		if err != nil {
			return nil, fieldErr(balanceField, -1, &reasonError{ErrUnknownCurrency, fmt.Sprintf("unknown currency in entry %d", entry)})
		}
		minor := parseDigits(e[8:20])
		if e[7] == 'D' {
			minor = -minor
		}
		out = append(out, Balance{AccountType: e[0:2], AmountType: e[2:4], Currency: cur, Minor: minor})
	}
	return out, nil
}

// Response is what the switch decided; BuildResponse turns it into fields.
type Response struct {
	Code     string    // field 39, always sent
	AuthCode string    // field 38, sent only when non-empty
	Balances []Balance // field 54, sent only when non-empty
}

// echoedFields are copied from request to response when present: the
// fields that let the acquirer match our answer to its request.
var echoedFields = [...]int{2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 90, 95}

// BuildResponse fills out (after resetting it) as the answer to req: the
// response MTI of req's MTI ("" if req is not a known request), the echoed
// fields 2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49 and, where present, 90
// and 95 (and 70 on network management), 38 when AuthCode is set, 39
// always, and 54 when there are balances to report.
func BuildResponse(req *Message, resp Response, out *Message) {
	out.Reset()
	out.MTI = string(MTI(req.MTI).Response())
	for _, id := range echoedFields {
		if req.Has(id) {
			out.Set(id, req.Get(id))
		}
	}
	if strings.HasPrefix(req.MTI, "08") && req.Has(70) {
		out.Set(70, req.Get(70))
	}
	if resp.AuthCode != "" {
		out.Set(38, resp.AuthCode)
	}
	out.Set(39, resp.Code)
	if len(resp.Balances) > 0 {
		if s := FormatBalances(resp.Balances); s != "" {
			out.Set(balanceField, s)
		}
	}
}
