package codec

import (
	"errors"
	"strings"

	"github.com/switchd/switchd/currency"
)

// Typed-view sentinels. ParseRequest wraps them in a *FieldError naming the
// field (0 for the MTI).
var (
	ErrUnknownMTI      = errors.New("codec: unknown message type")
	ErrUnknownCurrency = errors.New("codec: unknown currency")
	ErrInvalidAmount   = errors.New("codec: invalid amount")
)

// MTI is a four-digit ISO 8583:1987 message type indicator.
type MTI string

// Class returns the message class used in idempotency keys: the first three
// digits (version, class, function), which leaves out the origin digit
// where the repeat flag lives, so "0201" and "0200" share class "020",
// "0421" and "0420" share "042". "" for a malformed MTI.
func (m MTI) Class() string {
	if len(m) != 4 {
		return ""
	}
	return string(m[:3])
}

// IsRepeat reports whether m is the repeat form of a request (0101, 0201,
// 0221, 0401, 0421): the sender did not get our answer and asks again, so
// the switch must look up the original rather than act twice.
func (m MTI) IsRepeat() bool {
	switch m {
	case "0101", "0121", "0201", "0221", "0401", "0421":
		return true
	}
	return false
}

// Response returns the MTI of the answer to request m, or "" when m is not
// a request the switch serves.
func (m MTI) Response() MTI {
	switch m {
	case "0100", "0101":
		return "0110"
	case "0120", "0121":
		return "0130"
	case "0200", "0201":
		return "0210"
	case "0220", "0221":
		return "0230"
	case "0400", "0401":
		return "0410"
	case "0420", "0421":
		return "0430"
	case "0800":
		return "0810"
	}
	return ""
}

// ProcCode is field 3 split into its three pairs of digits.
type ProcCode struct {
	Type string // transaction type: "00" purchase, "01" cash, "31" balance inquiry …
	From string // from-account type
	To   string // to-account type
}

// String returns the six digits.
func (p ProcCode) String() string { return p.Type + p.From + p.To }

// Original is field 90, original data elements, which ties an advice or
// reversal to the transaction it refers to.
type Original struct {
	MTI              string // 4 digits
	STAN             string // 6 digits
	TransmissionTime string // 10 digits, MMDDhhmmss
	// Acquirer and Forwarding are right-justified and zero-filled to 11
	// digits in field 90; they are returned with the leading zeros removed,
	// which is how field 32 carries them. Compare with
	// strings.TrimLeft(field32, "0").
	Acquirer   string
	Forwarding string
}

// Request is the typed view of an inbound request: the only way the switch
// reads raw fields. Strings are the field values as on the wire (validated);
// absent optional fields are "".
type Request struct {
	MTI      MTI
	ProcCode ProcCode
	PAN      PAN

	Amount   int64             // field 4, minor units of Currency
	Currency currency.Currency // field 49, numeric

	TransmissionTime string // 7, MMDDhhmmss
	STAN             string // 11
	LocalTime        string // 12, hhmmss
	LocalDate        string // 13, MMDD
	Acquirer         string // 32
	RRN              string // 37
	Terminal         string // 41
	Merchant         string // 42
	AdditionalData   string // 48
	NetworkCode      string // 70: 001 sign-on, 002 sign-off, 301 echo

	Original     *Original // field 90
	ActualAmount *int64    // field 95, first 12 digits: the amount that remains after a partial reversal
}

// Network management codes (field 70) the switch serves.
const (
	NetworkSignOn  = "001"
	NetworkSignOff = "002"
	NetworkEcho    = "301"
)

// Transaction types (field 3, first two digits) the switch serves.
const (
	ProcPurchase = "00"
	ProcCash     = "01"
	ProcRefund   = "20"
	ProcBalance  = "31"
	ProcBillPay  = "50"
)

// GenericResponseMTI is the response to an MTI the dialect does not know,
// by its class (third digit + 1: a 0300 gets a 0310), so that even a
// message we cannot serve is answered; "" when mti is not a request MTI.
func GenericResponseMTI(mti string) string {
	if len(mti) != 4 {
		return ""
	}
	for i := 0; i < 4; i++ {
		if mti[i] < '0' || mti[i] > '9' {
			return ""
		}
	}
	if mti[2] > '8' || (mti[2]-'0')%2 != 0 {
		return ""
	}
	return mti[:2] + string(mti[2]+1) + "0"
}

// Mandatory fields per MTI. Network management needs only its own fields;
// financial and authorization requests need everything that identifies and
// prices them; advices and reversals also need field 90 to find the original.
var (
	mandatoryNetwork   = []int{7, 11, 70}
	mandatoryRequest   = []int{2, 3, 4, 7, 11, 32, 37, 49}
	mandatoryReference = []int{2, 3, 4, 7, 11, 32, 37, 49, 90}
)

func mandatoryFields(mti MTI) ([]int, bool) {
	switch mti {
	case "0800":
		return mandatoryNetwork, true
	case "0100", "0101", "0200", "0201":
		return mandatoryRequest, true
	case "0120", "0121", "0220", "0221":
		// Advices: with field 90 a 0220 completes the hold it names; without
		// one it reports a payment the acquirer took offline (issue 13,
		// docs/ADVICES.md), so 90 is optional here and the switch decides.
		return mandatoryRequest, true
	case "0400", "0401", "0420", "0421":
		return mandatoryReference, true
	}
	return nil, false
}

// amountDigits is the width of field 4 and of the amounts inside 54, 90, 95.
const amountDigits = 12

// ParseRequest validates m as a request and returns its typed view. It
// checks that the MTI is one the switch serves, that the mandatory fields
// for that MTI are present, and the format of every field it reads (present
// optional ones included). Errors are *FieldError values naming the field
// (Offset -1) and wrapping ErrUnknownMTI, ErrMissingField, ErrFormat,
// ErrInvalidPAN, ErrUnknownCurrency or ErrInvalidAmount; they never contain
// a field value.
func ParseRequest(m *Message) (*Request, error) {
	mti := MTI(m.MTI)
	need, ok := mandatoryFields(mti)
	if !ok {
		return nil, fieldErr(0, -1, &reasonError{ErrUnknownMTI, "unknown message type"})
	}
	for _, id := range need {
		if !m.Has(id) {
			return nil, fieldErr(id, -1, errMissing)
		}
	}
	r := &Request{MTI: mti}
	var err error

	// Plain fields: id, destination, exact length (0: variable, up to max),
	// maximum, class.
	plain := [...]struct {
		id       int
		dst      *string
		fixed    int
		max      int
		class    charClass
		checkFmt func(string) bool
	}{
		{7, &r.TransmissionTime, 10, 10, classN, validMMDDhhmmss},
		{11, &r.STAN, 6, 6, classN, nil},
		{12, &r.LocalTime, 6, 6, classN, validHHMMSS},
		{13, &r.LocalDate, 4, 4, classN, validMMDD},
		{32, &r.Acquirer, 0, 11, classN, nil},
		{37, &r.RRN, 12, 12, classAN, nil},
		{41, &r.Terminal, 8, 8, classANS, nil},
		{42, &r.Merchant, 15, 15, classANS, nil},
		{48, &r.AdditionalData, 0, 999, classANS, nil},
		{70, &r.NetworkCode, 3, 3, classN, nil},
	}
	for _, f := range plain {
		if !m.Has(f.id) {
			continue
		}
		v := m.Get(f.id)
		if err := checkText(v, f.fixed, f.max, f.class); err != nil {
			return nil, fieldErr(f.id, -1, err)
		}
		if f.checkFmt != nil && !f.checkFmt(v) {
			return nil, fieldErr(f.id, -1, formatf("not a valid date/time"))
		}
		*f.dst = v
	}
	if mti == "0800" {
		switch r.NetworkCode {
		case NetworkSignOn, NetworkSignOff, NetworkEcho:
		default:
			return nil, fieldErr(70, -1, formatf("network management code not supported"))
		}
	}

	if m.Has(2) {
		if r.PAN, err = ParsePAN(m.Get(2)); err != nil {
			return nil, fieldErr(2, -1, err)
		}
	}
	if m.Has(3) {
		v := m.Get(3)
		if err := checkText(v, 6, 6, classN); err != nil {
			return nil, fieldErr(3, -1, err)
		}
		r.ProcCode = ProcCode{Type: v[0:2], From: v[2:4], To: v[4:6]}
	}
	if m.Has(4) {
		v := m.Get(4)
		if err := checkText(v, amountDigits, amountDigits, classN); err != nil {
			return nil, fieldErr(4, -1, err)
		}
		r.Amount = parseDigits(v)
		if r.Amount == 0 && r.ProcCode.Type != ProcBalance {
			return nil, fieldErr(4, -1, &reasonError{ErrInvalidAmount, "invalid amount: zero outside a balance inquiry"})
		}
	}
	if m.Has(49) {
		v := m.Get(49)
		if err := checkText(v, 3, 3, classN); err != nil {
			return nil, fieldErr(49, -1, err)
		}
		if r.Currency, err = currency.ByNumeric(v); err != nil {
			return nil, fieldErr(49, -1, &reasonError{ErrUnknownCurrency, "unknown currency"})
		}
	}
	if m.Has(90) {
		v := m.Get(90)
		if err := checkText(v, 42, 42, classN); err != nil {
			return nil, fieldErr(90, -1, err)
		}
		o := &Original{
			MTI:              v[0:4],
			STAN:             v[4:10],
			TransmissionTime: v[10:20],
			Acquirer:         strings.TrimLeft(v[20:31], "0"),
			Forwarding:       strings.TrimLeft(v[31:42], "0"),
		}
		if !validMMDDhhmmss(o.TransmissionTime) {
			return nil, fieldErr(90, -1, formatf("original transmission time is not a valid date/time"))
		}
		r.Original = o
	}
	if m.Has(95) {
		v := m.Get(95)
		if err := checkText(v, 42, 42, classAN); err != nil {
			return nil, fieldErr(95, -1, err)
		}
		if !validClass(classN, v[:amountDigits]) {
			return nil, fieldErr(95, -1, errNotNumeric)
		}
		a := parseDigits(v[:amountDigits])
		if m.Has(4) && a > r.Amount {
			return nil, fieldErr(95, -1, &reasonError{ErrInvalidAmount, "invalid amount: actual amount exceeds the transaction amount"})
		}
		r.ActualAmount = &a
	}
	return r, nil
}

// checkText validates a value's length (fixed, or 1..max when fixed is 0)
// and class.
func checkText(v string, fixed, max int, cl charClass) error {
	if fixed > 0 && len(v) != fixed {
		return formatf("length %d, want %d", len(v), fixed)
	}
	if fixed == 0 && (len(v) == 0 || len(v) > max) {
		return formatf("length %d, want 1..%d", len(v), max)
	}
	if !validClass(cl, v) {
		return classErr(cl)
	}
	return nil
}

// parseDigits converts at most 18 validated digits; 12-digit amounts fit
// int64 with room to spare.
func parseDigits(s string) int64 {
	var n int64
	for i := 0; i < len(s); i++ {
		n = n*10 + int64(s[i]-'0')
	}
	return n
}

func twoDigits(s string) int { return int(s[0]-'0')*10 + int(s[1]-'0') }

func validMMDD(s string) bool {
	mm, dd := twoDigits(s[0:2]), twoDigits(s[2:4])
	return mm >= 1 && mm <= 12 && dd >= 1 && dd <= 31
}

func validHHMMSS(s string) bool {
	return twoDigits(s[0:2]) <= 23 && twoDigits(s[2:4]) <= 59 && twoDigits(s[4:6]) <= 59
}

func validMMDDhhmmss(s string) bool { return validMMDD(s[0:4]) && validHHMMSS(s[4:10]) }
