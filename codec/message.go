package codec

import (
	"fmt"
	"math/bits"
)

// Message is a decoded ISO 8583 message: the MTI and field values as
// strings. Values are the characters as they are on the wire after
// character decoding (BCD digits become '0'–'9'), including any padding, so
// field 4 reads "000000001000", not "1000"; binary fields (class b: PIN
// block, MAC, ICC data) hold their raw bytes in the string.
//
// The zero value is an empty message ready to use. A Message is a plain
// value: copying it copies the message. It is not safe for concurrent
// mutation.
type Message struct {
	MTI string

	present [2]uint64 // ISO bit numbering: field i is bit 63-((i-1)%64) of word (i-1)/64
	values  [fieldIDMax + 1]string
}

// checkID panics on a field id outside 2..128: such an id is a bug in the
// caller, never an input condition.
func checkID(id int) {
	if id < 2 || id > fieldIDMax {
		panic(fmt.Sprintf("codec: field id %d out of range 2..%d", id, fieldIDMax))
	}
}

func bitFor(id int) (word int, mask uint64) {
	return (id - 1) >> 6, 1 << (63 - uint(id-1)&63)
}

// Set sets field id (2..128) to v, marking it present even when v is
// empty. It panics on an id outside 2..128.
func (m *Message) Set(id int, v string) {
	checkID(id)
	w, b := bitFor(id)
	m.present[w] |= b
	m.values[id] = v
}

// Get returns field id's value, or "" when the field is absent or id is
// outside 2..128.
func (m *Message) Get(id int) string {
	if id < 2 || id > fieldIDMax {
		return ""
	}
	return m.values[id]
}

// Has reports whether field id is present; false for ids outside 2..128.
func (m *Message) Has(id int) bool {
	if id < 2 || id > fieldIDMax {
		return false
	}
	w, b := bitFor(id)
	return m.present[w]&b != 0
}

// Unset removes field id. It panics on an id outside 2..128.
func (m *Message) Unset(id int) {
	checkID(id)
	w, b := bitFor(id)
	m.present[w] &^= b
	m.values[id] = ""
}

// Reset empties the message, MTI included.
func (m *Message) Reset() {
	// Only present fields can hold a value (Set marks, Unset clears), so
	// clearing those is enough; it spares the 129-string sweep, which
	// matters because Unpack resets on every message.
	for w := range 2 {
		for word := m.present[w]; word != 0; {
			lz := bits.LeadingZeros64(word)
			word &^= 1 << (63 - uint(lz))
			m.values[w*64+lz+1] = ""
		}
	}
	m.present = [2]uint64{}
	m.MTI = ""
}

// IDs returns the ids of the present fields in ascending order.
func (m *Message) IDs() []int {
	n := bits.OnesCount64(m.present[0]) + bits.OnesCount64(m.present[1])
	ids := make([]int, 0, n)
	for w := range 2 {
		for word := m.present[w]; word != 0; {
			lz := bits.LeadingZeros64(word)
			word &^= 1 << (63 - uint(lz))
			ids = append(ids, w*64+lz+1)
		}
	}
	return ids
}

// charClass membership table: classBits[c] has bit (1<<class) set when byte
// c belongs to that class. classXN and classB are handled in code.
var classBits = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		ch := byte(c)
		digit := ch >= '0' && ch <= '9'
		letter := (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')
		printable := ch >= 0x20 && ch <= 0x7E
		if printable {
			t[c] |= 1 << classANS
		}
		if digit {
			t[c] |= 1 << classN
		}
		if letter || ch == ' ' {
			t[c] |= 1 << classA
		}
		if letter || digit || ch == ' ' {
			t[c] |= 1 << classAN
		}
		if printable && !letter {
			t[c] |= 1 << classNS
		}
		if digit || ch == '=' || ch == 'D' {
			t[c] |= 1 << classZ
		}
	}
	return t
}()

func classOK(cl charClass, ch byte) bool {
	switch cl {
	case classB:
		return true
	case classXN:
		return classBits[ch]&(1<<classN) != 0 || ch == 'C' || ch == 'D'
	}
	return classBits[ch]&(1<<cl) != 0
}

// validClass reports whether every byte of v belongs to class cl. It is
// generic so that raw frames ([]byte) and field values (string) are checked
// by one loop without a conversion (no allocation on the hot path).
func validClass[T string | []byte](cl charClass, v T) bool {
	switch cl {
	case classB:
		return true
	case classXN:
		if len(v) == 0 {
			return true
		}
		if v[0] != 'C' && v[0] != 'D' {
			return false
		}
		v = v[1:]
		cl = classN
	}
	mask := uint8(1) << cl
	for i := 0; i < len(v); i++ {
		if classBits[v[i]]&mask == 0 {
			return false
		}
	}
	return true
}

func classErr(cl charClass) error {
	if cl == classN {
		return errNotNumeric
	}
	return errBadChar
}
