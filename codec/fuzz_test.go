package codec

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/moov-io/iso8583"
)

// FuzzUnpack: Unpack never panics, in any dialect; whatever it accepts
// packs again, and that packing is stable: Unpack(Pack(m)) == m and
// Pack(Unpack(Pack(m))) == Pack(m). (Pack(m) may differ from the input only
// where the input wrote lower-case hex.) moov-io/iso8583 must read our
// packing with the same fields.
func FuzzUnpack(f *testing.F) {
	codecs := []*Codec{mustLoad(f, "iso87ascii"), mustLoad(f, "iso87binary")}
	for _, c := range codecs {
		for _, cm := range typicalCorpus {
			data, err := c.Pack(nil, cm.message())
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(slices.Index(codecs, c)), data)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		c := codecs[int(which)%len(codecs)]
		var m Message
		if err := c.Unpack(data, &m); err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrFormat) {
				t.Fatalf("Unpack error %v is not a *FieldError wrapping ErrFormat", err)
			}
			if fe.Offset < 0 || fe.Offset > len(data) {
				t.Fatalf("offset %d outside the %d-byte input", fe.Offset, len(data))
			}
			c.Peek(data) // must not panic either
			return
		}
		packed, err := c.Pack(nil, &m)
		if err != nil {
			t.Fatalf("Pack of an unpacked message: %v", err)
		}
		mtiLen := 4
		if c.mti.enc == encBCD {
			mtiLen = 2
		}
		bm := c.bitmapLen()
		in := data
		if len(packed) == len(data)-bm && m.present[1] == 0 {
			// The input announced an all-zero secondary bitmap (some hosts
			// always send both); we omit it, and clear bit 1.
			in = slices.Concat(data[:mtiLen+bm], data[mtiLen+2*bm:])
		}
		if len(packed) != len(in) {
			t.Fatalf("repacked %d bytes from %d", len(packed), len(data))
		}
		// Outside the first bitmap byte/character (which holds bit 1), our
		// packing is the input, up to the case of hex digits in ASCII.
		same := bytes.Equal
		if c.bitmapHex {
			same = bytes.EqualFold
		}
		if !same(packed[:mtiLen], in[:mtiLen]) || !same(packed[mtiLen+1:], in[mtiLen+1:]) {
			t.Fatalf("repack differs:\n in %q\nout %q", data, packed)
		}
		var m2 Message
		if err := c.Unpack(packed, &m2); err != nil {
			t.Fatalf("Unpack of repacked: %v", err)
		}
		if m2 != m {
			t.Fatalf("round trip changed the message")
		}
		again, _ := c.Pack(nil, &m2)
		if !bytes.Equal(again, packed) {
			t.Fatal("Pack not stable")
		}
		mti, stan, ok := c.Peek(packed)
		if ok != m.Has(11) || (ok && (mti != m.MTI || stan != m.Get(11))) {
			t.Fatalf("Peek = %q %q %v; message has %q %q", mti, stan, ok, m.MTI, m.Get(11))
		}
		for _, id := range m.IDs() {
			if !c.fields[id].moovPacks() {
				return // moov cannot read a BCD track 2 (moovPacks)
			}
		}
		mm := iso8583.NewMessage(c.MoovSpec())
		if err := mm.Unpack(packed); err != nil {
			t.Fatalf("moov cannot unpack our packing: %v", err)
		}
		if n := len(mm.GetFields()) - 2; n != len(m.IDs()) { // minus MTI and bitmap
			t.Fatalf("moov sees %d fields, we see %d", n, len(m.IDs()))
		}
	})
}

// FuzzReadFrame: any byte stream yields frames within the limit or one of
// the documented errors, never a panic, and never a frame the stream does
// not contain.
func FuzzReadFrame(f *testing.F) {
	f.Add(uint8(0), uint16(100), []byte{0x00, 0x03, 'a', 'b', 'c'})
	f.Add(uint8(1), uint16(100), []byte("0003abc0000"))
	f.Add(uint8(2), uint16(100), []byte{0x00, 0x03, 'a', 'b', 'c', 0x99, 0x99})
	f.Add(uint8(1), uint16(5), []byte("00x3abc"))
	f.Add(uint8(0), uint16(0), []byte{0xFF, 0xFF})
	headers := []Header{HeaderBinary2, HeaderASCII4, HeaderBCD2}
	f.Fuzz(func(t *testing.T, h uint8, max uint16, stream []byte) {
		fr := Framer{Header: headers[int(h)%len(headers)], FrameBytesMax: int(max)}
		valid := fr.Validate() == nil
		r := bytes.NewReader(stream)
		buf := make([]byte, 0, 16)
		for range 64 {
			payload, err := fr.ReadFrame(r, buf)
			if !valid {
				if err == nil {
					t.Fatal("invalid framer read a frame")
				}
				return
			}
			switch {
			case err == nil:
				if len(payload) == 0 || len(payload) > fr.FrameBytesMax {
					t.Fatalf("payload of %d bytes, limit %d", len(payload), fr.FrameBytesMax)
				}
				if !bytes.Contains(stream, payload) {
					t.Fatal("payload not from the stream")
				}
				framed, err := fr.AppendFrame(nil, payload)
				if err != nil {
					t.Fatalf("AppendFrame of a read payload: %v", err)
				}
				back, err := fr.ReadFrame(bytes.NewReader(framed), nil)
				if err != nil || !bytes.Equal(back, payload) {
					t.Fatalf("re-read %q, %v", back, err)
				}
			case errors.Is(err, ErrFrameEmpty):
			case err == io.EOF, errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrFrameHeader):
				return
			default:
				t.Fatalf("undocumented error %v", err)
			}
		}
	})
}

// FuzzParseRequest: messages built from fuzzed field values never panic
// ParseRequest; accepted requests satisfy the documented rules, and no
// error ever carries field 2's value.
func FuzzParseRequest(f *testing.F) {
	f.Add("0200", testPAN, "003000", "000000012345", "0612143015", "123456", "123456", "416312000001", "840", "")
	f.Add("0400", testPAN, "000000", "000000012345", "0612143015", "123456", "123456", "416312000001", "840", "020012345606121430150000012345600000000000")
	f.Add("0800", "", "", "", "0612143015", "000001", "", "", "", "")
	f.Add("0100", "4111111111111111", "310000", "000000000000", "1231235959", "999999", "1", "ABCDEFGHIJKL", "392", "")
	f.Fuzz(func(t *testing.T, mti, pan, proc, amount, f7, f11, f32, f37, f49, f90 string) {
		m := &Message{MTI: mti}
		for id, v := range map[int]string{2: pan, 3: proc, 4: amount, 7: f7, 11: f11, 32: f32, 37: f37, 49: f49, 90: f90} {
			if v != "" {
				m.Set(id, v)
			}
		}
		if mti == "0800" {
			m.Set(70, "001")
		}
		r, err := ParseRequest(m)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || r != nil {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			if len(pan) >= 6 && strings.Contains(err.Error(), pan) {
				t.Fatalf("error %q carries field 2", err)
			}
			return
		}
		need, ok := mandatoryFields(MTI(mti))
		if !ok {
			t.Fatalf("accepted unknown MTI %q", mti)
		}
		for _, id := range need {
			if !m.Has(id) {
				t.Fatalf("accepted without field %d", id)
			}
		}
		if m.Has(2) && r.PAN.Digits() != pan {
			t.Fatal("PAN differs")
		}
		if m.Has(4) && (r.Amount < 0 || (r.Amount == 0 && r.ProcCode.Type != "31")) {
			t.Fatalf("amount %d accepted", r.Amount)
		}
		if m.Has(49) && r.Currency.Numeric != f49 {
			t.Fatal("currency differs")
		}
	})
}

// FuzzParseBalances: never panics; what it accepts formats back to the
// same text except "D" with a zero amount, which formats as "C".
func FuzzParseBalances(f *testing.F) {
	f.Add("0001840C000000012345")
	f.Add("0001840C0000000123450002840D000000000500")
	f.Add("0001392D000000000000")
	f.Add("0001999C000000012345")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseBalances(s)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrUnknownCurrency) {
				t.Fatalf("undocumented error %v", err)
			}
			return
		}
		back := FormatBalances(b)
		if len(back) != len(s) {
			t.Fatalf("FormatBalances(ParseBalances(%q)) = %q", s, back)
		}
		b2, err := ParseBalances(back)
		if err != nil || len(b2) != len(b) {
			t.Fatalf("re-parse: %v", err)
		}
		for i := range b {
			if b[i] != b2[i] {
				t.Fatalf("entry %d changed: %+v vs %+v", i, b[i], b2[i])
			}
		}
	})
}
