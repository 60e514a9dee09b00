package codec

import (
	"errors"
	"fmt"
	"io"
)

// Header is the length header in front of every message on a connection.
// Lanes pick one per partner; it is data, not code.
type Header string

const (
	HeaderBinary2 Header = "binary2" // 2-byte big-endian binary length
	HeaderASCII4  Header = "ascii4"  // 4 ASCII digits, "0123"
	HeaderBCD2    Header = "bcd2"    // 2 bytes BCD, 0x01 0x23, at most 9999
)

// FrameBytesMaxLimit is the largest FrameBytesMax a Framer accepts: 65535 is
// the most a 2-byte binary header can express, and none of our headers can
// express more (ascii4 and bcd2 stop at 9999). It also caps what one
// connection can make us buffer for a single message.
const FrameBytesMaxLimit = 65535

// Framing errors. After any of them, except ErrFrameEmpty, the stream
// position is unknown and the connection should be closed.
var (
	ErrFrameTooLarge = errors.New("codec: frame too large")
	ErrFrameEmpty    = errors.New("codec: empty frame")
	ErrFrameHeader   = errors.New("codec: malformed frame header")
)

// Framer reads and writes length-prefixed frames. The zero value is not
// valid; see Validate.
type Framer struct {
	Header Header
	// FrameBytesMax is the largest payload accepted or written, without the
	// header: a bound on what a peer can make us read and buffer. The
	// effective limit is also capped by what Header can express.
	FrameBytesMax int
}

// Validate reports whether the framer's settings are usable.
func (f Framer) Validate() error {
	if f.headerLen() == 0 {
		return fmt.Errorf("codec: unknown frame header %q (want %s, %s or %s)", f.Header, HeaderBinary2, HeaderASCII4, HeaderBCD2)
	}
	if f.FrameBytesMax < 1 || f.FrameBytesMax > FrameBytesMaxLimit {
		return fmt.Errorf("codec: FrameBytesMax %d out of range 1..%d", f.FrameBytesMax, FrameBytesMaxLimit)
	}
	return nil
}

func (f Framer) headerLen() int {
	switch f.Header {
	case HeaderBinary2, HeaderBCD2:
		return 2
	case HeaderASCII4:
		return 4
	}
	return 0
}

// headerMax is the largest length the header can express.
func (f Framer) headerMax() int {
	if f.Header == HeaderBinary2 {
		return 65535
	}
	return 9999
}

// ReadFrame reads exactly one frame from r and returns its payload. The
// payload reuses buf when cap(buf) suffices, so a connection loop that
// passes the previous result back reads without allocating; the payload is
// only valid until buf is reused.
//
// It returns io.EOF when r ends cleanly before a header, io.ErrUnexpectedEOF
// (wrapped) when it ends inside one or inside the payload, ErrFrameHeader for
// a header that is not a number, ErrFrameEmpty for a zero length (the
// frame is consumed), and ErrFrameTooLarge for a length above FrameBytesMax
// — without reading the body, so a hostile length costs nothing.
func (f Framer) ReadFrame(r io.Reader, buf []byte) ([]byte, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	hl := f.headerLen()
	// Read the header into buf's own storage when it fits: the header is
	// parsed before the payload overwrites it, and a stack array would
	// escape to the heap through the io.Reader interface.
	var hdr []byte
	if cap(buf) >= hl {
		hdr = buf[:hl]
	} else {
		hdr = make([]byte, hl)
	}
	if n, err := io.ReadFull(r, hdr); err != nil {
		if err == io.EOF && n == 0 {
			return nil, io.EOF
		}
		if err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("codec: reading frame header: %w", err)
		}
		return nil, err
	}
	n, err := f.parseHeader(hdr)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, ErrFrameEmpty
	}
	if n > f.FrameBytesMax {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, f.FrameBytesMax)
	}
	if cap(buf) >= n {
		buf = buf[:n]
	} else {
		buf = make([]byte, n)
	}
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("codec: reading %d-byte frame: %w", n, err)
	}
	return buf, nil
}

func (f Framer) parseHeader(h []byte) (int, error) {
	n := 0
	switch f.Header {
	case HeaderBinary2:
		n = int(h[0])<<8 | int(h[1])
	case HeaderASCII4:
		for _, ch := range h {
			if ch < '0' || ch > '9' {
				return 0, ErrFrameHeader
			}
			n = n*10 + int(ch-'0')
		}
	case HeaderBCD2:
		for _, b := range h {
			hi, lo := b>>4, b&0xF
			if hi > 9 || lo > 9 {
				return 0, ErrFrameHeader
			}
			n = n*100 + int(hi)*10 + int(lo)
		}
	}
	return n, nil
}

// AppendFrame appends the header for payload and then payload to dst. An
// empty payload is ErrFrameEmpty and one above FrameBytesMax (or above what
// the header can express) ErrFrameTooLarge; dst is returned unchanged then.
func (f Framer) AppendFrame(dst, payload []byte) ([]byte, error) {
	if err := f.Validate(); err != nil {
		return dst, err
	}
	n := len(payload)
	if n == 0 {
		return dst, ErrFrameEmpty
	}
	if n > f.FrameBytesMax || n > f.headerMax() {
		return dst, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, min(f.FrameBytesMax, f.headerMax()))
	}
	switch f.Header {
	case HeaderBinary2:
		dst = append(dst, byte(n>>8), byte(n))
	case HeaderASCII4:
		dst = append(dst, byte('0'+n/1000), byte('0'+n/100%10), byte('0'+n/10%10), byte('0'+n%10))
	case HeaderBCD2:
		dst = append(dst, byte(n/1000)<<4|byte(n/100%10), byte(n/10%10)<<4|byte(n%10))
	}
	return append(dst, payload...), nil
}
