package codec

import (
	"encoding/binary"
	"math/bits"
)

// unpackBufBytesMax bounds the scratch buffers kept for reuse: a message
// larger than this (a frame is at most 64 KiB) gets a buffer that is dropped
// afterwards rather than pinned in the pool.
const unpackBufBytesMax = 16 << 10

const hexUpper = "0123456789ABCDEF"

// Pack appends the message to dst: MTI, bitmap(s), then the present fields
// in ascending order; no length header (see Framer). The bytes are those
// moov-io/iso8583 produces for the same values and spec. Bit 1 is set and
// the secondary bitmap written exactly when a field 65–128 is present.
//
// Short values of fixed fields with padding in the spec are padded (numeric
// fields with leading zeros, text with trailing spaces), as moov does; any
// other length mismatch, a value exceeding its maximum, or a character
// outside the field's class is a *FieldError wrapping ErrFormat. On error
// dst is returned truncated to its original length. With enough capacity in
// dst Pack does not allocate.
func (c *Codec) Pack(dst []byte, m *Message) ([]byte, error) {
	start := len(dst)
	out, err := c.pack(dst, m)
	if err != nil {
		return dst[:start], err
	}
	return out, nil
}

func (c *Codec) pack(dst []byte, m *Message) ([]byte, error) {
	start := len(dst)
	if len(m.MTI) != 4 || !validClass(classN, m.MTI) {
		return dst, fieldErr(0, 0, formatf("MTI must be 4 digits"))
	}
	if c.mti.enc == encBCD {
		dst = appendBCD(dst, m.MTI, 0, 0, 0)
	} else {
		dst = append(dst, m.MTI...)
	}

	present := m.present
	present[0] &^= 1 << 63 // bit 1 is ours to compute, never a field
	if present[1]&(1<<63) != 0 {
		// Bit 65 lives in the secondary bitmap; report where that would start.
		return dst, fieldErr(65, len(dst)-start+c.bitmapLen(), errTertiary)
	}
	if present[1] != 0 {
		present[0] |= 1 << 63
	}
	nmaps := 1
	if present[1] != 0 {
		nmaps = 2
	}
	for i := range nmaps {
		if c.bitmapHex {
			w := present[i]
			for s := 60; s >= 0; s -= 4 {
				dst = append(dst, hexUpper[(w>>uint(s))&0xF])
			}
		} else {
			dst = binary.BigEndian.AppendUint64(dst, present[i])
		}
	}

	for w := range nmaps {
		word := present[w]
		if w == 0 {
			word &^= 1 << 63
		}
		for word != 0 {
			lz := bits.LeadingZeros64(word)
			word &^= 1 << (63 - uint(lz))
			id := w*64 + lz + 1
			d := &c.fields[id]
			off := len(dst) - start
			if !d.defined {
				return dst, fieldErr(id, off, errUndefined)
			}
			var err error
			dst, err = appendField(dst, d, m.values[id])
			if err != nil {
				return dst, fieldErr(id, off, err)
			}
		}
	}
	return dst, nil
}

// appendField appends one field: length prefix then content, exactly as
// moov's default packer does (pad, encode, prefix the padded length).
func appendField(dst []byte, d *fieldDesc, v string) ([]byte, error) {
	n := len(v)
	pl, pr := 0, 0
	if d.pad != 0 && n < d.max {
		if d.padLeft {
			pl = d.max - n
		} else {
			pr = d.max - n
		}
	}
	total := n + pl + pr
	if d.lenDigits == 0 {
		if total != d.max {
			return dst, formatf("length %d, want %d", n, d.max)
		}
	} else if total > d.max || total > d.lenMax {
		return dst, formatf("length %d exceeds maximum %d", n, min(d.max, d.lenMax))
	}
	if !validClass(d.class, v) {
		return dst, classErr(d.class)
	}

	if d.lenDigits != 0 {
		dst = appendLength(dst, d, total)
	}
	switch d.enc {
	case encASCII, encBinary:
		for range pl {
			dst = append(dst, d.pad)
		}
		dst = append(dst, v...)
		for range pr {
			dst = append(dst, d.pad)
		}
	case encBCD:
		if d.class == classXN {
			// The sign as a character, then the (even count of) digits.
			dst = append(dst, v[0])
			dst = appendBCD(dst, v[1:], 0, 0, 0)
			break
		}
		dst = appendBCD(dst, v, pl, pr, d.pad)
	case encLBCD:
		dst = appendLBCD(dst, v, d.class == classZ)
	case encHex:
		for i := 0; i < n; i++ {
			dst = append(dst, hexUpper[v[i]>>4], hexUpper[v[i]&0xF])
		}
	}
	return dst, nil
}

// appendLength writes a variable field's length prefix.
func appendLength(dst []byte, d *fieldDesc, n int) []byte {
	digits := int(d.lenDigits)
	switch d.prefix {
	case prefixASCII:
		for i := digits - 1; i >= 0; i-- {
			dst = append(dst, byte('0'+pow10Digit(n, i)))
		}
	case prefixBCD:
		// Odd digit counts get a leading zero nibble, as moov's BCD encoder does.
		nd := digits + digits&1
		for i := nd - 1; i >= 1; i -= 2 {
			dst = append(dst, byte(pow10Digit(n, i)<<4|pow10Digit(n, i-1)))
		}
	case prefixBinary:
		for i := digits - 1; i >= 0; i-- {
			dst = append(dst, byte(n>>(8*uint(i))))
		}
	}
	return dst
}

// pow10Digit returns decimal digit i (0 = units) of n.
func pow10Digit(n, i int) int {
	for ; i > 0; i-- {
		n /= 10
	}
	return n % 10
}

// appendBCD packs pl pad characters, the digits of v, then pr pad
// characters, two digits per byte; an odd count gets a leading zero nibble.
// The caller has checked that v (and pad) are digits.
func appendBCD(dst []byte, v string, pl, pr int, pad byte) []byte {
	total := pl + len(v) + pr
	at := func(k int) byte { // k-th character of the padded value
		if k < pl {
			return pad
		}
		k -= pl
		if k < len(v) {
			return v[k]
		}
		return pad
	}
	k := 0
	if total&1 == 1 {
		dst = append(dst, at(0)-'0')
		k = 1
	}
	if pl == 0 && pr == 0 {
		for ; k < total; k += 2 {
			dst = append(dst, (v[k]-'0')<<4|(v[k+1]-'0'))
		}
		return dst
	}
	for ; k < total; k += 2 {
		dst = append(dst, (at(k)-'0')<<4|(at(k+1)-'0'))
	}
	return dst
}

// appendLBCD packs the characters of v two per byte, an odd count ending
// in a zero pad nibble (jPOS's RIGHT_PADDED BCDInterpreter, moov's LBCD).
// With track set (class z) '=' and 'D' pack as the nibble 0xD, as jPOS's
// str2bcd does; otherwise the caller has checked that v is digits.
func appendLBCD(dst []byte, v string, track bool) []byte {
	k := 0
	for ; k+1 < len(v); k += 2 {
		dst = append(dst, nibble(v[k], track)<<4|nibble(v[k+1], track))
	}
	if k < len(v) {
		dst = append(dst, nibble(v[k], track)<<4)
	}
	return dst
}

// nibble is the BCD nibble of a checked character: a digit, or with track
// set the separator '=' or its BCD spelling 'D'.
func nibble(ch byte, track bool) byte {
	if track && (ch == '=' || ch == 'D') {
		return 0xD
	}
	return ch - '0'
}

// Unpack decodes one message (without frame header) into m, resetting m
// first. Every field is checked against the spec: the length prefix, the
// bounds of the data, the character class; trailing bytes after the last
// field are an error, because a well-framed message has none. Errors are
// *FieldError values wrapping ErrFormat that name the field and the offset
// where it starts; on error m is left reset.
//
// An all-zero secondary bitmap announced by bit 1 is accepted (some hosts
// always send both bitmaps); Pack omits it again.
//
// All values of one message share a single string allocation.
func (c *Codec) Unpack(data []byte, m *Message) error {
	m.Reset()
	bp, _ := c.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	buf, err := c.unpack(data, m, (*bp)[:0])
	if cap(buf) <= unpackBufBytesMax {
		*bp = buf[:0]
		c.bufs.Put(bp)
	}
	if err != nil {
		m.Reset()
	}
	return err
}

func (c *Codec) unpack(data []byte, m *Message, buf []byte) ([]byte, error) {
	// ends[id] is where field id's decoded value ends in buf; values are
	// decoded back to back in field order, the MTI first.
	var ends [fieldIDMax + 1]uint32

	off, err := c.decodeMTI(data, &buf)
	if err != nil {
		return buf, err
	}
	ends[0] = uint32(len(buf))

	present, off, err := c.decodeBitmaps(data, off)
	if err != nil {
		return buf, err
	}

	last := 1
	for w := range 2 {
		word := present[w]
		if w == 0 {
			word &^= 1 << 63
		}
		for word != 0 {
			lz := bits.LeadingZeros64(word)
			word &^= 1 << (63 - uint(lz))
			id := w*64 + lz + 1
			d := &c.fields[id]
			if !d.defined {
				return buf, fieldErr(id, off, errUndefined)
			}
			var n int
			buf, n, err = decodeField(data[off:], d, buf)
			if err != nil {
				return buf, fieldErr(id, off, err)
			}
			off += n
			ends[id] = uint32(len(buf))
			last = id
		}
	}
	if off != len(data) {
		return buf, fieldErr(last, off, formatf("%d trailing bytes after the last field", len(data)-off))
	}

	s := string(buf)
	m.MTI = s[:ends[0]]
	m.present = present
	m.present[0] &^= 1 << 63
	prev := ends[0]
	for w := range 2 {
		for word := m.present[w]; word != 0; {
			lz := bits.LeadingZeros64(word)
			word &^= 1 << (63 - uint(lz))
			id := w*64 + lz + 1
			m.values[id] = s[prev:ends[id]]
			prev = ends[id]
		}
	}
	return buf, nil
}

// decodeMTI appends the MTI's four digits to *buf and returns the offset
// after it.
func (c *Codec) decodeMTI(data []byte, buf *[]byte) (int, error) {
	if c.mti.enc == encBCD {
		if len(data) < 2 {
			return 0, fieldErr(0, 0, errTruncated)
		}
		b, err := appendUnBCD(*buf, data[:2], 4)
		if err != nil {
			return 0, fieldErr(0, 0, err)
		}
		*buf = b
		return 2, nil
	}
	if len(data) < 4 {
		return 0, fieldErr(0, 0, errTruncated)
	}
	if !validClass(classN, data[:4]) {
		return 0, fieldErr(0, 0, errNotNumeric)
	}
	*buf = append(*buf, data[:4]...)
	return 4, nil
}

// decodeBitmaps reads the primary bitmap and, when bit 1 is set, the
// secondary one. Bit 65 would announce a tertiary bitmap, which 1987
// dialects do not have.
func (c *Codec) decodeBitmaps(data []byte, off int) ([2]uint64, int, error) {
	var present [2]uint64
	secondaryOff := off + c.bitmapLen()
	for i := range 2 {
		var w uint64
		if c.bitmapHex {
			if len(data)-off < 16 {
				return present, off, fieldErr(1, off, errTruncated)
			}
			for _, ch := range data[off : off+16] {
				v := unhex(ch)
				if v > 0xF {
					return present, off, fieldErr(1, off, errBadHex)
				}
				w = w<<4 | uint64(v)
			}
			off += 16
		} else {
			if len(data)-off < 8 {
				return present, off, fieldErr(1, off, errTruncated)
			}
			w = binary.BigEndian.Uint64(data[off:])
			off += 8
		}
		present[i] = w
		if i == 0 && w&(1<<63) == 0 {
			break
		}
	}
	if present[1]&(1<<63) != 0 {
		return present, off, fieldErr(65, secondaryOff, errTertiary)
	}
	return present, off, nil
}

// bitmapLen is the wire size of one bitmap.
func (c *Codec) bitmapLen() int {
	if c.bitmapHex {
		return 16
	}
	return 8
}

func unhex(ch byte) byte {
	switch {
	case ch >= '0' && ch <= '9':
		return ch - '0'
	case ch >= 'A' && ch <= 'F':
		return ch - 'A' + 10
	case ch >= 'a' && ch <= 'f':
		return ch - 'a' + 10
	}
	return 0xFF
}

// decodeLength reads a variable field's length prefix from data and returns
// the length and the prefix size.
func decodeLength(data []byte, d *fieldDesc) (int, int, error) {
	if d.lenDigits == 0 {
		return d.max, 0, nil
	}
	pn := d.prefixLen()
	if len(data) < pn {
		return 0, 0, errTruncated
	}
	n := 0
	switch d.prefix {
	case prefixASCII:
		for _, ch := range data[:pn] {
			if ch < '0' || ch > '9' {
				return 0, 0, errBadLength
			}
			n = n*10 + int(ch-'0')
		}
	case prefixBCD:
		for i, b := range data[:pn] {
			hi, lo := b>>4, b&0xF
			if hi > 9 || lo > 9 || (i == 0 && d.lenDigits&1 == 1 && hi != 0) {
				return 0, 0, errBadLength
			}
			n = n*100 + int(hi)*10 + int(lo)
		}
	case prefixBinary:
		for _, b := range data[:pn] {
			n = n<<8 | int(b)
		}
	}
	if n > d.max {
		return 0, 0, formatf("length %d exceeds maximum %d", n, d.max)
	}
	return n, pn, nil
}

// decodeField decodes one field at the start of data, appending its value
// to buf, and returns the number of bytes consumed.
func decodeField(data []byte, d *fieldDesc, buf []byte) ([]byte, int, error) {
	n, pn, err := decodeLength(data, d)
	if err != nil {
		return buf, 0, err
	}
	wl := d.wireLen(n)
	if len(data)-pn < wl {
		return buf, 0, errTruncated
	}
	raw := data[pn : pn+wl]
	switch d.enc {
	case encASCII, encBinary:
		if !validClass(d.class, raw) {
			return buf, 0, classErr(d.class)
		}
		buf = append(buf, raw...)
	case encBCD:
		if d.class == classXN {
			if raw[0] != 'C' && raw[0] != 'D' {
				return buf, 0, errBadChar
			}
			buf = append(buf, raw[0])
			buf, err = appendUnBCD(buf, raw[1:], n-1)
		} else {
			buf, err = appendUnBCD(buf, raw, n)
		}
		if err != nil {
			return buf, 0, err
		}
	case encLBCD:
		buf, err = appendUnLBCD(buf, raw, n, d.class == classZ)
		if err != nil {
			return buf, 0, err
		}
	case encHex:
		for i := 0; i < len(raw); i += 2 {
			hi, lo := unhex(raw[i]), unhex(raw[i+1])
			if hi > 0xF || lo > 0xF {
				return buf, 0, errBadHex
			}
			buf = append(buf, hi<<4|lo)
		}
	}
	return buf, pn + wl, nil
}

// appendUnBCD appends n digits decoded from raw ((n+1)/2 bytes). For odd n
// the leading pad nibble must be zero: moov ignores it, but a peer that puts
// anything else there is not speaking this dialect.
func appendUnBCD(buf, raw []byte, n int) ([]byte, error) {
	for i, b := range raw {
		hi, lo := b>>4, b&0xF
		if hi > 9 || lo > 9 {
			return buf, errBadBCD
		}
		if i == 0 && n&1 == 1 {
			if hi != 0 {
				return buf, errBadBCD
			}
			buf = append(buf, '0'+lo)
			continue
		}
		buf = append(buf, '0'+hi, '0'+lo)
	}
	return buf, nil
}

// appendUnLBCD appends n characters decoded from raw ((n+1)/2 bytes,
// right-padded). For odd n the trailing pad nibble must be zero. With track
// set the nibble 0xD is the track 2 separator and decodes as '=', as jPOS's
// bcd2str does; any other nibble above 9 is an error.
func appendUnLBCD(buf, raw []byte, n int, track bool) ([]byte, error) {
	for i, b := range raw {
		hi, lo := b>>4, b&0xF
		c, ok := digitOf(hi, track)
		if !ok {
			return buf, errBadBCD
		}
		buf = append(buf, c)
		if 2*i+1 == n {
			if lo != 0 {
				return buf, errBadBCD
			}
			break
		}
		if c, ok = digitOf(lo, track); !ok {
			return buf, errBadBCD
		}
		buf = append(buf, c)
	}
	return buf, nil
}

// digitOf is the character of a BCD nibble: a digit, or with track set
// '=' for 0xD.
func digitOf(x byte, track bool) (byte, bool) {
	switch {
	case x <= 9:
		return '0' + x, true
	case track && x == 0xD:
		return '=', true
	}
	return 0, false
}

// Peek reads the MTI and field 11 (STAN) of a message that failed Unpack,
// so the switch can still answer "30 format error" to the right MTI/STAN.
// It skips fields 2–10 by their length prefixes without validating their
// content. ok is true only when both were read and look right (4 and 6
// digits); otherwise both results are empty.
func (c *Codec) Peek(data []byte) (mti, stan string, ok bool) {
	var scratch [16]byte
	buf := scratch[:0]
	off, err := c.decodeMTI(data, &buf)
	if err != nil {
		return "", "", false
	}
	present, off, err := c.decodeBitmaps(data, off)
	if err != nil {
		return "", "", false
	}
	const stanID = 11
	w, b := bitFor(stanID)
	if present[w]&b == 0 {
		return "", "", false
	}
	for id := 2; id < stanID; id++ {
		if w, b := bitFor(id); present[w]&b == 0 {
			continue
		}
		d := &c.fields[id]
		if !d.defined {
			return "", "", false
		}
		n, pn, err := decodeLength(data[off:], d)
		if err != nil {
			return "", "", false
		}
		off += pn + d.wireLen(n)
		if off > len(data) {
			return "", "", false
		}
	}
	d := &c.fields[stanID]
	if !d.defined {
		return "", "", false
	}
	stanBuf, _, err := decodeField(data[off:], d, scratch[4:4])
	if err != nil || len(stanBuf) != 6 || !validClass(classN, stanBuf) {
		return "", "", false
	}
	return string(buf[:4]), string(stanBuf), true
}
