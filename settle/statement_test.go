package settle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/store"
)

const camtXSD = "testdata/camt.053.001.08.xsd"

func TestSchemaIsTheOfficialOne(t *testing.T) {
	b, err := os.ReadFile(camtXSD)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != "ca0b135cc8e2dde5b2f99af6b6c514a8f29d6e7c6cf98e9ea84d247189868ff5" {
		t.Error("the camt.053 schema is not the copy from moov-io/iso20022 v0.2.1")
	}
}

// xmllint validates doc against the camt.053 schema; skipped without
// xmllint unless SWITCHD_REQUIRE_XMLLINT=1 (CI).
func xmllint(t *testing.T, doc []byte) {
	t.Helper()
	bin, err := exec.LookPath("xmllint")
	if err != nil {
		if os.Getenv("SWITCHD_REQUIRE_XMLLINT") == "1" {
			t.Fatal("xmllint not found and SWITCHD_REQUIRE_XMLLINT=1")
		}
		t.Skip("xmllint not installed (apt-get install libxml2-utils)")
	}
	path := filepath.Join(t.TempDir(), "doc.xml")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "--noout", "--schema", camtXSD, path).CombinedOutput(); err != nil {
		t.Fatalf("xmllint: %v\n%s", err, out)
	}
}

func statementBytes(t *testing.T, l StatementLedger, account, day string) (*Statement, []byte, []byte) {
	t.Helper()
	st, err := BuildStatement(context.Background(), l, account, day)
	if err != nil {
		t.Fatal(err)
	}
	var m, c bytes.Buffer
	if err := WriteMT940(&m, st); err != nil {
		t.Fatal(err)
	}
	if err := WriteCamt053(&c, st); err != nil {
		t.Fatal(err)
	}
	return st, m.Bytes(), c.Bytes()
}

// mtPage is one parsed MT940 message.
type mtPage struct {
	ref, account, number string
	seq                  int
	openTag, closeTag    string
	open, close          int64
	entries              []int64 // signed
	avail                *int64
}

var (
	reField   = regexp.MustCompile(`^:(\d\d[A-Z]?):(.*)$`)
	reBalance = regexp.MustCompile(`^([CD])(\d{6})([A-Z]{3})(\d{1,12},\d{0,3})$`)
	// :61: 6!n[4!n]2a[1!a]15d1!a3!c16x[//16x]
	re61 = regexp.MustCompile(`^(\d{6})(\d{4})?(C|D|RC|RD)([A-Z])?(\d[\d,]{0,14})([A-Z])([A-Z0-9]{3})([^/]{1,16})(//.{1,16})?$`)
	reX  = regexp.MustCompile(`^[A-Za-z0-9/\-?:().,'+ ]*$`)
)

func parseAmount(t *testing.T, s string, c currency.Currency) int64 {
	t.Helper()
	if c.Exponent == 0 {
		s = strings.TrimSuffix(s, ",")
	}
	v, err := currency.ParseMinor(s, c, ',')
	if err != nil {
		t.Fatalf("amount %q: %v", s, err)
	}
	return v
}

// parseMT940 parses and checks the format: X charset, line lengths, the
// :61: grammar, :86: at most 6 lines of 65, fields in order.
func parseMT940(t *testing.T, b []byte, c currency.Currency) []mtPage {
	t.Helper()
	if !bytes.HasSuffix(b, []byte("-\r\n")) {
		t.Fatal("file does not end with a message end")
	}
	var pages []mtPage
	for _, msg := range strings.Split(strings.TrimSuffix(string(b), "-\r\n"), "-\r\n") {
		if len(msg) > mt940PageBytesMax {
			t.Errorf("page of %d characters", len(msg))
		}
		var p mtPage
		lines := strings.Split(strings.TrimSuffix(msg, "\r\n"), "\r\n")
		bal := func(v string) (string, int64) {
			m := reBalance.FindStringSubmatch(v)
			if m == nil || m[3] != c.Code {
				t.Fatalf("balance %q", v)
			}
			amt := parseAmount(t, m[4], c)
			if m[1] == "D" {
				amt = -amt
			}
			return m[2], amt
		}
		var last string
		narrLines := 0
		for _, line := range lines {
			if !reX.MatchString(line) {
				t.Errorf("not SWIFT X: %q", line)
			}
			m := reField.FindStringSubmatch(line)
			if m == nil {
				if last != "86" {
					t.Fatalf("continuation line after :%s: %q", last, line)
				}
				if narrLines++; narrLines > mt940NarrativeLines || len(line) > mt940LineChars {
					t.Errorf(":86: too long at %q", line)
				}
				continue
			}
			tag, v := m[1], m[2]
			last, narrLines = tag, 1
			switch tag {
			case "20":
				p.ref = v
			case "25":
				p.account = v
			case "28C":
				num, seq, _ := strings.Cut(v, "/")
				p.number = num
				p.seq, _ = strconv.Atoi(seq)
			case "60F", "60M":
				p.openTag = tag
				_, p.open = bal(v)
			case "61":
				e := re61.FindStringSubmatch(v)
				if e == nil {
					t.Fatalf(":61: grammar: %q", v)
				}
				amt := parseAmount(t, e[5], c)
				if e[3] == "D" || e[3] == "RC" {
					amt = -amt
				}
				p.entries = append(p.entries, amt)
			case "86":
				if len(v) > mt940LineChars {
					t.Errorf(":86: line too long: %q", v)
				}
			case "62F", "62M":
				p.closeTag = tag
				_, p.close = bal(v)
			case "64":
				_, a := bal(v)
				p.avail = &a
			default:
				t.Errorf("unexpected field %s", tag)
			}
		}
		pages = append(pages, p)
	}
	return pages
}

// checkMT940 checks pagination and arithmetic and returns opening, the
// sum of entries and closing.
func checkMT940(t *testing.T, pages []mtPage) (open, sum, closing int64, n int) {
	t.Helper()
	for i, p := range pages {
		first, last := i == 0, i == len(pages)-1
		if p.seq != i+1 || p.number != pages[0].number || p.ref != pages[0].ref || p.account != pages[0].account {
			t.Errorf("page %d: number %s/%d ref %s", i, p.number, p.seq, p.ref)
		}
		if (first && p.openTag != "60F") || (!first && p.openTag != "60M") || (last && p.closeTag != "62F") || (!last && p.closeTag != "62M") {
			t.Errorf("page %d: %s … %s", i, p.openTag, p.closeTag)
		}
		if !first && p.open != pages[i-1].close {
			t.Errorf("page %d opens %d, previous closed %d", i, p.open, pages[i-1].close)
		}
		s := int64(0)
		for _, e := range p.entries {
			s += e
		}
		if p.open+s != p.close {
			t.Errorf("page %d: %d + %d != %d", i, p.open, s, p.close)
		}
		if (p.avail != nil) != last {
			t.Errorf("page %d: :64: on the wrong page", i)
		}
		sum += s
		n += len(p.entries)
	}
	return pages[0].open, sum, pages[len(pages)-1].close, n
}

func TestStatements(t *testing.T) {
	a, b := newLedger(t), newLedger(t)
	dayOfTraffic(t, a)
	dayOfTraffic(t, b)
	usd, _ := currency.ByCode("USD")
	for _, acct := range []string{"card1", "acq-settle", "biller", "card2"} {
		t.Run(acct, func(t *testing.T) {
			st, mt, camt := statementBytes(t, a, acct, "2026-03-02")
			golden(t, "statement-"+acct+"-2026-03-02.mt940", mt)
			golden(t, "statement-"+acct+"-2026-03-02.camt053.xml", camt)
			_, mt2, camt2 := statementBytes(t, b, acct, "2026-03-02")
			if !bytes.Equal(mt, mt2) || !bytes.Equal(camt, camt2) {
				t.Error("two replicas wrote different statements")
			}
			open, sum, closing, n := checkMT940(t, parseMT940(t, mt, usd))
			if open != st.Opening || closing != st.Closing || open+sum != closing || n != len(st.Entries) {
				t.Errorf("MT940 %d + %d = %d (%d entries); statement %+v", open, sum, closing, n, st)
			}
			xmllint(t, camt)
			checkCamt(t, camt, st)
			// The entries are the ledger's movement that day: the next
			// day's closing is the account's posted balance now.
			st3, _, _ := statementBytes(t, a, acct, "2026-03-03")
			ac, _ := a.Account(acct)
			if st3.Opening != st.Closing || st3.Closing != ac.Posted() {
				t.Errorf("03-03 opens %d (03-02 closed %d), closes %d, posted %d", st3.Opening, st.Closing, st3.Closing, ac.Posted())
			}
		})
	}
	st, _, _ := statementBytes(t, a, "card1", "2026-03-02")
	if st.Opening != 0 || st.Closing != 100000-1234+200-4000-500+500-750 || len(st.Entries) != 7 {
		t.Errorf("card1: %+v", st)
	}
}

// checkCamt parses the document and checks OPBD + entries = CLBD.
func checkCamt(t *testing.T, doc []byte, st *Statement) {
	t.Helper()
	type amt struct {
		Ccy   string `xml:"Ccy,attr"`
		Value string `xml:",chardata"`
	}
	var d struct {
		Stmt struct {
			Bal []struct {
				Cd        string `xml:"Tp>CdOrPrtry>Cd"`
				Amt       amt    `xml:"Amt"`
				CdtDbtInd string `xml:"CdtDbtInd"`
			} `xml:"Bal"`
			Ntry []struct {
				Amt       amt    `xml:"Amt"`
				CdtDbtInd string `xml:"CdtDbtInd"`
			} `xml:"Ntry"`
		} `xml:"BkToCstmrStmt>Stmt"`
	}
	if err := xml.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	signed := func(a amt, ind string) int64 {
		v, err := currency.ParseMinor(a.Value, st.Currency, '.')
		if err != nil || a.Ccy != st.Currency.Code {
			t.Fatalf("amount %+v: %v", a, err)
		}
		if ind == "DBIT" {
			return -v
		}
		return v
	}
	bals := map[string]int64{}
	for _, b := range d.Stmt.Bal {
		bals[b.Cd] = signed(b.Amt, b.CdtDbtInd)
	}
	sum := int64(0)
	for _, n := range d.Stmt.Ntry {
		sum += signed(n.Amt, n.CdtDbtInd)
	}
	if bals["OPBD"] != st.Opening || bals["CLBD"] != st.Closing || st.Opening+sum != st.Closing || len(d.Stmt.Ntry) != len(st.Entries) {
		t.Errorf("camt: %v + %d, %d entries; statement %d → %d", bals, sum, len(d.Stmt.Ntry), st.Opening, st.Closing)
	}
}

// TestMT940Pages: a long statement is split into pages that chain.
func TestMT940Pages(t *testing.T) {
	l := newLedger(t)
	seedAccounts(t, l)
	var cmds []store.Command
	at := tBase
	for i := 0; i < 300; i++ {
		at = at.Add(time.Second)
		c := txn(store.OpPost, fmt.Sprintf("p-%06d", i), int64(1+i*37%5000), at)
		c.Debit, c.Credit = "fund", "card2"
		if i%3 == 1 {
			c.Debit, c.Credit = "card2", "biller"
			c.Amount = 1
		}
		c.Ref.Terminal = "TERM_WITH_UNDERSCORES{}" // outside SWIFT X
		cmds = append(cmds, c)
	}
	l.must(t, cmds...)
	l.must(t, store.Command{Op: store.OpCloseDay, Time: at.UnixNano(), BusinessDay: "2026-03-02", NextDay: "2026-03-03"})
	st, mt, camt := statementBytes(t, l, "card2", "2026-03-02")
	usd, _ := currency.ByCode("USD")
	pages := parseMT940(t, mt, usd)
	if len(pages) < 10 {
		t.Fatalf("%d pages for 300 entries", len(pages))
	}
	if open, sum, closing, n := checkMT940(t, pages); open != 0 || open+sum != closing || closing != st.Closing || n != 300 {
		t.Errorf("%d + %d = %d, %d entries", open, sum, closing, n)
	}
	xmllint(t, camt)
	checkCamt(t, camt, st)
}

func TestMT940Amounts(t *testing.T) {
	jpy, _ := currency.ByCode("JPY")
	kwd, _ := currency.ByCode("KWD")
	usd, _ := currency.ByCode("USD")
	for _, tc := range []struct {
		minor int64
		c     currency.Currency
		want  string
	}{{1234, usd, "12,34"}, {5, usd, "0,05"}, {-5, usd, "0,05"}, {1234, jpy, "1234,"}, {1, kwd, "0,001"}, {99999999999999, usd, "999999999999,99"}} {
		if got, err := mt940Amount(tc.minor, tc.c); err != nil || got != tc.want {
			t.Errorf("%d %s: %q %v", tc.minor, tc.c.Code, got, err)
		}
	}
	if _, err := mt940Amount(100000000000000, usd); err == nil {
		t.Error("a 16-character amount was accepted")
	}
	if got := swiftX("a_b{c}é:-"); got != "a.b.c...:-" {
		t.Errorf("swiftX %q", got)
	}
}

func TestStatementJob(t *testing.T) {
	l := newLedger(t)
	dayOfTraffic(t, l)
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	cal, _ := NewCalendar("UTC", "23:55")
	svc, err := New(cfg, l, NewDays(cal, l, l, nil, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	job, err := svc.Submit(Spec{Kind: KindStatement, Day: "2026-03-02", Account: "card1"})
	if err != nil {
		t.Fatal(err)
	}
	if job = waitJob(t, svc, job.ID); job.State != JobDone || len(job.Files) != 2 || job.Files[1].Name != "card1.camt053.xml" || job.Files[0].Rows != 7 {
		t.Fatalf("%+v", job)
	}
	_, mt, _ := statementBytes(t, l, "card1", "2026-03-02")
	got, err := os.ReadFile(filepath.Join(cfg.Dir, "statements", "2026-03-02", "card1.mt940"))
	if err != nil || !bytes.Equal(got, mt) {
		t.Errorf("file %v", err)
	}
	if _, err := svc.Submit(Spec{Kind: KindStatement, Day: "2026-03-02", Account: "nobody"}); !errors.Is(err, store.ErrUnknownAccount) {
		t.Errorf("unknown account: %v", err)
	}
}

func TestNarrativeLimits(t *testing.T) {
	long := strings.Repeat("X", 200)
	e := Entry{Type: "financial", Ref: store.Ref{MTI: "0200", RRN: long, Terminal: ":-odd", Merchant: strings.Repeat("word ", 200)}, Partner: "-p"}
	lines := strings.Split(narrative(&e), "\r\n")
	if len(lines) != mt940NarrativeLines {
		t.Errorf("%d lines", len(lines))
	}
	for _, l := range lines {
		if len(l) == 0 || len(l) > mt940LineChars || l[0] == ':' || l[0] == '-' || !reX.MatchString(l) {
			t.Errorf("bad line %q", l)
		}
	}
}
