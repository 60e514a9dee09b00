package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Statement jobs (issue 12, the partner API's POST
// /v1/accounts/{id}/statements): the job record is replicated, so every
// node answers its status and its Idempotency-Key after a restart. The
// file is not: a statement of a closed day is a pure function of the
// ledger, so any node makes the same bytes again, and the record's
// SHA-256 says which bytes those are.

// OpPutStatementJob creates a statement job (State queued) or records
// its end (done with the file, or failed). Idempotent by Key.
const OpPutStatementJob Op = 23

const pfxStatementJob = 's' // s<partner>\x00<job id> → statement job (JSON)

// Limits of statement jobs.
const (
	// statementJobBytesMax bounds one encoded job (a few hundred bytes).
	statementJobBytesMax = 4 << 10
	// statementJobFieldBytesMax bounds its strings.
	statementJobFieldBytesMax = 256
)

// Statement job states.
const (
	StatementQueued = "queued"
	StatementDone   = "done"
	StatementFailed = "failed"
)

// StatementJob is a statement job as stored (the partner is the
// command's). A done job names its file and the file's SHA-256; a job
// that ends again (made once more, on another node or after a restart)
// must name the same bytes.
type StatementJob struct {
	ID      string `json:"id"`
	Account string `json:"account"`
	Day     string `json:"day"`
	Format  string `json:"format"`
	// Request is the POST's Idempotency-Key; the command's fingerprint
	// covers account, day and format.
	Request string `json:"request"`
	State   string `json:"state"`
	File    string `json:"file,omitempty"`
	Bytes   int64  `json:"bytes,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
	Entries int64  `json:"entries,omitempty"`
	Error   string `json:"error,omitempty"`
	// Time is when the job was created (the creating command's time).
	Time int64 `json:"time"`
}

func statementJobKey(partner, id string) string { return skey1(pfxStatementJob, partner+"\x00"+id) }

func statementJobJSON(j *StatementJob) []byte {
	b, err := json.Marshal(j)
	if err != nil {
		panic(err) // a plain struct: cannot fail
	}
	return b
}

// decodeStatementJob reads a JSON blob written by enc.blob, in the one
// encoding json.Marshal gives (like decodeAdmin).
func decodeStatementJob(d *dec) *StatementJob {
	n := d.uvar()
	if d.err != nil {
		return nil
	}
	if n > statementJobBytesMax || n > uint64(len(d.b)-d.off) {
		d.fail("statement job length")
		return nil
	}
	raw := d.b[d.off : d.off+int(n)]
	j := new(StatementJob)
	dj := json.NewDecoder(bytes.NewReader(raw))
	dj.DisallowUnknownFields()
	if err := dj.Decode(j); err != nil || dj.More() || !bytes.Equal(statementJobJSON(j), raw) {
		d.fail("statement job")
		return nil
	}
	d.off += int(n)
	return j
}

func validStatementJob(j *StatementJob) bool {
	for _, s := range [...]string{j.Account, j.Day, j.Format, j.Request, j.File, j.SHA256, j.Error} {
		if len(s) > statementJobFieldBytesMax {
			return false
		}
	}
	if !validID(j.ID) || j.Account == "" || !ValidDay(j.Day) || j.Format == "" || j.Bytes < 0 || j.Entries < 0 {
		return false
	}
	switch j.State {
	case StatementQueued:
		return j.File == "" && j.SHA256 == "" && j.Bytes == 0 && j.Error == ""
	case StatementDone:
		return j.File != "" && len(j.SHA256) == 64 && j.Error == ""
	case StatementFailed:
		return j.File == "" && j.SHA256 == ""
	}
	return false
}

// putStatementJob applies OpPutStatementJob.
func (t *txn) putStatementJob(c *Command) Result {
	j := c.StatementJob
	if j == nil || !validID(c.Partner) || !validStatementJob(j) {
		return invalid()
	}
	k := statementJobKey(c.Partner, j.ID)
	v, exists := t.get(k)
	if j.State == StatementQueued {
		if exists {
			return Result{Status: StatusExists}
		}
		nj := *j
		nj.Time = c.Time
		t.set(k, statementJobJSON(&nj))
		return Result{Status: StatusOK}
	}
	if !exists {
		return Result{Status: StatusNotFound}
	}
	var old StatementJob
	mustDecode(json.Unmarshal(v, &old))
	if old.Account != j.Account || old.Day != j.Day || old.Format != j.Format || old.Request != j.Request {
		return changeErr("statement_job", "job %s is of another account, day or format", j.ID)
	}
	switch {
	case old.State == StatementDone && j.State == StatementDone:
		if old.SHA256 != j.SHA256 || old.Bytes != j.Bytes || old.File != j.File {
			// A statement of a closed day is the same bytes everywhere;
			// other bytes are a bug to see, not a state to keep.
			return changeErr("statement_job.sha256", "job %s made other bytes before", j.ID)
		}
		return Result{Status: StatusOK}
	case old.State == StatementDone:
		return Result{Status: StatusOK} // a failed re-run does not undo a file made
	}
	nj := *j
	nj.Time = old.Time
	t.set(k, statementJobJSON(&nj))
	return Result{Status: StatusOK}
}

// StatementJobOf returns partner's statement job id, or ErrNotFound.
func (s *Store) StatementJobOf(partner, id string) (StatementJob, error) {
	var j StatementJob
	err := s.read(func(db *pebble.DB) error {
		v, closer, err := db.Get([]byte(statementJobKey(partner, id)))
		if errors.Is(err, pebble.ErrNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("store: get: %w", err)
		}
		defer closer.Close()
		if err := json.Unmarshal(v, &j); err != nil {
			return fmt.Errorf("%w: statement job: %v", ErrCorrupt, err)
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return StatementJob{}, fmt.Errorf("statement job %q: %w", id, ErrNotFound)
	}
	return j, err
}
