package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"unicode"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/specs"
)

// fieldInfo is what the printer needs of a dialect's field: its name and
// whether its value is raw bytes.
type fieldInfo struct {
	name   string
	binary bool
}

// dialectFields reads field names and classes from the dialect file, the
// same data the codec is built from, so names never drift from the spec.
func dialectFields(dialect string) (map[int]fieldInfo, error) {
	raw, err := fs.ReadFile(specs.FS, dialect+".json")
	if err != nil {
		return nil, fmt.Errorf("dialect %q: %w", dialect, err)
	}
	var spec struct {
		Fields map[string]struct {
			Description string `json:"description"`
			Class       string `json:"class"`
		} `json:"fields"`
	}
	if err := json.Unmarshal(raw, &spec); err != nil {
		return nil, fmt.Errorf("dialect %q: %w", dialect, err)
	}
	out := make(map[int]fieldInfo, len(spec.Fields))
	for k, f := range spec.Fields {
		id, err := strconv.Atoi(k)
		if err != nil {
			continue
		}
		out[id] = fieldInfo{name: lowerFirst(f.Description), binary: f.Class == "b"}
	}
	return out, nil
}

// lowerFirst lower-cases a leading capital unless it starts an acronym
// ("Response code" → "response code", "ICC data" stays).
func lowerFirst(s string) string {
	r := []rune(s)
	if len(r) >= 2 && unicode.IsUpper(r[0]) && unicode.IsLower(r[1]) {
		r[0] = unicode.ToLower(r[0])
	}
	return string(r)
}

// redacted reports whether a field's content must never be shown, not
// even in part: track data and the PIN block (DESIGN.md invariant 6).
func redacted(id int) bool {
	switch id {
	case 35, 36, 45, 52:
		return true
	}
	return false
}

// responseMeaning says what an ISO 8583:1987 response code (field 39)
// means, for the codes switchd sends.
func responseMeaning(rc string) string {
	switch rc {
	case "00":
		return "approved"
	case "05":
		return "do not honor"
	case "03":
		return "invalid merchant"
	case "12":
		return "invalid transaction"
	case "13":
		return "invalid amount"
	case "14":
		return "invalid card number"
	case "25":
		return "unable to locate original"
	case "30":
		return "format error"
	case "51":
		return "insufficient funds"
	case "57":
		return "transaction not permitted"
	case "61":
		return "exceeds withdrawal limit"
	case "62":
		return "restricted (partner suspended)"
	case "63":
		return "security violation"
	case "91":
		return "issuer or switch unavailable"
	case "94":
		return "duplicate transmission"
	case "96":
		return "system malfunction"
	}
	return "unknown code"
}

// processingType names the transaction type (field 3, first two digits).
func processingType(t string) string {
	switch t {
	case codec.ProcPurchase:
		return "purchase"
	case codec.ProcCash:
		return "cash withdrawal"
	case codec.ProcRefund:
		return "refund"
	case codec.ProcBalance:
		return "balance inquiry"
	case "40": // ISO 8583's transfer; the switch does not serve it
		return "transfer"
	case codec.ProcBillPay:
		return "bill payment"
	}
	return ""
}

// networkCode names a network management code (field 70).
func networkCode(c string) string {
	switch c {
	case codec.NetworkSignOn:
		return "sign-on"
	case codec.NetworkSignOff:
		return "sign-off"
	case codec.NetworkEcho:
		return "echo test"
	}
	return ""
}

// maskPAN shows first 6 and last 4 digits of a card number and stars in
// between; anything shorter than a real PAN is starred out entirely. It
// does not need a valid Luhn digit: a mistyped PAN is still a PAN.
func maskPAN(s string) string {
	if len(s) < 12 {
		return strings.Repeat("*", len(s))
	}
	return s[:6] + strings.Repeat("*", len(s)-10) + s[len(s)-4:]
}

// messageCurrency is the currency of field 49, if it names one.
func messageCurrency(m *codec.Message) (currency.Currency, bool) {
	c, err := currency.ByNumeric(m.Get(49))
	return c, err == nil
}

// formatAmount renders a 12-digit amount field in the message's currency.
func formatAmount(v string, m *codec.Message) string {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return ""
	}
	if c, ok := messageCurrency(m); ok {
		return currency.FormatMinor(n, c, '.') + " " + c.Code
	}
	return strconv.FormatInt(n, 10) + " minor units"
}

// mmddhhmmss renders field 7's MMDDhhmmss readably.
func mmddhhmmss(v string) string {
	if len(v) != 10 {
		return ""
	}
	return v[0:2] + "-" + v[2:4] + " " + v[4:6] + ":" + v[6:8] + ":" + v[8:10] + " UTC"
}

// fieldValue returns how field id of m is shown: the (possibly masked or
// redacted) value and a human explanation, which may be empty.
func fieldValue(id int, m *codec.Message, info fieldInfo) (value, note string) {
	v := m.Get(id)
	switch {
	case id == 2 || id == 34:
		return maskPAN(v), ""
	case redacted(id):
		return "[redacted]", fmt.Sprintf("%d characters", len(v))
	case info.binary:
		return strings.ToUpper(hex.EncodeToString([]byte(v))), ""
	}
	switch id {
	case 3:
		if len(v) == 6 {
			note = processingType(v[:2])
		}
	case 4, 5, 6:
		note = formatAmount(v, m)
	case 7:
		note = mmddhhmmss(v)
	case 12:
		if len(v) == 6 {
			note = v[0:2] + ":" + v[2:4] + ":" + v[4:6]
		}
	case 13:
		if len(v) == 4 {
			note = v[0:2] + "-" + v[2:4]
		}
	case 39:
		note = responseMeaning(v)
	case 49, 50, 51:
		if c, err := currency.ByNumeric(v); err == nil {
			note = c.Code
		}
	case 54:
		note = balancesNote(v)
	case 70:
		note = networkCode(v)
	case 90:
		if len(v) == 42 {
			note = fmt.Sprintf("original %s, STAN %s, sent %s, acquirer %s",
				v[0:4], v[4:10], mmddhhmmss(v[10:20]), strings.TrimLeft(v[20:31], "0"))
		}
	case 95:
		if len(v) >= 12 {
			if a := formatAmount(v[:12], m); a != "" {
				note = "actual amount " + a
			}
		}
	}
	return v, note
}

// balancesNote explains field 54 (ledger and available balances).
func balancesNote(v string) string {
	bals, err := codec.ParseBalances(v)
	if err != nil {
		return "malformed"
	}
	var parts []string
	for _, b := range bals {
		what := "amount type " + b.AmountType
		switch b.AmountType {
		case codec.AmountTypeLedger:
			what = "ledger"
		case codec.AmountTypeAvailable:
			what = "available"
		}
		parts = append(parts, what+" "+currency.FormatMinor(b.Minor, b.Currency, '.')+" "+b.Currency.Code)
	}
	return strings.Join(parts, ", ")
}

// nameWidth aligns values: the longest common field name.
const nameWidth = 42

// writeMessage prints m one field per line: id, name, value and, in
// parentheses, what the value means. PANs are masked and track data and
// PIN blocks redacted, for requests and answers alike.
func writeMessage(w io.Writer, m *codec.Message, fields map[int]fieldInfo) {
	for _, id := range m.IDs() {
		info, ok := fields[id]
		if !ok {
			info.name = "field " + strconv.Itoa(id)
		}
		value, note := fieldValue(id, m, info)
		if note != "" {
			value += " (" + note + ")"
		}
		fmt.Fprintf(w, "  %3d  %-*s %s\n", id, nameWidth, info.name, value)
	}
}
