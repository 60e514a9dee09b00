package codec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/moov-io/iso8583"
	moovspecs "github.com/moov-io/iso8583/specs"

	"github.com/switchd/switchd/specs"
)

// ErrUnknownDialect is returned by Load for a name that is not in specs.Names.
var ErrUnknownDialect = errors.New("codec: unknown dialect")

// fieldIDMax is the highest field id: ISO 8583:1987 has a primary and a
// secondary bitmap, 128 bits. A tertiary bitmap (bit 65) is not supported.
const fieldIDMax = 128

// charClass is an ISO 8583 character class. moov-io/iso8583 does not check
// classes; we do, in both directions, so a letter in an amount is a format
// error at the edge instead of a surprise in the ledger.
type charClass uint8

const (
	classANS charClass = iota // printable ASCII 0x20–0x7E
	classN                    // digits
	classA                    // letters and space
	classAN                   // letters, digits and space (space: fixed an fields are space padded)
	classNS                   // digits and printable specials (no letters)
	classZ                    // track 2: digits, '=' separator, 'D' (the BCD form of '=')
	classXN                   // 'C' or 'D' then digits (signed fee amounts)
	classB                    // binary: any byte
)

var classNames = map[string]charClass{
	"ans": classANS, "n": classN, "a": classA, "an": classAN,
	"ns": classNS, "z": classZ, "xn": classXN, "b": classB,
}

// valueEnc is how a field's characters or bytes appear on the wire.
type valueEnc uint8

const (
	encASCII  valueEnc = iota // one byte per character
	encBCD                    // two digits per byte, left-padded with a zero nibble to an even count
	encLBCD                   // two digits per byte, right-padded with a zero nibble (moov "LBCD", jPOS RIGHT_PADDED)
	encBinary                 // raw bytes
	encHex                    // each byte as two upper-case hex characters (b fields in ASCII dialects)
)

// prefixEnc is how a variable field's length prefix is written.
type prefixEnc uint8

const (
	prefixASCII  prefixEnc = iota // lenDigits ASCII digits
	prefixBCD                     // lenDigits BCD digits, (lenDigits+1)/2 bytes
	prefixBinary                  // lenDigits bytes, big-endian
)

// fieldDesc is the compact descriptor of one field, derived from the JSON
// spec. The codec's hot loops read only this.
//
// Two BCD forms go beyond digits, both as jPOS packs them: class z (track
// 2) packs '=' (or 'D') as the nibble 0xD and unpacks it as '='; class xn
// (signed amounts) packs the sign 'C' or 'D' as one ASCII byte, then the
// digits in BCD (jPOS IFB_AMOUNT).
type fieldDesc struct {
	defined   bool
	class     charClass
	enc       valueEnc
	prefix    prefixEnc
	lenDigits uint8 // 0: fixed length; 1..4: L..LLLL variable length
	max       int   // fixed length, or maximum length; in characters (bytes for b)
	lenMax    int   // largest length the prefix can express (10^digits-1 or 256^digits-1)
	pad       byte  // padding character, 0 for none
	padLeft   bool
}

// wireLen is the number of content bytes for a value of n characters/bytes.
func (d *fieldDesc) wireLen(n int) int {
	switch d.enc {
	case encBCD, encLBCD:
		if d.class == classXN {
			return 1 + n/2 // the sign byte, then n-1 (an even count of) digits
		}
		return (n + 1) / 2
	case encHex:
		return 2 * n
	default:
		return n
	}
}

// prefixLen is the number of bytes of the length prefix.
func (d *fieldDesc) prefixLen() int {
	if d.lenDigits == 0 {
		return 0
	}
	if d.prefix == prefixBCD {
		return (int(d.lenDigits) + 1) / 2
	}
	return int(d.lenDigits)
}

// moovPacks reports whether moov-io/iso8583 packs this field as we do. It
// does not for the BCD forms of classes z and xn: moov's BCD encoders take
// digits only, so a track 2 with its separator or a signed amount cannot be
// packed by moov at all, and moov unpacks the sign byte as two digits.
func (d *fieldDesc) moovPacks() bool {
	return (d.enc != encBCD && d.enc != encLBCD) || d.class == classN
}

// jsonSpec and jsonField mirror the parts of moov-io/iso8583's JSON spec
// format that a flat 1987 dialect uses, plus our "class" and "note" keys
// (moov ignores both).
type jsonSpec struct {
	Name   string                `json:"name"`
	Fields map[string]*jsonField `json:"fields"`
}

type jsonField struct {
	Type              string          `json:"type"`
	Length            int             `json:"length"`
	Description       string          `json:"description"`
	Enc               string          `json:"enc"`
	Prefix            string          `json:"prefix"`
	Padding           *jsonPadding    `json:"padding"`
	Class             string          `json:"class"`
	Note              string          `json:"note"`
	DisableAutoExpand bool            `json:"disableAutoExpand"`
	Subfields         json.RawMessage `json:"subfields"`
}

type jsonPadding struct {
	Type string `json:"type"`
	Pad  string `json:"pad"`
}

// Codec packs and unpacks Messages for one dialect. It is immutable after
// Load and safe for concurrent use.
type Codec struct {
	dialect   string
	mti       fieldDesc
	bitmapHex bool // bitmaps as 16 hex characters (true) or 8 raw bytes
	fields    [fieldIDMax + 1]fieldDesc
	notes     [fieldIDMax + 1]string // the dialect file's "note" per field
	moov      *iso8583.MessageSpec

	// bufs recycles the *[]byte scratch buffers Unpack decodes values into
	// before turning them into one string.
	bufs sync.Pool
}

// Load builds the codec for a dialect from specs.FS. It also builds the
// same spec with moov-io/iso8583's importer, so a file moov cannot load is
// rejected here, not discovered by a peer.
func Load(dialect string) (*Codec, error) {
	if !slices.Contains(specs.Names(), dialect) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownDialect, dialect)
	}
	raw, err := fs.ReadFile(specs.FS, dialect+".json")
	if err != nil {
		return nil, fmt.Errorf("codec: reading dialect %q: %w", dialect, err)
	}
	return parseSpec(dialect, raw)
}

func parseSpec(dialect string, raw []byte) (*Codec, error) {
	moovSpec, err := moovspecs.ImportJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("codec: dialect %q: moov import: %w", dialect, err)
	}
	var js jsonSpec
	if err := json.Unmarshal(raw, &js); err != nil {
		return nil, fmt.Errorf("codec: dialect %q: %w", dialect, err)
	}
	c := &Codec{dialect: dialect, moov: moovSpec}
	for key, jf := range js.Fields {
		id, err := strconv.Atoi(key)
		if err != nil || id < 0 || id > fieldIDMax {
			return nil, fmt.Errorf("codec: dialect %q: field key %q: want 0..%d", dialect, key, fieldIDMax)
		}
		switch id {
		case 0:
			if jf.Class == "" {
				jf.Class = "n" // an MTI is digits whatever its encoding
			}
			d, err := parseField(id, jf)
			if err != nil {
				return nil, fmt.Errorf("codec: dialect %q: MTI: %w", dialect, err)
			}
			if d.lenDigits != 0 || d.max != 4 || d.class != classN || (d.enc != encASCII && d.enc != encBCD) || d.pad != 0 {
				return nil, fmt.Errorf("codec: dialect %q: MTI must be 4 fixed digits, ASCII or BCD, unpadded", dialect)
			}
			c.mti = d
		case 1:
			if jf.Type != "Bitmap" || jf.Length != 8 || jf.DisableAutoExpand || !strings.HasSuffix(jf.Prefix, ".Fixed") {
				return nil, fmt.Errorf("codec: dialect %q: bitmap must be type Bitmap, length 8, fixed, auto-expanding", dialect)
			}
			switch jf.Enc {
			case "HexToASCII":
				c.bitmapHex = true
			case "Binary":
				c.bitmapHex = false
			default:
				return nil, fmt.Errorf("codec: dialect %q: bitmap encoding %q not supported", dialect, jf.Enc)
			}
		default:
			d, err := parseField(id, jf)
			if err != nil {
				return nil, fmt.Errorf("codec: dialect %q: field %d: %w", dialect, id, err)
			}
			c.fields[id] = d
		}
		c.notes[id] = jf.Note
	}
	if !c.mti.defined {
		return nil, fmt.Errorf("codec: dialect %q: no MTI (field 0)", dialect)
	}
	if _, ok := js.Fields["1"]; !ok {
		return nil, fmt.Errorf("codec: dialect %q: no bitmap (field 1)", dialect)
	}
	return c, nil
}

// parseField builds the descriptor of field id (0: the MTI). A field
// without "class" gets its ISO 8583:1987 class (iso87Class); one whose
// class differs from that must say why in "note", so that every choice
// stricter (or looser) than the standard is written down where it is made.
func parseField(id int, jf *jsonField) (fieldDesc, error) {
	var d fieldDesc
	if len(jf.Subfields) != 0 {
		return d, errors.New("composite fields are not supported")
	}
	switch jf.Type {
	case "String", "Binary":
		// Both pack their value bytes as they are. moov's Numeric is refused:
		// it stores an int64, so it drops leading zeros of variable fields
		// and cannot hold n42 (field 90).
	default:
		return d, fmt.Errorf("type %q not supported (want String or Binary)", jf.Type)
	}
	if jf.Length <= 0 {
		return d, fmt.Errorf("length %d", jf.Length)
	}
	d.defined = true
	d.max = jf.Length

	switch jf.Enc {
	case "ASCII":
		d.enc = encASCII
	case "BCD":
		d.enc = encBCD
	case "LBCD":
		d.enc = encLBCD
	case "Binary":
		d.enc = encBinary
	case "HexToASCII":
		d.enc = encHex
	default:
		return d, fmt.Errorf("encoding %q not supported", jf.Enc)
	}

	kind, length, ok := strings.Cut(jf.Prefix, ".")
	if !ok {
		return d, fmt.Errorf("prefix %q", jf.Prefix)
	}
	if length == "Fixed" {
		// All of moov's fixed prefixers check len(value) == Length, except
		// Hex.Fixed, which wants twice that and is for bitmaps only.
		if kind != "ASCII" && kind != "BCD" && kind != "Binary" {
			return d, fmt.Errorf("prefix %q not supported", jf.Prefix)
		}
	} else {
		if strings.Trim(length, "L") != "" || len(length) > 4 {
			return d, fmt.Errorf("prefix %q not supported", jf.Prefix)
		}
		d.lenDigits = uint8(len(length))
		switch kind {
		case "ASCII":
			d.prefix = prefixASCII
		case "BCD":
			d.prefix = prefixBCD
		case "Binary":
			d.prefix = prefixBinary
		default:
			return d, fmt.Errorf("prefix %q not supported", jf.Prefix)
		}
		d.lenMax = 1
		base := 10
		if d.prefix == prefixBinary {
			base = 256
		}
		for range d.lenDigits {
			d.lenMax *= base
		}
		d.lenMax--
	}

	std := iso87Class[id]
	switch {
	case jf.Class != "":
		cl, ok := classNames[jf.Class]
		if !ok {
			return d, fmt.Errorf("class %q", jf.Class)
		}
		d.class = cl
		if cl != std && jf.Note == "" {
			return d, fmt.Errorf("class %q differs from ISO 8583:1987's %q: say why in \"note\"", jf.Class, className(std))
		}
	default:
		d.class = std
	}
	bcd := d.enc == encBCD || d.enc == encLBCD
	switch {
	case bcd && d.class == classXN:
		// jPOS IFB_AMOUNT: fixed, the sign byte then an even count of digits.
		if d.enc != encBCD || d.lenDigits != 0 || d.max%2 != 1 || jf.Padding != nil {
			return d, errors.New("BCD class xn needs a fixed, unpadded field of odd length (sign and an even count of digits)")
		}
	case bcd && d.class == classZ:
		// jPOS packs track 2 right-padded (IFB_LLNUM, pad false).
		if d.enc != encLBCD {
			return d, errors.New("BCD class z needs LBCD encoding")
		}
	case bcd && d.class != classN:
		return d, errors.New("BCD encoding needs class n, z or xn")
	}
	if d.enc == encLBCD && jf.Padding != nil && jf.Padding.Type != "None" {
		return d, errors.New("padding on LBCD fields is not supported")
	}
	if d.enc == encASCII && d.class == classB {
		return d, errors.New("class b needs Binary or HexToASCII encoding")
	}
	if (d.enc == encBinary || d.enc == encHex) && d.class != classB {
		return d, errors.New("Binary and HexToASCII encodings need class b")
	}

	if p := jf.Padding; p != nil && p.Type != "None" {
		if len(p.Pad) != 1 {
			return d, fmt.Errorf("padding %q: want one ASCII character", p.Pad)
		}
		d.pad = p.Pad[0]
		switch p.Type {
		case "Left":
			d.padLeft = true
		case "Right":
		default:
			return d, fmt.Errorf("padding type %q", p.Type)
		}
		if !classOK(d.class, d.pad) || d.pad > 0x7E {
			return d, fmt.Errorf("padding character not in the field's class")
		}
		if d.enc == encHex || d.enc == encBinary {
			return d, errors.New("padding on binary fields is not supported")
		}
	}
	return d, nil
}

// Note returns the dialect file's note on field id (0: the MTI): why its
// class or layout departs from ISO 8583:1987, or where jPOS, moov-io and
// Wireshark read the field differently and which one the dialect follows.
// It is "" for a field without a note or an id outside 0..128.
func (c *Codec) Note(id int) string {
	if id < 0 || id > fieldIDMax {
		return ""
	}
	return c.notes[id]
}

// Dialect returns the dialect name the codec was loaded with.
func (c *Codec) Dialect() string { return c.dialect }

// MoovSpec returns the same dialect built with moov-io/iso8583's spec
// importer, for code that uses moov directly (iso8583-connection clients,
// tests that cross-check our bytes against moov's). The spec is shared: do
// not modify it. moov packs every field as we do except the BCD forms of
// track 2 (class z) and of signed amounts (class xn) in iso87binary: its
// BCD encoders take digits only, so it refuses to pack them and unpacks
// the sign byte as two digits.
func (c *Codec) MoovSpec() *iso8583.MessageSpec { return c.moov }
