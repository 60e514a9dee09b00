package codec

import (
	"testing"

	"github.com/moov-io/iso8583"
)

// testPAN is a Luhn-valid test card number (Visa test range).
const testPAN = "4761739001010119"

// corpusMessage is a typical message of the kinds the switch sees.
type corpusMessage struct {
	name   string
	mti    string
	fields map[int]string
}

func (cm corpusMessage) message() *Message {
	m := &Message{MTI: cm.mti}
	for id, v := range cm.fields {
		m.Set(id, v)
	}
	return m
}

// typicalCorpus covers every message shape the switch builds or reads.
var typicalCorpus = []corpusMessage{
	{"0100", "0100", map[int]string{
		2: testPAN, 3: "000000", 4: "000000012345", 7: "0612143015", 11: "123456",
		12: "143015", 13: "0612", 14: "2712", 18: "5411", 22: "051", 25: "00",
		32: "123456", 35: testPAN + "=27121011000012345678", 37: "416312000001",
		41: "TERM0001", 42: "MERCHANT0000001", 43: "ACME STORE             SPRINGFIELD   US",
		49: "840", 52: "\x12\x34\x56\x78\x9a\xbc\xde\xf0",
	}},
	{"0200", "0200", typical0200Fields()},
	{"0200 short PAN odd", "0200", map[int]string{
		2: "378282246310005", 3: "003000", 4: "000000000100", 7: "0101000000", 11: "000001",
		32: "12345678901", 37: "ABC123456789", 49: "392",
	}},
	{"0220 with 90", "0220", map[int]string{
		2: testPAN, 3: "000000", 4: "000000005000", 7: "0612143500", 11: "123460",
		32: "123456", 37: "416312000005", 49: "840",
		90: "010012345606121430150000012345600000000000",
	}},
	{"0400 with 90 and 95", "0400", map[int]string{
		2: testPAN, 3: "000000", 4: "000000012345", 7: "0612144000", 11: "123470",
		32: "123456", 37: "416312000001", 41: "TERM0001", 42: "MERCHANT0000001", 49: "840",
		90: "020012345606121430150000012345600000000000",
		95: "000000002345000000000000000000000000000000",
	}},
	{"0800 sign-on", "0800", map[int]string{7: "0612143015", 11: "000042", 70: "001"}},
	{"0810 echo", "0810", map[int]string{7: "0612143015", 11: "000043", 39: "00", 70: "301"}},
	{"0110 with 54", "0110", map[int]string{
		2: testPAN, 3: "310000", 4: "000000000000", 7: "0612143015", 11: "123456",
		32: "123456", 37: "416312000001", 38: "A1B2C3", 39: "00", 49: "840",
		54: "0001840C0000000123450002840C000000010000",
	}},
	{"0210 with MAC and ICC", "0210", map[int]string{
		2: testPAN, 3: "000000", 4: "000000012345", 7: "0612143015", 11: "123456",
		32: "123456", 37: "416312000001", 39: "05", 48: "ADDL DATA: ~!@#$%^&*()_+", 49: "978",
		55: "9F2608010203040506070882020000", 64: "\x00\x11\x22\x33\x44\x55\x66\x77",
		102: "ACCT-1", 103: "ACCT 2/X", 128: "\xff\xee\xdd\xcc\xbb\xaa\x99\x88",
	}},
	{"0220 fees, track 3, settlement", "0220", map[int]string{
		2: "5500000000000004123", 3: "000000", 4: "000000005000", 7: "0612143500", 11: "123461",
		28: "C00000150", 29: "D00000025", 32: "12345678901", 33: "123", 36: "0112345678901234567890",
		37: "416312000006", 49: "840", 50: "978", 51: "826",
		97: "D0000000000012345", 99: "12345", 100: "1234567",
	}},
	{"padding applied", "0200", map[int]string{
		2: testPAN, 3: "3000", 4: "100", 7: "0612143015", 11: "7",
		32: "1", 37: "RRN1", 41: "T1", 42: "M1", 49: "840", 70: "1",
	}},
	{"empty variable fields", "0200", map[int]string{32: "", 48: "", 2: ""}},
	{"only MTI", "0800", map[int]string{}},
}

// typical0200Fields is the benchmark message: fields 2, 3, 4, 7, 11, 12, 13,
// 14, 22, 25, 32, 37, 41, 42, 43, 49.
func typical0200Fields() map[int]string {
	return map[int]string{
		2: testPAN, 3: "000000", 4: "000000012345", 7: "0612143015", 11: "123456",
		12: "143015", 13: "0612", 14: "2712", 22: "051", 25: "00", 32: "123456",
		37: "416312000001", 41: "TERM0001", 42: "MERCHANT0000001",
		43: "ACME STORE             SPRINGFIELD   US", 49: "840",
	}
}

// moovComparable is cm without the fields moov cannot pack in c's dialect
// (fieldDesc.moovPacks): the moov cross-checks compare the rest.
func moovComparable(c *Codec, cm corpusMessage) corpusMessage {
	out := corpusMessage{name: cm.name, mti: cm.mti, fields: map[int]string{}}
	for id, v := range cm.fields {
		if c.fields[id].moovPacks() {
			out.fields[id] = v
		}
	}
	return out
}

// moovPack packs the same values with moov-io/iso8583 and our spec.
func moovPack(tb testing.TB, spec *iso8583.MessageSpec, cm corpusMessage) []byte {
	tb.Helper()
	mm := iso8583.NewMessage(spec)
	mm.MTI(cm.mti)
	for id, v := range cm.fields {
		if err := mm.Field(id, v); err != nil {
			tb.Fatalf("moov set field %d: %v", id, err)
		}
	}
	b, err := mm.Pack()
	if err != nil {
		tb.Fatalf("moov pack: %v", err)
	}
	return b
}

func mustLoad(tb testing.TB, dialect string) *Codec {
	tb.Helper()
	c, err := Load(dialect)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

var dialects = []string{"iso87ascii", "iso87binary"}
