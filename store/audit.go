package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// The audit chain: every administrative change appends one record in the
// apply that makes the change. Each record's hash is SHA-256 of the
// previous record's hash and the record's canonical form, so changing,
// dropping or reordering a stored record breaks every hash after it; the
// head (last sequence and hash) is a key like any other, hence part of
// every replica's state hash.

const (
	pfxAudit = 'u' // u<seq u64 BE> → audit record (JSON)
	// auditScanMax bounds one audit listing.
	auditScanMax = 1000
)

var keyAuditHead = []byte{pfxMeta, 'a', 'u', 'd'}

// AuditRecord is one administrative change.
type AuditRecord struct {
	Seq uint64 `json:"seq"`
	// Time is the command's time (proposer clock), unix nanoseconds.
	Time   int64  `json:"time"`
	Actor  string `json:"actor"`
	Remote string `json:"remote,omitempty"`
	Action string `json:"action"`
	Object string `json:"object"`
	// Before and After are the object's records (absent when it did not
	// exist before or does not after).
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after,omitempty"`
	Reason string          `json:"reason,omitempty"`
	// Key is the idempotency key of the command.
	Key string `json:"key,omitempty"`
	// Prev is the previous record's hash (hex; zeros for the first), Hash
	// this one's.
	Prev string `json:"prev"`
	Hash string `json:"hash"`
}

// canonical is what the hash covers: every field but Hash, in a fixed
// order (encoding/json writes struct fields in declaration order).
func (r *AuditRecord) canonical() []byte {
	c := *r
	c.Hash = ""
	b, err := json.Marshal(&c)
	if err != nil {
		panic(err)
	}
	return b
}

func chainHash(prev [32]byte, canonical []byte) [32]byte {
	h := sha256.New()
	h.Write(prev[:])
	h.Write(canonical)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func auditKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{pfxAudit}, seq)
}

type auditHead struct {
	seq  uint64
	hash [32]byte
}

func decodeAuditHead(v []byte) (auditHead, error) {
	if len(v) != 40 {
		return auditHead{}, fmt.Errorf("%w: audit head of %d bytes", ErrCorrupt, len(v))
	}
	var h auditHead
	h.seq = binary.BigEndian.Uint64(v)
	copy(h.hash[:], v[8:])
	return h, nil
}

func (t *txn) loadAuditHead() {
	if t.auditLoaded {
		return
	}
	t.auditLoaded = true
	if v, ok := t.get(string(keyAuditHead)); ok {
		h, err := decodeAuditHead(v)
		mustDecode(err)
		t.audit = h
	}
}

// actorOf is who asked for c: the admin's actor, a break update's actor,
// or the switch itself (a cutover's day close, seeding).
func actorOf(c *Command) (actor, remote, reason string) {
	switch {
	case c.Admin != nil:
		return c.Admin.Actor, c.Admin.Remote, c.Admin.Reason
	case c.Break != nil && c.Break.Actor != "":
		return c.Break.Actor, "", c.Break.Note
	}
	return "system", "", ""
}

// appendAudit appends one record for c's change of object.
func (t *txn) appendAudit(c *Command, action, object string, before, after json.RawMessage) {
	t.loadAuditHead()
	actor, remote, reason := actorOf(c)
	r := AuditRecord{
		Seq: t.audit.seq + 1, Time: c.Time, Actor: actor, Remote: remote, Action: action, Object: object,
		Before: before, After: after, Reason: reason, Key: c.Key, Prev: hex.EncodeToString(t.audit.hash[:]),
	}
	sum := chainHash(t.audit.hash, r.canonical())
	r.Hash = hex.EncodeToString(sum[:])
	t.set(string(auditKey(r.Seq)), mustJSON(&r))
	t.audit = auditHead{seq: r.Seq, hash: sum}
	head := make([]byte, 0, 40)
	head = binary.BigEndian.AppendUint64(head, r.Seq)
	head = append(head, sum[:]...)
	t.set(string(keyAuditHead), head)
}

// AuditFilter selects audit records. Empty fields match all.
type AuditFilter struct {
	Object string
	// From and To bound the record time, unix nanoseconds (To exclusive;
	// 0: no bound).
	From, To int64
	// After is the last sequence of the previous page; Limit caps the page.
	After uint64
	Limit int
}

// Audit returns the records that match f, in sequence order.
func (s *Store) Audit(f AuditFilter) ([]AuditRecord, error) {
	limit := f.Limit
	if limit <= 0 || limit > auditScanMax {
		limit = auditScanMax
	}
	var out []AuditRecord
	err := s.read(func(db *pebble.DB) error {
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: auditKey(f.After + 1), UpperBound: prefixEnd([]byte{pfxAudit})})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
			var r AuditRecord
			if err := json.Unmarshal(it.Value(), &r); err != nil {
				return fmt.Errorf("%w: audit record: %v", ErrCorrupt, err)
			}
			if f.Object != "" && r.Object != f.Object || f.From != 0 && r.Time < f.From || f.To != 0 && r.Time >= f.To {
				continue
			}
			out = append(out, r)
		}
		return it.Error()
	})
	return out, err
}

// AuditVerdict is what VerifyAudit found.
type AuditVerdict struct {
	OK      bool   `json:"ok"`
	Records uint64 `json:"records"`
	Head    string `json:"head"`
	// AppliedIndex is the raft index the verified state is at.
	AppliedIndex uint64 `json:"applied_index"`
	// BadSeq is the first record that does not match (0 when OK), Problem
	// says how.
	BadSeq  uint64 `json:"bad_seq,omitempty"`
	Problem string `json:"problem,omitempty"`
}

// ErrAuditBroken is returned by nothing: VerifyAudit reports a broken chain
// in its verdict. It is here for callers that turn a verdict into an error.
var ErrAuditBroken = errors.New("store: audit chain broken")

// VerifyAudit recomputes the whole chain from a consistent snapshot: each
// record's sequence follows the last, its Prev is the last hash, its Hash
// is recomputed from its content, and the head names the last record.
func (s *Store) VerifyAudit() (AuditVerdict, error) {
	var v AuditVerdict
	err := s.read(func(db *pebble.DB) error {
		snap := db.NewSnapshot()
		defer snap.Close()
		idx, err := readApplied(snap)
		if err != nil {
			return err
		}
		v.AppliedIndex = idx
		var prev [32]byte
		var seq uint64
		bad := func(n uint64, format string, args ...any) {
			if v.BadSeq == 0 && v.Problem == "" {
				v.BadSeq, v.Problem = n, fmt.Sprintf(format, args...)
			}
		}
		it, err := snap.NewIter(&pebble.IterOptions{LowerBound: []byte{pfxAudit}, UpperBound: prefixEnd([]byte{pfxAudit})})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok && v.Problem == ""; ok = it.Next() {
			k := it.Key()
			if len(k) != 9 {
				bad(seq+1, "key %x is no audit key", k)
				break
			}
			n := binary.BigEndian.Uint64(k[1:])
			var r AuditRecord
			if err := json.Unmarshal(it.Value(), &r); err != nil {
				bad(n, "record %d does not decode: %v", n, err)
				break
			}
			switch {
			case n != seq+1:
				bad(seq+1, "record %d is missing (next stored is %d)", seq+1, n)
			case r.Seq != n:
				bad(n, "record stored as %d says seq %d", n, r.Seq)
			case r.Prev != hex.EncodeToString(prev[:]):
				bad(n, "record %d: prev %s is not record %d's hash", n, r.Prev, n-1)
			default:
				sum := chainHash(prev, r.canonical())
				if r.Hash != hex.EncodeToString(sum[:]) {
					bad(n, "record %d: content does not match its hash", n)
				}
				prev, seq = sum, n
			}
		}
		if err := it.Error(); err != nil {
			return err
		}
		if v.Problem == "" {
			hv, closer, err := snap.Get(keyAuditHead)
			switch {
			case errors.Is(err, pebble.ErrNotFound):
				if seq != 0 {
					bad(seq, "no chain head but %d records", seq)
				}
			case err != nil:
				return err
			default:
				h, derr := decodeAuditHead(bytes.Clone(hv))
				_ = closer.Close()
				if derr != nil || h.seq != seq || h.hash != prev {
					bad(seq, "chain head does not name record %d", seq)
				}
			}
		}
		v.Records, v.Head, v.OK = seq, hex.EncodeToString(prev[:]), v.Problem == ""
		return nil
	})
	return v, err
}
