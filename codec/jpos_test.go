package codec

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// TestJPOSLayout pins, field by field, the bytes jPOS's packagers produce
// (ISO87BPackager for iso87binary, ISO87APackager for iso87ascii). There is
// no JVM here, so each want was derived by hand from the packager's field
// list and the field packager classes it names; the derivation is in the
// comment. The field packagers used:
//
//   - IFB_NUMERIC(n, true): n digits zero-padded on the left, BCD, an odd
//     count with a leading zero nibble (BCDInterpreter.LEFT_PADDED).
//   - IFB_LLNUM(n, false): BcdPrefixer.LL (one BCD byte: the digit count),
//     then BCD right-padded (BCDInterpreter.RIGHT_PADDED: an odd count ends
//     in a zero nibble). ISOUtil.str2bcd packs a character c as c-'0', so
//     the track 2 separator '=' (0x3D) becomes the nibble 0xD; bcd2str
//     turns 0xD back into '='.
//   - IFB_AMOUNT(n, pad): the first character (the sign) as one byte, then
//     the n-1 remaining digits in BCD: 1 + n>>1 bytes.
//   - IFB_LLCHAR / IFB_LLLCHAR: BcdPrefixer.LL / .LLL (1 / 2 BCD bytes,
//     counting characters), then the characters.
//   - IF_CHAR(n): n characters, right-padded with spaces.
//   - IFB_BINARY(n): n raw bytes.
//   - IFA_LLLCHAR(n): AsciiPrefixer.LLL (3 digits), then the characters.
//   - IFA_BINARY(n): n bytes as 2n upper-case hex characters.
func TestJPOSLayout(t *testing.T) {
	tests := []struct {
		dialect string
		id      int
		value   string
		want    string // hex of the field's bytes as jPOS packs them
		why     string
	}{
		{"iso87binary", 2, testPAN, "164761739001010119", "IFB_LLNUM(19): 0x16 = 16 digits, 8 bytes"},
		{"iso87binary", 2, "378282246310005", "153782822463100050", "IFB_LLNUM(19): 15 digits, the 0 pad nibble last"},
		{"iso87binary", 3, "003000", "003000", "IFB_NUMERIC(6)"},
		{"iso87binary", 22, "051", "0051", "IFB_NUMERIC(3): the pad nibble first"},
		{"iso87binary", 28, "C00000150", "4300000150", "IFB_AMOUNT(9): 'C' = 0x43, then 8 digits in 4 bytes"},
		{"iso87binary", 29, "D00000025", "4400000025", "IFB_AMOUNT(9): 'D' = 0x44"},
		{"iso87binary", 32, "12345678901", "11123456789010", "IFB_LLNUM(11): 11 digits, pad nibble last"},
		{"iso87binary", 33, "123", "031230", "IFB_LLNUM(11)"},
		{"iso87binary", 35, testPAN + "=27121011000012345678", "374761739001010119d271210110000123456780",
			"IFB_LLNUM(37): 37 characters, '=' as nibble D, 19 bytes ending in the pad nibble"},
		{"iso87binary", 36, "0112345678", "0010" + "30313132333435363738", "IFB_LLLCHAR(104): 2-byte BCD count, characters"},
		{"iso87binary", 37, "RRN1", "52524e31" + strings.Repeat("20", 8), "IF_CHAR(12): space-padded"},
		{"iso87binary", 49, "840", "383430", "IF_CHAR(3)"},
		{"iso87binary", 51, "826", "383236", "IF_CHAR(3)"},
		{"iso87binary", 52, "\x01\x23\x45\x67\x89\xab\xcd\xef", "0123456789abcdef", "IFB_BINARY(8)"},
		{"iso87binary", 53, "0000000000000042", "0000000000000042", "IFB_NUMERIC(16): 8 bytes"},
		{"iso87binary", 55, "9F2608", "0006" + "394632363038", "IFB_LLLCHAR(999): characters"},
		{"iso87binary", 70, "1", "0001", "IFB_NUMERIC(3): zero-padded to 3 digits"},
		{"iso87binary", 86, "0000000000012345", "0000000000012345", "IFB_NUMERIC(16)"},
		{"iso87binary", 92, "AB", "4142", "IF_CHAR(2)"},
		{"iso87binary", 93, "R12345", "523132333435", "IF_CHAR(6)"},
		{"iso87binary", 96, strings.Repeat("\xa5", 16), strings.Repeat("a5", 16), "IFB_BINARY(16)"},
		{"iso87binary", 97, "D0000000000012345", "440000000000012345", "IFB_AMOUNT(17): 'D', 16 digits in 8 bytes"},
		{"iso87binary", 99, "12345", "05123450", "IFB_LLNUM(11)"},
		{"iso87binary", 100, "1234567", "0712345670", "IFB_LLNUM(11)"},
		{"iso87binary", 102, "ACCT-1", "06" + "414343542d31", "IFB_LLCHAR(28)"},

		{"iso87ascii", 28, "C00000150", hex.EncodeToString([]byte("C00000150")), "IFA_AMOUNT(9): 9 characters"},
		{"iso87ascii", 35, "4111111111111111=2512", hex.EncodeToString([]byte("214111111111111111=2512")), "IFA_LLNUM(37)"},
		{"iso87ascii", 49, "840", hex.EncodeToString([]byte("840")), "IF_CHAR(3)"},
		{"iso87ascii", 55, "9F2608", hex.EncodeToString([]byte("0069F2608")), "IFA_LLLCHAR(999): 3-digit count of characters"},
		{"iso87ascii", 93, "R12345", hex.EncodeToString([]byte("R12345")), "IF_CHAR(6)"},
		{"iso87ascii", 96, strings.Repeat("\xa5", 16), hex.EncodeToString([]byte(strings.Repeat("A5", 16))), "IFA_BINARY(16): 32 hex characters"},
	}
	for _, tt := range tests {
		c := mustLoad(t, tt.dialect)
		m := &Message{MTI: "0200"}
		m.Set(tt.id, tt.value)
		data, err := c.Pack(nil, m)
		if err != nil {
			t.Errorf("%s field %d: Pack: %v", tt.dialect, tt.id, err)
			continue
		}
		head := 4 + c.bitmapLen() // MTI and primary bitmap
		if c.mti.enc == encBCD {
			head = 2 + c.bitmapLen()
		}
		if tt.id > 64 {
			head += c.bitmapLen()
		}
		if got := hex.EncodeToString(data[head:]); got != tt.want {
			t.Errorf("%s field %d (%s):\n got %s\nwant %s", tt.dialect, tt.id, tt.why, got, tt.want)
		}
		// jPOS's bytes, behind our MTI and bitmap, unpack to the value
		// (padded, and with the track 2 separator as '=').
		want, _ := hex.DecodeString(tt.want)
		var out Message
		if err := c.Unpack(append(bytes.Clone(data[:head]), want...), &out); err != nil {
			t.Errorf("%s field %d: Unpack of jPOS bytes: %v", tt.dialect, tt.id, err)
			continue
		}
		if v := padded(&c.fields[tt.id], tt.value); out.Get(tt.id) != v {
			t.Errorf("%s field %d: unpacked %q, want %q", tt.dialect, tt.id, out.Get(tt.id), v)
		}
	}
}

// TestBinaryBCDRefusals: the jPOS BCD forms are strict on input. Each case
// corrupts one byte of a good message; Unpack must refuse it with a
// *FieldError naming the field, and leave the message empty.
func TestBinaryBCDRefusals(t *testing.T) {
	c := mustLoad(t, "iso87binary")
	pack := func(id int, v string) []byte {
		m := &Message{MTI: "0200"}
		m.Set(id, v)
		data, err := c.Pack(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	const head = 2 + 8 // BCD MTI, binary primary bitmap
	tests := []struct {
		name  string
		id    int
		value string
		at    int // offset into the field
		b     byte
	}{
		{"PAN pad nibble not zero", 2, "378282246310005", 8, 0x51},
		{"PAN nibble D (not track 2)", 2, testPAN, 1, 0xD7},
		{"track 2 nibble E", 35, "4111=25", 2, 0xE2},
		{"track 2 pad nibble not zero", 35, "4111=25", 4, 0x51},
		{"sign byte not C or D", 28, "C00000150", 0, 'X'},
		{"amount nibble not BCD", 28, "C00000150", 2, 0x0A},
	}
	for _, tt := range tests {
		data := pack(tt.id, tt.value)
		var m Message
		if err := c.Unpack(data, &m); err != nil || m.Get(tt.id) == "" {
			t.Fatalf("%s: the good message does not unpack: %v", tt.name, err)
		}
		data[head+tt.at] = tt.b
		err := c.Unpack(data, &m)
		var fe *FieldError
		if !errors.As(err, &fe) || !errors.Is(err, ErrFormat) || fe.Field != tt.id || fe.Offset != head {
			t.Errorf("%s: err %v, want a FieldError for field %d at %d", tt.name, err, tt.id, head)
		}
		if m.MTI != "" || len(m.IDs()) != 0 {
			t.Errorf("%s: message not reset after the refusal: %q %v", tt.name, m.MTI, m.IDs())
		}
	}
	// Packing refuses what the BCD forms cannot carry, and appends nothing.
	for _, tt := range []struct {
		id    int
		value string
	}{{28, "X00000150"}, {28, "C0000015A"}, {35, "4111=25X"}, {2, "4111=25"}} {
		m := &Message{MTI: "0200"}
		m.Set(tt.id, tt.value)
		dst := []byte("keep")
		out, err := c.Pack(dst, m)
		if err == nil || string(out) != "keep" {
			t.Errorf("field %d %q: Pack gave %x, %v; want an error and dst unchanged", tt.id, tt.value, out, err)
		}
	}
}
