package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/danielgtaylor/huma/v2"

	"github.com/switchd/switchd/store"
)

// Payment batches: many payments under one batch id, acknowledged at
// once (202) and made in the background by a bounded worker pool the
// Server owns. Each item is a payment exactly like POST /v1/payments
// (paymentIntent), under its own idempotency key derived from the batch
// id and the item's index ("batch|" + id + "|" + index; the core scopes
// it by partner), so however often a batch is posted, on this node or
// another, before or after a restart, no item is made twice.
//
// Where the state is: a batch's progress is kept in memory on the node
// that accepted it, and GET reads it there. The ledger keeps what
// matters, each item's idempotency record (its transfer, or its
// decline). A node that restarted, or another node, or one that evicted
// the batch, does not know it (404); posting the same batch again there
// recomputes every item from its record: the core answers an item made
// before with its stored result (Replayed) and makes only the items
// never made. We do not look the records up read-only
// (store.Store.Replay): a record is found only with the item's
// fingerprint, which needs the item's body, which only a re-POST brings.

// Limits.
const (
	// batchItemsMax bounds one batch (the 10,000).
	batchItemsMax = 10_000
	// batchBodyBytesMax bounds a batch's body: batchItemsMax items of at
	// most ~300 bytes each.
	batchBodyBytesMax = 4 << 20
	// batchIDBytesMax bounds a batch id; the item key it becomes
	// (partner|batch|id|index) stays far inside the FSM's 256 bytes.
	batchIDBytesMax = 64
	// batchesMax bounds the batches a node keeps in memory, processing or
	// completed (a batch of batchItemsMax holds ~3 MiB while it runs, a
	// few hundred KiB after). A new batch evicts the oldest completed
	// one; when all are processing it is refused (503, retry later).
	batchesMax = 16
	// batchWorkers is the pool that makes items: enough concurrent
	// proposals for raft to pack many into one fsync'd entry, few enough
	// not to crowd out single payments.
	batchWorkers = 32
	// batchPageMax bounds one GET page of items.
	batchPageMax = 1000
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
	Replayed string `header:"Idempotent-Replayed" doc:"true: this node holds the batch already, from an earlier request with this key and body"`
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
	Status    string   `json:"status" enum:"pending,completed,failed"`
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

// batch is one accepted batch.
type batch struct {
	id, key, digest string
	caller          *caller

	mu sync.Mutex // protects the following fields
	// reqs are the items to make; dropped once every item is decided.
	reqs    []paymentRequest
	items   []BatchItem
	pending int
}

func (b *batch) done(i int, paymentID string, p *Problem) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p != nil {
		b.items[i].Status, b.items[i].Problem = "failed", p
	} else {
		b.items[i].Status, b.items[i].PaymentID = "completed", paymentID
	}
	if b.pending--; b.pending == 0 {
		b.reqs = nil
	}
}

// batchJob is one item to make.
type batchJob struct {
	b *batch
	i int
}

// batchPool makes accepted batches' items: a dispatcher hands the
// queued batches' items, in order, to batchWorkers workers. Close stops
// it; items not made by then stay pending (a re-POST makes them).
type batchPool struct {
	queue  chan *batch // accepted, waiting for the dispatcher
	jobs   chan batchJob
	ctx    context.Context // cancelled by close: in-flight items give up
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex // protects the following fields
	// byKey holds the batches by partner + "|" + id; order is their
	// keys, oldest first (eviction).
	byKey map[string]*batch
	order []string
}

func (s *Server) registerBatches() {
	ctx, cancel := context.WithCancel(context.Background())
	bp := &batchPool{queue: make(chan *batch, batchesMax), jobs: make(chan batchJob), ctx: ctx, cancel: cancel, byKey: map[string]*batch{}}
	s.batches = bp
	bp.wg.Add(1 + batchWorkers)
	go func() {
		defer bp.wg.Done()
		bp.dispatch()
	}()
	for range batchWorkers {
		go func() {
			defer bp.wg.Done()
			for {
				select {
				case <-bp.ctx.Done():
					return
				case j := <-bp.jobs:
					s.makeItem(bp.ctx, j)
				}
			}
		}()
	}

	huma.Register(s.api, huma.Operation{
		OperationID: "create-payment-batch", Method: http.MethodPost, Path: "/v1/payment-batches", Summary: "Make a batch of payments",
		Description: fmt.Sprintf("Accepts up to %d payments under one batch id and answers 202 at once; the items are then made in the background, "+
			"each exactly like POST /v1/payments under its own idempotency key (batch id + index), so posting a batch again never makes an item twice. "+
			"Every item's shape is checked first: one bad item refuses the whole batch (400 naming items[i].field).", batchItemsMax),
		DefaultStatus: http.StatusAccepted, Errors: []int{400, 401, 403, 409, 413, 503}, MaxBodyBytes: batchBodyBytesMax, Tags: []string{"payments"},
		Security: []map[string][]string{{"oauth2": {ScopePaymentsWrite}}}, Metadata: map[string]any{"scope": ScopePaymentsWrite},
	}, func(ctx context.Context, in *struct {
		IdempotencyKey string `header:"Idempotency-Key" maxLength:"64" doc:"The request's key: the same key and batch get the same answer, another batch with this id a 409"`
		Body           batchRequest
	}) (*batchAcceptedAnswer, error) {
		return s.acceptBatch(callerOf(ctx), in.IdempotencyKey, in.Body)
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "get-payment-batch", Method: http.MethodGet, Path: "/v1/payment-batches/{id}", Summary: "Read a batch's progress",
		Description: "The batch's status, its items counted by status, and a page of its items (after, limit). " +
			"A batch is kept by the node that accepted it; another node, or one restarted since, answers 404: post the same batch again there " +
			"and its items are recomputed from their idempotency records (an item made before is answered, not made again).",
		Errors: []int{400, 401, 403, 404}, Tags: []string{"payments"},
		Security: []map[string][]string{{"oauth2": {ScopePaymentsRead}}}, Metadata: map[string]any{"scope": ScopePaymentsRead},
	}, func(ctx context.Context, in *struct {
		ID    string `path:"id" maxLength:"64"`
		After string `query:"after" pattern:"^[0-9]{1,5}$" doc:"The next cursor of the previous page"`
		Limit int    `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"Items per page"`
	}) (*struct{ Body Batch }, error) {
		b := s.batches.get(callerOf(ctx).partner.ID, in.ID)
		if b == nil {
			return nil, &Problem{Type: problemBase + "not-found", Title: "Not found", Status: http.StatusNotFound,
				Detail: fmt.Sprintf("no batch %q on this node (a batch is kept by the node that accepted it, until it restarts): post it again to recompute its items", in.ID)}
		}
		after := -1
		if in.After != "" {
			after, _ = strconv.Atoi(in.After) // the pattern allows digits only
		}
		return &struct{ Body Batch }{Body: b.page(after, min(in.Limit, batchPageMax))}, nil
	})
}

// acceptBatch checks every item, then queues the batch, or answers the
// one this node holds under the id already.
func (s *Server) acceptBatch(c *caller, key string, req batchRequest) (*batchAcceptedAnswer, error) {
	if p := checkKey(key); p != nil {
		return nil, p
	}
	if len(req.Items) > batchItemsMax { // also the schema's maxItems
		return nil, validation("items", fmt.Sprintf("at most %d items", batchItemsMax))
	}
	refs := make(map[string]int, len(req.Items))
	for i, it := range req.Items {
		if _, perr := s.paymentIntent(c, "", it); perr != nil {
			perr.Field = fmt.Sprintf("items[%d].%s", i, perr.Field)
			return nil, perr
		}
		if j, ok := refs[it.Reference]; ok {
			return nil, validation(fmt.Sprintf("items[%d].reference", i), fmt.Sprintf("the reference of items[%d]: a reference names one payment", j))
		}
		refs[it.Reference] = i
	}
	body, err := json.Marshal(req.Items)
	if err != nil {
		return nil, problemOf(err)
	}
	sum := sha256.Sum256(body)
	b := &batch{id: req.ID, key: key, digest: hex.EncodeToString(sum[:]), caller: c, reqs: req.Items,
		items: make([]BatchItem, len(req.Items)), pending: len(req.Items)}
	for i := range b.items {
		b.items[i] = BatchItem{Index: i, Status: "pending"}
	}
	held, err := s.batches.add(c.partner.ID, b)
	if err != nil {
		return nil, err
	}
	ans := &batchAcceptedAnswer{Status: http.StatusAccepted, Location: "/v1/payment-batches/" + req.ID,
		Body: BatchAccepted{ID: req.ID, Status: "accepted", Items: len(req.Items)}}
	if held != nil {
		ans.Replayed = "true"
	}
	return ans, nil
}

// add queues b, or returns the batch held under its id when that is the
// same request (same key and items); another request under the id is a
// 409, a node full of batches in progress a 503.
func (bp *batchPool) add(partner string, b *batch) (held *batch, err error) {
	k := partner + "|" + b.id
	bp.mu.Lock()
	defer bp.mu.Unlock()
	if h, ok := bp.byKey[k]; ok {
		if h.key != b.key || h.digest != b.digest {
			p := problemOf(store.ErrFingerprintMismatch)
			p.Detail = fmt.Sprintf("batch %q was posted with another Idempotency-Key or other items", b.id)
			return nil, p
		}
		return h, nil
	}
	if len(bp.byKey) >= batchesMax && !bp.evictLocked() {
		p := &Problem{Type: problemBase + "queue-full", Title: "Too many batches in progress", Status: http.StatusServiceUnavailable,
			Detail: fmt.Sprintf("this node makes at most %d batches at once", batchesMax)}
		p.GetHeaders().Set("Retry-After", "10")
		return nil, p
	}
	select {
	case bp.queue <- b: // never blocks: the queue holds batchesMax, every queued batch is in byKey
	default:
		return nil, &Problem{Type: problemBase + "queue-full", Title: "Too many batches in progress", Status: http.StatusServiceUnavailable}
	}
	bp.byKey[k] = b
	bp.order = append(bp.order, k)
	return nil, nil
}

// evictLocked drops the oldest completed batch; false when none is.
func (bp *batchPool) evictLocked() bool {
	for i, k := range bp.order {
		b := bp.byKey[k]
		b.mu.Lock()
		completed := b.pending == 0
		b.mu.Unlock()
		if completed {
			delete(bp.byKey, k)
			bp.order = append(bp.order[:i], bp.order[i+1:]...)
			return true
		}
	}
	return false
}

func (bp *batchPool) get(partner, id string) *batch {
	bp.mu.Lock()
	defer bp.mu.Unlock()
	return bp.byKey[partner+"|"+id]
}

// dispatch hands the queued batches' items to the workers, in order.
func (bp *batchPool) dispatch() {
	for {
		select {
		case <-bp.ctx.Done():
			return
		case b := <-bp.queue:
			for i := range b.items {
				select {
				case bp.jobs <- batchJob{b, i}:
				case <-bp.ctx.Done():
					return
				}
			}
		}
	}
}

// close stops the pool and waits for its goroutines; an item in flight
// is given up (its payment may be made: a re-POST answers it).
func (bp *batchPool) close() {
	bp.cancel()
	bp.wg.Wait()
}

// makeItem makes item j.i, as POST /v1/payments would.
func (s *Server) makeItem(ctx context.Context, j batchJob) {
	b := j.b
	b.mu.Lock()
	req := b.reqs[j.i]
	b.mu.Unlock()
	in, perr := s.paymentIntent(b.caller, "batch|"+b.id+"|"+strconv.Itoa(j.i), req)
	if perr != nil { // checked when accepted
		b.done(j.i, "", perr)
		return
	}
	ictx, cancel := context.WithTimeout(ctx, requestTimeoutMax)
	out, err := s.core.Submit(ictx, in)
	cancel()
	if err != nil && ctx.Err() != nil {
		return // stopping: stays pending
	}
	if err != nil {
		p := problemOf(err)
		b.done(j.i, "", &Problem{Type: p.Type, Title: p.Title, Status: p.Status, Detail: p.Detail})
		return
	}
	b.done(j.i, out.Result.TransferID, nil)
}

// page is b's progress with items after index after, at most limit.
func (b *batch) page(after, limit int) Batch {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := Batch{ID: b.id, Status: "processing", Items: []BatchItem{}}
	if b.pending == 0 {
		out.Status = "completed"
	}
	for _, it := range b.items {
		switch it.Status {
		case "pending":
			out.Counts.Pending++
		case "completed":
			out.Counts.Completed++
		case "failed":
			out.Counts.Failed++
		}
	}
	from := min(after+1, len(b.items))
	to := min(from+limit, len(b.items))
	out.Items = append(out.Items, b.items[from:to]...)
	if to < len(b.items) {
		out.Next = strconv.Itoa(to - 1)
	}
	return out
}
