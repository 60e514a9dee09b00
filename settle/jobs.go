package settle

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Job errors.
var (
	// ErrQueueFull: JobQueueMax jobs are waiting; try again later.
	ErrQueueFull = errors.New("settle: job queue full")
	// ErrClosed: the job runner is shutting down.
	ErrClosed = errors.New("settle: closed")
	// ErrBadRequest wraps every invalid job parameter.
	ErrBadRequest = errors.New("settle: bad request")
)

// Kind is what a job produces.
type Kind string

const (
	KindSettlement Kind = "settlement"
	KindStatement  Kind = "statement"
	KindRecon      Kind = "reconciliation"
)

// JobState is where a job is.
type JobState string

const (
	JobQueued  JobState = "queued"
	JobRunning JobState = "running"
	JobDone    JobState = "done"
	JobFailed  JobState = "failed"
)

// Spec names what a job makes. Two requests for the same Spec while one
// is queued or running share that job.
type Spec struct {
	Kind    Kind   `json:"kind"`
	Day     string `json:"day"`
	Partner string `json:"partner,omitempty"`
	Account string `json:"account,omitempty"`
	Recon   string `json:"recon,omitempty"`
}

// File is one produced file.
type File struct {
	Name   string `json:"name"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
	// Rows is the number of transfers (settlement) or entries (statement).
	Rows int64 `json:"rows"`
}

// Job is one request to produce files, run in the background on this node
// (jobs are not replicated; the files are a pure function of replicated
// state, so any node produces the same bytes).
type Job struct {
	ID       string     `json:"id"`
	Spec     Spec       `json:"spec"`
	State    JobState   `json:"state"`
	Error    string     `json:"error,omitempty"`
	Files    []File     `json:"files,omitempty"`
	Created  time.Time  `json:"created"`
	Finished *time.Time `json:"finished,omitempty"`
}

// runFunc produces a job's files.
type runFunc func(ctx context.Context, s Spec) ([]File, error)

// jobs is a bounded queue with one worker: file jobs read the whole day,
// and one at a time keeps them from competing with the switch for the
// machine's cores.
type jobs struct {
	run     runFunc
	timeout time.Duration
	keptMax int
	log     *slog.Logger
	queue   chan *Job

	mu     sync.Mutex // protects the fields below and every *Job's mutable fields
	byID   map[string]*Job
	order  []string        // ids, oldest first, for forgetting finished jobs
	active map[Spec]string // queued or running spec → job id
	closed bool

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func newJobs(queueMax, keptMax int, timeout time.Duration, run runFunc, logger *slog.Logger) *jobs {
	j := &jobs{
		run: run, timeout: timeout, keptMax: keptMax, log: logger,
		queue: make(chan *Job, queueMax), byID: map[string]*Job{}, active: map[Spec]string{},
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	go j.worker()
	return j
}

func newJobID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand does not fail on supported platforms
	return "job-" + hex.EncodeToString(b[:])
}

// submit queues s, or returns the queued or running job for the same spec.
func (j *jobs) submit(s Spec) (Job, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return Job{}, ErrClosed
	}
	if id, ok := j.active[s]; ok {
		return *j.byID[id], nil
	}
	job := &Job{ID: newJobID(), Spec: s, State: JobQueued, Created: time.Now().UTC()}
	select {
	case j.queue <- job:
	default:
		return Job{}, fmt.Errorf("%w (%d jobs waiting)", ErrQueueFull, cap(j.queue))
	}
	j.byID[job.ID] = job
	j.order = append(j.order, job.ID)
	j.active[s] = job.ID
	j.forgetLocked()
	return *job, nil
}

// forgetLocked drops the oldest finished jobs past keptMax.
func (j *jobs) forgetLocked() {
	for i := 0; len(j.byID) > j.keptMax && i < len(j.order); {
		id := j.order[i]
		if st := j.byID[id].State; st == JobDone || st == JobFailed {
			delete(j.byID, id)
			j.order = append(j.order[:i], j.order[i+1:]...)
			continue
		}
		i++
	}
}

// activeJob returns the queued or running job of spec.
func (j *jobs) activeJob(s Spec) (Job, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	id, ok := j.active[s]
	if !ok {
		return Job{}, false
	}
	return *j.byID[id], true
}

func (j *jobs) get(id string) (Job, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	job, ok := j.byID[id]
	if !ok {
		return Job{}, false
	}
	out := *job
	out.Files = append([]File(nil), job.Files...)
	return out, true
}

func (j *jobs) worker() {
	defer close(j.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for {
		select {
		case <-j.stop:
			return
		case job := <-j.queue:
			j.mu.Lock()
			job.State = JobRunning
			j.mu.Unlock()
			jctx, jcancel := context.WithTimeout(ctx, j.timeout)
			go func() { // cancel the job when Close is called
				select {
				case <-j.stop:
					jcancel()
				case <-jctx.Done():
				}
			}()
			files, err := j.run(jctx, job.Spec)
			jcancel()
			now := time.Now().UTC()
			j.mu.Lock()
			job.Files, job.Finished = files, &now
			if err != nil {
				job.State, job.Error = JobFailed, err.Error()
				j.log.Warn("job failed", "job", job.ID, "kind", job.Spec.Kind, "day", job.Spec.Day, "err", err)
			} else {
				job.State = JobDone
				j.log.Info("job done", "job", job.ID, "kind", job.Spec.Kind, "day", job.Spec.Day, "files", len(files))
			}
			delete(j.active, job.Spec)
			j.mu.Unlock()
		}
	}
}

// close stops the worker (a running job is cancelled) and fails the rest.
func (j *jobs) close() {
	j.once.Do(func() {
		j.mu.Lock()
		j.closed = true
		j.mu.Unlock()
		close(j.stop)
	})
	<-j.done
}
