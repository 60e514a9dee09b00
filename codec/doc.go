// Package codec turns ISO 8583 bytes into messages and messages into typed
// requests, and back: framing (length headers), packing and unpacking for a
// dialect from specs/, and the typed view (Request, PAN, Response) through
// which the switch reads and writes fields.
//
// # Why our own packer
//
// The dialects are moov-io/iso8583 JSON specs, and Codec.MoovSpec gives the
// moov spec for code that uses moov directly (iso8583-connection clients).
// But moov's Message allocates a field object per value and a map per
// message (about 200 allocations and 17 µs to pack and unpack a typical 0200 on our
// 2-core machine), which is
// the whole per-request budget of a switch that batches thousands of
// requests per raft entry. Codec reads the same JSON into a flat descriptor
// table and packs into a caller's buffer without allocating; it unpacks
// with one allocation per message. Tests pin the contract: for the same
// values and spec the bytes are identical to moov's, over a corpus of
// typical messages and thousands of random ones, in every dialect, and
// Wireshark's ISO 8583 dissector decodes our traffic to the values we sent
// (for iso87binary with its binary preferences, as the dialect notes say
// it shows them).
//
// Differences from moov, all on input moov would accept but that is not
// valid ISO 8583: character classes are enforced (a letter in a numeric
// field is an error), length prefixes must be digits, BCD pad nibbles must
// be zero, trailing bytes after the last field are an error, and bit 65 (a
// tertiary bitmap) is refused. Unpacked values keep their padding ("field 4
// is 000000012345"), where moov strips it. Two BCD forms of iso87binary are
// jPOS's and moov has no encoding for them: track 2 with '=' as the nibble D
// and signed amounts as a sign byte plus BCD digits (see fieldDesc); the
// moov cross-checks leave those fields out, and TestJPOSLayout pins them.
//
// # Dialect files
//
// A dialect (specs/<name>.json) is moov-io's JSON spec format plus two keys
// per field that moov ignores:
//
//   - "class": the field's character class (n, a, an, ans, ns, z, xn, b).
//     Without it a field has its ISO 8583:1987 class (iso87Class), so the
//     standard is the default. A class that differs from the standard (our
//     dialects make the currency codes 49–51 n, stricter than "a or n", and
//     the additional data fields 44–48 ans, looser than an) is a choice
//     the dialect makes per field, and Load refuses it without a "note".
//   - "note": why the field is as it is, where the standard, jPOS
//     (ISO87APackager, ISO87BPackager), moov-io and Wireshark's dissector
//     disagree and which the dialect follows. Codec.Note returns it.
//
// Encodings: ASCII, BCD (left-padded: an odd count starts with a zero
// nibble), LBCD (right-padded, as jPOS packs LLNUM fields), Binary, and
// HexToASCII for binary fields in ASCII dialects.
//
// # Errors
//
// Errors say where (field id, byte offset) and never what: values include
// PANs and track data, and error strings end up in logs. Every error wraps
// a sentinel (ErrFormat, ErrMissingField, ErrInvalidPAN, ErrUnknownMTI,
// ErrUnknownCurrency, ErrInvalidAmount, or a framing sentinel) so the
// switch maps errors to response codes with errors.Is and one table.
package codec
