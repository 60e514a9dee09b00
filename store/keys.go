package store

import (
	"encoding/binary"
)

// Keyspace. Every key starts with one prefix byte naming its table; see
// DESIGN.md for why each exists. Prefix values are stable (they are in
// snapshots and in the state hash).
const (
	pfxMeta        = 'm' // m<name> → meta values (applied index, transfer sequence)
	pfxAccount     = 'a' // a<account id> → account record
	pfxCard        = 'c' // c<card hash> → account id
	pfxTransfer    = 't' // t<transfer id> → transfer record
	pfxOrigRef     = 'o' // o<original ref> → transfer id
	pfxExpiry      = 'x' // x<expiry u64><transfer id> → "" (pending holds only)
	pfxIdem        = 'i' // i<idempotency key> → idempotency record
	pfxIdemTime    = 'j' // j<time u64><idempotency key> → ""
	pfxByAccount   = 'A' // A<account id>\x00<transfer id> → ""
	pfxByDayPartnr = 'P' // P<business day>\x00<partner>\x00<transfer id> → ""
)

// sep separates variable-length components inside index keys. Ids that
// take part in index keys may not contain it (validated on apply), so the
// prefix of one id is never confused with another id.
const sep = 0x00

var (
	keyApplied  = []byte{pfxMeta, 'a', 'p', 'p', 'l', 'i', 'e', 'd'}
	keySequence = []byte{pfxMeta, 's', 'e', 'q'}
)

func key1(pfx byte, id string) []byte {
	k := make([]byte, 0, 1+len(id))
	k = append(k, pfx)
	return append(k, id...)
}

// orderedTime maps a signed time to 8 bytes whose lexical order is the
// numeric order (the sign bit is flipped), so index scans run in time order.
func orderedTime(dst []byte, t int64) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(t)^(1<<63))
}

func keyTimed(pfx byte, t int64, id string) []byte {
	k := make([]byte, 0, 9+len(id))
	k = append(k, pfx)
	k = orderedTime(k, t)
	return append(k, id...)
}

// timedBound is the first key of table pfx at time t: every entry with a
// time < t sorts before it.
func timedBound(pfx byte, t int64) []byte {
	return orderedTime([]byte{pfx}, t)
}

func keyIndex(pfx byte, parts ...string) []byte {
	n := 1
	for _, p := range parts {
		n += len(p) + 1
	}
	k := make([]byte, 0, n)
	k = append(k, pfx)
	for i, p := range parts {
		if i > 0 {
			k = append(k, sep)
		}
		k = append(k, p...)
	}
	return k
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}

// String forms of the keys, for the apply path: its overlay is a map keyed
// by string, and building the string directly saves a conversion (an
// allocation) per key.

func pfxString(pfx byte) string { return string([]byte{pfx}) } // one byte: no allocation

func skey1(pfx byte, id string) string { return pfxString(pfx) + id }

func skeyIndex2(pfx byte, a, b string) string { return pfxString(pfx) + a + "\x00" + b }

func skeyIndex3(pfx byte, a, b, c string) string {
	return pfxString(pfx) + a + "\x00" + b + "\x00" + c
}

func skeyTimed(pfx byte, t int64, id string) string {
	var b [9]byte
	b[0] = pfx
	orderedTime(b[:1], t)
	return string(b[:]) + id
}
