package codec

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestLoadUnknownDialect(t *testing.T) {
	for _, name := range []string{"", "iso93ascii", "../specs/iso87ascii", "iso87ascii.json"} {
		if _, err := Load(name); !errors.Is(err, ErrUnknownDialect) {
			t.Errorf("Load(%q): err %v, want ErrUnknownDialect", name, err)
		}
	}
	c := mustLoad(t, "iso87binary")
	if c.Dialect() != "iso87binary" || c.MoovSpec() == nil {
		t.Fatalf("Dialect %q, MoovSpec %v", c.Dialect(), c.MoovSpec())
	}
}

func TestParseSpecRejects(t *testing.T) {
	base := `"0": {"type": "String", "length": 4, "enc": "ASCII", "prefix": "ASCII.Fixed"},
		"1": {"type": "Bitmap", "length": 8, "enc": "HexToASCII", "prefix": "Hex.Fixed"}`
	tests := map[string]string{
		"numeric type":     `"2": {"type": "Numeric", "length": 6, "enc": "ASCII", "prefix": "ASCII.Fixed"}`,
		"ebcdic":           `"2": {"type": "String", "length": 6, "enc": "EBCDIC", "prefix": "ASCII.Fixed"}`,
		"hex prefix":       `"2": {"type": "String", "length": 6, "enc": "ASCII", "prefix": "Hex.LL"}`,
		"bcd letters":      `"2": {"type": "String", "length": 6, "enc": "BCD", "prefix": "BCD.Fixed", "class": "an", "note": "x"}`,
		"bad class":        `"2": {"type": "String", "length": 6, "enc": "ASCII", "prefix": "ASCII.Fixed", "class": "q"}`,
		"pad outside":      `"2": {"type": "String", "length": 6, "enc": "ASCII", "prefix": "ASCII.Fixed", "class": "n", "padding": {"type": "Right", "pad": " "}}`,
		"field 129":        `"129": {"type": "String", "length": 6, "enc": "ASCII", "prefix": "ASCII.Fixed"}`,
		"bitmap 16 (moov)": `"2": {"type": "String", "length": 6, "enc": "ASCII", "prefix": "ASCII.Fixed"}, "1": {"type": "Bitmap", "length": 16, "enc": "HexToASCII", "prefix": "Hex.Fixed"}`,
		// A class other than ISO 8583:1987's must say why.
		"class differs, no note": `"2": {"type": "String", "length": 6, "enc": "ASCII", "prefix": "ASCII.Fixed", "class": "ans"}`,
		"track 2 left BCD":       `"35": {"type": "String", "length": 37, "enc": "BCD", "prefix": "BCD.LL"}`,
		"amount BCD even":        `"28": {"type": "String", "length": 8, "enc": "BCD", "prefix": "BCD.Fixed"}`,
		"amount BCD variable":    `"28": {"type": "String", "length": 9, "enc": "BCD", "prefix": "BCD.LL"}`,
		"amount LBCD":            `"28": {"type": "String", "length": 9, "enc": "LBCD", "prefix": "BCD.Fixed"}`,
		"LBCD padded":            `"3": {"type": "String", "length": 6, "enc": "LBCD", "prefix": "BCD.Fixed", "padding": {"type": "Left", "pad": "0"}}`,
		"LBCD letters":           `"37": {"type": "String", "length": 12, "enc": "LBCD", "prefix": "BCD.Fixed"}`,
		"binary not b":           `"52": {"type": "Binary", "length": 8, "enc": "Binary", "prefix": "Binary.Fixed", "class": "ans", "note": "x"}`,
	}
	for name, extra := range tests {
		raw := `{"name": "t", "fields": {` + base + `, ` + extra + `}}`
		if _, err := parseSpec("t", []byte(raw)); err == nil {
			t.Errorf("%s: parseSpec accepted it", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, err := parseSpec("t", []byte(`{"name": "t", "fields": {`+base+`}}`)); err != nil {
		t.Errorf("minimal spec: %v", err)
	}
	// The same deviation with a note loads, keeps the note, and enforces
	// the chosen class; without "class" a field gets ISO 8583:1987's.
	raw := `{"name": "t", "fields": {` + base + `,
		"2": {"type": "String", "length": 6, "enc": "ASCII", "prefix": "ASCII.Fixed", "class": "ans", "note": "why"},
		"3": {"type": "String", "length": 6, "enc": "ASCII", "prefix": "ASCII.Fixed"}}}`
	c, err := parseSpec("t", []byte(raw))
	if err != nil {
		t.Fatalf("deviation with a note: %v", err)
	}
	if c.Note(2) != "why" || c.Note(3) != "" || c.fields[2].class != classANS || c.fields[3].class != classN {
		t.Errorf("notes %q %q, classes %d %d", c.Note(2), c.Note(3), c.fields[2].class, c.fields[3].class)
	}
	m := &Message{MTI: "0200"}
	m.Set(3, "12345A")
	if _, err := c.Pack(nil, m); !errors.Is(err, ErrFormat) {
		t.Errorf("a letter in default-class n field 3: %v", err)
	}
}

// TestClassDeviations pins where the dialects' classes differ from ISO
// 8583:1987's (each such field has a note, or Load fails): the currency
// codes are stricter (n, not a or n), the additional data fields looser.
func TestClassDeviations(t *testing.T) {
	want := []int{44, 45, 46, 47, 48, 49, 50, 51}
	for _, dialect := range dialects {
		c := mustLoad(t, dialect)
		var got []int
		for id := 2; id <= fieldIDMax; id++ {
			if c.fields[id].class != iso87Class[id] {
				got = append(got, id)
				if c.Note(id) == "" {
					t.Errorf("%s field %d: class differs without a note", dialect, id)
				}
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: classes differ from ISO 8583:1987 on %v, want %v", dialect, got, want)
		}
		if c.Note(-1) != "" || c.Note(fieldIDMax+1) != "" {
			t.Errorf("%s: Note outside 0..128 is not empty", dialect)
		}
	}
}

// TestBitmapBit1 asserts on the wire: bit 1 (the high bit of the first
// bitmap character/byte) is set and a secondary bitmap follows exactly when
// a field 65–128 is present.
func TestBitmapBit1(t *testing.T) {
	tests := []struct {
		name      string
		fields    map[int]string
		secondary bool
		ascii     string // expected bitmap hex characters in iso87ascii
	}{
		{"primary only", map[int]string{3: "000000", 11: "000001"}, false, "2020000000000000"},
		{"field 64 stays primary", map[int]string{11: "000001", 64: "\x01\x02\x03\x04\x05\x06\x07\x08"}, false, "0020000000000001"},
		{"field 70", map[int]string{11: "000001", 70: "301"}, true, "8020000000000000" + "0400000000000000"},
		{"field 128 only", map[int]string{128: "\x01\x02\x03\x04\x05\x06\x07\x08"}, true, "8000000000000000" + "0000000000000001"},
		{"field 66", map[int]string{66: "1"}, true, "8000000000000000" + "4000000000000000"},
		{"no fields", map[int]string{}, false, "0000000000000000"},
	}
	for _, tt := range tests {
		cm := corpusMessage{tt.name, "0800", tt.fields}
		ascii := mustLoad(t, "iso87ascii")
		data, err := ascii.Pack(nil, cm.message())
		if err != nil {
			t.Fatal(err)
		}
		n := 16
		if tt.secondary {
			n = 32
		}
		if got := string(data[4 : 4+n]); got != tt.ascii {
			t.Errorf("%s: ascii bitmap %q, want %q", tt.name, got, tt.ascii)
		}
		if hi := strings.ContainsAny(string(data[4]), "89ABCDEF"); hi != tt.secondary {
			t.Errorf("%s: first bitmap character %q, bit 1 set = %v, want %v", tt.name, data[4], hi, tt.secondary)
		}
		// moov must agree (this is where its stock spec is wrong).
		if want := moovPack(t, ascii.MoovSpec(), cm); !bytes.Equal(data, want) {
			t.Errorf("%s: moov packs %q, we pack %q", tt.name, want, data)
		}

		binary := mustLoad(t, "iso87binary")
		data, err = binary.Pack(nil, cm.message())
		if err != nil {
			t.Fatal(err)
		}
		wantBM, _ := hex.DecodeString(tt.ascii)
		if got := data[2 : 2+len(wantBM)]; !bytes.Equal(got, wantBM) {
			t.Errorf("%s: binary bitmap %X, want %X", tt.name, got, wantBM)
		}
		if (data[2]&0x80 != 0) != tt.secondary {
			t.Errorf("%s: binary bit 1 = %v, want %v", tt.name, data[2]&0x80 != 0, tt.secondary)
		}
	}
}

// TestBit1IsNotAField: setting bit 1 in the message has no effect; the
// codec computes it.
func TestBit1Ignored(t *testing.T) {
	c := mustLoad(t, "iso87ascii")
	m := &Message{MTI: "0800"}
	m.Set(11, "000001")
	m.present[0] |= 1 << 63 // what a careless caller cannot do through Set
	data, err := c.Pack(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	if string(data[4:20]) != "0020000000000000" {
		t.Fatalf("bitmap %q", data[4:20])
	}
}

func TestPackErrors(t *testing.T) {
	tests := []struct {
		name   string
		mti    string
		fields map[int]string
		field  int
		offset int
	}{
		{"short MTI", "200", map[int]string{}, 0, 0},
		{"letter in MTI", "02A0", map[int]string{}, 0, 0},
		{"PAN too long", "0200", map[int]string{2: strings.Repeat("4", 20)}, 2, 20},
		{"letter in PAN", "0200", map[int]string{2: "47617390010101A9"}, 2, 20},
		{"letter in amount", "0200", map[int]string{3: "000000", 4: "00000000012X"}, 4, 26},
		{"amount too long", "0200", map[int]string{4: "0000000000001"}, 4, 20},
		{"STAN too long", "0200", map[int]string{11: "1234567"}, 11, 20},
		{"binary field short", "0200", map[int]string{52: "\x01\x02"}, 52, 20},
		{"ans control char", "0200", map[int]string{48: "a\x01b"}, 48, 20},
		{"ans non-ASCII", "0200", map[int]string{43: "CAFÉ"}, 43, 20},
		{"an with punctuation", "0200", map[int]string{37: "41631200000!"}, 37, 20},
		{"RRN too long", "0200", map[int]string{37: "4163120000011"}, 37, 20},
		{"field 65", "0200", map[int]string{65: "\x01", 70: "001"}, 65, 20},
		{"track 2 letter", "0200", map[int]string{35: "4761739001010119=2712X"}, 35, 20},
		{"xn without sign", "0200", map[int]string{28: "000000100"}, 28, 20},
		{"field 90 letter", "0400", map[int]string{90: "0200X"}, 90, 36},
		{"54 too long", "0110", map[int]string{54: strings.Repeat("0", 121)}, 54, 20},
	}
	for _, dialect := range dialects {
		c := mustLoad(t, dialect)
		for _, tt := range tests {
			m := corpusMessage{tt.name, tt.mti, tt.fields}.message()
			dst := []byte("prefix")
			out, err := c.Pack(dst, m)
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrFormat) {
				t.Errorf("%s/%s: err %v, want *FieldError wrapping ErrFormat", dialect, tt.name, err)
				continue
			}
			if fe.Field != tt.field {
				t.Errorf("%s/%s: field %d, want %d (%v)", dialect, tt.name, fe.Field, tt.field, err)
			}
			if dialect == "iso87ascii" && fe.Offset != tt.offset {
				t.Errorf("%s/%s: offset %d, want %d (%v)", dialect, tt.name, fe.Offset, tt.offset, err)
			}
			if string(out) != "prefix" {
				t.Errorf("%s/%s: dst not restored: %q", dialect, tt.name, out)
			}
		}
	}
}

// TestPackAppends: Pack appends to dst and leaves what was there.
func TestPackAppends(t *testing.T) {
	c := mustLoad(t, "iso87ascii")
	m := bench0200.message()
	alone, err := c.Pack(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Pack([]byte("HDR"), m)
	if err != nil || string(out) != "HDR"+string(alone) {
		t.Fatalf("got %q, %v", out, err)
	}
}

func TestUnpackErrors(t *testing.T) {
	c := mustLoad(t, "iso87ascii")
	good, err := c.Pack(nil, bench0200.message())
	if err != nil {
		t.Fatal(err)
	}
	// Offsets in the good 0200: MTI 0, bitmap 4, field 2 at 20 ("16" + 16
	// digits), field 3 at 38, field 4 at 44, field 7 at 56.
	replace := func(at int, s string) []byte {
		b := bytes.Clone(good)
		copy(b[at:], s)
		return b
	}
	tests := []struct {
		name   string
		data   []byte
		field  int
		offset int
	}{
		{"empty", nil, 0, 0},
		{"short MTI", []byte("020"), 0, 0},
		{"letter in MTI", replace(0, "02X0"), 0, 0},
		{"short bitmap", good[:12], 1, 4},
		{"non-hex bitmap", replace(4, "G"), 1, 4},
		{"PAN length letters", replace(20, "1X"), 2, 20},
		{"PAN length too big", replace(20, "20"), 2, 20},
		{"PAN letter", replace(25, "A"), 2, 20},
		{"amount letter", replace(50, "X"), 4, 44},
		{"amount space", replace(44, " "), 4, 44},
		{"truncated in field 7", good[:60], 7, 56},
		{"trailing byte", append(bytes.Clone(good), '9'), 49, len(good)},
		{"field 65 set", []byte("0800" + "8000000000000000" + "8000000000000000"), 65, 20},
		{"secondary bitmap missing", []byte("0800" + "8000000000000000"), 1, 20},
	}
	for _, tt := range tests {
		var m Message
		m.Set(2, "stale")
		err := c.Unpack(tt.data, &m)
		var fe *FieldError
		if !errors.As(err, &fe) || !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err %v, want *FieldError wrapping ErrFormat", tt.name, err)
			continue
		}
		if fe.Field != tt.field || fe.Offset != tt.offset {
			t.Errorf("%s: field %d offset %d, want %d %d (%v)", tt.name, fe.Field, fe.Offset, tt.field, tt.offset, err)
		}
		if m.MTI != "" || len(m.IDs()) != 0 {
			t.Errorf("%s: message not reset after error: %q %v", tt.name, m.MTI, m.IDs())
		}
	}
}

func TestUnpackBinaryErrors(t *testing.T) {
	c := mustLoad(t, "iso87binary")
	good, err := c.Pack(nil, bench0200.message())
	if err != nil {
		t.Fatal(err)
	}
	// MTI 0–1, bitmap 2–9, field 2 at 10 (1-byte BCD length, 8 bytes),
	// field 3 at 19, field 4 at 22.
	set := func(at int, b byte) []byte {
		d := bytes.Clone(good)
		d[at] = b
		return d
	}
	tests := []struct {
		name   string
		data   []byte
		field  int
		offset int
	}{
		{"MTI nibble", set(0, 0x0A), 0, 0},
		{"PAN length not BCD", set(10, 0x1A), 2, 10},
		{"PAN length too big", set(10, 0x20), 2, 10},
		{"PAN digit not BCD", set(12, 0xC0), 2, 10},
		{"amount nibble", set(23, 0x0F), 4, 22},
	}
	for _, tt := range tests {
		var m Message
		err := c.Unpack(tt.data, &m)
		var fe *FieldError
		if !errors.As(err, &fe) || !errors.Is(err, ErrFormat) || fe.Field != tt.field || fe.Offset != tt.offset {
			t.Errorf("%s: err %v, want field %d offset %d wrapping ErrFormat", tt.name, err, tt.field, tt.offset)
		}
	}
	// An odd BCD length with a non-zero pad nibble is not this dialect.
	m := &Message{MTI: "0200"}
	m.Set(22, "051")
	data, _ := c.Pack(nil, m)
	data[len(data)-2] |= 0x10
	if err := c.Unpack(data, new(Message)); !errors.Is(err, ErrFormat) {
		t.Errorf("non-zero BCD pad nibble: err %v", err)
	}
}

// TestErrorsNeverContainValues feeds a PAN together with a bad field and
// checks no error string carries the PAN's digits (or a long run of them).
func TestErrorsNeverContainValues(t *testing.T) {
	const pan = "4761739001010119"
	c := mustLoad(t, "iso87ascii")
	m := bench0200.message()
	m.Set(2, pan)
	m.Set(4, "00000001234X")
	_, err := c.Pack(nil, m)
	checkNoPAN(t, "Pack", err, pan)

	m.Set(4, "000000001234")
	data, _ := c.Pack(nil, m)
	for i := 22; i < len(data); i++ { // corrupt every byte after the PAN's length in turn
		bad := bytes.Clone(data)
		bad[i] = 'x'
		if err := c.Unpack(bad, new(Message)); err != nil {
			checkNoPAN(t, fmt.Sprintf("Unpack byte %d", i), err, pan)
		}
	}
	bad := bytes.Clone(data)
	copy(bad[20:], "19") // PAN length 19 swallows the next field: every later field shifts
	err = c.Unpack(bad, new(Message))
	checkNoPAN(t, "Unpack shifted", err, pan)

	// ParseRequest with a valid PAN and a bad amount, and with a bad PAN.
	m.Set(4, "00000000X234")
	_, err = ParseRequest(m)
	checkNoPAN(t, "ParseRequest amount", err, pan)
	m.Set(4, "000000001234")
	m.Set(2, "4761739001010118") // Luhn fails
	_, err = ParseRequest(m)
	checkNoPAN(t, "ParseRequest PAN", err, "4761739001010118")
	if !errors.Is(err, ErrInvalidPAN) {
		t.Errorf("bad Luhn: err %v, want ErrInvalidPAN", err)
	}
}

func checkNoPAN(t *testing.T, what string, err error, pan string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error", what)
		return
	}
	s := err.Error()
	// Any 6 consecutive PAN digits would be a leak of BIN or more.
	for i := 0; i+6 <= len(pan); i++ {
		if strings.Contains(s, pan[i:i+6]) {
			t.Errorf("%s: error %q contains PAN digits %q", what, s, pan[i:i+6])
		}
	}
}

func TestPeek(t *testing.T) {
	for _, dialect := range dialects {
		c := mustLoad(t, dialect)
		m := bench0200.message()
		m.Set(4, "0000000X0000") // Unpack must fail, Peek must still work
		m.Set(4, "000000010000")
		data, err := c.Pack(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		// Break field 49, after the STAN: Unpack fails, Peek succeeds.
		bad := bytes.Clone(data)
		bad[len(bad)-1] = 0xFF
		if err := c.Unpack(bad, new(Message)); err == nil {
			t.Fatalf("%s: corrupt message unpacked", dialect)
		}
		mti, stan, ok := c.Peek(bad)
		if !ok || mti != "0200" || stan != "123456" {
			t.Errorf("%s: Peek = %q %q %v, want 0200 123456 true", dialect, mti, stan, ok)
		}
		// Field 4 content is not validated by Peek when it only skips it.
		if dialect == "iso87ascii" {
			bad = bytes.Clone(data)
			copy(bad[44:], "XXXX")
			if mti, stan, ok := c.Peek(bad); !ok || mti != "0200" || stan != "123456" {
				t.Errorf("letters in field 4: Peek = %q %q %v", mti, stan, ok)
			}
		}
		for _, cut := range []int{0, 1, 3, 8, 30} {
			if mti, stan, ok := c.Peek(data[:cut]); ok || mti != "" || stan != "" {
				t.Errorf("%s: Peek(first %d bytes) = %q %q %v", dialect, cut, mti, stan, ok)
			}
		}
		noSTAN := &Message{MTI: "0800"}
		noSTAN.Set(7, "0612143015")
		d, _ := c.Pack(nil, noSTAN)
		if _, _, ok := c.Peek(d); ok {
			t.Errorf("%s: Peek without field 11 reported ok", dialect)
		}
	}
}

func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	c := mustLoad(t, "iso87ascii")
	m := bench0200.message()
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() { buf, _ = c.Pack(buf[:0], m) }); n != 0 {
		t.Errorf("Pack allocates %.1f times, want 0", n)
	}
	var out Message
	if n := testing.AllocsPerRun(100, func() { _ = c.Unpack(buf, &out) }); n > 1 {
		t.Errorf("Unpack allocates %.1f times, want at most 1", n)
	}
}

func TestMessage(t *testing.T) {
	var m Message
	if m.Has(2) || m.Get(2) != "" || len(m.IDs()) != 0 {
		t.Fatal("zero Message not empty")
	}
	m.Set(128, "x")
	m.Set(2, "")
	m.Set(64, "y")
	m.Set(65, "z")
	if got := fmt.Sprint(m.IDs()); got != "[2 64 65 128]" {
		t.Fatalf("IDs %s", got)
	}
	if !m.Has(2) || m.Get(2) != "" {
		t.Fatal("empty value must still be present")
	}
	m.Unset(64)
	if m.Has(64) || m.Get(64) != "" {
		t.Fatal("Unset")
	}
	for _, id := range []int{-1, 0, 1, 129} {
		if m.Has(id) || m.Get(id) != "" {
			t.Errorf("id %d: Has/Get must report absent", id)
		}
		for name, f := range map[string]func(){"Set": func() { m.Set(id, "v") }, "Unset": func() { m.Unset(id) }} {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%s(%d) did not panic", name, id)
					}
				}()
				f()
			}()
		}
	}
	m.MTI = "0200"
	m.Reset()
	if m.MTI != "" || len(m.IDs()) != 0 {
		t.Fatal("Reset")
	}
}

// randomValue returns a valid value for d, sometimes shorter than a padded
// fixed field so padding is exercised.
func randomValue(r *rand.Rand, d *fieldDesc) string {
	n := d.max
	if d.lenDigits != 0 {
		n = r.IntN(min(d.max, 60) + 1)
	} else if d.pad != 0 && r.IntN(4) == 0 {
		n = r.IntN(d.max + 1)
	}
	b := make([]byte, n)
	for i := range b {
		switch d.class {
		case classN:
			b[i] = byte('0' + r.IntN(10))
		case classAN:
			b[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 "[r.IntN(63)]
		case classANS:
			b[i] = byte(0x20 + r.IntN(0x7F-0x20))
		case classNS:
			b[i] = "0123456789 !#$%&'()*+,-./:;<=>?@[]^_{|}~"[r.IntN(40)]
		case classZ:
			b[i] = "0123456789=D"[r.IntN(12)]
		case classXN:
			if i == 0 {
				b[i] = "CD"[r.IntN(2)]
			} else {
				b[i] = byte('0' + r.IntN(10))
			}
		case classA:
			b[i] = byte('A' + r.IntN(26))
		default:
			b[i] = byte(r.IntN(256))
		}
	}
	return string(b)
}

// TestRandomRoundTrip packs thousands of random valid messages with every
// field, those moov cannot pack included, and checks Unpack gives them back
// (track 2 separators as '=') and that repacking gives the same bytes.
func TestRandomRoundTrip(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 300
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, dialect := range dialects {
		c := mustLoad(t, dialect)
		for i := range n {
			m := &Message{MTI: fmt.Sprintf("%04d", r.IntN(10000))}
			density := 1 + r.IntN(30)
			for id := 2; id <= fieldIDMax; id++ {
				if id != 65 && r.IntN(100) < density {
					m.Set(id, randomValue(r, &c.fields[id]))
				}
			}
			data, err := c.Pack(nil, m)
			if err != nil {
				t.Fatalf("%s #%d: Pack: %v", dialect, i, err)
			}
			var out Message
			if err := c.Unpack(data, &out); err != nil {
				t.Fatalf("%s #%d: Unpack: %v", dialect, i, err)
			}
			for _, id := range m.IDs() {
				d := &c.fields[id]
				want := padded(d, m.Get(id))
				if d.enc == encLBCD && d.class == classZ {
					want = strings.ReplaceAll(want, "D", "=")
				}
				if out.Get(id) != want {
					t.Fatalf("%s #%d field %d: got %q, want %q", dialect, i, id, out.Get(id), want)
				}
			}
			again, err := c.Pack(nil, &out)
			if err != nil || !bytes.Equal(again, data) {
				t.Fatalf("%s #%d: repack differs (%v)", dialect, i, err)
			}
		}
	}
}

// TestRandomMatchesMoov packs thousands of random valid messages with both
// implementations and both dialects, then checks our Unpack round trip.
func TestRandomMatchesMoov(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 300
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, dialect := range dialects {
		c := mustLoad(t, dialect)
		for i := range n {
			cm := corpusMessage{name: fmt.Sprint(i), mti: fmt.Sprintf("%04d", r.IntN(10000)), fields: map[int]string{}}
			density := 1 + r.IntN(30)
			for id := 2; id <= fieldIDMax; id++ {
				if id == 65 || r.IntN(100) >= density || !c.fields[id].moovPacks() {
					continue // moov cannot pack every field: see TestRandomRoundTrip
				}
				cm.fields[id] = randomValue(r, &c.fields[id])
			}
			want := moovPack(t, c.MoovSpec(), cm)
			got, err := c.Pack(nil, cm.message())
			if err != nil {
				t.Fatalf("%s #%d: Pack: %v", dialect, i, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s #%d fields %v: bytes differ\n got %x\nwant %x", dialect, i, cm.message().IDs(), got, want)
			}
			var m Message
			if err := c.Unpack(got, &m); err != nil {
				t.Fatalf("%s #%d: Unpack: %v", dialect, i, err)
			}
			again, err := c.Pack(nil, &m)
			if err != nil || !bytes.Equal(again, got) {
				t.Fatalf("%s #%d: repack differs (%v)", dialect, i, err)
			}
		}
	}
}
