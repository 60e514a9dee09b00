package store

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// Limits of what one command may carry; larger values are
// StatusInvalidCommand (or StatusInvalidAmount) and change nothing.
const (
	// idBytesMax bounds account ids, card hashes, partners and business
	// days: they are repeated in several index keys per transfer.
	idBytesMax = 128
	// keyBytesMax bounds idempotency keys and original references (the
	// ISO 8583 key is partner+acquirer+STAN+F7+RRN+class, < 100 bytes).
	keyBytesMax = 256
	// amountMax bounds one movement: 10^15 minor units is far beyond any
	// real payment and keeps every balance sum far from int64 overflow.
	amountMax = 1_000_000_000_000_000
	// balanceFieldMax bounds each balance counter. Posted counters only
	// grow; a movement that would push one past this is StatusInvalidAmount
	// rather than a silent int64 wrap that breaks double entry.
	balanceFieldMax = math.MaxInt64 / 2
	// transferIDDigits fixes the width of transfer ids so that their
	// lexical order is their creation order (10^14 transfers).
	transferIDDigits = 14
	transferIDsMax   = 100_000_000_000_000 // 10^transferIDDigits
)

// Apply applies one raft log entry; see ApplyBatch.
func (s *Store) Apply(l *raft.Log) interface{} {
	return s.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies raft log entries in order. All their changes and the
// new applied index go into one pebble batch committed with NoSync: the
// raft log is the durability, and replay after a crash re-applies whatever
// the WAL lost. Entries at or below the stored applied index are skipped
// (their response is nil), which makes replay a no-op.
//
// For a LogCommand entry the response is []Result, one per command in
// order, or an error wrapping ErrCorrupt when the entry does not decode
// (it is still counted as applied: every replica fails it the same way).
// Other entry types (configuration changes) only advance the index.
//
// When pebble fails to read or commit (an I/O error, no space left on
// device) the store fails (ErrFailed, Failed): this batch and every later
// one are answered with an error wrapping ErrFailed and change nothing, so
// the proposers decline (the outcome is unknown to them: the entries are
// committed in raft) and this replica never applies entry N+1 onto a state
// that lacks N. Raft counts them applied; the store's own applied index
// stays at the last batch that committed, so a restart replays the rest
// from the raft log. It panics when a stored record does not decode or an
// index names a missing record: that is a broken invariant, not an
// operating error.
func (s *Store) ApplyBatch(logs []*raft.Log) (out []interface{}) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		// raft would count these entries applied; dropping them silently
		// would lose committed state.
		panic("store: ApplyBatch on a closed store")
	}
	if err := s.Err(); err != nil {
		return failedResponses(logs, err)
	}
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(writeFault)
			if !ok {
				panic(r)
			}
			s.fail(f.err)
			out = failedResponses(logs, s.Err())
		}
	}()
	out = make([]interface{}, len(logs))
	applied := s.applied.Load()
	last := applied
	var cmds int
	for _, l := range logs {
		cmds += batchLen(l.Data)
	}
	t := newTxn(s.db, &s.cfg, &s.cache, s.dir.Load(), cmds)
	for i, l := range logs {
		if l.Index <= last {
			continue
		}
		last = l.Index
		if l.Type != raft.LogCommand {
			continue
		}
		s.counters.entries.Add(1)
		cmds, err := DecodeBatch(l.Data)
		if err != nil {
			s.counters.corrupt.Add(1)
			s.log.Error("undecodable log entry", "index", l.Index, "err", err)
			out[i] = fmt.Errorf("store: log entry %d: %w", l.Index, err)
			continue
		}
		s.counters.commands.Add(uint64(len(cmds)))
		res := make([]Result, len(cmds))
		for j := range cmds {
			res[j] = t.apply(&cmds[j])
		}
		out[i] = res
	}
	if last == applied {
		return out
	}
	t.commit(last)
	if t.dir != nil {
		// Before the applied index: whoever waits for this index (a
		// ReadIndex after a route change) routes by the new table.
		s.dir.Store(t.dir)
	}
	s.applied.Store(last)
	t.publish()
	return out
}

// failedResponses answers every entry of logs with err (ErrFailed).
func failedResponses(logs []*raft.Log, err error) []interface{} {
	out := make([]interface{}, len(logs))
	for i, l := range logs {
		out[i] = fmt.Errorf("store: log entry %d not applied: %w", l.Index, err)
	}
	return out
}

// writeFault carries a pebble read or write error out of the apply code
// to ApplyBatch, which fails the store with it (must panics with it;
// nothing else does).
type writeFault struct{ err error }

// acctCache keeps committed accounts and card-hash → account id mappings
// decoded across ApplyBatch calls. Only ApplyBatch and Restore use it, under
// Store.applyMu. It holds exactly what pebble holds (entries are added after
// a commit, and accounts are never deleted nor card hashes rebound), so it
// saves reads without changing any result. When full it drops arbitrary
// entries: which ones does not matter for correctness.
//
// It also keeps the committed open business day, which every financial
// command reads: with a handful of commands per batch that read was one
// pebble Get per ApplyBatch.
type acctCache struct {
	accts map[string]Account
	cards map[string]string
	day   string
	dayOK bool
}

func (c *acctCache) reset() {
	c.accts, c.cards = nil, nil
	c.day, c.dayOK = "", false
}

// put stores v under k in m, first making room when m holds maxEntries.
func cachePut[V any](m *map[string]V, k string, v V, maxEntries int) {
	if maxEntries == 0 {
		return
	}
	if *m == nil {
		*m = make(map[string]V)
	}
	if len(*m) >= maxEntries {
		n := max(1, maxEntries/16) // evict in bulk, not one per insert
		for old := range *m {
			delete(*m, old)
			if n--; n == 0 {
				break
			}
		}
	}
	(*m)[k] = v
}

// kvEntry is a raw write of a txn: a value or a deletion.
type kvEntry struct {
	val []byte
	del bool
}

// acctEntry caches one decoded account (nil: it does not exist).
type acctEntry struct {
	a     *Account
	dirty bool
}

type xferEntry struct {
	t     *Transfer
	dirty bool
}

// txn holds the changes of one ApplyBatch in memory, in front of the
// committed database; reads see the txn first, so a command sees every
// earlier command of the batch. Accounts and transfers stay decoded and are
// encoded once at commit: a busy merchant account touched by 256 commands
// is written once. Nothing reaches pebble until commit.
type txn struct {
	db    *pebble.DB
	cfg   *Config
	cache *acctCache

	kv    map[string]kvEntry
	accts map[string]*acctEntry
	xfers map[string]*xferEntry

	seq       uint64
	seqLoaded bool
	seqDirty  bool

	// day is the open business day as of this txn (see day.go).
	day       string
	dayLoaded bool

	// baseDir is the committed directory; dir the txn's changed copy (nil
	// until an admin command changes it), published after commit.
	baseDir *Directory
	dir     *Directory
	// audit is the chain head as of this txn (audit.go).
	audit       auditHead
	auditLoaded bool
}

// newTxn sizes the overlay for about cmds commands (~8 keys, 2 accounts
// and a transfer each). In a cluster most batches carry a handful of
// commands: overlays made for 256 cost more to allocate and zero than the
// commands cost to apply (measured: 11 % of ApplyBatch's CPU).
func newTxn(db *pebble.DB, cfg *Config, cache *acctCache, dir *Directory, cmds int) *txn {
	cmds = min(cmds, 256)
	return &txn{
		baseDir: dir,
		db:      db,
		cfg:     cfg,
		cache:   cache,
		kv:      make(map[string]kvEntry, 8*cmds),
		accts:   make(map[string]*acctEntry, 2*cmds),
		xfers:   make(map[string]*xferEntry, cmds),
		day:     cache.day,
		// dayLoaded: the committed day is known, no need to read it.
		dayLoaded: cache.dayOK,
	}
}

// must hands a storage failure inside Apply to ApplyBatch (see there).
func must(err error) {
	if err != nil {
		panic(writeFault{err: err})
	}
}

// mustDecode panics when a stored record does not decode: the state is
// corrupt, which no restart or free space mends (see ApplyBatch).
func mustDecode(err error) {
	if err != nil {
		panic(fmt.Sprintf("store: apply: %v", err))
	}
}

// get returns a copy of key's value as of this txn.
func (t *txn) get(key string) ([]byte, bool) {
	if e, ok := t.kv[key]; ok {
		return e.val, !e.del
	}
	v, closer, err := t.db.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false
	}
	must(err)
	out := bytes.Clone(v)
	must(closer.Close())
	return out, true
}

func (t *txn) set(key string, val []byte) { t.kv[key] = kvEntry{val: val} }
func (t *txn) del(key string)             { t.kv[key] = kvEntry{del: true} }

// scanKeys returns up to limit keys in [lo, hi) as of this txn, in order:
// committed keys merged with the txn's own writes and deletions.
func (t *txn) scanKeys(lo, hi []byte, limit int) []string {
	var mine []string
	for k := range t.kv {
		if k >= string(lo) && (hi == nil || k < string(hi)) {
			mine = append(mine, k)
		}
	}
	slices.Sort(mine)
	it, err := t.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	must(err)
	defer it.Close()
	var out []string
	ok := it.First()
	for len(out) < limit && (ok || len(mine) > 0) {
		var k string
		switch {
		case !ok:
			k, mine = mine[0], mine[1:]
		case len(mine) == 0 || string(it.Key()) < mine[0]:
			out = append(out, string(it.Key()))
			ok = it.Next()
			continue
		default:
			if string(it.Key()) == mine[0] {
				ok = it.Next() // the txn's write shadows the committed key
			}
			k, mine = mine[0], mine[1:]
		}
		if !t.kv[k].del {
			out = append(out, k)
		}
	}
	must(it.Error())
	return out
}

func (t *txn) account(id string) *Account {
	if e, ok := t.accts[id]; ok {
		return e.a
	}
	e := &acctEntry{}
	if a, ok := t.cache.accts[id]; ok {
		e.a = &a
	} else if v, ok := t.get(skey1(pfxAccount, id)); ok {
		a, err := decodeAccountRecord(v)
		mustDecode(err)
		e.a = &a
	}
	t.accts[id] = e
	return e.a
}

// publish adds the committed accounts this txn read or wrote to the cache.
func (t *txn) publish() {
	if t.dayLoaded {
		t.cache.day, t.cache.dayOK = t.day, true
	}
	for id, e := range t.accts {
		if e.a != nil {
			cachePut(&t.cache.accts, id, *e.a, t.cfg.AccountCacheMax)
			if e.a.CardHash != "" {
				cachePut(&t.cache.cards, e.a.CardHash, id, t.cfg.AccountCacheMax)
			}
		}
	}
}

func (t *txn) dirtyAccount(a *Account) { t.accts[a.ID].dirty = true }

func (t *txn) cardAccount(hash string) *Account {
	id, ok := t.cache.cards[hash]
	if !ok {
		v, found := t.get(skey1(pfxCard, hash))
		if !found {
			return nil
		}
		id = string(v)
	}
	a := t.account(id)
	if a == nil {
		panic("store: apply: card index names a missing account")
	}
	return a
}

func (t *txn) transfer(id string) *Transfer {
	if e, ok := t.xfers[id]; ok {
		return e.t
	}
	e := &xferEntry{}
	if v, ok := t.get(skey1(pfxTransfer, id)); ok {
		tr, err := decodeTransferRecord(v)
		mustDecode(err)
		e.t = &tr
	}
	t.xfers[id] = e
	return e.t
}

func (t *txn) dirtyTransfer(tr *Transfer) { t.xfers[tr.ID].dirty = true }

// newTransfer assigns the next id to tr, stores it and writes its indexes.
func (t *txn) newTransfer(tr *Transfer) {
	if !t.seqLoaded {
		if v, ok := t.get(string(keySequence)); ok {
			seq, err := strconv.ParseUint(string(v), 10, 64)
			mustDecode(err)
			t.seq = seq
		}
		t.seqLoaded = true
	}
	t.seq++
	if t.seq >= transferIDsMax {
		// Unreachable in practice (10^14 transfers); a wrapped id would
		// overwrite an old transfer on every replica alike, so stop instead.
		panic("store: apply: transfer id space exhausted")
	}
	t.seqDirty = true
	tr.ID = formatTransferID(t.seq)
	t.xfers[tr.ID] = &xferEntry{t: tr, dirty: true}
	empty := []byte{}
	t.set(skeyIndex2(pfxByAccount, tr.Debit, tr.ID), empty)
	t.set(skeyIndex2(pfxByAccount, tr.Credit, tr.ID), empty)
	if tr.BusinessDay != "" {
		t.set(skeyIndex3(pfxByDayPartnr, tr.BusinessDay, tr.Partner, tr.ID), empty)
	}
	if tr.Status == TransferPending {
		t.set(skeyTimed(pfxExpiry, tr.Expiry, tr.ID), empty)
	}
}

func formatTransferID(seq uint64) string {
	var b [1 + transferIDDigits]byte
	b[0] = 'T'
	for i := transferIDDigits; i >= 1; i-- {
		b[i] = byte('0' + seq%10)
		seq /= 10
	}
	return string(b[:])
}

// authCode derives the 6-character approval code from a transfer id: the
// same on every replica, spread over the whole code space so consecutive
// ids do not give consecutive codes.
func authCode(id string) string {
	h := uint64(14695981039346656037) // FNV-1a
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	h ^= h >> 30 // splitmix64 finalizer
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	var b [6]byte
	for i := range b {
		b[i] = digits[h%36]
		h /= 36
	}
	return string(b[:])
}

// commit writes the txn and the applied index in one pebble batch.
func (t *txn) commit(applied uint64) {
	b := t.db.NewBatchWithSize(t.batchBytes())
	defer b.Close()
	// Keys go into the batch in key order. The state does not depend on it
	// (each key appears once), but pebble's memtable inserter reuses the
	// previous insert's position, so sorted inserts cost less than the
	// random order of a Go map (measured in BenchmarkApplyBatch).
	var buf []byte
	for _, id := range sortedKeys(t.accts) {
		if e := t.accts[id]; e.dirty {
			buf = appendAccountRecord(buf[:0], e.a)
			must(b.Set(key1(pfxAccount, id), buf, nil)) // Set copies
		}
	}
	for _, k := range sortedKeys(t.kv) {
		if e := t.kv[k]; e.del {
			must(b.Delete([]byte(k), nil))
		} else {
			must(b.Set([]byte(k), e.val, nil))
		}
	}
	if t.seqDirty {
		must(b.Set(keySequence, strconv.AppendUint(nil, t.seq, 10), nil))
	}
	var idx [8]byte
	putUint64(idx[:], applied)
	must(b.Set(keyApplied, idx[:], nil))
	for _, id := range sortedKeys(t.xfers) {
		if e := t.xfers[id]; e.dirty {
			buf = appendTransferRecord(buf[:0], e.t)
			must(b.Set(key1(pfxTransfer, id), buf, nil))
		}
	}
	must(commitBatch(b))
}

// commitBatch commits b with NoSync. Pebble panics (with the error) when
// its WAL write fails (db.go commitWrite); that is an I/O error like any
// other here, so it is returned. Anything else pebble panics with is not
// an I/O error and is not caught.
func commitBatch(b *pebble.Batch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(error)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("store: commit: %w", e)
		}
	}()
	return b.Commit(pebble.NoSync)
}

// batchBytes estimates the batch size so it is allocated once.
func (t *txn) batchBytes() int {
	n := 64 + len(t.accts)*160 + len(t.xfers)*256
	for k, e := range t.kv {
		n += len(k) + len(e.val) + 8
	}
	return n
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func putUint64(b []byte, v uint64) {
	_ = b[7]
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

// validID reports whether s can be an id inside index keys.
func validID(s string) bool {
	return s != "" && len(s) <= idBytesMax && strings.IndexByte(s, sep) < 0
}

// validOptional is validID for fields that may be empty.
func validOptional(s string, maxBytes int) bool {
	return len(s) <= maxBytes && strings.IndexByte(s, sep) < 0
}

func validCurrency(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

func invalid() Result { return Result{Status: StatusInvalidCommand} }

// apply decides one command: idempotency first, then the op's rules.
func (t *txn) apply(c *Command) Result {
	if c.Op == OpExpire {
		// Expiry is idempotent by nature and carries no key.
		return t.expire(c)
	}
	if c.Op == OpOpenDay || c.Op == OpCloseDay {
		return t.dayOp(c) // idempotent by content, no key (day.go)
	}
	if c.Op == OpWebhookAttempt {
		return t.webhookAttempt(c) // idempotent by content (webhooks.go)
	}
	if c.Key == "" || len(c.Key) > keyBytesMax {
		return invalid()
	}
	if c.Op == OpForwardResult {
		// Idempotent by the forward's state (forward.go): a repeat finds
		// it decided and gets what the first one decided, so a result
		// keeps no idempotency record of its own (one lookup of an absent
		// key and two writes less a forward).
		if c.Forward == nil {
			return invalid()
		}
		return t.forwardResult(c)
	}
	ik := skey1(pfxIdem, c.Key)
	if v, ok := t.get(ik); ok {
		rec, err := decodeIdemRecord(v)
		mustDecode(err)
		if rec.Fingerprint != c.Fingerprint {
			return Result{Status: StatusFingerprintMismatch}
		}
		r := rec.Result
		r.Replayed = true
		return r
	}
	if !validOptional(c.Partner, idBytesMax) || !validOptional(c.BusinessDay, idBytesMax) ||
		!validOptional(c.OriginalRef, keyBytesMax) {
		return invalid()
	}
	if c.OriginalRef != "" && c.Op != OpCreateAccount && t.originalRef(c.OriginalRef) != "" {
		// Declined and stored like any decline, so its repeat gets 94 too.
		r := Result{Status: StatusDuplicateReference}
		t.set(ik, appendIdemRecord(nil, &idemRecord{Fingerprint: c.Fingerprint, Time: c.Time, Result: r}))
		t.set(skeyTimed(pfxIdemTime, c.Time, c.Key), []byte{})
		return r
	}
	t.stampDay(c)
	var r Result
	switch c.Op {
	case OpCreateAccount:
		r = t.createAccount(c)
	case OpAuthorize, OpPost:
		r = t.move(c)
	case OpComplete:
		r = t.complete(c)
	case OpReverse:
		r = t.reverse(c)
	case OpBreak:
		r = t.breakOp(c) // recon.go
	case OpForward, OpSAFUpdate, OpForwardAdvice:
		if c.Forward == nil {
			return invalid()
		}
		switch c.Op {
		case OpForwardAdvice:
			r = t.forwardAdvice(c) // advice.go
		case OpForward:
			r = t.forwardOp(c) // forward.go
		default:
			r = t.safUpdate(c)
		}
	case OpPutAuthorization:
		r = t.putAuthorization(c) // sca.go
	case OpPutBatch:
		r = t.putBatch(c) // batch.go
	case OpPutStatementJob:
		r = t.putStatementJob(c) // statementjob.go
	case OpHostReversal:
		r = t.hostReversal(c) // hostreversal.go
	default:
		if !c.Op.IsAdmin() || c.Admin == nil {
			return invalid()
		}
		r = t.adminOp(c) // admin.go
	}
	switch r.Status {
	case StatusInvalidChange, StatusVersionConflict, StatusNotFound, StatusExists, StatusTokenMismatch:
		// Not stored, like an invalid command: the change did not happen
		// and a corrected one may reuse the key.
		return r
	}
	if r.Status == StatusInvalidCommand {
		// Not stored: the same command is invalid again on a repeat, and a
		// corrected one may reuse the key.
		return r
	}
	if r.Status == StatusOK && c.Op != OpForward && c.Op != OpHostReversal {
		// A forwarded request's approval code is the host's (forward.go).
		r.AuthCode = authCodeFor(r.TransferID)
		if c.OriginalRef != "" && r.TransferID != "" {
			// Free: a taken reference was declined above.
			t.set(skey1(pfxOrigRef, c.OriginalRef), []byte(r.TransferID))
		}
	}
	t.set(ik, appendIdemRecord(nil, &idemRecord{Fingerprint: c.Fingerprint, Time: c.Time, Result: r}))
	t.set(skeyTimed(pfxIdemTime, c.Time, c.Key), []byte{})
	return r
}

func authCodeFor(id string) string {
	if id == "" {
		return ""
	}
	return authCode(id)
}

func (t *txn) originalRef(ref string) string {
	v, _ := t.get(skey1(pfxOrigRef, ref))
	return string(v)
}

func cardResult(r *Result, card *Account) {
	if card != nil {
		r.Posted = card.Posted()
		r.Available = card.Available()
		r.Currency = card.Currency
	}
}

func (t *txn) createAccount(c *Command) Result {
	a := c.Account
	if a == nil || !validID(a.ID) || a.Kind == "" || len(a.Kind) > idBytesMax || !validCurrency(a.Currency) ||
		!validOptional(a.Partner, idBytesMax) || !validOptional(a.CardHash, idBytesMax) ||
		len(a.MaskedPAN) > idBytesMax ||
		a.DebitsPending != 0 || a.DebitsPosted != 0 || a.CreditsPending != 0 || a.CreditsPosted != 0 {
		// An account is born empty: balances only move by transfers, or
		// double entry breaks.
		return invalid()
	}
	if t.account(a.ID) != nil {
		return Result{Status: StatusAccountExists}
	}
	if a.CardHash != "" {
		if _, taken := t.get(skey1(pfxCard, a.CardHash)); taken {
			return Result{Status: StatusAccountExists}
		}
		t.set(skey1(pfxCard, a.CardHash), []byte(a.ID))
	}
	// The command's strings are cut from the whole log entry; copies keep
	// the account cache from pinning entries in memory.
	na := *a
	na.ID, na.Kind, na.Currency = strings.Clone(a.ID), AccountKind(strings.Clone(string(a.Kind))), strings.Clone(a.Currency)
	na.Partner, na.CardHash, na.MaskedPAN = strings.Clone(a.Partner), strings.Clone(a.CardHash), strings.Clone(a.MaskedPAN)
	t.accts[na.ID] = &acctEntry{a: &na, dirty: true}
	shown := na
	shown.CardHash = "" // a lookup hash says nothing to an auditor
	t.appendAudit(c, "account.create", "account/"+na.ID, nil, mustJSON(&shown))
	return Result{Status: StatusOK}
}

// checkLegs applies the rules every movement shares. debitCheck is false
// when the movement does not lower the debit account's available balance.
func checkLegs(c *Command, dr, cr *Account, amt int64, debitCheck bool) Status {
	switch {
	case dr == nil || cr == nil:
		return StatusUnknownAccount
	case dr.ID == cr.ID:
		return StatusInvalidCommand
	case dr.Currency != c.Currency || cr.Currency != c.Currency:
		return StatusCurrencyMismatch
	case dr.DebitsPosted > balanceFieldMax-amt || dr.DebitsPending > balanceFieldMax-amt ||
		cr.CreditsPosted > balanceFieldMax-amt || cr.CreditsPending > balanceFieldMax-amt:
		return StatusInvalidAmount
	case debitCheck && !dr.Unlimited && dr.Available()-amt < dr.Floor:
		return StatusInsufficientFunds
	}
	return StatusOK
}

func validAmount(amt int64) bool { return amt > 0 && amt <= amountMax }

// move is OpAuthorize (a hold) and OpPost (posted at once).
func (t *txn) move(c *Command) (r Result) {
	var drID, crID string
	cardDebit := c.Card != "" && !c.CreditCard
	switch {
	case c.Op == OpAuthorize && (c.Card == "" || c.CreditCard || c.HoldExpiry <= c.Time):
		return invalid()
	case c.CreditCard && c.Card == "":
		return invalid()
	case c.CreditCard:
		drID = c.Debit
	case cardDebit:
		crID = c.Credit
	default:
		drID, crID = c.Debit, c.Credit
	}
	if c.Offline && (c.Op != OpPost || c.Agent == "") {
		return invalid() // only an agent's posting is ever taken offline
	}
	if (c.Card != "" && !validID(c.Card)) || (drID == "" && !cardDebit) || (crID == "" && !c.CreditCard) ||
		!validOptional(drID, idBytesMax) || !validOptional(crID, idBytesMax) {
		return invalid()
	}
	var card *Account
	if c.Card != "" {
		card = t.cardAccount(c.Card)
	}
	defer cardResult(&r, card)
	if !validAmount(c.Amount) {
		r.Status = StatusInvalidAmount
		return r
	}
	var dr, cr *Account
	if cardDebit {
		dr, cr = card, t.account(crID)
	} else if c.CreditCard {
		dr, cr = t.account(drID), card
	} else {
		dr, cr = t.account(drID), t.account(crID)
	}
	if r.Status = checkLegs(c, dr, cr, c.Amount, true); r.Status != StatusOK {
		return r
	}
	if c.Agent != "" && c.Op == OpPost {
		// Cash an OTC agent collects counts against its limit (admin.go);
		// cash it collected offline against its offline limit (advice.go).
		if r.Status = t.chargeAgent(c, c.Amount); r.Status != StatusOK {
			return r
		}
	}
	tr := &Transfer{
		Op:          c.Op,
		Debit:       dr.ID,
		Credit:      cr.ID,
		Amount:      c.Amount,
		Currency:    c.Currency,
		Time:        c.Time,
		BusinessDay: c.BusinessDay,
		Partner:     c.Partner,
		Ref:         c.Ref,
		PayerType:   c.PayerType,
		Agent:       c.Agent,
	}
	if c.Op == OpAuthorize {
		tr.Status = TransferPending
		tr.Held = c.Amount
		tr.Expiry = c.HoldExpiry
		dr.DebitsPending += c.Amount
		cr.CreditsPending += c.Amount
	} else {
		tr.Status = TransferPosted
		dr.DebitsPosted += c.Amount
		cr.CreditsPosted += c.Amount
	}
	t.dirtyAccount(dr)
	t.dirtyAccount(cr)
	t.newTransfer(tr)
	r.TransferID = tr.ID
	if c.Op == OpPost {
		t.emitEvent(c, EventPaymentCompleted, tr)
	}
	return r
}

// original resolves cmd.Original for OpComplete and OpReverse.
func (t *txn) original(c *Command) (*Transfer, Status) {
	if c.Original == "" || len(c.Original) > keyBytesMax {
		return nil, StatusInvalidCommand
	}
	if !validAmount(c.Amount) {
		return nil, StatusInvalidAmount
	}
	id := t.originalRef(c.Original)
	if id == "" {
		return nil, StatusUnknownOriginal
	}
	o := t.transfer(id)
	if o == nil {
		panic("store: apply: original reference names a missing transfer")
	}
	if o.Currency != c.Currency {
		return nil, StatusCurrencyMismatch
	}
	if c.Card != "" {
		// The message's card must be a side of the original: a completion
		// or reversal with another PAN must not move that card's money.
		// An off-us card has no account here: its forward recorded the
		// card's hash instead (forward.go).
		if card := t.cardOf(c); (card == nil || card.ID != o.Debit && card.ID != o.Credit) && !t.forwardCard(c.Card, o) {
			return nil, StatusUnknownOriginal
		}
	}
	return o, StatusOK
}

// legs returns the accounts of an existing transfer; accounts are never
// deleted, so a missing one is a broken invariant.
func (t *txn) legs(o *Transfer) (dr, cr *Account) {
	dr, cr = t.account(o.Debit), t.account(o.Credit)
	if dr == nil || cr == nil {
		panic("store: apply: transfer names a missing account")
	}
	return dr, cr
}

// release lets go of amt of hold o on both of its accounts.
func (t *txn) release(o *Transfer, dr, cr *Account, amt int64) {
	dr.DebitsPending -= amt
	cr.CreditsPending -= amt
	o.Held -= amt
	t.dirtyAccount(dr)
	t.dirtyAccount(cr)
	t.dirtyTransfer(o)
}

// closeHold takes a hold out of the pending state and its expiry index.
func (t *txn) closeHold(o *Transfer, st TransferStatus) {
	o.Status = st
	t.del(skeyTimed(pfxExpiry, o.Expiry, o.ID))
	t.dirtyTransfer(o)
}

func (t *txn) cardOf(c *Command) *Account {
	if c.Card == "" || !validID(c.Card) {
		return nil
	}
	return t.cardAccount(c.Card)
}

func (t *txn) complete(c *Command) (r Result) {
	o, st := t.original(c)
	if st != StatusOK {
		r.Status = st
		return r
	}
	defer cardResult(&r, t.cardOf(c))
	switch {
	case o.Status != TransferPending:
		r.Status = StatusAlreadyFinal
		return r
	case c.Amount > o.Held:
		r.Status = StatusExceedsOriginal
		return r
	}
	dr, cr := t.legs(o)
	if dr.DebitsPosted > balanceFieldMax-c.Amount || cr.CreditsPosted > balanceFieldMax-c.Amount {
		r.Status = StatusInvalidAmount
		return r
	}
	// Pending becomes posted: available does not move, so no floor check.
	t.release(o, dr, cr, c.Amount)
	dr.DebitsPosted += c.Amount
	cr.CreditsPosted += c.Amount
	o.Captured += c.Amount
	if c.Final || o.Held == 0 {
		t.release(o, dr, cr, o.Held)
		t.closeHold(o, TransferCompleted)
	}
	r.TransferID = t.postFor(c, o, dr, cr)
	t.completedForwarded(c, o) // forward.go: an off-us hold's host is told
	t.emitEvent(c, EventPaymentCompleted, t.xfers[r.TransferID].t)
	return r
}

func (t *txn) reverse(c *Command) (r Result) {
	o, st := t.original(c)
	if st == StatusUnknownOriginal {
		if res, ok := t.reverseForward(c); ok { // forward.go: a forwarded original not posted
			return res
		}
	}
	if st != StatusOK {
		r.Status = st
		return r
	}
	if st := t.checkForwardedReversal(c, o); st != StatusOK {
		r.Status = st
		return r
	}
	defer cardResult(&r, t.cardOf(c))
	switch o.Status {
	case TransferPending:
		dr, cr := t.legs(o)
		amt := min(c.Amount, o.Held)
		t.release(o, dr, cr, amt)
		o.Reversed += amt
		if o.Held == 0 {
			t.closeHold(o, TransferVoided)
			t.emitEvent(c, EventPaymentReversed, o)
		}
		t.reversedForwarded(c, o) // forward.go: an off-us hold's host is told
		r.TransferID = o.ID
		return r
	case TransferPosted:
	default:
		r.Status = StatusAlreadyFinal
		return r
	}
	if c.Amount > o.Amount-o.Reversed {
		r.Status = StatusExceedsOriginal
		return r
	}
	// The compensating transfer runs the other way: the original's credit
	// side gives the money back, and it may not go below its floor.
	origDr, origCr := t.legs(o)
	if r.Status = checkLegs(c, origCr, origDr, c.Amount, true); r.Status != StatusOK {
		return r
	}
	origCr.DebitsPosted += c.Amount
	origDr.CreditsPosted += c.Amount
	t.dirtyAccount(origCr)
	t.dirtyAccount(origDr)
	o.Reversed += c.Amount
	t.dirtyTransfer(o)
	if o.Agent != "" && o.Op == OpPost {
		t.refundAgent(o.Agent, c.Amount) // the cash goes back to the customer
	}
	r.TransferID = t.postFor(c, o, origCr, origDr)
	t.reversedForwarded(c, o) // forward.go: the host is told too
	typ := EventPaymentPartlyRefund
	if o.Reversed >= o.Amount {
		typ = EventPaymentRefunded
	}
	t.emitEvent(c, typ, o)
	return r
}

// postFor records the posted transfer a completion or reversal makes from
// original o (balances are already moved) and returns its id.
func (t *txn) postFor(c *Command, o *Transfer, dr, cr *Account) string {
	tr := &Transfer{
		Op:          c.Op,
		Status:      TransferPosted,
		Debit:       dr.ID,
		Credit:      cr.ID,
		Amount:      c.Amount,
		Currency:    c.Currency,
		Time:        c.Time,
		BusinessDay: c.BusinessDay,
		Partner:     c.Partner,
		Original:    o.ID,
		Ref:         c.Ref,
		PayerType:   o.PayerType,
	}
	t.newTransfer(tr)
	return tr.ID
}

// expire releases lapsed holds and prunes old idempotency records, each at
// most cfg.ExpireBatchMax per command.
func (t *txn) expire(c *Command) Result {
	var r Result
	hi := prefixEnd([]byte{pfxExpiry})
	if c.Time < math.MaxInt64 {
		hi = timedBound(pfxExpiry, c.Time+1) // Expiry ≤ Time
	}
	for _, k := range t.scanKeys([]byte{pfxExpiry}, hi, t.cfg.ExpireBatchMax) {
		o := t.transfer(k[9:])
		if o == nil || o.Status != TransferPending {
			panic("store: apply: expiry index names a transfer that is not a pending hold")
		}
		dr, cr := t.legs(o)
		t.release(o, dr, cr, o.Held)
		t.closeHold(o, TransferExpired)
		t.emitEvent(c, EventPaymentHoldExpired, o)
		r.Expired++
	}
	for _, k := range t.scanKeys([]byte{pfxIdemTime}, timedBound(pfxIdemTime, c.RetainAfter), t.cfg.ExpireBatchMax) {
		t.del(skey1(pfxIdem, k[9:]))
		t.del(k)
		r.Pruned++
	}
	r.Scrubbed = t.scrubForwards(c.RetainAfter) // scrub.go
	return r
}
