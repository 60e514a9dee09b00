package codec

import (
	"errors"
	"fmt"
	"strconv"
)

// Sentinel errors. Every error this package returns wraps one of them (or
// io.EOF / io.ErrUnexpectedEOF from framing), so callers map errors to ISO
// 8583 response codes with errors.Is and a table, never by string.
var (
	// ErrFormat means the data is malformed: a bad length, a letter in a
	// numeric field, a truncated message. Answer with response code 30.
	ErrFormat = errors.New("codec: format error")
	// ErrMissingField means a field the message type requires is absent.
	ErrMissingField = errors.New("codec: missing mandatory field")
)

// FieldError says where a message went wrong: the field id (0 for the MTI,
// 1 for the bitmap) and, for wire data, the byte offset from the start of
// the message (after any frame header) at which that field begins. Offset is
// -1 when there is no wire position, e.g. for a field of a Message being
// validated by ParseRequest.
//
// A FieldError never contains the field's value: values can be PANs, track
// data or PIN blocks, and error strings end up in logs (DESIGN invariant 6).
type FieldError struct {
	Field  int
	Offset int
	Err    error
}

func (e *FieldError) Error() string {
	if e.Err == nil {
		return "codec: field " + strconv.Itoa(e.Field)
	}
	if e.Offset < 0 {
		return "codec: field " + strconv.Itoa(e.Field) + ": " + e.Err.Error()
	}
	return "codec: field " + strconv.Itoa(e.Field) + " at offset " + strconv.Itoa(e.Offset) + ": " + e.Err.Error()
}

// Unwrap returns the cause, which is or wraps ErrFormat, ErrMissingField or a
// more specific sentinel of this package (ErrInvalidPAN, ErrUnknownMTI,
// ErrUnknownCurrency, ErrInvalidAmount).
func (e *FieldError) Unwrap() error { return e.Err }

// reasonError is a cause inside a FieldError: a short, value-free reason
// that unwraps to its sentinel. It prints without the sentinel's "codec:"
// prefix because FieldError already says "codec: field N".
type reasonError struct {
	sentinel error
	reason   string
}

func (r *reasonError) Error() string { return r.reason }
func (r *reasonError) Unwrap() error { return r.sentinel }

// formatf builds a format-error reason. Arguments must be lengths, offsets
// or field ids, never field content.
func formatf(format string, args ...any) error {
	return &reasonError{sentinel: ErrFormat, reason: "format error: " + fmt.Sprintf(format, args...)}
}

// Reasons used on hot error paths (a flood of bad traffic should not cost a
// Sprintf per message).
var (
	errNotNumeric = &reasonError{ErrFormat, "format error: non-digit in numeric field"}
	errBadChar    = &reasonError{ErrFormat, "format error: character not allowed in this field"}
	errTruncated  = &reasonError{ErrFormat, "format error: message ends inside the field"}
	errBadLength  = &reasonError{ErrFormat, "format error: malformed length prefix"}
	errBadBCD     = &reasonError{ErrFormat, "format error: invalid BCD digit"}
	errBadHex     = &reasonError{ErrFormat, "format error: invalid hex digit"}
	errUndefined  = &reasonError{ErrFormat, "format error: field not defined in this dialect"}
	errTertiary   = &reasonError{ErrFormat, "format error: bit 65 (tertiary bitmap) is not supported"}
	errMissing    = &reasonError{ErrMissingField, "missing mandatory field"}
)

func fieldErr(id, off int, err error) *FieldError {
	return &FieldError{Field: id, Offset: off, Err: err}
}
