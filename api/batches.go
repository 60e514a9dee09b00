package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
)

// Payment batches: many payments under one batch id, acknowledged at
// once (202) and made in the background. Each item is a payment exactly
// like POST /v1/payments (paymentIntent), under its own idempotency key
// derived from the batch id and the item's index ("batch|" + id + "|" +
// index; the core scopes it by partner), so no item is ever made twice.
//
// Where the state is: the POST proposes the batch itself (store
// OpPutBatch: its items as sent, the POST's key and digest, the origin it
// was admitted from) under the POST's Idempotency-Key, so every node
// knows it, after restarts too. An item's status is its payment's own
// idempotency record: GET rebuilds each item's key and fingerprint from
// the stored item (payment.Core.RecordOf) and reads the record
// (store.Store.Replay) after a ReadIndex, on any node. What no record
// holds is written by the batch's completion: its counts, and the items
// refused before the ledger (an account that is no payer account, a
// suspended partner).
//
// Who makes the items: the leader, only. Its worker takes the batches
// not completed (store.Store.OpenBatches) one at a time, skips every item
// already recorded, makes the rest through the core, and proposes the
// completion. The POST wakes it when it lands on the leader; otherwise,
// and after a restart or a leader change, it finds the batch within
// batchResumeInterval. Items are idempotent, so two nodes that both
// believed they led for a moment cannot double one; one maker avoids the
// wasted proposals every node would otherwise send.

// Limits.
const (
	// batchItemsMax bounds one batch (the 10,000; the store's).
	batchItemsMax = store.BatchItemsMax
	// batchBodyBytesMax bounds a batch's body: batchItemsMax items of at
	// most ~300 bytes each.
	batchBodyBytesMax = 4 << 20
	// batchIDBytesMax bounds a batch id; the item key it becomes
	// (partner|batch|id|index) stays far inside the FSM's 256 bytes.
	batchIDBytesMax = 64
	// batchWorkers is the pool that makes items: enough concurrent
	// proposals for raft to pack many into one fsync'd entry, few enough
	// not to crowd out single payments.
	batchWorkers = 32
	// batchPageMax bounds one GET page of items.
	batchPageMax = 1000
	// batchReadItems is how many items the worker reads at a time.
	batchReadItems = 500
	// batchOpenPage is how many unfinished batches one scan lists.
	batchOpenPage = 100
	// batchResumeInterval is how often the leader looks for unfinished
	// batches it was not woken for (posted through another node, left by
	// a restart or a former leader, or held back by a 5xx).
	batchResumeInterval = time.Second
	// batchViewsMax bounds the batches whose item keys a node keeps for
	// GET (a 10,000-item batch's view is ~1.5 MiB).
	batchViewsMax = 16
	// batchMakeWindow is how long after its POST a batch's items are
	// made: half the shortest idempotency retention (switch's
	// retentionMin, 1 h), so an item is never made after its record
	// could have been pruned (which would make it twice). Items not made
	// by then fail batch-expired (a leaderless cluster for half an hour).
	batchMakeWindow = 30 * time.Minute
	// batchDetailBytesMax bounds a refusal's detail kept in the ledger.
	batchDetailBytesMax = 256
	// batchRefusalsMax is the store's bound on a batch's distinct
	// refusals.
	batchRefusalsMax = 256
)

type batchRequest struct {
	ID    string           `json:"id" minLength:"1" maxLength:"64" pattern:"^[\\x21-\\x7b\\x7d\\x7e]+$" doc:"The partner's id of the batch: printable ASCII without spaces or '|'. Its items' idempotency keys derive from it"`
	Items []paymentRequest `json:"items" minItems:"1" maxItems:"10000" doc:"The payments, each exactly as POST /v1/payments takes it"`
}

// BatchAccepted is the answer to a batch: accepted, not yet made.
type BatchAccepted struct {
	ID     string `json:"id"`
	Status string `json:"status" enum:"accepted"`
	Items  int    `json:"items" doc:"How many items the batch holds"`
}

type batchAcceptedAnswer struct {
	Replayed string `header:"Idempotent-Replayed" doc:"true: the batch was accepted before, from an earlier request with this key and body (on any node)"`
	Location string `header:"Location"`
	Status   int
	Body     BatchAccepted
}

// BatchCounts counts a batch's items by status.
type BatchCounts struct {
	Pending   int `json:"pending"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
}

// BatchItem is one item's status.
type BatchItem struct {
	Index     int      `json:"index"`
	Status    string   `json:"status" enum:"pending,completed,failed,unknown" doc:"unknown: the item's record was pruned after the ledger's idempotency retention; the batch's counts still say what it was"`
	PaymentID string   `json:"payment_id,omitempty" doc:"The payment made (completed)"`
	Problem   *Problem `json:"problem,omitempty" doc:"Why the payment was refused (failed): the problem POST /v1/payments would answer"`
}

// Batch is a batch's progress, a page of its items at a time.
type Batch struct {
	ID     string      `json:"id"`
	Status string      `json:"status" enum:"processing,completed"`
	Counts BatchCounts `json:"counts"`
	Items  []BatchItem `json:"items"`
	// Next is the cursor of the next page of items (its after).
	Next string `json:"next,omitempty" doc:"Pass as after for the next page of items; absent on the last page"`
}

// batchPool is the leader's batch worker: a resumer that walks the
// unfinished batches, and batchWorkers that make their items.
type batchPool struct {
	wake   chan struct{} // a batch was accepted here; capacity 1
	jobs   chan batchJob
	ctx    context.Context // cancelled by close: in-flight items give up
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex // protects the fields below
	views     map[string]*batchView
	viewOrder []string // keys of views, oldest first
}

// batchJob is one item to make; its outcome goes to out.
type batchJob struct {
	in  payment.Intent
	i   int
	key string // the item's record (RecordOf)
	fp  string
	out chan<- itemOutcome
}

// itemOutcome is what making one item gave: its record's result, or a
// refusal before the ledger (p), or a transient failure (retry).
type itemOutcome struct {
	i     int
	res   store.Result
	p     *Problem
	retry bool
}

func (s *Server) registerBatches() {
	ctx, cancel := context.WithCancel(context.Background())
	bp := &batchPool{wake: make(chan struct{}, 1), jobs: make(chan batchJob), ctx: ctx, cancel: cancel, views: map[string]*batchView{}}
	s.batches = bp
	bp.wg.Add(1 + batchWorkers)
	go func() {
		defer bp.wg.Done()
		s.resumeBatches()
	}()
	for range batchWorkers {
		go func() {
			defer bp.wg.Done()
			for {
				select {
				case <-bp.ctx.Done():
					return
				case j := <-bp.jobs:
					j.out <- s.makeItem(bp.ctx, j)
				}
			}
		}()
	}

	huma.Register(s.api, huma.Operation{
		OperationID: "create-payment-batch", Method: http.MethodPost, Path: "/v1/payment-batches", Summary: "Make a batch of payments",
		Description: fmt.Sprintf("Accepts up to %d payments under one batch id and answers 202 at once; the batch is replicated, and its items are then made in the background, "+
			"each exactly like POST /v1/payments under its own idempotency key (batch id + index), so posting a batch again, on any node, never makes an item twice. "+
			"Every item's shape is checked first: one bad item refuses the whole batch (400 naming items[i].field).", batchItemsMax),
		DefaultStatus: http.StatusAccepted, Errors: []int{400, 401, 403, 409, 413, 503}, MaxBodyBytes: batchBodyBytesMax, Tags: []string{"payments"},
		Security: []map[string][]string{{"oauth2": {ScopePaymentsWrite}}}, Metadata: map[string]any{"scope": ScopePaymentsWrite},
	}, func(ctx context.Context, in *struct {
		IdempotencyKey string `header:"Idempotency-Key" maxLength:"64" doc:"The request's key: the same key and batch get the same answer, another batch with this id a 409"`
		Body           batchRequest
	}) (*batchAcceptedAnswer, error) {
		return s.acceptBatch(ctx, in.IdempotencyKey, in.Body)
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "get-payment-batch", Method: http.MethodGet, Path: "/v1/payment-batches/{id}", Summary: "Read a batch's progress",
		Description: "The batch's status, its items counted by status, and a page of its items (after, limit), read from the ledger on any node: " +
			"each item's status is its payment's idempotency record.",
		Errors: []int{400, 401, 403, 404, 503}, Tags: []string{"payments"},
		Security: []map[string][]string{{"oauth2": {ScopePaymentsRead}}}, Metadata: map[string]any{"scope": ScopePaymentsRead},
	}, func(ctx context.Context, in *struct {
		ID    string `path:"id" maxLength:"64"`
		After string `query:"after" pattern:"^[0-9]{1,5}$" doc:"The next cursor of the previous page"`
		Limit int    `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"Items per page"`
	}) (*struct{ Body Batch }, error) {
		after := -1
		if in.After != "" {
			after, _ = strconv.Atoi(in.After) // the pattern allows digits only
		}
		b, err := s.batchPage(ctx, callerOf(ctx), in.ID, after, min(in.Limit, batchPageMax))
		if err != nil {
			return nil, err
		}
		return &struct{ Body Batch }{Body: b}, nil
	})
}

// batchRequestOf is the request a stored item was.
func batchRequestOf(it store.BatchItem) paymentRequest {
	return paymentRequest{Amount: it.Amount, Currency: it.Currency, DebtorAccount: it.Debtor, Reference: it.Reference,
		BillType: it.BillType, PayerType: it.PayerType}
}

func itemKey(batch string, i int) string { return "batch|" + batch + "|" + strconv.Itoa(i) }

// acceptBatch checks every item, then proposes the batch under the
// POST's Idempotency-Key.
func (s *Server) acceptBatch(ctx context.Context, key string, req batchRequest) (*batchAcceptedAnswer, error) {
	c := callerOf(ctx)
	if p := checkKey(key); p != nil {
		return nil, p
	}
	if len(req.Items) > batchItemsMax { // also the schema's maxItems
		return nil, validation("items", fmt.Sprintf("at most %d items", batchItemsMax))
	}
	refs := make(map[string]int, len(req.Items))
	items := make([]store.BatchItem, len(req.Items))
	for i, it := range req.Items {
		if _, perr := s.paymentIntent(c, "", it); perr != nil {
			perr.Field = fmt.Sprintf("items[%d].%s", i, perr.Field)
			return nil, perr
		}
		if j, ok := refs[it.Reference]; ok {
			return nil, validation(fmt.Sprintf("items[%d].reference", i), fmt.Sprintf("the reference of items[%d]: a reference names one payment", j))
		}
		refs[it.Reference] = i
		items[i] = store.BatchItem{Amount: it.Amount, Currency: it.Currency, Debtor: it.DebtorAccount, Reference: it.Reference,
			BillType: it.BillType, PayerType: it.PayerType}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, problemOf(err)
	}
	sum := sha256.Sum256(body)
	digest := hex.EncodeToString(sum[:])
	o := c.origin
	cmd := store.Command{Op: store.OpPutBatch, Key: c.partner.ID + "|batches|" + key, Fingerprint: digest, Time: time.Now().UnixNano(),
		Partner: c.partner.ID, Batch: &store.BatchChange{ID: req.ID, Request: key, Digest: digest, Items: items,
			Origin: store.BatchOrigin{Lane: o.Lane, CertPin: o.CertPin, CertAt: certAt(o)}}}
	if o.Source.IsValid() {
		cmd.Batch.Origin.Source = o.Source.String()
	}
	res, err := s.ledger.Propose(ctx, cmd)
	if err != nil {
		return nil, problemOf(err)
	}
	replayed := res.Replayed
	switch res.Status {
	case store.StatusOK:
	case store.StatusExists:
		// The id is taken: by this very batch when its key's record was
		// pruned since (the same key and digest), else a 409.
		b, err := s.ownBatch(ctx, c, req.ID)
		if err != nil {
			return nil, err
		}
		if b.Request != key || b.Digest != digest {
			p := problemOf(store.ErrFingerprintMismatch)
			p.Detail = fmt.Sprintf("batch %q was posted with another Idempotency-Key or other items", req.ID)
			return nil, p
		}
		replayed = true
	default:
		return nil, problemOf(fmt.Errorf("api: Idempotency-Key %q: %w", key, res.Status.Err()))
	}
	if !replayed {
		select {
		case s.batches.wake <- struct{}{}:
		default: // a wake is pending already
		}
	}
	ans := &batchAcceptedAnswer{Status: http.StatusAccepted, Location: "/v1/payment-batches/" + req.ID,
		Body: BatchAccepted{ID: req.ID, Status: "accepted", Items: len(req.Items)}}
	if replayed {
		ans.Replayed = "true"
	}
	return ans, nil
}

func certAt(o payment.Origin) int64 {
	if o.CertAt.IsZero() {
		return 0
	}
	return o.CertAt.UnixNano()
}

// ownBatch is the caller's batch id after a ReadIndex; another partner's
// is none (404).
func (s *Server) ownBatch(ctx context.Context, c *caller, id string) (store.Batch, error) {
	if err := s.ledger.ReadIndex(ctx); err != nil {
		return store.Batch{}, problemOf(err)
	}
	b, err := s.ledger.Batch(c.partner.ID, id)
	if errors.Is(err, store.ErrNotFound) {
		return b, &Problem{Type: problemBase + "not-found", Title: "Not found", Status: http.StatusNotFound, Detail: fmt.Sprintf("no batch %q", id)}
	}
	if err != nil {
		return b, problemOf(err)
	}
	return b, nil
}

// batchPage is the caller's batch id with items after index after, at
// most limit: each item's status from its record.
func (s *Server) batchPage(ctx context.Context, c *caller, id string, after, limit int) (Batch, error) {
	b, err := s.ownBatch(ctx, c, id)
	if err != nil {
		return Batch{}, err
	}
	out := Batch{ID: id, Status: "processing", Items: []BatchItem{}}
	from := min(after+1, b.Items)
	to := min(from+limit, b.Items)
	if b.Done {
		out.Status, out.Counts = "completed", BatchCounts{Completed: b.Completed, Failed: b.Failed}
	} else {
		// Counted from every item's record: a batch in progress.
		st, err := s.itemStatuses(c, b, 0, b.Items)
		if err != nil {
			return Batch{}, err
		}
		for _, it := range st {
			switch it.Status {
			case "completed":
				out.Counts.Completed++
			case "failed":
				out.Counts.Failed++
			default:
				out.Counts.Pending++
			}
		}
		out.Items = append(out.Items, st[from:to]...)
		setNext(&out, to, b.Items)
		return out, nil
	}
	st, err := s.itemStatuses(c, b, from, to-from)
	if err != nil {
		return Batch{}, err
	}
	out.Items = append(out.Items, st...)
	setNext(&out, to, b.Items)
	return out, nil
}

func setNext(b *Batch, to, items int) {
	if to < items {
		b.Next = strconv.Itoa(to - 1)
	}
}

// batchView is what this node learned of a batch: each item's record
// key and fingerprint (one HMAC per item, once) and the items decided so
// far (a record does not change), so a poll of a batch in progress reads
// only the records of the items not decided yet.
type batchView struct {
	mu       sync.Mutex // protects the fields below
	keys     []string
	fps      []string
	decided  []BatchItem // Status "" while undecided
	problems []*Problem  // an item whose request cannot be made (checked when accepted)
}

// view is b's view, built on first use; at most batchViewsMax are kept,
// the oldest dropped first.
func (s *Server) view(c *caller, b store.Batch) (*batchView, error) {
	bp := s.batches
	k := b.Partner + "|" + b.ID + "|" + b.Digest
	bp.mu.Lock()
	v, ok := bp.views[k]
	bp.mu.Unlock()
	if ok {
		return v, nil
	}
	v = &batchView{keys: make([]string, b.Items), fps: make([]string, b.Items), decided: make([]BatchItem, b.Items), problems: make([]*Problem, b.Items)}
	for from := 0; from < b.Items; from += batchReadItems {
		items, err := s.ledger.BatchItems(b.Partner, b.ID, from, batchReadItems)
		if err != nil {
			return nil, problemOf(err)
		}
		if len(items) == 0 {
			return nil, problemOf(fmt.Errorf("%w: batch %s has %d items, item %d missing", store.ErrCorrupt, b.ID, b.Items, from))
		}
		for k, it := range items {
			i := from + k
			in, perr := s.paymentIntent(c, itemKey(b.ID, i), batchRequestOf(it))
			if perr != nil {
				v.problems[i] = perr
				continue
			}
			v.keys[i], v.fps[i] = s.core.RecordOf(b.Partner, in)
		}
	}
	bp.mu.Lock()
	defer bp.mu.Unlock()
	if old, ok := bp.views[k]; ok {
		return old, nil
	}
	bp.views[k] = v
	bp.viewOrder = append(bp.viewOrder, k)
	if len(bp.viewOrder) > batchViewsMax {
		delete(bp.views, bp.viewOrder[0])
		bp.viewOrder = bp.viewOrder[1:]
	}
	return v, nil
}

// itemStatuses is the status of b's items [from, from+n) from their
// records and b's refusals.
func (s *Server) itemStatuses(c *caller, b store.Batch, from, n int) ([]BatchItem, error) {
	v, err := s.view(c, b)
	if err != nil {
		return nil, err
	}
	refused := refusalsOf(b)
	out := make([]BatchItem, 0, n)
	v.mu.Lock()
	defer v.mu.Unlock()
	for i := from; i < from+n && i < b.Items; i++ {
		if v.decided[i].Status != "" {
			out = append(out, v.decided[i])
			continue
		}
		st := BatchItem{Index: i, Status: "pending"}
		if v.problems[i] != nil {
			st.Status, st.Problem = "failed", v.problems[i]
			out = append(out, st)
			continue
		}
		res, ok, err := s.ledger.Replay(v.keys[i], v.fps[i])
		switch {
		case err != nil:
			return nil, problemOf(err)
		case ok && res.Status == store.StatusOK:
			st.Status, st.PaymentID = "completed", res.TransferID
			v.decided[i] = st
		case ok:
			st.Status, st.Problem = "failed", itemProblem(res.Status.Err())
			v.decided[i] = st
		case refused[i] != nil:
			st.Status, st.Problem = "failed", refused[i]
		case b.Done:
			st.Status = "unknown" // recorded once, pruned since
		}
		out = append(out, st)
	}
	return out, nil
}

// itemProblem is the problem of an item's refusal, without the headers
// a response would carry.
func itemProblem(err error) *Problem {
	p := problemOf(err)
	return &Problem{Type: p.Type, Title: p.Title, Status: p.Status, Detail: p.Detail}
}

func refusalsOf(b store.Batch) map[int]*Problem {
	out := map[int]*Problem{}
	for _, r := range b.Refused {
		p := &Problem{Type: r.Type, Title: r.Title, Status: r.Status, Detail: r.Detail}
		for _, i := range r.Items {
			out[i] = p
		}
	}
	return out
}

// resumeBatches is the resumer: while this node leads, it makes the
// unfinished batches, oldest key first, when woken and every
// batchResumeInterval.
func (s *Server) resumeBatches() {
	bp := s.batches
	tick := time.NewTicker(batchResumeInterval)
	defer tick.Stop()
	for {
		if s.ledger.Leading() {
			if err := s.makeOpenBatches(bp.ctx); err != nil && bp.ctx.Err() == nil {
				s.log.Warn("payment batches", "err", err)
			}
		}
		select {
		case <-bp.ctx.Done():
			return
		case <-bp.wake:
		case <-tick.C:
		}
	}
}

func (s *Server) makeOpenBatches(ctx context.Context) error {
	var after store.BatchRef
	for {
		refs, err := s.ledger.OpenBatches(after, batchOpenPage)
		if err != nil {
			return err
		}
		for _, r := range refs {
			if ctx.Err() != nil || !s.ledger.Leading() {
				return nil
			}
			if err := s.makeBatch(ctx, r); err != nil {
				return fmt.Errorf("batch %s of %s: %w", r.ID, r.Partner, err)
			}
		}
		if len(refs) < batchOpenPage {
			return nil
		}
		after = refs[len(refs)-1]
	}
}

// batchCaller is who a stored batch's items come from: its partner as
// the directory has it now, from the origin its POST was admitted from.
func (s *Server) batchCaller(b store.Batch) (*caller, bool) {
	p, ok := s.ledger.Directory().Partner(b.Partner)
	if !ok || len(p.AcquirerIDs) == 0 {
		return nil, false
	}
	o := payment.Origin{Lane: b.Origin.Lane, CertPin: b.Origin.CertPin}
	if b.Origin.CertAt != 0 {
		o.CertAt = time.Unix(0, b.Origin.CertAt)
	}
	if a, err := netip.ParseAddr(b.Origin.Source); err == nil {
		o.Source = a
	}
	return &caller{partner: p, origin: o}, true
}

// makeBatch makes the items of batch r that no record answers yet, and
// completes it once every item is decided. A transient failure (5xx)
// leaves the batch open for the next pass; so does losing leadership or
// stopping.
func (s *Server) makeBatch(ctx context.Context, r store.BatchRef) error {
	b, err := s.ledger.Batch(r.Partner, r.ID)
	if err != nil || b.Done {
		return err
	}
	outs := make([]itemOutcome, 0, b.Items)
	c, ok := s.batchCaller(b)
	if !ok {
		// The partner is gone from the directory: every item is refused
		// as its payment would be.
		p := itemProblem(fmt.Errorf("%w: partner %q", outcome.ErrUnknownPartner, b.Partner))
		for i := range b.Items {
			outs = append(outs, itemOutcome{i: i, p: p})
		}
		return s.completeBatch(ctx, b, outs)
	}
	expired := time.Since(time.Unix(0, b.Time)) > batchMakeWindow
	results := make(chan itemOutcome, b.Items)
	sent := 0
dispatch:
	for from := 0; from < b.Items; from += batchReadItems {
		items, err := s.ledger.BatchItems(b.Partner, b.ID, from, batchReadItems)
		if err != nil {
			return err
		}
		for k, it := range items {
			i := from + k
			in, perr := s.paymentIntent(c, itemKey(b.ID, i), batchRequestOf(it))
			if perr != nil {
				outs = append(outs, itemOutcome{i: i, p: perr})
				continue
			}
			key, fp := s.core.RecordOf(b.Partner, in)
			if res, ok, err := s.ledger.Replay(key, fp); err != nil {
				return err
			} else if ok {
				outs = append(outs, itemOutcome{i: i, res: res}) // made before: not proposed again
				continue
			}
			if expired {
				outs = append(outs, itemOutcome{i: i, p: itemProblem(fmt.Errorf("%w: batch accepted at %s", outcome.ErrBatchExpired,
					time.Unix(0, b.Time).UTC().Format(time.RFC3339)))})
				continue
			}
			if !s.ledger.Leading() {
				break dispatch
			}
			select {
			case s.batches.jobs <- batchJob{in: in, i: i, key: key, fp: fp, out: results}:
				sent++
			case <-ctx.Done():
				return nil // stopping: the next leader resumes
			}
		}
	}
	for range sent {
		select {
		case o := <-results:
			outs = append(outs, o)
		case <-ctx.Done():
			return nil // stopping: in-flight items give up; the next leader resumes
		}
	}
	if len(outs) < b.Items {
		return nil // stopped dispatching (leadership lost)
	}
	for _, o := range outs {
		if o.retry {
			return nil // a 5xx: the next pass makes it again
		}
	}
	return s.completeBatch(ctx, b, outs)
}

// makeItem makes one item, as POST /v1/payments would.
func (s *Server) makeItem(ctx context.Context, j batchJob) itemOutcome {
	ictx, cancel := context.WithTimeout(ctx, requestTimeoutMax)
	out, err := s.core.Submit(ictx, j.in)
	cancel()
	if err == nil {
		return itemOutcome{i: j.i, res: out.Result}
	}
	// Decided by the ledger (a decline is recorded like an approval)?
	if res, ok, rerr := s.ledger.Replay(j.key, j.fp); rerr == nil && ok {
		return itemOutcome{i: j.i, res: res}
	}
	p := itemProblem(err)
	return itemOutcome{i: j.i, p: p, retry: p.Status >= 500 || ctx.Err() != nil}
}

// completeBatch proposes b's completion: its counts and the items
// refused before the ledger, grouped by problem (by type alone when
// their details differ more than the ledger keeps groups).
func (s *Server) completeBatch(ctx context.Context, b store.Batch, outs []itemOutcome) error {
	ch := &store.BatchChange{ID: b.ID, Done: true}
	ch.Refused = refusalGroups(outs, true)
	if len(ch.Refused) > batchRefusalsMax {
		ch.Refused = refusalGroups(outs, false)
	}
	for _, o := range outs {
		switch {
		case o.p != nil:
			ch.Failed++
		case o.res.Status == store.StatusOK:
			ch.Completed++
		default:
			ch.Failed++
		}
	}
	res, err := s.ledger.Propose(ctx, store.Command{Op: store.OpPutBatch, Key: b.Partner + "|batches-done|" + b.ID,
		Fingerprint: b.Digest, Time: time.Now().UnixNano(), Partner: b.Partner, Batch: ch})
	if err != nil {
		return err
	}
	return res.Status.Err()
}

// refusalKey is what refusals are grouped by.
type refusalKey struct {
	typ, title, detail string
	status             int
}

func refusalGroups(outs []itemOutcome, withDetail bool) []store.BatchRefusal {
	var rs []store.BatchRefusal
	groups := map[refusalKey]int{}
	for _, o := range outs {
		if o.p == nil {
			continue
		}
		k := refusalKey{typ: o.p.Type, title: o.p.Title, status: o.p.Status}
		if withDetail {
			k.detail = o.p.Detail
			if len(k.detail) > batchDetailBytesMax {
				k.detail = k.detail[:batchDetailBytesMax]
			}
		}
		g, ok := groups[k]
		if !ok {
			g = len(rs)
			groups[k] = g
			rs = append(rs, store.BatchRefusal{Type: k.typ, Title: k.title, Detail: k.detail, Status: k.status})
		}
		rs[g].Items = append(rs[g].Items, o.i)
	}
	for i := range rs {
		slices.Sort(rs[i].Items) // outcomes arrive in any order; the ledger keeps them ascending
	}
	return rs
}

// close stops the pool and waits for its goroutines; an item in flight
// is given up (its payment may be made: the next pass reads its record).
func (bp *batchPool) close() {
	bp.cancel()
	bp.wg.Wait()
}
