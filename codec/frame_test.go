package codec

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// header returns the header bytes for n in each format.
func header(h Header, n int) []byte {
	switch h {
	case HeaderBinary2:
		return []byte{byte(n >> 8), byte(n)}
	case HeaderASCII4:
		return []byte{byte('0' + n/1000%10), byte('0' + n/100%10), byte('0' + n/10%10), byte('0' + n%10)}
	default:
		return []byte{byte(n/1000%10)<<4 | byte(n/100%10), byte(n/10%10)<<4 | byte(n%10)}
	}
}

func TestFramerValidate(t *testing.T) {
	tests := []struct {
		f     Framer
		valid bool
	}{
		{Framer{HeaderBinary2, 8192}, true},
		{Framer{HeaderASCII4, 9999}, true},
		{Framer{HeaderBCD2, 1}, true},
		{Framer{HeaderBinary2, FrameBytesMaxLimit}, true},
		{Framer{HeaderBinary2, FrameBytesMaxLimit + 1}, false},
		{Framer{HeaderBinary2, 0}, false},
		{Framer{HeaderBinary2, -1}, false},
		{Framer{"", 8192}, false},
		{Framer{"binary4", 8192}, false},
	}
	for _, tt := range tests {
		if err := tt.f.Validate(); (err == nil) != tt.valid {
			t.Errorf("%+v.Validate() = %v, want valid=%v", tt.f, err, tt.valid)
		}
	}
	if _, err := (Framer{}).ReadFrame(strings.NewReader("0001x"), nil); err == nil {
		t.Error("ReadFrame with an invalid Framer succeeded")
	}
	if _, err := (Framer{}).AppendFrame(nil, []byte("x")); err == nil {
		t.Error("AppendFrame with an invalid Framer succeeded")
	}
}

func TestReadFrame(t *testing.T) {
	const max = 100
	for _, h := range []Header{HeaderBinary2, HeaderASCII4, HeaderBCD2} {
		f := Framer{Header: h, FrameBytesMax: max}
		payload := bytes.Repeat([]byte{'p'}, max)
		tests := []struct {
			name string
			in   []byte
			want []byte
			err  error
		}{
			{"one byte", append(header(h, 1), 'x'), []byte("x"), nil},
			{"exactly max", append(header(h, max), payload...), payload, nil},
			{"max+1 not read", append(header(h, max+1), payload...), nil, ErrFrameTooLarge},
			{"9999 not read", header(h, 9999), nil, ErrFrameTooLarge},
			{"zero", header(h, 0), nil, ErrFrameEmpty},
			{"clean EOF", nil, nil, io.EOF},
			{"short header", header(h, 5)[:1], nil, io.ErrUnexpectedEOF},
			{"short body", append(header(h, 5), "abc"...), nil, io.ErrUnexpectedEOF},
			{"header only", header(h, 5), nil, io.ErrUnexpectedEOF},
		}
		if h != HeaderBinary2 {
			bad := []byte("00x1")
			if h == HeaderBCD2 {
				bad = []byte{0x00, 0x1A}
			}
			tests = append(tests, struct {
				name string
				in   []byte
				want []byte
				err  error
			}{"non-digit header", append(bad, "xxxxxxxxxxxxxxxxxxxxxxxxxx"...), nil, ErrFrameHeader})
		}
		for _, tt := range tests {
			for _, oneByte := range []bool{false, true} {
				var r io.Reader = bytes.NewReader(tt.in)
				if oneByte {
					r = iotest.OneByteReader(r) // short reads everywhere
				}
				got, err := f.ReadFrame(r, nil)
				if !errors.Is(err, tt.err) || (err == nil && !bytes.Equal(got, tt.want)) {
					t.Errorf("%s/%s (one-byte reads %v): got %q, %v; want %q, %v", h, tt.name, oneByte, got, err, tt.want, tt.err)
				}
			}
		}
		// Oversize: the body must not have been consumed.
		r := bytes.NewReader(append(header(h, max+1), payload...))
		if _, err := f.ReadFrame(r, nil); !errors.Is(err, ErrFrameTooLarge) || r.Len() != len(payload) {
			t.Errorf("%s: oversize frame consumed %d body bytes", h, len(payload)-r.Len())
		}
	}
}

// TestReadFrameReusesBuffer: a caller passing back a large enough buffer
// gets its storage back, and several frames read in sequence.
func TestReadFrameReusesBuffer(t *testing.T) {
	f := Framer{Header: HeaderBinary2, FrameBytesMax: 1000}
	var stream []byte
	for _, p := range []string{"first", "second frame", "3"} {
		stream, _ = f.AppendFrame(stream, []byte(p))
	}
	r := bytes.NewReader(stream)
	buf := make([]byte, 0, 64)
	for _, want := range []string{"first", "second frame", "3"} {
		got, err := f.ReadFrame(r, buf)
		if err != nil || string(got) != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
		if &got[:1][0] != &buf[:1][0] {
			t.Error("buffer not reused")
		}
	}
	if _, err := f.ReadFrame(r, buf); err != io.EOF {
		t.Errorf("after last frame: %v, want io.EOF", err)
	}
	if n := testing.AllocsPerRun(50, func() {
		r.Reset(stream)
		_, _ = f.ReadFrame(r, buf)
	}); n != 0 {
		t.Errorf("ReadFrame allocates %.0f times with a big enough buffer", n)
	}
}

func TestAppendFrame(t *testing.T) {
	tests := []struct {
		h    Header
		n    int
		want []byte
	}{
		{HeaderBinary2, 1, []byte{0x00, 0x01}},
		{HeaderBinary2, 300, []byte{0x01, 0x2C}},
		{HeaderBinary2, 65535, []byte{0xFF, 0xFF}},
		{HeaderASCII4, 1, []byte("0001")},
		{HeaderASCII4, 1234, []byte("1234")},
		{HeaderASCII4, 9999, []byte("9999")},
		{HeaderBCD2, 1, []byte{0x00, 0x01}},
		{HeaderBCD2, 1234, []byte{0x12, 0x34}},
		{HeaderBCD2, 9999, []byte{0x99, 0x99}},
	}
	for _, tt := range tests {
		f := Framer{Header: tt.h, FrameBytesMax: FrameBytesMaxLimit}
		payload := bytes.Repeat([]byte{'z'}, tt.n)
		out, err := f.AppendFrame([]byte("pre"), payload)
		if err != nil {
			t.Fatalf("%s %d: %v", tt.h, tt.n, err)
		}
		if want := append(append([]byte("pre"), tt.want...), payload...); !bytes.Equal(out, want) {
			t.Errorf("%s %d: header %X, want %X", tt.h, tt.n, out[3:3+len(tt.want)], tt.want)
		}
		back, err := f.ReadFrame(bytes.NewReader(out[3:]), nil)
		if err != nil || !bytes.Equal(back, payload) {
			t.Errorf("%s %d: read back %d bytes, %v", tt.h, tt.n, len(back), err)
		}
	}
	errTests := []struct {
		f   Framer
		n   int
		err error
	}{
		{Framer{HeaderBinary2, 100}, 0, ErrFrameEmpty},
		{Framer{HeaderBinary2, 100}, 101, ErrFrameTooLarge},
		{Framer{HeaderBinary2, 100}, 100, nil},
		{Framer{HeaderASCII4, FrameBytesMaxLimit}, 10000, ErrFrameTooLarge},
		{Framer{HeaderBCD2, FrameBytesMaxLimit}, 10000, ErrFrameTooLarge},
	}
	for _, tt := range errTests {
		out, err := tt.f.AppendFrame([]byte("pre"), make([]byte, tt.n))
		if !errors.Is(err, tt.err) {
			t.Errorf("%+v with %d bytes: %v, want %v", tt.f, tt.n, err, tt.err)
		}
		if err != nil && string(out) != "pre" {
			t.Errorf("%+v: dst changed on error", tt.f)
		}
	}
}
