// Package mac holds the message authentication codes of ISO 8583 lanes and
// the key-encryption key that keeps their keys wrapped at rest.
//
// Two algorithms, both on the standard library:
//
//   - x919: the ANSI X9.19 retail MAC, ISO/IEC 9797-1 MAC algorithm 3 with
//     DES and a double-length key K1‖K2: DES-CBC under K1 over every block
//     (zero IV), then the last block decrypted under K2 and encrypted under
//     K1. Padding is the key's: ISO/IEC 9797-1 method 1 (zeros up to a
//     whole block, none when the data already is one, what most ISO 8583
//     X9.19 deployments use) or method 2 (0x80 then zeros, always).
//   - aes-cmac: AES-CMAC (RFC 4493, NIST SP 800-38B) with a 128, 192 or 256
//     bit key; the padding is CMAC's own.
//
// ISO 8583 fields 64 and 128 hold 8 bytes: an X9.19 MAC is 8 bytes, an
// AES-CMAC is truncated to its leftmost 8 (RFC 4493 §2.4 allows truncation;
// SP 800-38B advises at least 64 bits).
//
// Keys are shown by their key check value (KCV), never by their bytes: for
// a DES key the first 3 bytes of its triple-DES (K1,K2,K1) encryption of
// eight zero bytes, for an AES key the first 3 bytes of AES-CMAC over
// sixteen zero bytes (the ANSI X9.24-1:2017 method, which prints 5 bytes;
// we print 3 like DES), as upper-case hex.
package mac

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Alg names a MAC algorithm as partner records and commands spell it.
type Alg string

const (
	// AlgX919 is the ANSI X9.19 retail MAC (ISO/IEC 9797-1 algorithm 3, DES).
	AlgX919 Alg = "x919"
	// AlgAESCMAC is AES-CMAC (RFC 4493), truncated to 8 bytes.
	AlgAESCMAC Alg = "aes-cmac"
)

// Padding is how x919 pads the data to whole blocks.
type Padding string

const (
	// PadMethod1 is ISO/IEC 9797-1 padding method 1: zero bytes up to a
	// whole block, none when the data is already whole blocks (an empty
	// message becomes one block of zeros).
	PadMethod1 Padding = "m1"
	// PadMethod2 is ISO/IEC 9797-1 padding method 2: one 0x80 byte, then
	// zero bytes up to a whole block.
	PadMethod2 Padding = "m2"
)

// TagBytes is the size of the MAC in ISO 8583 fields 64 and 128.
const TagBytes = 8

// KCVBytes is how much of the check computation a KCV shows.
const KCVBytes = 3

// Sentinel errors. None of them, nor the errors wrapping them, carry key
// bytes.
var (
	// ErrAlg: an algorithm or padding this package does not know, or a
	// padding given for aes-cmac.
	ErrAlg = errors.New("mac: unknown algorithm or padding")
	// ErrKey: key material of the wrong length or shape for its algorithm.
	ErrKey = errors.New("mac: invalid key")
)

// CheckAlg reports whether alg with pad is a combination NewKey takes:
// x919 with m1 or m2, aes-cmac with no padding.
func CheckAlg(alg Alg, pad Padding) error {
	switch alg {
	case AlgX919:
		if pad == PadMethod1 || pad == PadMethod2 {
			return nil
		}
		return fmt.Errorf("%w: x919 needs padding m1 or m2, not %q", ErrAlg, pad)
	case AlgAESCMAC:
		if pad == "" {
			return nil
		}
		return fmt.Errorf("%w: aes-cmac has its own padding (got %q)", ErrAlg, pad)
	}
	return fmt.Errorf("%w: %q (x919 or aes-cmac)", ErrAlg, alg)
}

// Key is a MAC key ready to use: its ciphers are set up once, so Sum and
// Verify allocate nothing. It is safe for concurrent use. Its String and
// Format show the algorithm and KCV only.
type Key struct {
	alg Alg
	pad Padding
	kcv string
	// x919: DES under K1 and under K2.
	k1, k2 cipher.Block
	// aes-cmac: the AES block cipher and the CMAC subkeys.
	aes        cipher.Block
	sub1, sub2 [aes.BlockSize]byte
}

// NewKey sets up material (16 bytes K1‖K2 for x919, 16, 24 or 32 for
// aes-cmac) as a key of alg with padding pad. The caller may clear
// material afterwards; the key keeps its own cipher state.
func NewKey(alg Alg, pad Padding, material []byte) (*Key, error) {
	if err := CheckAlg(alg, pad); err != nil {
		return nil, err
	}
	k := &Key{alg: alg, pad: pad}
	switch alg {
	case AlgX919:
		if len(material) != 16 {
			return nil, fmt.Errorf("%w: x919 takes a double-length DES key (16 bytes), got %d bytes", ErrKey, len(material))
		}
		if subtle.ConstantTimeCompare(material[:8], material[8:]) == 1 {
			// K1 = K2 makes algorithm 3 single DES: refuse what would be
			// a 56-bit key in disguise.
			return nil, fmt.Errorf("%w: x919 key halves are equal (single DES)", ErrKey)
		}
		k.k1, _ = des.NewCipher(material[:8]) // 8 bytes: cannot fail
		k.k2, _ = des.NewCipher(material[8:])
		var kcv [des.BlockSize]byte
		k.k1.Encrypt(kcv[:], kcv[:])
		k.k2.Decrypt(kcv[:], kcv[:])
		k.k1.Encrypt(kcv[:], kcv[:])
		k.kcv = strings.ToUpper(hex.EncodeToString(kcv[:KCVBytes]))
	case AlgAESCMAC:
		b, err := aes.NewCipher(material)
		if err != nil {
			return nil, fmt.Errorf("%w: aes-cmac takes 16, 24 or 32 bytes, got %d bytes", ErrKey, len(material))
		}
		k.aes = b
		k.sub1, k.sub2 = cmacSubkeys(b)
		var zero [aes.BlockSize]byte
		t := k.cmac(zero[:])
		k.kcv = strings.ToUpper(hex.EncodeToString(t[:KCVBytes]))
	}
	return k, nil
}

// Alg is the key's algorithm.
func (k *Key) Alg() Alg { return k.alg }

// Padding is the key's padding ("" for aes-cmac).
func (k *Key) Padding() Padding { return k.pad }

// KCV is the key check value: 6 upper-case hex digits (see the package
// comment for how each algorithm computes it).
func (k *Key) KCV() string { return k.kcv }

// String names the key without its material.
func (k *Key) String() string { return string(k.alg) + " key KCV " + k.kcv }

// GoString keeps %#v from printing the cipher state.
func (k *Key) GoString() string { return k.String() }

// Sum is the MAC of msg as ISO 8583 fields 64 and 128 carry it.
func (k *Key) Sum(msg []byte) [TagBytes]byte {
	var out [TagBytes]byte
	if k.alg == AlgX919 {
		return k.retail(msg)
	}
	t := k.cmac(msg)
	copy(out[:], t[:TagBytes])
	return out
}

// Verify reports whether tag is msg's MAC, in constant time.
func (k *Key) Verify(msg, tag []byte) bool {
	want := k.Sum(msg)
	return len(tag) == TagBytes && subtle.ConstantTimeCompare(want[:], tag) == 1
}

// retail is ISO/IEC 9797-1 MAC algorithm 3 (ANSI X9.19).
func (k *Key) retail(msg []byte) [TagBytes]byte {
	var h [des.BlockSize]byte
	full := len(msg) / des.BlockSize * des.BlockSize
	for i := 0; i < full; i += des.BlockSize {
		subtle.XORBytes(h[:], h[:], msg[i:i+des.BlockSize])
		k.k1.Encrypt(h[:], h[:])
	}
	rest := msg[full:]
	// Method 1 adds no block to whole blocks (an empty message is the one
	// exception: it becomes a block of zeros); method 2 always adds one.
	if len(rest) > 0 || k.pad == PadMethod2 || len(msg) == 0 {
		var last [des.BlockSize]byte
		copy(last[:], rest)
		if k.pad == PadMethod2 {
			last[len(rest)] = 0x80
		}
		subtle.XORBytes(h[:], h[:], last[:])
		k.k1.Encrypt(h[:], h[:])
	}
	k.k2.Decrypt(h[:], h[:])
	k.k1.Encrypt(h[:], h[:])
	return h
}

// cmac is AES-CMAC (RFC 4493 §2.4) of msg, all 16 bytes.
func (k *Key) cmac(msg []byte) [aes.BlockSize]byte {
	const bs = aes.BlockSize
	var x [bs]byte
	n := (len(msg) + bs - 1) / bs
	complete := n > 0 && len(msg)%bs == 0
	if n == 0 {
		n = 1
	}
	for i := 0; i < n-1; i++ {
		subtle.XORBytes(x[:], x[:], msg[i*bs:(i+1)*bs])
		k.aes.Encrypt(x[:], x[:])
	}
	var last [bs]byte
	tail := msg[(n-1)*bs:]
	if complete {
		subtle.XORBytes(last[:], tail, k.sub1[:])
	} else {
		copy(last[:], tail)
		last[len(tail)] = 0x80
		subtle.XORBytes(last[:], last[:], k.sub2[:])
	}
	subtle.XORBytes(x[:], x[:], last[:])
	k.aes.Encrypt(x[:], x[:])
	return x
}

// cmacSubkeys derives K1 and K2 (RFC 4493 §2.3).
func cmacSubkeys(b cipher.Block) (k1, k2 [aes.BlockSize]byte) {
	var l [aes.BlockSize]byte
	b.Encrypt(l[:], l[:])
	k1 = double(l)
	k2 = double(k1)
	return k1, k2
}

// double is multiplication by x in GF(2^128): a left shift by one bit,
// with the constant 0x87 folded in when the top bit falls off.
func double(in [aes.BlockSize]byte) [aes.BlockSize]byte {
	var out [aes.BlockSize]byte
	for i := 0; i < aes.BlockSize-1; i++ {
		out[i] = in[i]<<1 | in[i+1]>>7
	}
	out[aes.BlockSize-1] = in[aes.BlockSize-1] << 1
	// Constant time: the mask is all ones exactly when the top bit was set.
	out[aes.BlockSize-1] ^= 0x87 & byte(int8(in[0])>>7)
	return out
}
