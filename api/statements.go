package api

import (
	"context"
	"errors"
	"fmt"
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
// A settle job makes both files of an account-day; the API's job id is
// the settle job's id and the format asked for ("job-…-mt940"), so that
// the answer lists the one file the partner asked for. Jobs are kept in
// memory on the node that ran them (settle.Service), and so are the
// Idempotency-Keys that name them: a retry through another node, or after
// a restart, starts a new job, which writes the same bytes (a statement is
// a pure function of the closed day).

// Limits.
const (
	// statementKeysMax bounds the Idempotency-Keys remembered (about
	// 200 bytes each); the oldest is forgotten first, as settle forgets
	// its oldest finished jobs.
	statementKeysMax = 10_000
	// statementFileTimeout bounds sending one file (a statement is at
	// most settle's 2,000,000 entries, a few hundred MB).
	statementFileTimeout = 10 * time.Minute
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

// statements is the settle service and the keys of the jobs started.
type statements struct {
	svc Statements

	mu    sync.Mutex // protects the fields below
	keys  map[string]statementKey
	order []string // keys, oldest first
}

// statementKey is what one Idempotency-Key started: the request it came
// with and the API's job id.
type statementKey struct {
	fingerprint string
	job         string // settle's job id
}

// HandleStatements serves statements from svc (settle.Service). Call it
// before Start; without it the statement routes answer 503 not-ready.
func (s *Server) HandleStatements(svc Statements) {
	s.stmts = &statements{svc: svc, keys: map[string]statementKey{}}
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
		Description: "queued, running, done (with the file) or failed. Jobs are kept in memory on the node that ran them.",
		Errors:      []int{401, 403, 404, 503}, Tags: []string{"bank API"}, Security: read, Metadata: meta,
	}, func(ctx context.Context, in *struct {
		ID  string `path:"id" maxLength:"64"`
		Job string `path:"job" maxLength:"64"`
	}) (*statementAnswer, error) {
		a, job, format, p := s.ownStatementJob(ctx, in.ID, in.Job)
		if p != nil {
			return nil, p
		}
		return &statementAnswer{Status: http.StatusOK, Body: statementJobOf(a.ID, job, format)}, nil
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
	a, p := s.ownAccount(ctx, account)
	if p != nil {
		return nil, p
	}
	st := s.stmts
	c := callerOf(ctx)
	k, fp := c.partner.ID+"|"+key, strings.Join([]string{"statement", a.ID, req.Day, req.Format}, "|")
	// Held across Submit (which only checks and queues): two requests
	// with one key start one job.
	st.mu.Lock()
	defer st.mu.Unlock()
	old, seen := st.keys[k]
	if seen && old.fingerprint != fp {
		return nil, problemOf(fmt.Errorf("api: Idempotency-Key %q: %w", key, store.ErrFingerprintMismatch))
	}
	if seen {
		if job, ok := st.svc.Job(old.job); ok {
			return statementAccepted(a.ID, job, req.Format, true), nil
		}
		// settle forgot the job: make the files again (the same bytes).
	}
	job, err := st.svc.Submit(settle.Spec{Kind: settle.KindStatement, Day: req.Day, Account: a.ID})
	if err != nil {
		return nil, problemOf(err)
	}
	if !seen {
		st.order = append(st.order, k)
		if len(st.order) > statementKeysMax {
			delete(st.keys, st.order[0])
			st.order = st.order[1:]
		}
	}
	st.keys[k] = statementKey{fingerprint: fp, job: job.ID}
	return statementAccepted(a.ID, job, req.Format, seen), nil
}

func statementAccepted(account string, job settle.Job, format string, replayed bool) *statementAnswer {
	b := statementJobOf(account, job, format)
	ans := &statementAnswer{Status: http.StatusAccepted, Location: b.Links.Self, Body: b}
	if replayed {
		ans.Replayed = "true"
	}
	return ans
}

// ownAccount is account when it is the caller partner's; any other, or
// none, is an unknown account (404), so that a partner cannot tell
// another's accounts from accounts that do not exist.
func (s *Server) ownAccount(ctx context.Context, id string) (store.Account, *Problem) {
	if s.stmts == nil {
		return store.Account{}, problemOf(fmt.Errorf("%w: this node serves no statements", outcome.ErrNotReady))
	}
	// Linearizable: an account made, or a day closed, through another
	// node is seen here too.
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

// ownStatementJob is the statement job id of the caller's account: the
// settle job, and the format the id names.
func (s *Server) ownStatementJob(ctx context.Context, account, id string) (store.Account, settle.Job, string, *Problem) {
	a, p := s.ownAccount(ctx, account)
	if p != nil {
		return a, settle.Job{}, "", p
	}
	noJob := problemOf(fmt.Errorf("%w: no statement job %q of this account on this node (jobs are kept in memory on the node that ran them)", outcome.ErrNoJob, id))
	i := strings.LastIndexByte(id, '-')
	if i < 0 {
		return a, settle.Job{}, "", noJob
	}
	format := id[i+1:]
	if _, ok := statementFormats[format]; !ok {
		return a, settle.Job{}, "", noJob
	}
	job, ok := s.stmts.svc.Job(id[:i])
	if !ok || job.Spec.Kind != settle.KindStatement || job.Spec.Account != a.ID {
		return a, settle.Job{}, "", noJob
	}
	return a, job, format, nil
}

// statementJobOf shows job as the statement in format that it makes.
func statementJobOf(account string, job settle.Job, format string) StatementJob {
	self := "/v1/accounts/" + account + "/statements/" + job.ID + "-" + format
	out := StatementJob{ID: job.ID + "-" + format, Account: account, Day: job.Spec.Day, Format: format,
		Status: string(job.State), Links: StatementLinks{Self: self}}
	if job.State != settle.JobDone {
		return out
	}
	want := account + statementFormats[format].ext
	for _, f := range job.Files {
		if f.Name == want {
			out.Files = append(out.Files, StatementFile{Name: f.Name, Bytes: f.Bytes, SHA256: f.SHA256, Entries: f.Rows})
			out.Links.File = self + "/" + f.Name
		}
	}
	return out
}

// statementFile streams the file a done job of the caller's account made.
func (s *Server) statementFile(ctx context.Context, account, id, name string) (*huma.StreamResponse, error) {
	a, job, format, p := s.ownStatementJob(ctx, account, id)
	if p != nil {
		return nil, p
	}
	ft := statementFormats[format]
	if job.State != settle.JobDone {
		return nil, problemOf(fmt.Errorf("%w: job %s is %s", settle.ErrNoFile, id, job.State))
	}
	if name != a.ID+ft.ext {
		return nil, problemOf(fmt.Errorf("%w: this job's file is %s", settle.ErrNoFile, a.ID+ft.ext))
	}
	f, err := s.stmts.svc.Open(settle.KindStatement, job.Spec.Day, a.ID, ft.ext)
	if err != nil {
		return nil, problemOf(err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, problemOf(fmt.Errorf("api: %w", err))
	}
	return &huma.StreamResponse{Body: func(hc huma.Context) {
		defer f.Close()
		r, w := humago.Unwrap(hc)
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(statementFileTimeout))
		w.Header().Set("Content-Type", ft.contentType)
		w.Header().Set("Content-Disposition", `attachment; filename="`+path.Base(job.Spec.Day+"-"+name)+`"`)
		http.ServeContent(w, r, "", st.ModTime(), f)
	}}, nil
}
