package settle

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/store"
)

// Scanner streams a day's transfers (store.Store.ScanTransfers).
type Scanner interface {
	ScanTransfers(ctx context.Context, f store.TransferFilter, fn func(t, orig *store.Transfer, v *store.ScanView) error) error
}

// settlementColumns is the CSV header of a settlement file. The order is
// part of the format: partners parse it.
var settlementColumns = []string{
	"record", "business_day", "partner", "transfer_id", "type", "mti", "processing_code", "stan", "rrn",
	"acquirer", "terminal", "transmission_time", "amount", "currency", "debit_account", "credit_account",
	"status", "original_transfer_id", "original_mti", "original_stan", "original_rrn",
	// Appended (issue 10), so a parser reading columns by position keeps
	// working: how the payer was classified, and the OTC agent if any.
	"payer_type", "agent",
}

// trailerColumns is the trailer record, one per currency, after the rows.
var trailerColumns = []string{
	"record", "business_day", "partner", "currency", "count", "settled_count",
	"debits", "credits", "net",
}

// ownerCacheMax bounds the account → owner cache of one file (cards come
// and go; settlement accounts stay hot).
const ownerCacheMax = 100_000

// Totals is the trailer of one currency. Debits and Credits are what the
// partner's own accounts (Account.Partner == partner) were debited and
// credited by the day's settled transfers; Net = Credits − Debits is what
// the switch owes the partner (negative: the partner owes).
type Totals struct {
	Currency     string `json:"currency"`
	Count        int64  `json:"count"`
	SettledCount int64  `json:"settled_count"`
	Debits       string `json:"debits"`
	Credits      string `json:"credits"`
	Net          string `json:"net"`

	debits, credits int64
	ccy             currency.Currency
}

// rowStatus is a transfer's status as the file shows it. It depends only
// on what never changes after the day closes: a hold is "authorized"
// (it moves no money; its capture is a row of its own) even if it is later
// completed, voided or expired, so the file of a closed day is the same
// whenever and wherever it is made.
func rowStatus(t *store.Transfer) string {
	if t.Op == store.OpAuthorize {
		return "authorized"
	}
	return string(store.TransferPosted)
}

func rowType(t *store.Transfer) string {
	switch t.Op {
	case store.OpAuthorize:
		return "authorization"
	case store.OpComplete:
		return "completion"
	case store.OpReverse:
		return "reversal"
	}
	return "financial"
}

// settlementWriter writes the CSV and JSON forms in one pass.
type settlementWriter struct {
	day, partner string
	csv, js      *bufio.Writer
	rows         int64
	totals       map[string]*Totals
	owner        map[string]bool // account id → owned by partner
	buf          []byte
}

// WriteSettlement writes partner's settlement file for day as CSV to csvW
// and JSON to jsonW, from one consistent scan. It returns the number of
// rows. The bytes depend only on the day's transfers and the accounts they
// name: every node writes the same file.
func WriteSettlement(ctx context.Context, sc Scanner, day, partner string, csvW, jsonW io.Writer) (int64, error) {
	w := &settlementWriter{day: day, partner: partner, csv: bufio.NewWriterSize(csvW, 64<<10),
		js: bufio.NewWriterSize(jsonW, 64<<10), totals: map[string]*Totals{}, owner: map[string]bool{}}
	w.csvRecord(settlementColumns)
	fmt.Fprintf(w.js, "{\n  \"business_day\": %s,\n  \"partner\": %s,\n  \"transfers\": [", jsonString(day), jsonString(partner))
	err := sc.ScanTransfers(ctx, store.TransferFilter{BusinessDay: day, Partner: partner}, w.row)
	if err != nil {
		return 0, err
	}
	if w.rows > 0 {
		w.js.WriteString("\n  ")
	}
	w.js.WriteString("],\n  \"reversed_forwards\": [")
	if rs, ok := sc.(ReversedScanner); ok {
		n := 0
		err := rs.ScanReversedForwards(day, partner, func(r *store.ReversedForward) error {
			for _, rec := range reversedRows(r) {
				w.csvRecord(rec)
				if n > 0 {
					w.js.WriteByte(',')
				}
				w.jsonRow(rec)
				n++
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		if n > 0 {
			w.js.WriteString("\n  ")
		}
		w.rows += int64(n)
	}
	w.js.WriteString("],\n  \"trailer\": [")
	ccys := make([]string, 0, len(w.totals))
	for c := range w.totals {
		ccys = append(ccys, c)
	}
	slices.Sort(ccys)
	for i, c := range ccys {
		t := w.totals[c]
		t.Debits = currency.FormatMinor(t.debits, t.ccy, '.')
		t.Credits = currency.FormatMinor(t.credits, t.ccy, '.')
		t.Net = currency.FormatMinor(t.credits-t.debits, t.ccy, '.')
		w.csvRecord([]string{"T", day, partner, c, strconv.FormatInt(t.Count, 10), strconv.FormatInt(t.SettledCount, 10),
			t.Debits, t.Credits, t.Net})
		if i > 0 {
			w.js.WriteByte(',')
		}
		fmt.Fprintf(w.js, "\n    {\"currency\": %s, \"count\": %d, \"settled_count\": %d, \"debits\": %s, \"credits\": %s, \"net\": %s}",
			jsonString(c), t.Count, t.SettledCount, jsonString(t.Debits), jsonString(t.Credits), jsonString(t.Net))
	}
	if len(ccys) > 0 {
		w.js.WriteString("\n  ")
	}
	w.js.WriteString("]\n}\n")
	if err := w.csv.Flush(); err != nil {
		return 0, err
	}
	return w.rows, w.js.Flush()
}

func (w *settlementWriter) owned(v *store.ScanView, id string) (bool, error) {
	if o, ok := w.owner[id]; ok {
		return o, nil
	}
	a, err := v.Account(id)
	if err != nil {
		return false, fmt.Errorf("settle: account %q of a transfer: %w", id, err)
	}
	if len(w.owner) >= ownerCacheMax {
		clear(w.owner)
	}
	o := a.Partner == w.partner
	w.owner[id] = o
	return o, nil
}

func (w *settlementWriter) row(t, orig *store.Transfer, v *store.ScanView) error {
	tot := w.totals[t.Currency]
	if tot == nil {
		ccy, err := currency.ByCode(t.Currency)
		if err != nil {
			return fmt.Errorf("settle: transfer %s: %w", t.ID, err)
		}
		tot = &Totals{Currency: t.Currency, ccy: ccy}
		w.totals[t.Currency] = tot
	}
	tot.Count++
	if t.Op != store.OpAuthorize {
		tot.SettledCount++
		dr, err := w.owned(v, t.Debit)
		if err != nil {
			return err
		}
		cr, err := w.owned(v, t.Credit)
		if err != nil {
			return err
		}
		if dr {
			tot.debits += t.Amount
		}
		if cr {
			tot.credits += t.Amount
		}
	}
	amount := string(currency.AppendMinor(w.buf[:0], t.Amount, tot.ccy, '.'))
	var oid, omti, ostan, orrn string
	if orig != nil {
		oid, omti, ostan, orrn = orig.ID, orig.Ref.MTI, orig.Ref.STAN, orig.Ref.RRN
	}
	rec := [...]string{"D", t.BusinessDay, t.Partner, t.ID, rowType(t), t.Ref.MTI, t.Ref.ProcCode, t.Ref.STAN, t.Ref.RRN,
		t.Ref.Acquirer, t.Ref.Terminal, t.Ref.TransmissionTime, amount, t.Currency, t.Debit, t.Credit,
		rowStatus(t), oid, omti, ostan, orrn, t.PayerType, t.Agent}
	w.csvRecord(rec[:])
	if w.rows > 0 {
		w.js.WriteByte(',')
	}
	w.jsonRow(rec[:])
	w.rows++
	return nil
}

// jsonRow writes rec (a CSV record) as a JSON object of its columns.
func (w *settlementWriter) jsonRow(rec []string) {
	w.js.WriteString("\n    {")
	for i, col := range settlementColumns[1:] {
		if i > 0 {
			w.js.WriteString(", ")
		}
		w.buf = appendJSONString(w.buf[:0], col)
		w.buf = append(w.buf, ": "...)
		w.buf = appendJSONString(w.buf, rec[i+1])
		w.js.Write(w.buf)
	}
	w.js.WriteByte('}')
}

// ReversedScanner streams a day's forwards that timed out and were
// reversed (store.Store.ScanReversedForwards).
type ReversedScanner interface {
	ScanReversedForwards(day, partner string, fn func(*store.ReversedForward) error) error
}

// reversedRows are the two "A" records of a forward that timed out: the
// partner's request as it was (status timed_out: the partner was
// declined, no money moved) and the reversal advice switchd owes the host
// for it (type reversal_advice, the 0420 with the STAN and RRN it carries
// toward the host, naming the original). Neither counts in the trailer.
// Only what never changes once the forward timed out is shown (whether
// the host has confirmed the advice yet is in GET /v1/saf and in
// reconciliation), so the file of a closed day stays the same bytes.
func reversedRows(r *store.ReversedForward) [2][]string {
	f, e := &r.Forward, &r.Advice
	amount := fmt.Sprint(f.Amount)
	if ccy, err := currency.ByCode(f.Currency); err == nil {
		amount = currency.FormatMinor(f.Amount, ccy, '.')
	}
	return [2][]string{
		{"A", f.BusinessDay, f.Partner, f.ID, "financial", f.Ref.MTI, f.Ref.ProcCode, f.Ref.STAN, f.Ref.RRN,
			f.Ref.Acquirer, f.Ref.Terminal, f.Ref.TransmissionTime, amount, f.Currency, "", "",
			"timed_out", "", "", "", "", f.PayerType, ""},
		{"A", f.BusinessDay, f.Partner, e.ID, "reversal_advice", e.MTI, e.Fields[3], e.Fields[11], e.Fields[37],
			f.Ref.Acquirer, f.Ref.Terminal, e.Fields[7], amount, f.Currency, "", "",
			"reversed", f.ID, f.Ref.MTI, f.Ref.STAN, f.Ref.RRN, f.PayerType, ""},
	}
}

// csvRecord writes one CSV line (RFC 4180: CRLF-free, quoted only when a
// field needs it, so the bytes do not depend on a library's choices).
func (w *settlementWriter) csvRecord(fields []string) {
	for i, f := range fields {
		if i > 0 {
			w.csv.WriteByte(',')
		}
		writeCSVField(w.csv, f)
	}
	w.csv.WriteByte('\n')
}

func writeCSVField(w *bufio.Writer, f string) {
	needs := false
	for i := 0; i < len(f); i++ {
		if c := f[i]; c == ',' || c == '"' || c == '\n' || c == '\r' {
			needs = true
			break
		}
	}
	if !needs {
		w.WriteString(f)
		return
	}
	w.WriteByte('"')
	for i := 0; i < len(f); i++ {
		if f[i] == '"' {
			w.WriteByte('"')
		}
		w.WriteByte(f[i])
	}
	w.WriteByte('"')
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, everything else as is.
func appendJSONString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

func jsonString(s string) string { return string(appendJSONString(nil, s)) }
