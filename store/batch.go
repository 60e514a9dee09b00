package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

// Payment batches (issue 12): a partner's batch of payments is replicated
// state, so every node knows it, before and after a restart. The batch
// record holds the items as the partner sent them (so any node can
// rebuild each item's payment and its fingerprint), the POST's idempotency
// key and digest, and the origin the POST was admitted from. An item's
// status is not kept here: it is the item payment's own idempotency
// record (the core's), read by whoever shows the batch. Only what no
// record holds is written back by a completion: the items refused before
// they reached the ledger (an unknown account, a suspended partner).

// OpPutBatch creates a batch (Command.Batch without Done) or marks it
// completed (Done, with its refusals). Idempotent by Key; a second batch
// under an existing (partner, id) is StatusExists and not stored.
const OpPutBatch Op = 22

// Keyspace of batches.
const (
	pfxBatch     = 'n' // n<partner>\x00<batch id> → batch record; n<partner>\x00<batch id>\x00<chunk u16 BE> → items
	pfxBatchOpen = 'N' // N<partner>\x00<batch id> → "" while the batch is not completed
)

// Limits of batches.
const (
	// BatchItemsMax bounds one batch (the 10,000).
	BatchItemsMax = 10_000
	// batchChunkItems is how many items one pebble value holds: ~60 KiB
	// chunks, so a page of items reads one or two values, not the batch.
	batchChunkItems = 500
	// batchItemFieldBytesMax bounds each string of an item (the API's
	// schema allows at most 64).
	batchItemFieldBytesMax = 64
	// batchRefusalBytesMax bounds a refusal's strings (a problem's type,
	// title and detail).
	batchRefusalBytesMax = 512
	// batchRefusalsMax bounds the distinct refusals of one batch (items
	// refused alike share one).
	batchRefusalsMax = 256 // the API's batchRefusalsMax
	// BatchCommandBytesMax bounds one encoded batch change: 10,000 items
	// of the API's largest shape (every field at its maxLength) measured
	// 1.96 MB, typical items 0.28 MB (TestBatchCommandSize); one raft
	// entry stays under raft-wal's 4 MiB minimum segment and far under
	// the forward frame (32 MiB), so the items need no second command.
	BatchCommandBytesMax = 2 << 20
)

// BatchItem is one payment of a batch, as the partner sent it.
type BatchItem struct {
	Amount, Currency, Debtor, Reference, BillType, PayerType string
}

// BatchOrigin is where the batch's POST came from (payment.Origin): its
// items are admitted as coming from there, however late they are made.
type BatchOrigin struct {
	Lane, Source, CertPin string
	// CertAt is when the client certificate was presented, unix ns.
	CertAt int64
}

// BatchRefusal is why some items were refused before the ledger decided
// them: the problem the API answers (type, title, HTTP status, detail).
type BatchRefusal struct {
	Type, Title, Detail string
	Status              int
	// Items are the indexes refused so, ascending.
	Items []int
}

// BatchChange is Command.Batch: a new batch, or its completion.
type BatchChange struct {
	ID string
	// A new batch: the POST's Idempotency-Key, the digest of its items
	// (so a re-POST after the key's record was pruned is still told
	// apart), its origin and items.
	Request, Digest string
	Origin          BatchOrigin
	Items           []BatchItem
	// Done completes the batch: how many items were made and how many
	// failed (every item is one or the other, so a completed batch is
	// counted without reading its items' records), and the items refused
	// before the ledger.
	Done              bool
	Completed, Failed int
	Refused           []BatchRefusal
}

// Batch is a stored batch, without its items (BatchItems).
type Batch struct {
	Partner, ID     string
	Request, Digest string
	Origin          BatchOrigin
	Items           int
	// Time is when it was accepted (the command's time).
	Time              int64
	Done              bool
	Completed, Failed int
	Refused           []BatchRefusal
}

// BatchRef names a batch.
type BatchRef struct{ Partner, ID string }

func batchKey(partner, id string) string { return skey1(pfxBatch, partner+"\x00"+id) }

func batchChunkKey(partner, id string, chunk int) string {
	return batchKey(partner, id) + "\x00" + string(binary.BigEndian.AppendUint16(nil, uint16(chunk)))
}

func (e *enc) batchItem(it *BatchItem) {
	e.str(it.Amount)
	e.str(it.Currency)
	e.str(it.Debtor)
	e.str(it.Reference)
	e.str(it.BillType)
	e.str(it.PayerType)
}

func (d *dec) batchItem(it *BatchItem) {
	it.Amount, it.Currency, it.Debtor = d.str(), d.str(), d.str()
	it.Reference, it.BillType, it.PayerType = d.str(), d.str(), d.str()
}

func (e *enc) batchOrigin(o *BatchOrigin) {
	e.str(o.Lane)
	e.str(o.Source)
	e.str(o.CertPin)
	e.svar(o.CertAt)
}

func (d *dec) batchOrigin(o *BatchOrigin) {
	o.Lane, o.Source, o.CertPin = d.str(), d.str(), d.str()
	o.CertAt = d.svar()
}

func (e *enc) refusals(rs []BatchRefusal) {
	e.uvar(uint64(len(rs)))
	for i := range rs {
		r := &rs[i]
		e.str(r.Type)
		e.str(r.Title)
		e.str(r.Detail)
		e.uvar(uint64(r.Status))
		e.uvar(uint64(len(r.Items)))
		prev := -1
		for _, ix := range r.Items {
			e.uvar(uint64(ix - prev)) // ascending: deltas of 1 are one byte
			prev = ix
		}
	}
}

func (d *dec) refusals() []BatchRefusal {
	n := d.uvar()
	if d.err != nil || n == 0 {
		return nil
	}
	if n > batchRefusalsMax {
		d.fail("batch refusals")
		return nil
	}
	rs := make([]BatchRefusal, n)
	for i := range rs {
		r := &rs[i]
		r.Type, r.Title, r.Detail = d.str(), d.str(), d.str()
		r.Status = int(d.uvar() & 0xffff)
		m := d.uvar()
		if d.err != nil || m == 0 || m > BatchItemsMax || m > uint64(len(d.b)-d.off) {
			d.fail("batch refusal items")
			return nil
		}
		r.Items = make([]int, m)
		prev := -1
		for j := range r.Items {
			delta := d.uvar()
			if delta == 0 || delta > BatchItemsMax {
				d.fail("batch refusal item")
				return nil
			}
			prev += int(delta)
			r.Items[j] = prev
		}
	}
	return rs
}

// batchChange follows the command's extended flags (flagExtBatch).
func (e *enc) batchChange(b *BatchChange) {
	e.str(b.ID)
	e.bool(b.Done)
	if b.Done {
		e.uvar(uint64(b.Completed))
		e.uvar(uint64(b.Failed))
		e.refusals(b.Refused)
		return
	}
	e.str(b.Request)
	e.str(b.Digest)
	e.batchOrigin(&b.Origin)
	e.uvar(uint64(len(b.Items)))
	for i := range b.Items {
		e.batchItem(&b.Items[i])
	}
}

func (d *dec) batchChange() *BatchChange {
	b := &BatchChange{ID: d.str(), Done: d.bool()}
	if b.Done {
		b.Completed = int(d.uvar() & (1<<31 - 1))
		b.Failed = int(d.uvar() & (1<<31 - 1))
		b.Refused = d.refusals()
		return b
	}
	b.Request, b.Digest = d.str(), d.str()
	d.batchOrigin(&b.Origin)
	n := d.uvar()
	// Six length bytes at least per item: a count beyond what the bytes
	// can hold is corrupt before anything is allocated for it.
	if d.err != nil || n > BatchItemsMax || n > uint64(len(d.b)-d.off)/6 {
		d.fail("batch items")
		return b
	}
	if n > 0 {
		b.Items = make([]BatchItem, n)
		for i := range b.Items {
			d.batchItem(&b.Items[i])
		}
	}
	return b
}

func batchChangeBytes(b *BatchChange) int {
	e := enc{}
	e.batchChange(b)
	return len(e.b)
}

func appendBatchRecord(dst []byte, b *Batch) []byte {
	e := enc{b: dst}
	e.byte(recordVersion)
	e.str(b.Request)
	e.str(b.Digest)
	e.batchOrigin(&b.Origin)
	e.uvar(uint64(b.Items))
	e.svar(b.Time)
	e.bool(b.Done)
	e.uvar(uint64(b.Completed))
	e.uvar(uint64(b.Failed))
	e.refusals(b.Refused)
	return e.b
}

func decodeBatchRecord(v []byte) (Batch, error) {
	d := newDec(v)
	var b Batch
	if d.byte() != recordVersion {
		d.fail("batch record version")
	}
	b.Request, b.Digest = d.str(), d.str()
	d.batchOrigin(&b.Origin)
	b.Items = int(d.uvar() & (1<<31 - 1))
	b.Time = d.svar()
	b.Done = d.bool()
	b.Completed = int(d.uvar() & (1<<31 - 1))
	b.Failed = int(d.uvar() & (1<<31 - 1))
	b.Refused = d.refusals()
	return b, d.done()
}

func appendBatchChunk(dst []byte, items []BatchItem) []byte {
	e := enc{b: dst}
	e.byte(recordVersion)
	e.uvar(uint64(len(items)))
	for i := range items {
		e.batchItem(&items[i])
	}
	return e.b
}

func decodeBatchChunk(v []byte) ([]BatchItem, error) {
	d := newDec(v)
	if d.byte() != recordVersion {
		d.fail("batch chunk version")
	}
	n := d.uvar()
	if d.err == nil && (n == 0 || n > batchChunkItems) {
		d.fail("batch chunk items")
	}
	if d.err != nil {
		return nil, d.err
	}
	items := make([]BatchItem, n)
	for i := range items {
		d.batchItem(&items[i])
	}
	return items, d.done()
}

func validBatchItem(it *BatchItem) bool {
	for _, s := range [...]string{it.Amount, it.Currency, it.Debtor, it.Reference, it.BillType, it.PayerType} {
		if len(s) > batchItemFieldBytesMax {
			return false
		}
	}
	return it.Amount != "" && it.Currency != "" && it.Debtor != "" && it.Reference != ""
}

// validRefusals: at most failed items refused, each once, in range.
func validRefusals(rs []BatchRefusal, items, failed int) bool {
	if len(rs) > batchRefusalsMax {
		return false
	}
	n := 0
	for _, r := range rs {
		n += len(r.Items)
	}
	if n > failed {
		return false
	}
	seen := make(map[int]bool)
	for _, r := range rs {
		if r.Type == "" || len(r.Type)+len(r.Title)+len(r.Detail) > batchRefusalBytesMax || r.Status < 400 || r.Status > 599 || len(r.Items) == 0 {
			return false
		}
		for j, ix := range r.Items {
			if ix < 0 || ix >= items || seen[ix] || (j > 0 && ix <= r.Items[j-1]) {
				return false
			}
			seen[ix] = true
		}
	}
	return true
}

// putBatch applies OpPutBatch.
func (t *txn) putBatch(c *Command) Result {
	b := c.Batch
	if b == nil || !validID(c.Partner) || !validID(b.ID) || len(b.ID) > batchItemFieldBytesMax {
		return invalid()
	}
	k := batchKey(c.Partner, b.ID)
	v, exists := t.get(k)
	if b.Done {
		if !exists {
			return Result{Status: StatusNotFound}
		}
		rec, err := decodeBatchRecord(v)
		mustDecode(err)
		if len(b.Items) > 0 || b.Completed < 0 || b.Failed < 0 || b.Completed+b.Failed != rec.Items ||
			!validRefusals(b.Refused, rec.Items, b.Failed) {
			return invalid()
		}
		if rec.Done {
			return Result{Status: StatusOK} // completed already: the first completion stands
		}
		rec.Done, rec.Completed, rec.Failed, rec.Refused = true, b.Completed, b.Failed, cloneRefusals(b.Refused)
		t.set(k, appendBatchRecord(nil, &rec))
		t.del(skey1(pfxBatchOpen, c.Partner+"\x00"+b.ID))
		return Result{Status: StatusOK}
	}
	if len(b.Items) == 0 || len(b.Items) > BatchItemsMax || len(b.Refused) > 0 || b.Request == "" || b.Digest == "" {
		return invalid()
	}
	for i := range b.Items {
		if !validBatchItem(&b.Items[i]) {
			return invalid()
		}
	}
	if exists {
		return Result{Status: StatusExists}
	}
	rec := Batch{Request: strings.Clone(b.Request), Digest: strings.Clone(b.Digest), Items: len(b.Items), Time: c.Time,
		Origin: BatchOrigin{Lane: strings.Clone(b.Origin.Lane), Source: strings.Clone(b.Origin.Source),
			CertPin: strings.Clone(b.Origin.CertPin), CertAt: b.Origin.CertAt}}
	t.set(k, appendBatchRecord(nil, &rec))
	for i := 0; i*batchChunkItems < len(b.Items); i++ {
		chunk := b.Items[i*batchChunkItems : min((i+1)*batchChunkItems, len(b.Items))]
		t.set(batchChunkKey(c.Partner, b.ID, i), appendBatchChunk(nil, chunk))
	}
	t.set(skey1(pfxBatchOpen, c.Partner+"\x00"+b.ID), []byte{})
	return Result{Status: StatusOK}
}

func cloneRefusals(rs []BatchRefusal) []BatchRefusal {
	out := make([]BatchRefusal, len(rs))
	for i, r := range rs {
		out[i] = BatchRefusal{Type: strings.Clone(r.Type), Title: strings.Clone(r.Title), Detail: strings.Clone(r.Detail),
			Status: r.Status, Items: slices.Clone(r.Items)}
	}
	return out
}

// Batch returns partner's batch id (without its items), or ErrNotFound.
func (s *Store) Batch(partner, id string) (Batch, error) {
	var b Batch
	err := s.read(func(db *pebble.DB) (err error) {
		b, err = getRecord(db, []byte(batchKey(partner, id)), decodeBatchRecord)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return Batch{}, fmt.Errorf("batch %q: %w", id, ErrNotFound)
	}
	b.Partner, b.ID = partner, id
	return b, err
}

// BatchItems returns items [from, from+n) of partner's batch id (fewer
// at its end), reading only the chunks that hold them.
func (s *Store) BatchItems(partner, id string, from, n int) ([]BatchItem, error) {
	if from < 0 || n <= 0 {
		return nil, nil
	}
	var out []BatchItem
	err := s.read(func(db *pebble.DB) error {
		for c := from / batchChunkItems; len(out) < n; c++ {
			items, err := getRecord(db, []byte(batchChunkKey(partner, id, c)), decodeBatchChunk)
			if errors.Is(err, ErrNotFound) {
				return nil // past the last chunk
			}
			if err != nil {
				return err
			}
			lo := max(from-c*batchChunkItems, 0)
			if lo >= len(items) {
				return nil
			}
			out = append(out, items[lo:min(len(items), lo+n-len(out))]...)
		}
		return nil
	})
	return out, err
}

// OpenBatches returns up to limit batches not completed, in key order,
// after the one named by after (zero: from the first).
func (s *Store) OpenBatches(after BatchRef, limit int) ([]BatchRef, error) {
	limit = clampLimit(limit)
	var out []BatchRef
	err := s.read(func(db *pebble.DB) error {
		lo := []byte{pfxBatchOpen}
		if after.Partner != "" {
			lo = append(key1(pfxBatchOpen, after.Partner+"\x00"+after.ID), 0)
		}
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd([]byte{pfxBatchOpen})})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
			p, id, found := strings.Cut(string(it.Key()[1:]), "\x00")
			if !found {
				return fmt.Errorf("%w: open batch key", ErrCorrupt)
			}
			out = append(out, BatchRef{Partner: p, ID: id})
		}
		return it.Error()
	})
	return out, err
}

// checkBatchStrings is checkStrings for a batch change: every string
// within what the decoder accepts.
func checkBatchStrings(b *BatchChange) error {
	strs := []string{b.ID, b.Request, b.Digest, b.Origin.Lane, b.Origin.Source, b.Origin.CertPin}
	for _, r := range b.Refused {
		strs = append(strs, r.Type, r.Title, r.Detail)
	}
	for i := range b.Items {
		it := &b.Items[i]
		strs = append(strs, it.Amount, it.Currency, it.Debtor, it.Reference, it.BillType, it.PayerType)
	}
	for _, s := range strs {
		if len(s) > stringBytesMax {
			return fmt.Errorf("%w: batch string field of %d bytes (max %d)", ErrInvalidCommand, len(s), stringBytesMax)
		}
	}
	if len(b.Items) > BatchItemsMax || len(b.Refused) > batchRefusalsMax {
		return fmt.Errorf("%w: batch of %d items, %d refusals (max %d, %d)", ErrInvalidCommand, len(b.Items), len(b.Refused), BatchItemsMax, batchRefusalsMax)
	}
	return nil
}
