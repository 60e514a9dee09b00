package settle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/switchd/switchd/store"
)

// Reconciliation errors.
var (
	// ErrNoRecon: no reconciliation with that id on this node.
	ErrNoRecon = errors.New("settle: no such reconciliation")
	// ErrNoBreak: the reconciliation has no break with that id.
	ErrNoBreak = errors.New("settle: no such break")
	// ErrBreakResolved: the break is resolved already; it wraps
	// store.ErrAlreadyFinal, which the FSM answered.
	ErrBreakResolved = errors.New("settle: break already resolved")
)

// reconCacheMax bounds the results kept decoded in memory (a 1M-row day
// can have a large break list).
const reconCacheMax = 4

// reconCache keeps recent results decoded.
type reconCache struct {
	mu    sync.Mutex // protects the fields below
	byID  map[string]*ReconResult
	order []string
}

func (c *reconCache) get(id string) *ReconResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byID[id]
}

func (c *reconCache) put(r *ReconResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID == nil {
		c.byID = map[string]*ReconResult{}
	}
	if _, ok := c.byID[r.ID]; !ok {
		c.order = append(c.order, r.ID)
	}
	c.byID[r.ID] = r
	for len(c.order) > reconCacheMax {
		delete(c.byID, c.order[0])
		c.order = c.order[1:]
	}
}

// BreakLedger is the replicated state of breaks (store.Store).
type BreakLedger interface {
	Breaks(recon string) (map[string]store.BreakState, error)
	BreakHistory(recon, id string) (store.BreakState, []store.BreakAudit, error)
}

// ReconStatus is a reconciliation as GET /v1/reconciliations/{id} shows it.
type ReconStatus struct {
	ID      string   `json:"id"`
	Day     string   `json:"day"`
	Partner string   `json:"partner"`
	Biller  string   `json:"biller,omitempty"`
	State   JobState `json:"state"`
	Error   string   `json:"error,omitempty"`
	Job     string   `json:"job,omitempty"`
	// The result's counts, once done.
	*ReconSummary
}

// ReconSummary is a result without its break list.
type ReconSummary struct {
	PartnerRows int               `json:"partner_rows"`
	BillerRows  int               `json:"biller_rows"`
	LedgerRows  int               `json:"ledger_rows"`
	Matched     int               `json:"matched"`
	Counts      map[string]int    `json:"counts"`
	Owners      map[string]string `json:"owners"`
}

func (s *Service) reconDir(id string) string { return filepath.Join(s.cfg.Dir, "recon", id) }

// reconMeta is what a reconciliation was asked to do (meta.json).
type reconMeta struct {
	Day     string `json:"day"`
	Partner string `json:"partner"`
	Biller  string `json:"biller,omitempty"`
}

// UploadBytesMax bounds one reconciliation upload (both files).
func (s *Service) UploadBytesMax() int64 { return 2*s.cfg.Recon.FileBytesMax + 1<<20 }

// StartRecon stores the two uploads and queues their reconciliation
// against the ledger. biller names the biller the biller file is from (an
// http destination's id, or an account id: see resolveBiller); empty, the
// file covers every biller. The id is derived from the inputs, so
// uploading the same files again gives the same reconciliation (and its
// break decisions).
func (s *Service) StartRecon(day, partner, biller string, partnerFile, billerFile io.Reader) (ReconStatus, error) {
	if !store.ValidDay(day) {
		return ReconStatus{}, fmt.Errorf("%w: day must be YYYY-MM-DD", ErrBadRequest)
	}
	if !ValidName(partner) {
		return ReconStatus{}, fmt.Errorf("%w: partner must be 1-%d characters of [A-Za-z0-9._-]", ErrBadRequest, nameBytesMax)
	}
	if _, err := s.resolveBiller(biller, day); err != nil {
		return ReconStatus{}, err
	}
	root := filepath.Join(s.cfg.Dir, "recon")
	if err := os.MkdirAll(root, 0o750); err != nil {
		return ReconStatus{}, err
	}
	tmp, err := os.MkdirTemp(root, ".upload-")
	if err != nil {
		return ReconStatus{}, err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00", day, partner, s.cfg.Recon.ToleranceDays)
	if biller != "" { // absent from the hash without one: ids of runs from before --biller stand
		fmt.Fprintf(h, "biller\x00%s\x00", biller)
	}
	for _, f := range []struct {
		name string
		r    io.Reader
	}{{"partner.csv", partnerFile}, {"biller.csv", billerFile}} {
		sum, err := saveUpload(filepath.Join(tmp, f.name), f.r, s.cfg.Recon.FileBytesMax)
		if err != nil {
			return ReconStatus{}, fmt.Errorf("%s: %w", f.name, err)
		}
		h.Write(sum)
	}
	meta, _ := json.Marshal(reconMeta{Day: day, Partner: partner, Biller: biller})
	if err := os.WriteFile(filepath.Join(tmp, "meta.json"), meta, 0o640); err != nil {
		return ReconStatus{}, err
	}
	id := "R" + hex.EncodeToString(h.Sum(nil))[:20]
	if _, err := os.Stat(s.reconDir(id)); err != nil { // else: the same inputs were uploaded before
		if err := os.Rename(tmp, s.reconDir(id)); err != nil {
			return ReconStatus{}, err
		}
	}
	if st, err := s.Recon(id); err == nil && (st.State == JobDone || st.State == JobQueued || st.State == JobRunning) {
		return st, nil
	}
	os.Remove(filepath.Join(s.reconDir(id), "error.txt")) // a retry after a failure
	job, err := s.jobs.submit(Spec{Kind: KindRecon, Day: day, Partner: partner, Recon: id})
	if err != nil {
		return ReconStatus{}, err
	}
	return ReconStatus{ID: id, Day: day, Partner: partner, Biller: biller, State: job.State, Job: job.ID}, nil
}

// resolveBiller resolves the biller a reconciliation's biller file is from
// (billerScope says what each choice checks). biller is, first, the id of
// an http destination; else the id of an account: an http destination's
// settlement account (that destination) or an account of kind biller.
// Anything else — an ISO 8583 destination, another kind of account, no
// such id — is ErrBadRequest. Empty is every biller: each account of kind
// biller and each http destination's settlement account. The directory
// is read when the run starts and again when it runs: a destination added
// in between is in scope. So is an http destination deleted since the
// first day the run reads (day − tolerance): the audit record of its
// deletion says what it was, and the payments made before it went are
// still owed in the biller's file.
func (s *Service) resolveBiller(biller, day string) (billerScope, error) {
	dir := s.ledger.Directory()
	gone, err := s.deletedBillers(day)
	if err != nil {
		return billerScope{}, err
	}
	// Settlement account → http destination, at most store's 256 and
	// those deleted; by id: the first of two sharing an account names it,
	// a destination of the directory before one deleted.
	dests := map[string]string{}
	for _, d := range dir.Destinations() {
		if _, dup := dests[d.SettlementAccount]; d.Kind == store.DestinationKindHTTP && !dup {
			dests[d.SettlementAccount] = d.ID
		}
	}
	for _, d := range gone {
		if _, dup := dests[d.SettlementAccount]; !dup {
			dests[d.SettlementAccount] = d.ID
		}
	}
	if biller == "" {
		return billerScope{dests: dests}, nil
	}
	// By id: the destination and, if it was deleted (and perhaps made
	// again since, settling elsewhere), what it settled to before.
	named := map[string]string{}
	if d, ok := dir.Destination(biller); ok {
		if d.Kind != store.DestinationKindHTTP {
			return billerScope{}, fmt.Errorf("%w: biller %q is a %s destination, not an http biller", ErrBadRequest, biller, d.Kind)
		}
		named[d.SettlementAccount] = d.ID
	}
	for _, d := range gone {
		if d.ID == biller {
			named[d.SettlementAccount] = d.ID
		}
	}
	if len(named) > 0 {
		return billerScope{named: true, dests: named}, nil
	}
	if id, ok := dests[biller]; ok {
		return billerScope{named: true, dests: map[string]string{biller: id}}, nil
	}
	if !ValidName(biller) {
		return billerScope{}, fmt.Errorf("%w: biller must be 1-%d characters of [A-Za-z0-9._-]", ErrBadRequest, nameBytesMax)
	}
	a, err := s.ledger.Account(biller)
	if errors.Is(err, store.ErrNotFound) {
		return billerScope{}, fmt.Errorf("%w: biller %q: no http destination and no account of that id", ErrBadRequest, biller)
	}
	if err != nil {
		return billerScope{}, err
	}
	if a.Kind != store.KindBiller {
		return billerScope{}, fmt.Errorf("%w: biller %q is an account of kind %s: neither a biller account nor an http destination's settlement account", ErrBadRequest, biller, a.Kind)
	}
	return billerScope{named: true, account: biller}, nil
}

// auditPage is how many audit records deletedBillers asks for at a time.
const auditPage = 1000

// deletedBillers are the http destinations deleted since the first day a
// reconciliation of day reads (a day more, for a business day that
// starts before midnight UTC), as their deletions' audit records hold
// them, in id order; the last deletion of an id wins.
func (s *Service) deletedBillers(day string) ([]store.Destination, error) {
	d0, err := time.Parse(time.DateOnly, day)
	if err != nil {
		return nil, fmt.Errorf("%w: day must be YYYY-MM-DD", ErrBadRequest)
	}
	from := d0.AddDate(0, 0, -s.cfg.Recon.ToleranceDays-1).UnixNano()
	byID := map[string]store.Destination{}
	var after uint64
	for {
		recs, err := s.ledger.Audit(store.AuditFilter{From: from, After: after, Limit: auditPage})
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			after = r.Seq
			var d store.Destination
			if r.Action != "destination.delete" || json.Unmarshal(r.Before, &d) != nil || d.Kind != store.DestinationKindHTTP {
				continue
			}
			byID[d.ID] = d
		}
		if len(recs) < auditPage {
			break
		}
	}
	out := make([]store.Destination, 0, len(byID))
	for _, id := range slices.Sorted(maps.Keys(byID)) {
		out = append(out, byID[id])
	}
	return out, nil
}

// saveUpload copies r to path, refusing more than bytesMax, and returns
// its SHA-256.
func saveUpload(path string, r io.Reader, bytesMax int64) ([]byte, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, bytesMax+1))
	if err != nil {
		return nil, err
	}
	if n > bytesMax {
		return nil, fmt.Errorf("%w: file larger than %d bytes", ErrInput, bytesMax)
	}
	return h.Sum(nil), f.Close()
}

// runRecon is the job: parse both files (all or nothing), match, store.
func (s *Service) runRecon(ctx context.Context, sp Spec) ([]File, error) {
	dir := s.reconDir(sp.Recon)
	res, err := s.reconcileDir(ctx, dir, sp)
	if err != nil {
		_ = os.WriteFile(filepath.Join(dir, "error.txt"), []byte(err.Error()), 0o640)
		return nil, err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "result.json.tmp"), b, 0o640); err != nil {
		return nil, err
	}
	if err := os.Rename(filepath.Join(dir, "result.json.tmp"), filepath.Join(dir, "result.json")); err != nil {
		return nil, err
	}
	s.recons.put(res)
	sum := sha256.Sum256(b)
	return []File{{Name: "result.json", Bytes: int64(len(b)), SHA256: hex.EncodeToString(sum[:]), Rows: int64(len(res.Breaks))}}, nil
}

func (s *Service) reconcileDir(ctx context.Context, dir string, sp Spec) (*ReconResult, error) {
	var meta reconMeta
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return nil, fmt.Errorf("settle: recon %s meta: %w", sp.Recon, err)
	}
	scope, err := s.resolveBiller(meta.Biller, sp.Day)
	if err != nil {
		return nil, err
	}
	in := &reconInput{id: sp.Recon, day: sp.Day, partner: sp.Partner, biller: meta.Biller, billers: scope,
		toleranceDays: s.cfg.Recon.ToleranceDays, sym: newSymbols()}
	for _, f := range []struct {
		name string
		m    Mapping
		out  *[]fileRow
	}{{"partner.csv", s.cfg.Recon.mapping(sp.Partner), &in.partnerRows}, {"biller.csv", s.cfg.Recon.Biller.withDefaults(), &in.billerRows}} {
		fh, err := os.Open(filepath.Join(dir, f.name))
		if err != nil {
			return nil, err
		}
		rows, err := parseFile(f.name, fh, f.m, s.cfg.Recon.FileBytesMax, in.sym, sp.Partner)
		fh.Close()
		if err != nil {
			return nil, err
		}
		*f.out = rows
	}
	return reconcile(ctx, s.ledger, in)
}

// result returns a finished reconciliation's result.
func (s *Service) result(id string) (*ReconResult, error) {
	if r := s.recons.get(id); r != nil {
		return r, nil
	}
	if !ValidName(id) {
		return nil, ErrNoRecon
	}
	b, err := os.ReadFile(filepath.Join(s.reconDir(id), "result.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoRecon
	}
	if err != nil {
		return nil, err
	}
	var r ReconResult
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("settle: recon %s result: %w", id, err)
	}
	s.recons.put(&r)
	return &r, nil
}

// Recon reports a reconciliation: queued, running, failed (with the input
// error naming row and column) or done with its counts.
func (s *Service) Recon(id string) (ReconStatus, error) {
	if !ValidName(id) {
		return ReconStatus{}, ErrNoRecon
	}
	dir := s.reconDir(id)
	var meta reconMeta
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return ReconStatus{}, ErrNoRecon
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return ReconStatus{}, fmt.Errorf("settle: recon %s meta: %w", id, err)
	}
	st := ReconStatus{ID: id, Day: meta.Day, Partner: meta.Partner, Biller: meta.Biller}
	// The job first, then its files: a job writes its result or error
	// before it stops being active, so a job that ends between the two
	// checks has left its file for the second. (The other order read "no
	// result yet", then "no job", and called a finished one interrupted.)
	spec := Spec{Kind: KindRecon, Day: meta.Day, Partner: meta.Partner, Recon: id}
	if job, ok := s.jobs.activeJob(spec); ok {
		st.State, st.Job = job.State, job.ID
		return st, nil
	}
	if r, err := s.result(id); err == nil {
		st.State = JobDone
		st.ReconSummary = &ReconSummary{PartnerRows: r.PartnerRows, BillerRows: r.BillerRows, LedgerRows: r.LedgerRows,
			Matched: r.Matched, Counts: r.Counts, Owners: Owners}
		return st, nil
	}
	if msg, err := os.ReadFile(filepath.Join(dir, "error.txt")); err == nil {
		st.State, st.Error = JobFailed, string(msg)
		return st, nil
	}
	st.State, st.Error = JobFailed, "interrupted; upload the files again"
	return st, nil
}

// ReconBreaks returns a reconciliation's breaks with code (all when
// empty), each with its replicated state.
func (s *Service) ReconBreaks(id, code string) ([]Break, error) {
	r, err := s.result(id)
	if err != nil {
		return nil, err
	}
	states, err := s.breaks.Breaks(id)
	if err != nil {
		return nil, err
	}
	out := filterBreaks(r.Breaks, code)
	for i := range out {
		if st, ok := states[out[i].ID]; ok {
			out[i].State, out[i].Assignee, out[i].Note = st.State, st.Assignee, st.Note
		}
	}
	return out, nil
}

// BreakDetail is a break with its audit trail.
type BreakDetail struct {
	Break
	Audit []store.BreakAudit `json:"audit"`
}

// ReconBreak returns one break and its audit trail.
func (s *Service) ReconBreak(id, bid string) (BreakDetail, error) {
	r, err := s.result(id)
	if err != nil {
		return BreakDetail{}, err
	}
	i := breakIndex(r, bid)
	if i < 0 {
		return BreakDetail{}, ErrNoBreak
	}
	d := BreakDetail{Break: r.Breaks[i], Audit: []store.BreakAudit{}}
	st, audit, err := s.breaks.BreakHistory(id, bid)
	if err == nil {
		d.State, d.Assignee, d.Note, d.Audit = st.State, st.Assignee, st.Note, audit
	} else if !errors.Is(err, store.ErrNotFound) {
		return BreakDetail{}, err
	}
	return d, nil
}

// breakIndex finds break bid (ids are B + its 1-based position).
func breakIndex(r *ReconResult, bid string) int {
	if len(bid) < 2 || bid[0] != 'B' {
		return -1
	}
	n, err := strconv.Atoi(bid[1:])
	if err != nil || n < 1 || n > len(r.Breaks) || r.Breaks[n-1].ID != bid {
		return -1
	}
	return n - 1
}

// UpdateBreak assigns or resolves a break through the cluster. key is the
// request's idempotency key: a retry with the same key changes nothing
// twice. admin, when set, is who asked (its actor should be u.Actor); the
// audit record names it and its address.
func (s *Service) UpdateBreak(ctx context.Context, id, bid string, u store.BreakUpdate, key string, now int64, admin *store.Admin) (BreakDetail, error) {
	r, err := s.result(id)
	if err != nil {
		return BreakDetail{}, err
	}
	if breakIndex(r, bid) < 0 {
		return BreakDetail{}, ErrNoBreak
	}
	u.Recon, u.Break = id, bid
	fp := sha256.Sum256([]byte(string(u.Action) + "\x00" + u.Assignee + "\x00" + u.Note + "\x00" + u.Actor))
	res, err := s.days.prop.Propose(ctx, store.Command{Op: store.OpBreak, Key: "break|" + id + "|" + bid + "|" + key,
		Fingerprint: hex.EncodeToString(fp[:16]), Time: now, Break: &u, Admin: admin})
	if err != nil {
		return BreakDetail{}, err
	}
	if err := res.Status.Err(); err != nil {
		if errors.Is(err, store.ErrAlreadyFinal) {
			return BreakDetail{}, fmt.Errorf("%w: %s: %w", ErrBreakResolved, bid, err)
		}
		if errors.Is(err, store.ErrInvalidCommand) {
			return BreakDetail{}, fmt.Errorf("%w: an assignment needs an assignee, a resolution a note (at most 1000 bytes)", ErrBadRequest)
		}
		return BreakDetail{}, err
	}
	return s.ReconBreak(id, bid)
}
