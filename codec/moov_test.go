package codec

import (
	"bytes"
	"encoding/hex"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/moov-io/iso8583"
	moovspecs "github.com/moov-io/iso8583/specs"
)

// TestPackMatchesMoov is the contract with the rest of the ecosystem: for
// the same values and spec our bytes are moov-io/iso8583's bytes, for every
// field moov can pack (not the BCD track 2 and signed amounts of
// iso87binary, which golden_test.go pins against jPOS's packing instead).
func TestPackMatchesMoov(t *testing.T) {
	for _, dialect := range dialects {
		c := mustLoad(t, dialect)
		for _, cm := range typicalCorpus {
			cm := moovComparable(c, cm)
			t.Run(dialect+"/"+cm.name, func(t *testing.T) {
				want := moovPack(t, c.MoovSpec(), cm)
				got, err := c.Pack(nil, cm.message())
				if err != nil {
					t.Fatalf("Pack: %v", err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("bytes differ from moov\n got %s\nwant %s", hex.EncodeToString(got), hex.EncodeToString(want))
				}
			})
		}
	}
}

// TestUnpackMatchesMoov unpacks the corpus with both implementations. moov
// strips padding on unpack and we keep the wire characters, so values are
// compared after removing the spec's padding.
func TestUnpackMatchesMoov(t *testing.T) {
	for _, dialect := range dialects {
		c := mustLoad(t, dialect)
		for _, cm := range typicalCorpus {
			cm := moovComparable(c, cm)
			t.Run(dialect+"/"+cm.name, func(t *testing.T) {
				data := moovPack(t, c.MoovSpec(), cm)
				var m Message
				if err := c.Unpack(data, &m); err != nil {
					t.Fatalf("Unpack: %v", err)
				}
				mm := iso8583.NewMessage(c.MoovSpec())
				if err := mm.Unpack(data); err != nil {
					t.Fatalf("moov Unpack: %v", err)
				}
				if mti, _ := mm.GetMTI(); mti != m.MTI {
					t.Errorf("MTI: moov %q, ours %q", mti, m.MTI)
				}
				moovIDs := []int{}
				for id := range mm.GetFields() {
					if id > 1 {
						moovIDs = append(moovIDs, id)
					}
				}
				slices.Sort(moovIDs)
				if !slices.Equal(moovIDs, m.IDs()) {
					t.Fatalf("field ids: moov %v, ours %v", moovIDs, m.IDs())
				}
				for _, id := range m.IDs() {
					b, err := mm.GetBytes(id)
					if err != nil {
						t.Fatal(err)
					}
					if got := unpad(&c.fields[id], m.Get(id)); got != string(b) {
						t.Errorf("field %d: moov %q, ours %q (unpadded)", id, b, got)
					}
				}
			})
		}
	}
}

func unpad(d *fieldDesc, v string) string {
	if d.pad == 0 {
		return v
	}
	if d.padLeft {
		return strings.TrimLeft(v, string(d.pad))
	}
	return strings.TrimRight(v, string(d.pad))
}

// padded is v as the codec puts it on the wire: padded per the spec.
func padded(d *fieldDesc, v string) string {
	if d.pad == 0 || len(v) >= d.max {
		return v
	}
	pad := strings.Repeat(string(d.pad), d.max-len(v))
	if d.padLeft {
		return pad + v
	}
	return v + pad
}

// TestRoundTrip: Unpack(Pack(m)) gives m back, with fixed fields padded.
func TestRoundTrip(t *testing.T) {
	for _, dialect := range dialects {
		c := mustLoad(t, dialect)
		for _, cm := range typicalCorpus {
			t.Run(dialect+"/"+cm.name, func(t *testing.T) {
				in := cm.message()
				data, err := c.Pack(nil, in)
				if err != nil {
					t.Fatal(err)
				}
				var out Message
				if err := c.Unpack(data, &out); err != nil {
					t.Fatalf("Unpack: %v", err)
				}
				if out.MTI != in.MTI || !slices.Equal(out.IDs(), in.IDs()) {
					t.Fatalf("got MTI %q ids %v, want %q %v", out.MTI, out.IDs(), in.MTI, in.IDs())
				}
				for _, id := range in.IDs() {
					if want := padded(&c.fields[id], in.Get(id)); out.Get(id) != want {
						t.Errorf("field %d: got %q, want %q", id, out.Get(id), want)
					}
				}
				again, err := c.Pack(nil, &out)
				if err != nil || !bytes.Equal(again, data) {
					t.Fatalf("re-pack differs (err %v)", err)
				}
			})
		}
	}
}

// TestField55MoovSpec87ASCII: field 55 as moov-io's own spec87ascii packs it
// (LLL characters, ASCII) crosses to our iso87ascii both ways; it used to be
// hex-encoded bytes here and such messages were refused with 30. The moov
// spec is spec87ascii's field list with one change: its 16-byte bitmap,
// which always writes both bitmaps and never sets bit 1, is replaced by the
// auto-expanding 8-byte bitmap our dialect uses (specs.TestBitmapAutoExpands),
// so the fields themselves, 55 included, are moov's.
func TestField55MoovSpec87ASCII(t *testing.T) {
	c := mustLoad(t, "iso87ascii")
	spec := &iso8583.MessageSpec{Name: "spec87ascii, auto-expanding bitmap", Fields: maps.Clone(moovspecs.Spec87ASCII.Fields)}
	spec.Fields[1] = c.MoovSpec().Fields[1]
	icc := "9F2608" + strings.Repeat("0123456789ABCDEF", 40) // 646 characters: more than 255, within 999
	values := map[int]string{
		2: testPAN, 3: "000000", 4: "000000012345", 11: "123456", 41: "TERM0001", 49: "840", 55: icc,
	}

	// moov packs, we unpack.
	mm := iso8583.NewMessage(spec)
	mm.MTI("0200")
	for id, v := range values {
		if err := mm.Field(id, v); err != nil {
			t.Fatalf("moov field %d: %v", id, err)
		}
	}
	data, err := mm.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("646"+icc)) {
		t.Fatalf("moov did not pack field 55 as LLL characters: %q", data)
	}
	var m Message
	if err := c.Unpack(data, &m); err != nil {
		t.Fatalf("our Unpack of moov spec87ascii bytes: %v", err)
	}
	for id, v := range values {
		if m.Get(id) != v {
			t.Errorf("field %d: ours %q, moov packed %q", id, m.Get(id), v)
		}
	}

	// We pack, moov unpacks; the bytes are moov's too.
	ours, err := c.Pack(nil, &m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ours, data) {
		t.Errorf("our bytes differ from moov's\n ours %q\n moov %q", ours, data)
	}
	back := iso8583.NewMessage(spec)
	if err := back.Unpack(ours); err != nil {
		t.Fatalf("moov spec87ascii Unpack of our bytes: %v", err)
	}
	if got, err := back.GetString(55); err != nil || got != icc {
		t.Errorf("moov reads field 55 as %q (%v), want %q", got, err, icc)
	}
}
