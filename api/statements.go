package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/settle"
	"github.com/switchd/switchd/store"
)

// Statements (issue 12, "Bank API"): the MT940 and camt.053 files of an
// account's closed business day, made by the same settle.Service jobs as
// `switchctl statement pull` and the ops API's /v1/statements, so the
// bytes are the same files. A partner gets statements of its own accounts
// only (store.Account.Partner is its id): a cardholder account has no
// partner, and its statement, which shows every partner's payments from
// it, is ops' to hand out; over this API it is an unknown account, like
// another partner's.
//
// The job is replicated state (store.OpPutStatementJob, proposed under
// the POST's Idempotency-Key): its id derives from the partner and the
// key, so every node, before or after a restart, answers the POST's
// replay and GET from the ledger. The file is not replicated: a
// statement of a closed day is a pure function of the ledger (its times
// are the day's close, from the ledger), so the node that answers makes
// it with a settle job, and the record's SHA-256 says which bytes are
// right. Progress is driven by the partner's polls: a GET that finds the
// job unfinished and no settle job for it on this node (another node
// took the POST, or this one restarted) runs it here; the first node to
// finish records the file (the others must make the same bytes, or the
// ledger refuses their record). A file asked of a node that does not
// hold it is made there again before it is sent.

// Limits.
const (
	// statementKeysMax bounds the Idempotency-Keys remembered (about
	// 200 bytes each); the oldest is forgotten first, as settle forgets
	// its oldest finished jobs.
	statementKeysMax = 10_000
	// statementFileTimeout bounds sending one file (a statement is at
	// most settle's 2,000,000 entries, a few hundred MB).
	statementFileTimeout = 10 * time.Minute
	// statementRemakeTimeout bounds making a done job's file again on a
	// node that does not hold it, inside the GET of the file.
	statementRemakeTimeout = 2 * time.Minute
	// statementRemakePoll is how often that GET looks at the settle job.
	statementRemakePoll = 20 * time.Millisecond
)

// Statements is what the statement routes use (settle.Service).
type Statements interface {
	Submit(sp settle.Spec) (settle.Job, error)
	Job(id string) (settle.Job, bool)
	Open(kind settle.Kind, day, name, ext string) (*os.File, error)
}

// statementFormats are the formats a partner may ask for: the file's
// extension and content type.
var statementFormats = map[string]struct{ ext, contentType string }{
	"mt940":   {settle.ExtMT940, "text/plain; charset=us-ascii"},
	"camt053": {settle.ExtCamt053, "application/xml"},
}

// statements is the settle service and, per job, the settle job this
// node runs for it.
type statements struct {
	svc Statements

	mu    sync.Mutex        // protects the fields below
	runs  map[string]string // job id → settle job id
	order []string          // job ids, oldest first
}

// HandleStatements serves statements from svc (settle.Service). Call it
// before Start; without it the statement routes answer 503 not-ready.
func (s *Server) HandleStatements(svc Statements) {
	s.stmts = &statements{svc: svc, runs: map[string]string{}}
}

func (st *statements) run(job string) (string, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	id, ok := st.runs[job]
	return id, ok
}

func (st *statements) remember(job, settleJob string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, ok := st.runs[job]; !ok {
		st.order = append(st.order, job)
		if len(st.order) > statementKeysMax {
			delete(st.runs, st.order[0])
			st.order = st.order[1:]
		}
	}
	st.runs[job] = settleJob
}

// statementJobID is the job an Idempotency-Key of partner names: the
// same on every node.
func statementJobID(partner, key string) string {
	sum := sha256.Sum256([]byte(partner + "|" + key))
	return "stj-" + hex.EncodeToString(sum[:8])
}

type statementRequest struct {
	Day    string `json:"day" pattern:"^[0-9]{4}-[0-9]{2}-[0-9]{2}$" doc:"A closed business day, YYYY-MM-DD"`
	Format string `json:"format" enum:"mt940,camt053" doc:"mt940 (SWIFT MT940, text/plain) or camt053 (ISO 20022 camt.053.001.08, application/xml)"`
}

// StatementJob is a statement's job as the API shows it.
type StatementJob struct {
	ID      string          `json:"id"`
	Account string          `json:"account"`
	Day     string          `json:"day"`
	Format  string          `json:"format" enum:"mt940,camt053"`
	Status  string          `json:"status" enum:"queued,running,done,failed"`
	Files   []StatementFile `json:"files,omitempty" doc:"When done: the file to GET"`
	Links   StatementLinks  `json:"links"`
}

// StatementFile is a file a done job made.
type StatementFile struct {
	Name    string `json:"name"`
	Bytes   int64  `json:"bytes"`
	SHA256  string `json:"sha256" doc:"Hex SHA-256 of the file's bytes"`
	Entries int64  `json:"entries" doc:"Booked entries on the statement"`
}

// StatementLinks are the job's URLs.
type StatementLinks struct {
	Self string `json:"self"`
	File string `json:"file,omitempty" doc:"When done: the file"`
}

type statementAnswer struct {
	Replayed string `header:"Idempotent-Replayed" doc:"true: the job an earlier request with this key started"`
	Location string `header:"Location"`
	Status   int
	Body     StatementJob
}

func (s *Server) registerStatements() {
	read := []map[string][]string{{"oauth2": {ScopeAccountsRead}}}
	meta := map[string]any{"scope": ScopeAccountsRead}
	huma.Register(s.api, huma.Operation{
		OperationID: "create-statement", Method: http.MethodPost, Path: "/v1/accounts/{id}/statements", Summary: "Request a statement",
		Description: "Starts the job that makes the account's MT940 and camt.053 files of a closed business day (the files ops and switchctl get); poll the job, then GET the file. " +
			"Only the caller partner's own accounts (a cardholder account has no partner: 404).",
		DefaultStatus: http.StatusAccepted, Errors: []int{400, 401, 403, 404, 409, 503}, MaxBodyBytes: bodyBytesMax, Tags: []string{"bank API"},
		Security: read, Metadata: meta,
	}, func(ctx context.Context, in *struct {
		IdempotencyKey string `header:"Idempotency-Key" maxLength:"64" doc:"The request's key: a retry with the same key and body gets the same job, another body with it a 409"`
		ID             string `path:"id" maxLength:"64"`
		Body           statementRequest
	}) (*statementAnswer, error) {
		return s.requestStatement(ctx, in.IdempotencyKey, in.ID, in.Body)
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "get-statement", Method: http.MethodGet, Path: "/v1/accounts/{id}/statements/{job}", Summary: "Read a statement's job",
		Description: "queued, running, done (with the file) or failed, from the ledger on any node. A node that finds the job unfinished and does not run it (it was posted elsewhere, or this node restarted) runs it.",
		Errors:      []int{401, 403, 404, 503}, Tags: []string{"bank API"}, Security: read, Metadata: meta,
	}, func(ctx context.Context, in *struct {
		ID  string `path:"id" maxLength:"64"`
		Job string `path:"job" maxLength:"64"`
	}) (*statementAnswer, error) {
		_, j, p := s.ownStatementJob(ctx, in.ID, in.Job)
		if p != nil {
			return nil, p
		}
		b, p := s.advanceStatement(ctx, callerOf(ctx).partner.ID, j)
		if p != nil {
			return nil, p
		}
		return &statementAnswer{Status: http.StatusOK, Body: b}, nil
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "get-statement-file", Method: http.MethodGet, Path: "/v1/accounts/{id}/statements/{job}/{file}", Summary: "Download a statement",
		Description: "The file a done job lists: MT940 as text/plain, camt.053 as application/xml.",
		Errors:      []int{401, 403, 404, 503}, Tags: []string{"bank API"}, Security: read, Metadata: meta,
		Responses: map[string]*huma.Response{"200": {Description: "The statement file", Content: map[string]*huma.MediaType{
			"text/plain":      {Schema: &huma.Schema{Type: huma.TypeString}},
			"application/xml": {Schema: &huma.Schema{Type: huma.TypeString}},
		}}},
	}, func(ctx context.Context, in *struct {
		ID   string `path:"id" maxLength:"64"`
		Job  string `path:"job" maxLength:"64"`
		File string `path:"file" maxLength:"96"`
	}) (*huma.StreamResponse, error) {
		return s.statementFile(ctx, in.ID, in.Job, in.File)
	})
}

func (s *Server) requestStatement(ctx context.Context, key, account string, req statementRequest) (*statementAnswer, error) {
	if p := checkKey(key); p != nil {
		return nil, p
	}
	if !store.ValidDay(req.Day) {
		return nil, validation("day", "a calendar day, YYYY-MM-DD")
	}
	a, p := s.ownAccount(ctx, account) // after a ReadIndex
	if p != nil {
		return nil, p
	}
	st, partner := s.stmts, callerOf(ctx).partner.ID
	id := statementJobID(partner, key)
	mismatch := func() error {
		return problemOf(fmt.Errorf("api: Idempotency-Key %q: %w", key, store.ErrFingerprintMismatch))
	}
	j, err := s.ledger.StatementJobOf(partner, id)
	switch {
	case err == nil:
		if j.Account != a.ID || j.Day != req.Day || j.Format != req.Format {
			return nil, mismatch()
		}
		return s.statementAccepted(ctx, partner, j, true)
	case !errors.Is(err, store.ErrNotFound):
		return nil, problemOf(err)
	}
	// Checks the day (closed) and the account, and starts making the
	// files here before the job is recorded.
	sj, err := st.svc.Submit(settle.Spec{Kind: settle.KindStatement, Day: req.Day, Account: a.ID})
	if err != nil {
		return nil, problemOf(err)
	}
	st.remember(id, sj.ID)
	res, err := s.ledger.Propose(ctx, store.Command{Op: store.OpPutStatementJob, Key: partner + "|statements|" + key,
		Fingerprint: strings.Join([]string{"statement", a.ID, req.Day, req.Format}, "|"), Time: time.Now().UnixNano(), Partner: partner,
		StatementJob: &store.StatementJob{ID: id, Account: a.ID, Day: req.Day, Format: req.Format, Request: key, State: store.StatementQueued}})
	if err != nil {
		return nil, problemOf(err)
	}
	switch res.Status {
	case store.StatusOK, store.StatusExists: // Exists: the same key, recorded concurrently
	case store.StatusFingerprintMismatch:
		return nil, mismatch()
	default:
		return nil, problemOf(res.Status.Err())
	}
	if j, err = s.statementJob(ctx, partner, id); err != nil {
		return nil, problemOf(err)
	}
	if j.Account != a.ID || j.Day != req.Day || j.Format != req.Format {
		return nil, mismatch()
	}
	return s.statementAccepted(ctx, partner, j, res.Replayed || res.Status == store.StatusExists)
}

// statementJob reads a job just proposed (applied here by now, or after
// a ReadIndex).
func (s *Server) statementJob(ctx context.Context, partner, id string) (store.StatementJob, error) {
	j, err := s.ledger.StatementJobOf(partner, id)
	if errors.Is(err, store.ErrNotFound) {
		if rerr := s.ledger.ReadIndex(ctx); rerr != nil {
			return j, rerr
		}
		j, err = s.ledger.StatementJobOf(partner, id)
	}
	return j, err
}

func (s *Server) statementAccepted(ctx context.Context, partner string, j store.StatementJob, replayed bool) (*statementAnswer, error) {
	b, p := s.advanceStatement(ctx, partner, j)
	if p != nil {
		return nil, p
	}
	ans := &statementAnswer{Status: http.StatusAccepted, Location: b.Links.Self, Body: b}
	if replayed {
		ans.Replayed = "true"
	}
	return ans, nil
}

// advanceStatement shows job j, first moving it on: an unfinished job
// whose settle job this node does not run is run here (again); a settle
// job that ended is recorded.
func (s *Server) advanceStatement(ctx context.Context, partner string, j store.StatementJob) (StatementJob, *Problem) {
	if j.State != store.StatementQueued {
		return statementJobOf(j, ""), nil
	}
	st := s.stmts
	var sj settle.Job
	known := false
	if sid, ok := st.run(j.ID); ok {
		sj, known = st.svc.Job(sid)
	}
	if !known {
		var err error
		if sj, err = st.svc.Submit(settle.Spec{Kind: settle.KindStatement, Day: j.Day, Account: j.Account}); err != nil {
			return StatementJob{}, problemOf(err)
		}
		st.remember(j.ID, sj.ID)
	}
	end := j
	switch sj.State {
	case settle.JobDone:
		want := j.Account + statementFormats[j.Format].ext
		for _, f := range sj.Files {
			if f.Name == want {
				end.State, end.File, end.Bytes, end.SHA256, end.Entries = store.StatementDone, f.Name, f.Bytes, f.SHA256, f.Rows
			}
		}
		if end.State != store.StatementDone {
			end.State, end.Error = store.StatementFailed, "the statement job made no "+want
		}
	case settle.JobFailed:
		end.State, end.Error = store.StatementFailed, sj.Error
		if len(end.Error) > batchDetailBytesMax {
			end.Error = end.Error[:batchDetailBytesMax]
		}
	default:
		return statementJobOf(j, string(sj.State)), nil
	}
	res, err := s.ledger.Propose(ctx, store.Command{Op: store.OpPutStatementJob, Key: partner + "|statement-end|" + j.ID + "|" + end.State + "|" + end.SHA256,
		Fingerprint: end.SHA256, Time: time.Now().UnixNano(), Partner: partner, StatementJob: &end})
	if err != nil {
		return StatementJob{}, problemOf(err)
	}
	if err := res.Status.Err(); err != nil {
		return StatementJob{}, problemOf(fmt.Errorf("api: statement job %s: %w", j.ID, err))
	}
	now, err := s.statementJob(ctx, partner, j.ID)
	if err != nil {
		return StatementJob{}, problemOf(err)
	}
	return statementJobOf(now, ""), nil
}

// ownAccount is account when it is the caller partner's; any other, or
// none, is an unknown account (404), so that a partner cannot tell
// another's accounts from accounts that do not exist.
func (s *Server) ownAccount(ctx context.Context, id string) (store.Account, *Problem) {
	if s.stmts == nil {
		return store.Account{}, problemOf(fmt.Errorf("%w: this node serves no statements", outcome.ErrNotReady))
	}
	// Linearizable: an account made, a day closed or a job recorded
	// through another node is seen here too.
	if err := s.ledger.ReadIndex(ctx); err != nil {
		return store.Account{}, problemOf(err)
	}
	a, err := s.ledger.Account(id)
	if err == nil && (a.Partner == "" || a.Partner != callerOf(ctx).partner.ID) {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		return a, problemOf(fmt.Errorf("api: statement of %q: %w", id, store.ErrUnknownAccount))
	}
	if err != nil {
		return a, problemOf(err)
	}
	return a, nil
}

// ownStatementJob is the caller's statement job id ("stj-…-format") of
// the caller's account, from the ledger.
func (s *Server) ownStatementJob(ctx context.Context, account, id string) (store.Account, store.StatementJob, *Problem) {
	a, p := s.ownAccount(ctx, account)
	if p != nil {
		return a, store.StatementJob{}, p
	}
	noJob := problemOf(fmt.Errorf("%w: no statement job %q of this account", outcome.ErrNoJob, id))
	i := strings.LastIndexByte(id, '-')
	if i < 0 {
		return a, store.StatementJob{}, noJob
	}
	j, err := s.ledger.StatementJobOf(callerOf(ctx).partner.ID, id[:i])
	if errors.Is(err, store.ErrNotFound) || (err == nil && (j.Format != id[i+1:] || j.Account != a.ID)) {
		return a, j, noJob
	}
	if err != nil {
		return a, j, problemOf(err)
	}
	return a, j, nil
}

// statementJobOf shows job j; running, when set, is the state of the
// settle job that makes it here.
func statementJobOf(j store.StatementJob, running string) StatementJob {
	self := "/v1/accounts/" + j.Account + "/statements/" + j.ID + "-" + j.Format
	out := StatementJob{ID: j.ID + "-" + j.Format, Account: j.Account, Day: j.Day, Format: j.Format,
		Status: j.State, Links: StatementLinks{Self: self}}
	if j.State == store.StatementQueued && running == string(settle.JobRunning) {
		out.Status = running
	}
	if j.State == store.StatementDone {
		out.Files = []StatementFile{{Name: j.File, Bytes: j.Bytes, SHA256: j.SHA256, Entries: j.Entries}}
		out.Links.File = self + "/" + j.File
	}
	return out
}

// statementFile streams the file of a done job of the caller's account,
// made here again first when this node does not hold it; either way the
// bytes are the ones the job recorded (their SHA-256), or none are sent.
func (s *Server) statementFile(ctx context.Context, account, id, name string) (*huma.StreamResponse, error) {
	a, j, p := s.ownStatementJob(ctx, account, id)
	if p != nil {
		return nil, p
	}
	ft := statementFormats[j.Format]
	if j.State != store.StatementDone {
		return nil, problemOf(fmt.Errorf("%w: job %s is %s", settle.ErrNoFile, id, j.State))
	}
	if name != a.ID+ft.ext || name != j.File {
		return nil, problemOf(fmt.Errorf("%w: this job's file is %s", settle.ErrNoFile, j.File))
	}
	f, err := s.stmts.svc.Open(settle.KindStatement, j.Day, a.ID, ft.ext)
	if errors.Is(err, settle.ErrNoFile) {
		f, err = s.remakeStatement(ctx, j)
	}
	if err != nil {
		return nil, problemOf(err)
	}
	if err := checkSHA256(f, j.SHA256); err != nil {
		f.Close()
		return nil, problemOf(err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, problemOf(fmt.Errorf("api: %w", err))
	}
	return &huma.StreamResponse{Body: func(hc huma.Context) {
		defer f.Close()
		r, w := humago.Unwrap(hc)
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(statementFileTimeout))
		w.Header().Set("Content-Type", ft.contentType)
		w.Header().Set("Content-Disposition", `attachment; filename="`+path.Base(j.Day+"-"+name)+`"`)
		http.ServeContent(w, r, "", info.ModTime(), f)
	}}, nil
}

// remakeStatement makes job j's files on this node and opens j's file.
func (s *Server) remakeStatement(ctx context.Context, j store.StatementJob) (*os.File, error) {
	st := s.stmts
	sj, err := st.svc.Submit(settle.Spec{Kind: settle.KindStatement, Day: j.Day, Account: j.Account})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, statementRemakeTimeout)
	defer cancel()
	tick := time.NewTicker(statementRemakePoll)
	defer tick.Stop()
	for sj.State != settle.JobDone {
		if sj.State == settle.JobFailed {
			return nil, fmt.Errorf("%w: making the file again failed: %s", outcome.ErrNotReady, sj.Error)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: making the file again: %w", outcome.ErrNotReady, ctx.Err())
		case <-tick.C:
		}
		var ok bool
		if sj, ok = st.svc.Job(sj.ID); !ok {
			return nil, fmt.Errorf("%w: the statement job was forgotten", outcome.ErrNotReady)
		}
	}
	return st.svc.Open(settle.KindStatement, j.Day, j.Account, statementFormats[j.Format].ext)
}

// checkSHA256 hashes f and rewinds it: a file with other bytes than the
// job recorded is never sent.
func checkSHA256(f *os.File, want string) error {
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("api: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("api: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("%w: statement file has SHA-256 %s, the job recorded %s", store.ErrCorrupt, got, want)
	}
	return nil
}
