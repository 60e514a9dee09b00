package settle

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/switchd/switchd/currency"
)

// MT940 limits (SWIFT MT940 field formats; FIN text block size).
const (
	// mt940PageBytesMax is the text a page (one MT940 message) may hold:
	// SWIFT FIN's 2,000 characters. A longer statement is split into
	// pages: same statement number, sequence + 1, 60M/62M between pages.
	mt940PageBytesMax = 2000
	// mt940AmountCharsMax is the 15d amount format (digits and the comma).
	mt940AmountCharsMax = 15
	// mt940NarrativeLines and mt940LineChars bound :86: (6*65x).
	mt940NarrativeLines = 6
	mt940LineChars      = 65
	mt940RefChars       = 16 // 16x references in :20: and :61:
	mt940AccountChars   = 35 // :25: 35x
)

// swiftX maps s into the SWIFT X character set (a-z A-Z 0-9 / - ? : ( ) .
// , ' + space); anything else becomes '.'.
func swiftX(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("/-?:().,'+ ", c) >= 0:
		default:
			b[i] = '.'
		}
	}
	return string(b)
}

// mt940Amount formats minor units as 15d: decimal comma, the currency's
// exponent, a comma even without decimals ("1234,").
func mt940Amount(minor int64, c currency.Currency) (string, error) {
	if minor < 0 {
		minor = -minor
	}
	s := currency.FormatMinor(minor, c, ',')
	if c.Exponent == 0 {
		s += ","
	}
	if len(s) > mt940AmountCharsMax {
		return "", fmt.Errorf("%w: MT940 amount %s longer than 15 characters", ErrTooLarge, s)
	}
	return s, nil
}

func yymmdd(day string) string { return day[2:4] + day[5:7] + day[8:10] }

// balanceField is :60F: :60M: :62F: :62M: :64: — mark, date, currency, amount.
func balanceField(tag string, bal int64, day string, c currency.Currency) (string, error) {
	mark := "C"
	if bal < 0 {
		mark = "D"
	}
	amt, err := mt940Amount(bal, c)
	if err != nil {
		return "", err
	}
	return ":" + tag + ":" + mark + yymmdd(day) + c.Code + amt + "\r\n", nil
}

// statementNumber is :28C:'s 5n statement number: YYDDD of the day, unique
// per account for a century and the same on every node.
func statementNumber(day string) string {
	d, _ := time.Parse(time.DateOnly, day)
	return fmt.Sprintf("%02d%03d", d.Year()%100, d.YearDay())
}

// narrative is the :86: text, X charset, at most 6 lines of 65; no line
// starts with ':' or '-' (that would read as a new field or the end).
func narrative(e *Entry) string {
	parts := []string{e.Type}
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+" "+v)
		}
	}
	add("MTI", e.Ref.MTI)
	add("PC", e.Ref.ProcCode)
	add("STAN", e.Ref.STAN)
	add("RRN", e.Ref.RRN)
	add("ACQ", e.Ref.Acquirer)
	add("TID", e.Ref.Terminal)
	add("MID", e.Ref.Merchant)
	add("PARTNER", e.Partner)
	add("CPTY", e.Counterparty)
	add("ORIG", e.Original)
	var lines []string
	var cur string
	push := func() bool {
		if cur == "" {
			return true
		}
		if cur[0] == ':' || cur[0] == '-' {
			cur = "." + cur[1:]
		}
		lines = append(lines, cur)
		cur = ""
		return len(lines) < mt940NarrativeLines
	}
	// Word-wrapped at 65; a word longer than a line is cut; past 6 lines
	// the rest is dropped (the transfer id in :61: finds everything).
	for _, w := range strings.Fields(swiftX(strings.Join(parts, " "))) {
		for len(w) > 0 {
			room := mt940LineChars - len(cur)
			if cur != "" {
				room-- // the space
			}
			if len(w) <= room {
				if cur != "" {
					cur += " "
				}
				cur += w
				w = ""
				continue
			}
			if cur == "" { // longer than a line
				cur, w = w[:mt940LineChars], w[mt940LineChars:]
			}
			if !push() {
				return strings.Join(lines, "\r\n")
			}
		}
	}
	push()
	return strings.Join(lines, "\r\n")
}

// WriteMT940 writes st as MT940 messages (block 4 text, CRLF lines, each
// message ended by "-"), split into pages of at most mt940PageBytesMax.
// Each page opens with the previous page's closing balance (:60M:) and
// closes with an intermediate balance (:62M:); the last closes with :62F:
// and :64: (the closing booked balance: holds are not part of a booked
// statement).
func WriteMT940(w io.Writer, st *Statement) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	ref := swiftX("S" + yymmdd(st.Day) + st.Account)
	if len(ref) > mt940RefChars {
		ref = ref[:mt940RefChars]
	}
	acct := swiftX(st.Account)
	if len(acct) > mt940AccountChars {
		acct = acct[:mt940AccountChars]
	}
	number := statementNumber(st.Day)
	mmdd := yymmdd(st.Day)[2:]
	var page strings.Builder
	seq := 1
	bal := st.Opening
	pageOpen := func(first bool) error {
		page.Reset()
		page.WriteString(":20:" + ref + "\r\n:25:" + acct + "\r\n")
		page.WriteString(":28C:" + number + "/" + strconv.Itoa(seq) + "\r\n")
		tag := "60M"
		if first {
			tag = "60F"
		}
		f, err := balanceField(tag, bal, st.Day, st.Currency)
		page.WriteString(f)
		return err
	}
	pageClose := func(last bool) error {
		tag := "62M"
		if last {
			tag = "62F"
		}
		f, err := balanceField(tag, bal, st.Day, st.Currency)
		if err != nil {
			return err
		}
		page.WriteString(f)
		if last {
			f, err := balanceField("64", bal, st.Day, st.Currency)
			if err != nil {
				return err
			}
			page.WriteString(f)
		}
		page.WriteString("-\r\n")
		_, err = bw.WriteString(page.String())
		return err
	}
	// closingBytes is what :62M:/:62F: + :64: + "-" can take.
	const closingBytes = 2*(5+1+6+3+mt940AmountCharsMax+2) + 3
	if err := pageOpen(true); err != nil {
		return err
	}
	entries := 0
	for i := range st.Entries {
		e := &st.Entries[i]
		mark := "D"
		switch {
		case e.Credit && e.Reversal:
			mark = "RD" // a debit reversed: money back in
		case e.Credit:
			mark = "C"
		case e.Reversal:
			mark = "RC"
		}
		amt, err := mt940Amount(e.Amount, st.Currency)
		if err != nil {
			return err
		}
		owner := e.Ref.RRN
		if owner == "" {
			owner = "NONREF"
		}
		owner = swiftX(owner)
		if len(owner) > mt940RefChars {
			owner = owner[:mt940RefChars]
		}
		svc := e.TransferID
		if len(svc) > mt940RefChars {
			svc = svc[:mt940RefChars]
		}
		block := ":61:" + yymmdd(st.Day) + mmdd + mark + amt + "NTRF" + owner + "//" + swiftX(svc) + "\r\n" +
			":86:" + narrative(e) + "\r\n"
		if entries > 0 && page.Len()+len(block)+closingBytes > mt940PageBytesMax {
			if err := pageClose(false); err != nil {
				return err
			}
			seq++
			if err := pageOpen(false); err != nil {
				return err
			}
			entries = 0
		}
		page.WriteString(block)
		entries++
		if e.Credit {
			bal += e.Amount
		} else {
			bal -= e.Amount
		}
	}
	if bal != st.Closing {
		panic(fmt.Sprintf("settle: statement %s %s: opening + entries = %d, closing %d", st.Account, st.Day, bal, st.Closing))
	}
	if err := pageClose(true); err != nil {
		return err
	}
	return bw.Flush()
}
