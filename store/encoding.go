package store

import (
	"encoding/binary"
	"fmt"
)

// Limits of the binary encodings. A decoder meets bytes from the raft log
// or from a snapshot; these bound what one bad length can make it allocate.
const (
	// batchVersion is the first byte of every encoded batch. A new layout
	// gets a new version; decoders keep reading every older one forever,
	// because old entries stay in raft logs and snapshots.
	batchVersion = 1
	// recordVersion is the first byte of every account, transfer and
	// idempotency record in pebble.
	recordVersion = 1
	// batchCommandsMax bounds the commands in one raft entry: the proposer
	// batches a few hundred; more would make one entry's apply stall the
	// others.
	batchCommandsMax = 1 << 16
	// stringBytesMax bounds every string field of a command or record.
	// The longest real ones (idempotency keys, card hashes) are < 200.
	stringBytesMax = 1024
	// commandBytesMin is the smallest encoding of one command; it bounds
	// the count a decoder will preallocate for from the bytes it has.
	commandBytesMin = 20
)

// enc appends the primitive encodings used by every record and batch.
type enc struct{ b []byte }

func (e *enc) byte(v byte)   { e.b = append(e.b, v) }
func (e *enc) uvar(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) svar(v int64)  { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) str(s string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(s)))
	e.b = append(e.b, s...)
}
func (e *enc) bool(v bool) {
	if v {
		e.byte(1)
	} else {
		e.byte(0)
	}
}

// dec reads what enc wrote. The first failure sticks in err and every
// later read returns zero values, so callers check err once at the end.
type dec struct {
	b []byte
	// s holds the same bytes as b. Strings are cut from it, so a whole
	// record or batch costs one allocation instead of one per field.
	s   string
	off int
	err error
	// legacy: something was read in a layout no longer written.
	legacy bool
}

func newDec(b []byte) dec { return dec{b: b, s: string(b)} }

func (d *dec) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s at offset %d", ErrCorrupt, what, d.off)
	}
}

func (d *dec) byte() byte {
	if d.err != nil || d.off >= len(d.b) {
		d.fail("byte")
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

func (d *dec) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bool")
	return false
}

func (d *dec) uvar() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 || (n > 1 && d.b[d.off+n-1] == 0) {
		// A zero last byte is a padded, non-minimal varint: rejecting it
		// keeps exactly one encoding per value.
		d.fail("uvarint")
		return 0
	}
	d.off += n
	return v
}

func (d *dec) svar() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 || (n > 1 && d.b[d.off+n-1] == 0) {
		d.fail("varint")
		return 0
	}
	d.off += n
	return v
}

func (d *dec) str() string {
	n := d.uvar()
	if d.err != nil {
		return ""
	}
	if n > stringBytesMax || n > uint64(len(d.b)-d.off) {
		d.fail("string length")
		return ""
	}
	v := d.s[d.off : d.off+int(n)]
	d.off += int(n)
	return v
}

// done fails unless every byte was consumed: trailing bytes mean the
// writer and reader disagree about the layout.
func (d *dec) done() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("trailing bytes")
	}
	return d.err
}

func (e *enc) ref(r *Ref) {
	e.str(r.MTI)
	e.str(r.ProcCode)
	e.str(r.STAN)
	e.str(r.RRN)
	e.str(r.Acquirer)
	e.str(r.Terminal)
	e.str(r.Merchant)
	e.str(r.TransmissionTime)
}

func (d *dec) ref(r *Ref) {
	r.MTI = d.str()
	r.ProcCode = d.str()
	r.STAN = d.str()
	r.RRN = d.str()
	r.Acquirer = d.str()
	r.Terminal = d.str()
	r.Merchant = d.str()
	r.TransmissionTime = d.str()
}

// account body, shared by the account record and OpCreateAccount.
func (e *enc) account(a *Account) {
	e.str(a.ID)
	e.str(string(a.Kind))
	e.str(a.Currency)
	e.str(a.Partner)
	e.str(a.CardHash)
	e.str(a.MaskedPAN)
	e.svar(a.Floor)
	e.bool(a.Unlimited)
	e.svar(a.DebitsPending)
	e.svar(a.DebitsPosted)
	e.svar(a.CreditsPending)
	e.svar(a.CreditsPosted)
}

func (d *dec) account(a *Account) {
	a.ID = d.str()
	a.Kind = AccountKind(d.str())
	a.Currency = d.str()
	a.Partner = d.str()
	a.CardHash = d.str()
	a.MaskedPAN = d.str()
	a.Floor = d.svar()
	a.Unlimited = d.bool()
	a.DebitsPending = d.svar()
	a.DebitsPosted = d.svar()
	a.CreditsPending = d.svar()
	a.CreditsPosted = d.svar()
}

func appendAccountRecord(dst []byte, a *Account) []byte {
	e := enc{b: dst}
	e.byte(recordVersion)
	e.account(a)
	return e.b
}

func decodeAccountRecord(b []byte) (Account, error) {
	d := newDec(b)
	var a Account
	if v := d.byte(); v != recordVersion {
		d.fail("account record version")
	}
	d.account(&a)
	return a, d.done()
}

// Transfer statuses as stored: a byte, not the string.
var transferStatusCodes = [...]TransferStatus{
	1: TransferPending,
	2: TransferPosted,
	3: TransferVoided,
	4: TransferExpired,
	5: TransferCompleted,
}

func transferStatusCode(s TransferStatus) byte {
	for i, v := range transferStatusCodes {
		if i > 0 && v == s {
			return byte(i)
		}
	}
	return 0
}

func appendTransferRecord(dst []byte, t *Transfer) []byte {
	e := enc{b: dst}
	e.byte(recordVersion)
	e.str(t.ID)
	e.byte(byte(t.Op))
	e.byte(transferStatusCode(t.Status))
	e.str(t.Debit)
	e.str(t.Credit)
	e.svar(t.Amount)
	e.str(t.Currency)
	e.svar(t.Held)
	e.svar(t.Captured)
	e.svar(t.Reversed)
	e.svar(t.Expiry)
	e.svar(t.Time)
	e.str(t.BusinessDay)
	e.str(t.Partner)
	e.str(t.Original)
	e.ref(&t.Ref)
	// Written only when set, so a transfer without them keeps the layout
	// (and state hash) it had before they existed.
	if t.PayerType != "" || t.Agent != "" {
		e.str(t.PayerType)
		e.str(t.Agent)
	}
	return e.b
}

func decodeTransferRecord(b []byte) (Transfer, error) {
	d := newDec(b)
	var t Transfer
	if v := d.byte(); v != recordVersion {
		d.fail("transfer record version")
	}
	t.ID = d.str()
	t.Op = Op(d.byte())
	if c := d.byte(); c > 0 && int(c) < len(transferStatusCodes) {
		t.Status = transferStatusCodes[c]
	} else {
		d.fail("transfer status")
	}
	t.Debit = d.str()
	t.Credit = d.str()
	t.Amount = d.svar()
	t.Currency = d.str()
	t.Held = d.svar()
	t.Captured = d.svar()
	t.Reversed = d.svar()
	t.Expiry = d.svar()
	t.Time = d.svar()
	t.BusinessDay = d.str()
	t.Partner = d.str()
	t.Original = d.str()
	d.ref(&t.Ref)
	if d.err == nil && d.off < len(d.b) {
		t.PayerType = d.str()
		t.Agent = d.str()
	}
	return t, d.done()
}

// idemRecord is what an idempotency key maps to.
type idemRecord struct {
	Fingerprint string
	Time        int64
	Result      Result
}

func appendIdemRecord(dst []byte, r *idemRecord) []byte {
	e := enc{b: dst}
	e.byte(recordVersion)
	e.str(r.Fingerprint)
	e.svar(r.Time)
	e.byte(byte(r.Result.Status))
	e.str(r.Result.TransferID)
	e.str(r.Result.AuthCode)
	e.svar(r.Result.Posted)
	e.svar(r.Result.Available)
	e.str(r.Result.Currency)
	e.uvar(uint64(r.Result.Expired))
	e.uvar(uint64(r.Result.Pruned))
	return e.b
}

func decodeIdemRecord(b []byte) (idemRecord, error) {
	d := newDec(b)
	var r idemRecord
	if v := d.byte(); v != recordVersion {
		d.fail("idempotency record version")
	}
	r.Fingerprint = d.str()
	r.Time = d.svar()
	r.Result.Status = Status(d.byte())
	r.Result.TransferID = d.str()
	r.Result.AuthCode = d.str()
	r.Result.Posted = d.svar()
	r.Result.Available = d.svar()
	r.Result.Currency = d.str()
	r.Result.Expired = int(d.uvar() & (1<<31 - 1))
	r.Result.Pruned = int(d.uvar() & (1<<31 - 1))
	return r, d.done()
}

// Command flag bits in an encoded batch.
const (
	flagCreditCard = 1 << iota
	flagFinal
	flagAccount
	flagNextDay // NextDay follows the account (OpCloseDay)
	flagBreak   // a BreakUpdate follows NextDay (OpBreak)
	flagPayer   // PayerType and Agent follow the BreakUpdate
	flagAdmin   // an Admin (JSON) follows PayerType
	// flagExt: a second flags byte follows (the first is full); its bits
	// are the flagExt* below, and it is never zero.
	flagExt
)

// Extended command flag bits (the byte after the flags when flagExt).
const (
	flagExtBatch        = 1 << iota // a BatchChange follows the Admin (OpPutBatch)
	flagExtStatementJob             // a StatementJob (JSON) follows the BatchChange (OpPutStatementJob)
	flagExtJSON                     // the extension object (JSON, ext.go) follows the StatementJob
	flagExtForward                  // a ForwardCommand (binary, forwardcodec.go) follows the extension object
	flagExtAll          = flagExtBatch | flagExtStatementJob | flagExtJSON | flagExtForward
)

// EncodeBatch encodes the commands of one raft log entry. The layout is
// binary and versioned (batchVersion): decoding the JSON form of a command
// costs ~10x more, and every replica decodes every entry. It fails with
// ErrInvalidCommand when the batch is empty or too large or a string field
// is longer than the decoder accepts, so a proposer learns it before the
// entry reaches the log.
func EncodeBatch(cmds []Command) ([]byte, error) {
	if len(cmds) == 0 || len(cmds) > batchCommandsMax {
		return nil, fmt.Errorf("%w: batch of %d commands (want 1..%d)", ErrInvalidCommand, len(cmds), batchCommandsMax)
	}
	e := enc{b: make([]byte, 0, 16+len(cmds)*160)}
	e.byte(batchVersion)
	e.uvar(uint64(len(cmds)))
	for i := range cmds {
		if err := checkStrings(&cmds[i]); err != nil {
			return nil, fmt.Errorf("command %d: %w", i, err)
		}
		e.command(&cmds[i])
	}
	return e.b, nil
}

func (e *enc) command(c *Command) { e.commandExt(c, c.ext(), c.Forward) }

// commandExt encodes c with extension object x and forwarding payload
// fwd (tests write the legacy layout with them: fwd inside x).
func (e *enc) commandExt(c *Command, x *cmdExt, fwd *ForwardCommand) {
	e.byte(byte(c.Op))
	e.str(c.Key)
	e.str(c.Fingerprint)
	e.svar(c.Time)
	e.str(c.BusinessDay)
	e.str(c.Partner)
	e.str(c.Card)
	var flags byte
	if c.CreditCard {
		flags |= flagCreditCard
	}
	if c.Final {
		flags |= flagFinal
	}
	if c.Account != nil {
		flags |= flagAccount
	}
	if c.NextDay != "" {
		flags |= flagNextDay
	}
	if c.Break != nil {
		flags |= flagBreak
	}
	if c.PayerType != "" || c.Agent != "" {
		flags |= flagPayer
	}
	if c.Admin != nil {
		flags |= flagAdmin
	}
	var ext byte
	if c.Batch != nil {
		ext |= flagExtBatch
	}
	if c.StatementJob != nil {
		ext |= flagExtStatementJob
	}
	if x != nil {
		ext |= flagExtJSON
	}
	if fwd != nil {
		ext |= flagExtForward
	}
	if ext != 0 {
		flags |= flagExt
	}
	e.byte(flags)
	if ext != 0 {
		e.byte(ext)
	}
	e.str(c.Debit)
	e.str(c.Credit)
	e.svar(c.Amount)
	e.str(c.Currency)
	e.svar(c.HoldExpiry)
	e.str(c.Original)
	e.str(c.OriginalRef)
	e.ref(&c.Ref)
	e.svar(c.RetainAfter)
	if c.Account != nil {
		e.account(c.Account)
	}
	if c.NextDay != "" {
		e.str(c.NextDay)
	}
	if c.Break != nil {
		e.breakUpdate(c.Break)
	}
	if c.PayerType != "" || c.Agent != "" {
		e.str(c.PayerType)
		e.str(c.Agent)
	}
	if c.Admin != nil {
		e.blob(adminJSON(c.Admin))
	}
	if c.Batch != nil {
		e.batchChange(c.Batch)
	}
	if c.StatementJob != nil {
		e.blob(statementJobJSON(c.StatementJob))
	}
	if x != nil {
		e.blob(extJSON(x)) // ext.go
	}
	if fwd != nil {
		e.forwardCommand(fwd) // forwardcodec.go
	}
}

// CheckEncodable reports whether c can go into EncodeBatch (every string
// field within the decoder's limit), so a proposer can refuse one bad
// command alone instead of failing the whole batch it would join. It wraps
// ErrInvalidCommand.
func (c *Command) CheckEncodable() error { return checkStrings(c) }

func checkStrings(c *Command) error {
	strs := [...]string{c.PayerType, c.Agent, c.NextDay, c.Key, c.Fingerprint, c.BusinessDay, c.Partner, c.Card, c.Debit, c.Credit,
		c.Currency, c.Original, c.OriginalRef, c.Ref.MTI, c.Ref.ProcCode, c.Ref.STAN, c.Ref.RRN,
		c.Ref.Acquirer, c.Ref.Terminal, c.Ref.Merchant, c.Ref.TransmissionTime}
	for _, s := range strs {
		if len(s) > stringBytesMax {
			return fmt.Errorf("%w: string field of %d bytes (max %d)", ErrInvalidCommand, len(s), stringBytesMax)
		}
	}
	if b := c.Break; b != nil {
		for _, s := range [...]string{b.Recon, b.Break, string(b.Action), b.Assignee, b.Note, b.Actor} {
			if len(s) > stringBytesMax {
				return fmt.Errorf("%w: break string field of %d bytes (max %d)", ErrInvalidCommand, len(s), stringBytesMax)
			}
		}
	}
	if c.Webhook != nil {
		if n := len(mustJSON(c.Webhook)); n > webhookAttemptBytesMax {
			return fmt.Errorf("%w: webhook attempt of %d bytes (max %d)", ErrInvalidCommand, n, webhookAttemptBytesMax)
		}
	}
	if c.Batch != nil {
		if n := batchChangeBytes(c.Batch); n > BatchCommandBytesMax {
			return fmt.Errorf("%w: batch change of %d bytes (max %d)", ErrInvalidCommand, n, BatchCommandBytesMax)
		}
		if err := checkBatchStrings(c.Batch); err != nil {
			return err
		}
	}
	if c.StatementJob != nil {
		if n := len(statementJobJSON(c.StatementJob)); n > statementJobBytesMax {
			return fmt.Errorf("%w: statement job of %d bytes (max %d)", ErrInvalidCommand, n, statementJobBytesMax)
		}
	}
	if c.Admin != nil {
		if n := len(adminJSON(c.Admin)); n > adminBytesMax {
			return fmt.Errorf("%w: admin change of %d bytes (max %d)", ErrInvalidCommand, n, adminBytesMax)
		}
	}
	if x := c.ext(); x != nil {
		if n := len(extJSON(x)); n > extBytesMax {
			return fmt.Errorf("%w: extension of %d bytes (max %d)", ErrInvalidCommand, n, extBytesMax)
		}
	}
	if c.Forward != nil {
		if err := checkForwardCommand(c.Forward); err != nil { // forwardcodec.go
			return err
		}
	}
	if a := c.Account; a != nil {
		for _, s := range [...]string{a.ID, string(a.Kind), a.Currency, a.Partner, a.CardHash, a.MaskedPAN} {
			if len(s) > stringBytesMax {
				return fmt.Errorf("%w: account string field of %d bytes (max %d)", ErrInvalidCommand, len(s), stringBytesMax)
			}
		}
	}
	return nil
}

// batchLen is how many commands an encoded batch says it holds (0 when it
// is no batch); a size hint only, DecodeBatch checks it.
func batchLen(data []byte) int {
	if len(data) < 2 || data[0] != batchVersion {
		return 0
	}
	n, w := binary.Uvarint(data[1:])
	if w <= 0 || n > batchCommandsMax {
		return 0
	}
	return int(n)
}

// DecodeBatch decodes what EncodeBatch wrote. Any malformed input gives an
// error wrapping ErrCorrupt; it never panics and allocates at most in
// proportion to len(data).
func DecodeBatch(data []byte) ([]Command, error) {
	cmds, _, err := decodeBatch(data)
	return cmds, err
}

// decodeBatch is DecodeBatch; legacy says a command carried a layout
// that is read but no longer written (a JSON ForwardCommand, ext.go), so
// re-encoding the commands gives other bytes for the same commands.
func decodeBatch(data []byte) ([]Command, bool, error) {
	d := newDec(data)
	if v := d.byte(); d.err == nil && v != batchVersion {
		return nil, false, fmt.Errorf("%w: batch version %d", ErrCorrupt, v)
	}
	n := d.uvar()
	if d.err != nil {
		return nil, false, d.err
	}
	if n == 0 || n > batchCommandsMax || n > uint64(len(data)/commandBytesMin) {
		return nil, false, fmt.Errorf("%w: batch of %d commands in %d bytes", ErrCorrupt, n, len(data))
	}
	cmds := make([]Command, n)
	for i := range cmds {
		d.command(&cmds[i])
		if d.err != nil {
			return nil, false, d.err
		}
	}
	if err := d.done(); err != nil {
		return nil, false, err
	}
	return cmds, d.legacy, nil
}

func (d *dec) command(c *Command) {
	c.Op = Op(d.byte())
	c.Key = d.str()
	c.Fingerprint = d.str()
	c.Time = d.svar()
	c.BusinessDay = d.str()
	c.Partner = d.str()
	c.Card = d.str()
	flags := d.byte()
	var ext byte
	if flags&flagExt != 0 {
		if ext = d.byte(); ext == 0 || ext&^flagExtAll != 0 {
			d.fail("command extended flags") // one encoding per value: no empty second byte
		}
	}
	c.CreditCard = flags&flagCreditCard != 0
	c.Final = flags&flagFinal != 0
	c.Debit = d.str()
	c.Credit = d.str()
	c.Amount = d.svar()
	c.Currency = d.str()
	c.HoldExpiry = d.svar()
	c.Original = d.str()
	c.OriginalRef = d.str()
	d.ref(&c.Ref)
	c.RetainAfter = d.svar()
	if flags&flagAccount != 0 {
		c.Account = new(Account)
		d.account(c.Account)
	}
	if flags&flagNextDay != 0 {
		if c.NextDay = d.str(); c.NextDay == "" {
			d.fail("next day") // one encoding per value: empty means no flag
		}
	}
	if flags&flagBreak != 0 {
		c.Break = new(BreakUpdate)
		d.breakUpdate(c.Break)
	}
	if flags&flagPayer != 0 {
		c.PayerType = d.str()
		c.Agent = d.str()
		if c.PayerType == "" && c.Agent == "" {
			d.fail("payer") // one encoding per value
		}
	}
	if flags&flagAdmin != 0 {
		c.Admin = decodeAdmin(d)
	}
	if ext&flagExtBatch != 0 {
		c.Batch = d.batchChange()
	}
	if ext&flagExtStatementJob != 0 {
		c.StatementJob = decodeStatementJob(d)
	}
	if ext&flagExtJSON != 0 {
		if x := decodeExt(d); x != nil {
			x.apply(c)
		}
	}
	if ext&flagExtForward != 0 {
		if c.Forward != nil {
			d.fail("forward command twice") // the extension's legacy member and the binary one
			return
		}
		c.Forward = d.forwardCommand()
	}
}
