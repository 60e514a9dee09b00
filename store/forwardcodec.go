package store

import (
	"fmt"
	"slices"

	fastjson "github.com/goccy/go-json"
)

// Binary encodings of the forwarding payloads (issue 13). A forward is
// two raft commands (OpForward before the request leaves, then
// OpForwardResult) and its record is written by both and read back by
// the caller: as JSON, the command extension, the record and their
// ISO 8583 fields map (sorted keys, quoted numbers, a base64 card
// number) cost more CPU than the on-us post they stand beside
// (BenchmarkForward, docs/BENCHMARKS.md). Binary, like the rest of a
// command, with one encoding per value.
//
// Compatibility: a command written before carries its ForwardCommand as
// the "forward" member of the JSON extension; it still decodes (ext.go).
// A record written before is a JSON object (first byte '{'); a binary
// record starts with forwardRecordVersion, which no JSON object does.

// forwardRecordVersion is the first byte of a binary forward record.
// Version 2 appends HoldExpiry and CardHash (off-us authorizations);
// version 1 records, written before, still read, without them.
const (
	forwardRecordVersion   = 2
	forwardRecordVersionV1 = 1
)

// Kinds of a ForwardCommand, its first byte (never zero).
const (
	fwdCmdRequest = 1 << iota
	fwdCmdResult
	fwdCmdSAF
	// fwdCmdRequestCard: the request is followed by its CardHash (a
	// command written before has no such bit and no such field).
	fwdCmdRequestCard
	fwdCmdAll = fwdCmdRequest | fwdCmdResult | fwdCmdSAF | fwdCmdRequestCard
)

// fields encodes an ISO 8583 fields map in ascending field order.
func (e *enc) fields(m map[int]string) {
	e.uvar(uint64(len(m)))
	if len(m) == 0 {
		return
	}
	ids := make([]int, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		e.uvar(uint64(id))
		e.str(m[id])
	}
}

// fields reads what enc.fields wrote: at most forwardFieldsMax fields,
// ids strictly ascending (one encoding per map), none empty is allowed
// as JSON allowed it. An empty map is nil.
func (d *dec) fields() map[int]string {
	n := d.uvar()
	if d.err != nil || n == 0 {
		return nil
	}
	if n > forwardFieldsMax {
		d.fail("forward fields count")
		return nil
	}
	m := make(map[int]string, n)
	prev := -1
	for range n {
		id := d.uvar()
		v := d.str()
		if d.err != nil {
			return nil
		}
		if id > 999 || int(id) <= prev {
			d.fail("forward field id")
			return nil
		}
		prev = int(id)
		m[int(id)] = v
	}
	return m
}

// bytesMax reads a blob of at most max bytes (nil when empty), a copy.
func (d *dec) bytesMax(max int, what string) []byte {
	n := d.uvar()
	if d.err != nil {
		return nil
	}
	if n > uint64(max) || n > uint64(len(d.b)-d.off) {
		d.fail(what + " length")
		return nil
	}
	if n == 0 {
		return nil
	}
	b := slices.Clone(d.b[d.off : d.off+int(n)])
	d.off += int(n)
	return b
}

// textMax reads a string of at most max bytes (str's limit is
// stringBytesMax).
func (d *dec) textMax(max int, what string) string {
	n := d.uvar()
	if d.err != nil {
		return ""
	}
	if n > uint64(max) || n > uint64(len(d.b)-d.off) {
		d.fail(what + " length")
		return ""
	}
	v := d.s[d.off : d.off+int(n)]
	d.off += int(n)
	return v
}

func (e *enc) forwardCommand(fc *ForwardCommand) {
	var kinds byte
	if fc.Request != nil {
		kinds |= fwdCmdRequest
		if fc.Request.CardHash != "" {
			kinds |= fwdCmdRequestCard
		}
	}
	if fc.Result != nil {
		kinds |= fwdCmdResult
	}
	if fc.SAF != nil {
		kinds |= fwdCmdSAF
	}
	e.byte(kinds)
	if q := fc.Request; q != nil {
		e.str(q.Destination)
		e.str(q.Route)
		e.str(q.Debit)
		e.str(q.Credit)
		e.str(q.MTI)
		e.fields(q.Fields)
		e.blob(q.PAN)
		e.str(q.MaskedPAN)
		e.svar(q.TimeoutAt)
		e.str(q.OriginalRef)
		e.blob([]byte(q.Body))
		if q.CardHash != "" {
			e.str(q.CardHash)
		}
	}
	if a := fc.Result; a != nil {
		e.str(a.Key)
		e.str(a.Outcome)
		e.str(a.RC)
		e.str(a.AuthCode)
		e.str(a.Reason)
		e.svar(a.SAFExpiresAt)
	}
	if u := fc.SAF; u != nil {
		e.str(u.ID)
		e.str(u.Action)
		e.str(u.RC)
		e.str(u.Error)
		e.bool(u.Counts)
		e.svar(u.NextAt)
		e.uvar(uint64(len(u.IDs)))
		for _, id := range u.IDs {
			e.str(id)
		}
		e.str(u.Claim)
	}
}

func (d *dec) forwardCommand() *ForwardCommand {
	kinds := d.byte()
	if kinds == 0 || kinds&^fwdCmdAll != 0 || kinds&fwdCmdRequestCard != 0 && kinds&fwdCmdRequest == 0 {
		d.fail("forward command kinds")
		return nil
	}
	fc := new(ForwardCommand)
	if kinds&fwdCmdRequest != 0 {
		q := new(ForwardRequest)
		q.Destination = d.str()
		q.Route = d.str()
		q.Debit = d.str()
		q.Credit = d.str()
		q.MTI = d.str()
		q.Fields = d.fields()
		q.PAN = d.bytesMax(wrappedPANBytesMax, "forward card number")
		q.MaskedPAN = d.str()
		q.TimeoutAt = d.svar()
		q.OriginalRef = d.str()
		q.Body = d.textMax(ForwardBodyBytesMax, "forward body")
		if kinds&fwdCmdRequestCard != 0 {
			// One encoding per value: the bit says a hash follows, so
			// an empty one is refused.
			if q.CardHash = d.str(); q.CardHash == "" {
				d.fail("forward card hash")
			}
		}
		fc.Request = q
	}
	if kinds&fwdCmdResult != 0 {
		a := new(ForwardResult)
		a.Key = d.str()
		a.Outcome = d.str()
		a.RC = d.str()
		a.AuthCode = d.str()
		a.Reason = d.str()
		a.SAFExpiresAt = d.svar()
		fc.Result = a
	}
	if kinds&fwdCmdSAF != 0 {
		u := new(SAFUpdate)
		u.ID = d.str()
		u.Action = d.str()
		u.RC = d.str()
		u.Error = d.str()
		u.Counts = d.bool()
		u.NextAt = d.svar()
		n := d.uvar()
		if n > SAFBatchMax {
			d.fail("SAF claim count")
			return nil
		}
		if n > 0 {
			u.IDs = make([]string, n)
			for i := range u.IDs {
				u.IDs[i] = d.str()
			}
		}
		u.Claim = d.str()
		fc.SAF = u
	}
	if d.err != nil {
		return nil
	}
	return fc
}

// checkForwardCommand bounds what the decoder would refuse, so a bad
// command is refused alone by its proposer (CheckEncodable).
func checkForwardCommand(fc *ForwardCommand) error {
	long := func(ss ...string) bool {
		for _, s := range ss {
			if len(s) > stringBytesMax {
				return true
			}
		}
		return false
	}
	bad := false
	if q := fc.Request; q != nil {
		if len(q.Fields) > forwardFieldsMax || len(q.PAN) > wrappedPANBytesMax || len(q.Body) > ForwardBodyBytesMax {
			return fmt.Errorf("%w: forward request over its limits (%d fields, %d-byte card number, %d-byte body)",
				ErrInvalidCommand, len(q.Fields), len(q.PAN), len(q.Body))
		}
		for id, v := range q.Fields {
			if id < 0 || id > 999 {
				return fmt.Errorf("%w: forward field %d", ErrInvalidCommand, id)
			}
			bad = bad || long(v)
		}
		bad = bad || long(q.Destination, q.Route, q.Debit, q.Credit, q.MTI, q.MaskedPAN, q.OriginalRef, q.CardHash)
	}
	if a := fc.Result; a != nil {
		bad = bad || long(a.Key, a.Outcome, a.RC, a.AuthCode, a.Reason)
	}
	if u := fc.SAF; u != nil {
		if len(u.IDs) > SAFBatchMax {
			return fmt.Errorf("%w: SAF claim of %d entries (max %d)", ErrInvalidCommand, len(u.IDs), SAFBatchMax)
		}
		bad = bad || long(u.ID, u.Action, u.RC, u.Error, u.Claim) || long(u.IDs...)
	}
	if bad {
		return fmt.Errorf("%w: a forward string field over %d bytes", ErrInvalidCommand, stringBytesMax)
	}
	return nil
}

// encodeForward is f's record.
func encodeForward(f *Forward) []byte {
	e := enc{b: make([]byte, 0, 256+len(f.Body))}
	e.byte(forwardRecordVersion)
	for _, s := range [...]string{f.ID, f.Key, f.Partner, f.Destination, f.Route, f.Debit, f.Credit} {
		e.str(s)
	}
	e.svar(f.Amount)
	e.str(f.Currency)
	e.str(f.BusinessDay)
	e.svar(f.Time)
	e.svar(f.TimeoutAt)
	e.str(f.PayerType)
	e.ref(&f.Ref)
	e.str(f.OriginalRef)
	e.str(f.MTI)
	e.fields(f.Fields)
	e.blob(f.PAN)
	for _, s := range [...]string{f.MaskedPAN, f.State, f.RC, f.AuthCode, f.TransferID, f.Reason} {
		e.str(s)
	}
	e.svar(f.DecidedAt)
	e.str(f.SAF)
	e.bool(f.Late != nil)
	if l := f.Late; l != nil {
		e.str(l.Outcome)
		e.str(l.RC)
		e.str(l.AuthCode)
		e.svar(l.At)
	}
	e.blob([]byte(f.Body))
	e.svar(f.HoldExpiry)
	e.str(f.CardHash)
	return e.b
}

// decodeForward reads a forward record, binary or (written before)
// JSON. The strings are cut from one copy of v: the record outlives the
// pebble buffer it was read from.
func decodeForward(v []byte, f *Forward) error {
	if len(v) > 0 && v[0] == '{' {
		return fastjson.Unmarshal(v, f)
	}
	d := newDec(v)
	version := d.byte()
	if version != forwardRecordVersion && version != forwardRecordVersionV1 {
		d.fail("forward record version")
		return d.err
	}
	f.ID, f.Key, f.Partner, f.Destination = d.str(), d.str(), d.str(), d.str()
	f.Route, f.Debit, f.Credit = d.str(), d.str(), d.str()
	f.Amount = d.svar()
	f.Currency = d.str()
	f.BusinessDay = d.str()
	f.Time = d.svar()
	f.TimeoutAt = d.svar()
	f.PayerType = d.str()
	d.ref(&f.Ref)
	f.OriginalRef = d.str()
	f.MTI = d.str()
	f.Fields = d.fields()
	f.PAN = d.bytesMax(wrappedPANBytesMax, "forward card number")
	f.MaskedPAN, f.State, f.RC, f.AuthCode, f.TransferID, f.Reason = d.str(), d.str(), d.str(), d.str(), d.str(), d.str()
	f.DecidedAt = d.svar()
	f.SAF = d.str()
	f.Late = nil
	if d.bool() {
		f.Late = &LateAnswer{Outcome: d.str(), RC: d.str(), AuthCode: d.str(), At: d.svar()}
	}
	f.Body = d.textMax(ForwardBodyBytesMax, "forward body")
	f.HoldExpiry, f.CardHash = 0, ""
	if version >= 2 {
		f.HoldExpiry = d.svar()
		f.CardHash = d.str()
	}
	return d.done()
}
