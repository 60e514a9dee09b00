package codec

import (
	"bytes"
	"testing"

	"github.com/moov-io/iso8583"
)

var bench0200 = corpusMessage{name: "0200", mti: "0200", fields: typical0200Fields()}

// moov0200 builds the benchmark message the way moov users do.
func moov0200(tb testing.TB, spec *iso8583.MessageSpec) *iso8583.Message {
	mm := iso8583.NewMessage(spec)
	mm.MTI(bench0200.mti)
	for id, v := range bench0200.fields {
		if err := mm.Field(id, v); err != nil {
			tb.Fatal(err)
		}
	}
	return mm
}

// TestBenchMessageIdentical guards the benchmark: both sides must produce
// the same bytes, or the comparison is meaningless.
func TestBenchMessageIdentical(t *testing.T) {
	c := mustLoad(t, "iso87ascii")
	want, err := moov0200(t, c.MoovSpec()).Pack()
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Pack(nil, bench0200.message())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("switchd %q\nmoov    %q", got, want)
	}
}

func BenchmarkPack0200(b *testing.B) {
	c := mustLoad(b, "iso87ascii")
	b.Run("switchd", func(b *testing.B) {
		m := bench0200.message()
		buf := make([]byte, 0, 512)
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = c.Pack(buf[:0], m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("moov", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := moov0200(b, c.MoovSpec()).Pack(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkUnpack0200(b *testing.B) {
	c := mustLoad(b, "iso87ascii")
	data, err := c.Pack(nil, bench0200.message())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("switchd", func(b *testing.B) {
		var m Message
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Unpack(data, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("moov", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			mm := iso8583.NewMessage(c.MoovSpec())
			if err := mm.Unpack(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkPackUnpack0200(b *testing.B) {
	c := mustLoad(b, "iso87ascii")
	b.Run("switchd", func(b *testing.B) {
		in := bench0200.message()
		var out Message
		buf := make([]byte, 0, 512)
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = c.Pack(buf[:0], in); err != nil {
				b.Fatal(err)
			}
			if err := c.Unpack(buf, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("moov", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			data, err := moov0200(b, c.MoovSpec()).Pack()
			if err != nil {
				b.Fatal(err)
			}
			mm := iso8583.NewMessage(c.MoovSpec())
			if err := mm.Unpack(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPackUnpack0200Binary is the same message in iso87binary, whose
// BCD fields (PAN right-padded as jPOS packs it) take other code paths.
func BenchmarkPackUnpack0200Binary(b *testing.B) {
	c := mustLoad(b, "iso87binary")
	b.Run("switchd", func(b *testing.B) {
		in := bench0200.message()
		var out Message
		buf := make([]byte, 0, 512)
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = c.Pack(buf[:0], in); err != nil {
				b.Fatal(err)
			}
			if err := c.Unpack(buf, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("moov", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			data, err := moov0200(b, c.MoovSpec()).Pack()
			if err != nil {
				b.Fatal(err)
			}
			mm := iso8583.NewMessage(c.MoovSpec())
			if err := mm.Unpack(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
