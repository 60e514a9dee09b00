package settle

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"io"
	"strings"

	"github.com/switchd/switchd/currency"
)

// camt.053 text limits (Max35Text, Max34Text, Max500Text).
const (
	camtIDChars      = 35
	camtAccountChars = 34
	camtInfoChars    = 500
	camtNamespace    = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"
)

// camtAmount is an exact decimal with a dot, no sign (direction is
// CdtDbtInd).
func camtAmount(minor int64, c currency.Currency) string {
	if minor < 0 {
		minor = -minor
	}
	return currency.FormatMinor(minor, c, '.')
}

func xmlText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// fitID shortens an id to n characters, keeping it unique with a hash.
func fitID(s string, n int) string {
	if len(s) <= n {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	h := hex.EncodeToString(sum[:4])
	return s[:n-len(h)-1] + "~" + h
}

func cdtDbt(credit bool) string {
	if credit {
		return "CRDT"
	}
	return "DBIT"
}

// WriteCamt053 writes st as one camt.053.001.08 BkToCstmrStmt with one
// Stmt: opening (OPBD) and closing (CLBD) booked balances, a transaction
// summary, and one booked Ntry per entry. Amounts are exact decimals; the
// creation time is the day's close, so the bytes depend only on the
// ledger. It is written by hand, element by element in schema order,
// because the generic marshallers write empty optional elements that the
// schema rejects.
func WriteCamt053(w io.Writer, st *Statement) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	sum := sha256.Sum256([]byte(st.Account))
	id := "S" + strings.ReplaceAll(st.Day, "-", "") + "-" + hex.EncodeToString(sum[:8])
	created := st.Created.Format("2006-01-02T15:04:05Z")
	c := st.Currency
	var credits, debits int64
	var nCredits, nDebits int
	for i := range st.Entries {
		if e := &st.Entries[i]; e.Credit {
			credits += e.Amount
			nCredits++
		} else {
			debits += e.Amount
			nDebits++
		}
	}
	net := credits - debits
	p := func(parts ...string) {
		for _, s := range parts {
			bw.WriteString(s)
		}
	}
	amt := func(tag string, minor int64) {
		p("<", tag, " Ccy=\"", c.Code, "\">", camtAmount(minor, c), "</", tag, ">")
	}
	balance := func(code string, bal int64) {
		p("<Bal><Tp><CdOrPrtry><Cd>", code, "</Cd></CdOrPrtry></Tp>")
		amt("Amt", bal)
		p("<CdtDbtInd>", cdtDbt(bal >= 0), "</CdtDbtInd><Dt><Dt>", st.Day, "</Dt></Dt></Bal>\n")
	}
	p(xml.Header, "<Document xmlns=\"", camtNamespace, "\">\n<BkToCstmrStmt>\n")
	p("<GrpHdr><MsgId>", id, "</MsgId><CreDtTm>", created, "</CreDtTm></GrpHdr>\n")
	p("<Stmt>\n<Id>", id, "</Id><ElctrncSeqNb>", strings.TrimLeft(statementNumber(st.Day), "0"), "</ElctrncSeqNb><CreDtTm>", created, "</CreDtTm>\n")
	p("<Acct><Id><Othr><Id>", xmlText(fitID(st.Account, camtAccountChars)), "</Id></Othr></Id><Ccy>", c.Code, "</Ccy></Acct>\n")
	balance("OPBD", st.Opening)
	balance("CLBD", st.Closing)
	p("<TxsSummry><TtlNtries><NbOfNtries>", itoa(len(st.Entries)), "</NbOfNtries><Sum>", camtAmount(credits+debits, c),
		"</Sum><TtlNetNtry><Amt>", camtAmount(net, c), "</Amt><CdtDbtInd>", cdtDbt(net >= 0), "</CdtDbtInd></TtlNetNtry></TtlNtries>",
		"<TtlCdtNtries><NbOfNtries>", itoa(nCredits), "</NbOfNtries><Sum>", camtAmount(credits, c), "</Sum></TtlCdtNtries>",
		"<TtlDbtNtries><NbOfNtries>", itoa(nDebits), "</NbOfNtries><Sum>", camtAmount(debits, c), "</Sum></TtlDbtNtries></TxsSummry>\n")
	for i := range st.Entries {
		e := &st.Entries[i]
		p("<Ntry><NtryRef>", xmlText(fitID(e.TransferID, camtIDChars)), "</NtryRef>")
		amt("Amt", e.Amount)
		p("<CdtDbtInd>", cdtDbt(e.Credit), "</CdtDbtInd>")
		if e.Reversal {
			p("<RvslInd>true</RvslInd>")
		}
		p("<Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>", st.Day, "</Dt></BookgDt><ValDt><Dt>", st.Day, "</Dt></ValDt>")
		p("<AcctSvcrRef>", xmlText(fitID(e.TransferID, camtIDChars)), "</AcctSvcrRef>")
		code := e.Type
		if e.Ref.MTI != "" {
			code += "/" + e.Ref.MTI + "/" + e.Ref.ProcCode
		}
		p("<BkTxCd><Prtry><Cd>", xmlText(fitID(code, camtIDChars)), "</Cd><Issr>switchd</Issr></Prtry></BkTxCd>")
		if e.Ref.RRN != "" || e.Ref.STAN != "" {
			p("<NtryDtls><TxDtls><Refs>")
			if e.Ref.STAN != "" {
				p("<InstrId>", xmlText(fitID(e.Ref.STAN, camtIDChars)), "</InstrId>")
			}
			if e.Ref.RRN != "" {
				p("<TxId>", xmlText(fitID(e.Ref.RRN, camtIDChars)), "</TxId>")
			}
			p("</Refs></TxDtls></NtryDtls>")
		}
		info := strings.ReplaceAll(narrative(e), "\r\n", "")
		if len(info) > camtInfoChars {
			info = info[:camtInfoChars]
		}
		p("<AddtlNtryInf>", xmlText(info), "</AddtlNtryInf></Ntry>\n")
	}
	p("</Stmt>\n</BkToCstmrStmt>\n</Document>\n")
	return bw.Flush()
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	if n == 0 {
		return "0"
	}
	for ; n > 0; n /= 10 {
		i--
		b[i] = byte('0' + n%10)
	}
	return string(b[i:])
}
