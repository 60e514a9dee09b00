package settle

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/switchd/switchd/currency"
)

// ErrInput wraps every problem with an uploaded file. The message names
// the file, the row (1 = the header) and the column; nothing of a file
// with any such problem is used.
var ErrInput = errors.New("settle: bad input file")

// Mapping says which columns of a partner's or biller's CSV hold what.
// Column names are matched exactly against the header row.
type Mapping struct {
	RRN      string `yaml:"rrn"`
	STAN     string `yaml:"stan"`
	Amount   string `yaml:"amount"`
	Currency string `yaml:"currency"`
	Date     string `yaml:"date"`
	Status   string `yaml:"status"`
	// Partner, optional, names a column holding the partner id: rows of
	// other partners are skipped (a biller's file covers every partner).
	Partner string `yaml:"partner"`
	// DateFormat is a Go time layout; default 2006-01-02.
	DateFormat string `yaml:"date_format"`
	// Decimal is the amount's decimal separator, "." or ","; the amount
	// must have exactly the currency's number of decimals.
	Decimal string `yaml:"decimal"`
	// StatusOK are the status values that mean settled/posted; StatusAuth
	// those that mean an authorization only. Anything else is FAIL.
	StatusOK   []string `yaml:"status_ok"`
	StatusAuth []string `yaml:"status_auth"`
	// StatusReversed are the status values that mean the row is a
	// reversal that took place (a biller's REVERSED: it took back a
	// payment). Such a row agrees with our compensating transfer, which
	// has the original's rrn and stan, not with the original.
	StatusReversed []string `yaml:"status_reversed"`
	// Record and Trailer: rows whose first field is Trailer are trailer
	// records (our settlement file's "T" rows) and are skipped, whatever
	// their column count.
	Trailer string `yaml:"trailer"`
	// Skip: rows whose first field is one of these are not payments and
	// are skipped (our settlement file's "A" records: an off-us request
	// the host did not answer in time and its reversal advice, which moved
	// no money; reconciliation reports those itself, source host).
	Skip []string `yaml:"skip_records"`
	// Type, optional, names a column whose values in TypeReversal mark a
	// row as a reversal (our settlement file's type "reversal"): it is
	// matched with a reversal of ours, so a payment and its reversal on
	// one day, which share rrn and stan when the reversal came from the
	// destination (op 29), are two rows, not a duplicate.
	Type         string   `yaml:"type"`
	TypeReversal []string `yaml:"type_reversal"`
}

// DefaultPartnerMapping reads our own settlement file, so a partner can
// send it back with their view.
func DefaultPartnerMapping() Mapping {
	return Mapping{RRN: "rrn", STAN: "stan", Amount: "amount", Currency: "currency", Date: "business_day",
		Status: "status", DateFormat: time.DateOnly, Decimal: ".", StatusOK: []string{"posted", "OK", "00"},
		StatusAuth: []string{"authorized"}, Trailer: "T", Skip: []string{"A"}, Type: "type", TypeReversal: []string{"reversal"}}
}

// DefaultBillerMapping reads a biller posting file rrn,stan,amount,currency,date,status;
// a reversal the biller made is a row of its day with status REVERSED.
func DefaultBillerMapping() Mapping {
	return Mapping{RRN: "rrn", STAN: "stan", Amount: "amount", Currency: "currency", Date: "date",
		Status: "status", DateFormat: time.DateOnly, Decimal: ".", StatusOK: []string{"OK", "POSTED", "SUCCESS", "posted"},
		StatusReversed: []string{"REVERSED", "reversed"}}
}

// withDefaults fills the date format and decimal separator when unset.
func (m Mapping) withDefaults() Mapping {
	if m.DateFormat == "" {
		m.DateFormat = time.DateOnly
	}
	if m.Decimal == "" {
		m.Decimal = "."
	}
	return m
}

func (m Mapping) validate(what string) error {
	if m.RRN == "" || m.STAN == "" || m.Amount == "" || m.Currency == "" || m.Date == "" || m.Status == "" {
		return fmt.Errorf("%w: %s mapping must name the rrn, stan, amount, currency, date and status columns", ErrConfig, what)
	}
	if m.Decimal != "." && m.Decimal != "," {
		return fmt.Errorf("%w: %s mapping decimal %q (want . or ,)", ErrConfig, what, m.Decimal)
	}
	if _, err := time.Parse(m.DateFormat, time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC).Format(m.DateFormat)); err != nil || m.DateFormat == "" {
		return fmt.Errorf("%w: %s mapping date_format %q", ErrConfig, what, m.DateFormat)
	}
	return nil
}

// Normalized statuses, a byte each in the rows.
const (
	statusOK byte = iota + 1
	statusAuth
	statusFail
	// statusReversed: a file's reversal that took place (Mapping.StatusReversed);
	// it agrees with a posted reversal of ours (ledgerRow.reversal).
	statusReversed
)

var statusNames = [...]string{statusOK: "OK", statusAuth: "AUTH", statusFail: "FAIL", statusReversed: "REVERSED"}

// symbolsMax bounds the distinct currencies and dates of one
// reconciliation (they are uint16 codes in the rows).
const symbolsMax = 1 << 16

// symbols gives the currencies and days of one reconciliation small
// codes, shared by the files and the ledger so rows compare by code.
type symbols struct {
	ids   map[string]uint16
	names []string
}

func newSymbols() *symbols { return &symbols{ids: map[string]uint16{}} }

// id returns s's code; ok is false when the table is full.
func (y *symbols) id(s string) (uint16, bool) {
	if v, ok := y.ids[s]; ok {
		return v, true
	}
	if len(y.names) >= symbolsMax {
		return 0, false
	}
	s = strings.Clone(s)
	v := uint16(len(y.names))
	y.ids[s] = v
	y.names = append(y.names, s)
	return v, true
}

func (y *symbols) name(v uint16) string { return y.names[v] }

// fileRow is one row of an uploaded file. It is kept small (a million
// rows per file are held at once): rrn and stan live only in key, the
// currency, day and status strings are shared.
type fileRow struct {
	key    string // rrn \x00 stan
	amount int64
	row    int32  // 1-based line number in the file (the header is row 1)
	ccy    uint16 // symbols code
	day    uint16 // symbols code of YYYY-MM-DD
	status byte   // statusOK, statusAuth, statusFail, statusReversed
	// reversal: the file says the row is a reversal (Mapping.Type, or
	// status statusReversed).
	reversal bool
}

func (f *fileRow) rrn() string  { r, _, _ := strings.Cut(f.key, "\x00"); return r }
func (f *fileRow) stan() string { _, s, _ := strings.Cut(f.key, "\x00"); return s }

// parseFile reads a CSV upload strictly: a leading UTF-8 BOM is dropped;
// rows end in LF or CRLF; every row has the header's number of columns;
// amounts have exactly the currency's decimals; (rrn, stan) is unique.
// The first problem is returned, naming file, row and column.
//
// When the mapping names a partner column, rows whose partner is not
// partner are checked like the others but not returned.
func parseFile(name string, r io.Reader, m Mapping, bytesMax int64, sym *symbols, partner string) ([]fileRow, error) {
	bad := func(row int, col, format string, args ...any) error {
		where := fmt.Sprintf("%s row %d", name, row)
		if col != "" {
			where += " column " + col
		}
		return fmt.Errorf("%w: %s: %s", ErrInput, where, fmt.Sprintf(format, args...))
	}
	lr := &limitReader{r: r, left: bytesMax}
	br := bufio.NewReaderSize(lr, 1<<20)
	if bom, err := br.Peek(3); err == nil && bytes.Equal(bom, []byte{0xEF, 0xBB, 0xBF}) {
		br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1 // checked here, to name the row and skip trailers
	header, err := cr.Read()
	if err != nil {
		if lr.over {
			return nil, bad(1, "", "file larger than %d bytes", bytesMax)
		}
		if errors.Is(err, io.EOF) {
			return nil, bad(1, "", "empty file (want a header row)")
		}
		return nil, csvError(name, err)
	}
	header = slices.Clone(header) // ReuseRecord: the next Read overwrites it
	cols := map[string]int{}
	for i, h := range header {
		if !utf8.ValidString(h) || strings.ContainsAny(h, "\r\ufeff") {
			return nil, bad(1, fmt.Sprint(i+1), "header is not clean UTF-8 text")
		}
		if _, dup := cols[h]; dup {
			return nil, bad(1, h, "duplicate column")
		}
		cols[h] = i
	}
	need := []struct{ label, col string }{{"rrn", m.RRN}, {"stan", m.STAN}, {"amount", m.Amount}, {"currency", m.Currency}, {"date", m.Date}, {"status", m.Status}}
	idx := make([]int, len(need))
	for i, n := range need {
		j, ok := cols[n.col]
		if !ok {
			return nil, bad(1, n.col, "missing (the mapping's %s column)", n.label)
		}
		idx[i] = j
	}
	typeCol := -1
	if m.Type != "" {
		if j, ok := cols[m.Type]; ok {
			typeCol = j // optional: a file without it has no reversal rows by type
		}
	}
	typeRev := set(m.TypeReversal)
	partnerCol := -1
	if m.Partner != "" {
		j, ok := cols[m.Partner]
		if !ok {
			return nil, bad(1, m.Partner, "missing (the mapping's partner column)")
		}
		partnerCol = j
	}
	okSet, authSet, revSet := set(m.StatusOK), set(m.StatusAuth), set(m.StatusReversed)
	seen := map[string]int32{}
	type ccyCode struct {
		c  currency.Currency
		id uint16
	}
	ccys := map[string]ccyCode{}
	days := map[string]uint16{} // the column's text → symbols code
	var rows []fileRow
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if lr.over {
				return nil, bad(rowOf(cr), "", "file larger than %d bytes", bytesMax)
			}
			return nil, csvError(name, err)
		}
		row, _ := cr.FieldPos(0)
		if m.Trailer != "" && len(rec) > 0 && rec[0] == m.Trailer || len(rec) > 0 && slices.Contains(m.Skip, rec[0]) {
			continue
		}
		if len(rec) != len(header) {
			return nil, bad(row, "", "%d columns, the header has %d", len(rec), len(header))
		}
		for i, f := range rec {
			if strings.ContainsAny(f, "\r\ufeff") || !utf8.ValidString(f) {
				return nil, bad(row, header[i], "stray carriage return, BOM or invalid UTF-8")
			}
		}
		fr := fileRow{row: int32(row)}
		rrn, stan := rec[idx[0]], rec[idx[1]]
		if rrn == "" && stan == "" {
			return nil, bad(row, m.RRN, "rrn and stan are both empty")
		}
		code := rec[idx[3]]
		cc, ok := ccys[code]
		if !ok {
			if cc.c, err = currency.ByCode(code); err != nil {
				if cc.c, err = currency.ByNumeric(code); err != nil {
					return nil, bad(row, m.Currency, "unknown currency %q", code)
				}
			}
			if cc.id, ok = sym.id(cc.c.Code); !ok {
				return nil, bad(row, m.Currency, "more than %d distinct currencies and dates", symbolsMax)
			}
			ccys[strings.Clone(code)] = cc
		}
		ccy := cc.c
		fr.ccy = cc.id
		if fr.amount, err = currency.ParseMinor(rec[idx[2]], ccy, m.Decimal[0]); err != nil {
			return nil, bad(row, m.Amount, "%q is not an amount with %d decimals after %q", rec[idx[2]], ccy.Exponent, m.Decimal)
		}
		day := rec[idx[4]]
		if fr.day, ok = days[day]; !ok {
			d, err := time.Parse(m.DateFormat, day)
			if err != nil {
				return nil, bad(row, m.Date, "%q is not a date like %s", day, m.DateFormat)
			}
			if fr.day, ok = sym.id(d.Format(time.DateOnly)); !ok {
				return nil, bad(row, m.Date, "more than %d distinct currencies and dates", symbolsMax)
			}
			days[strings.Clone(day)] = fr.day
		}
		switch st := rec[idx[5]]; {
		case okSet[st]:
			fr.status = statusOK
		case authSet[st]:
			fr.status = statusAuth
		case revSet[st]:
			fr.status = statusReversed
		default:
			fr.status = statusFail
		}
		if partnerCol >= 0 && rec[partnerCol] != partner {
			continue // checked, not ours; (rrn, stan) is unique per partner
		}
		fr.key = matchKey(rrn, stan)
		fr.reversal = fr.status == statusReversed || typeCol >= 0 && typeRev[rec[typeCol]]
		seenKey := fr.key
		if fr.reversal {
			seenKey += "\x00reversal" // a reversal beside its payment is no duplicate
		}
		if first, dup := seen[seenKey]; dup {
			return nil, bad(row, m.RRN, "duplicates row %d (same rrn %q and stan %q)", first, rrn, stan)
		}
		seen[seenKey] = fr.row
		rows = append(rows, fr)
	}
	if lr.over {
		return nil, bad(rowOf(cr), "", "file larger than %d bytes", bytesMax)
	}
	return rows, nil
}

func matchKey(rrn, stan string) string { return rrn + "\x00" + stan }

func set(vals []string) map[string]bool {
	m := make(map[string]bool, len(vals))
	for _, v := range vals {
		m[v] = true
	}
	return m
}

func rowOf(cr *csv.Reader) int {
	line, _ := cr.FieldPos(0)
	return line
}

// csvError turns encoding/csv's error into ours (it knows line and column).
func csvError(name string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("%w: %s row %d column %d: %v", ErrInput, name, pe.StartLine, pe.Column, pe.Err)
	}
	return fmt.Errorf("%w: %s: %v", ErrInput, name, err)
}

// limitReader fails once more than left bytes were read.
type limitReader struct {
	r    io.Reader
	left int64
	over bool
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		l.over = true
		return 0, io.ErrUnexpectedEOF
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		l.over = true
		return 0, io.ErrUnexpectedEOF
	}
	return n, err
}
