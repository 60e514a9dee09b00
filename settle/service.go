package settle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/switchd/switchd/store"
)

// nameBytesMax bounds partner and account ids used in file names.
const nameBytesMax = 64

// ErrNoFile: the file was not produced yet (start a job) or never will be.
var ErrNoFile = errors.New("settle: no such file")

// Ledger is what the service reads.
type Ledger interface {
	Scanner
	ReversedScanner
	DayLedger
	Day(day string) (store.Day, error)
	Days(before string, limit int) ([]store.Day, error)
	Account(id string) (store.Account, error)
	ScanAccountBack(ctx context.Context, account string, fn func(t *store.Transfer) (bool, error)) (store.Account, error)
	BreakLedger
	// Directory names the http destinations, whose payments a biller's
	// file must have (reconciliation's B2); the audit chain those deleted.
	Directory() *store.Directory
	Audit(f store.AuditFilter) ([]store.AuditRecord, error)
}

// Service runs file jobs and serves their files.
type Service struct {
	cfg    Config
	ledger Ledger
	days   *Days
	jobs   *jobs
	log    *slog.Logger
	breaks BreakLedger
	recons reconCache
}

// New starts the job worker; Close stops it.
func New(cfg Config, ledger Ledger, days *Days, logger *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: Dir is empty", ErrConfig)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, ledger: ledger, days: days, log: logger, breaks: ledger}
	s.jobs = newJobs(cfg.JobQueueMax, cfg.JobsKeptMax, cfg.JobTimeout, s.run, logger)
	return s, nil
}

// Close stops the worker, cancelling a job in progress.
func (s *Service) Close() { s.jobs.close() }

// Days returns the day operations.
func (s *Service) Days() *Days { return s.days }

// CloseDay closes the open business day now for admin (see Days.Close).
func (s *Service) CloseDay(ctx context.Context, day string, admin *store.Admin) (DayResult, error) {
	return s.days.Close(ctx, day, admin)
}

// ListDays returns the open day ("" before the first) and up to limit
// days before `before`, newest first.
func (s *Service) ListDays(before string, limit int) (string, []store.Day, error) {
	open, err := s.ledger.OpenDay()
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", nil, err
	}
	days, err := s.ledger.Days(before, limit)
	return open, days, err
}

// ValidName reports whether id can name a file: 1–64 of [A-Za-z0-9._-],
// not starting with a dot.
func ValidName(id string) bool {
	if len(id) < 1 || len(id) > nameBytesMax || id[0] == '.' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// check validates a spec before it is queued.
func (s *Service) check(sp Spec) error {
	if !store.ValidDay(sp.Day) {
		return fmt.Errorf("%w: day must be YYYY-MM-DD", ErrBadRequest)
	}
	switch sp.Kind {
	case KindSettlement:
		if !ValidName(sp.Partner) || sp.Account != "" {
			return fmt.Errorf("%w: partner must be 1-%d characters of [A-Za-z0-9._-]", ErrBadRequest, nameBytesMax)
		}
	case KindStatement:
		if !ValidName(sp.Account) || sp.Partner != "" {
			return fmt.Errorf("%w: account must be 1-%d characters of [A-Za-z0-9._-]", ErrBadRequest, nameBytesMax)
		}
		if _, err := s.ledger.Account(sp.Account); errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("settle: statement of %q: %w", sp.Account, store.ErrUnknownAccount)
		} else if err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: kind %q", ErrBadRequest, sp.Kind)
	}
	d, err := s.ledger.Day(sp.Day)
	if errors.Is(err, store.ErrNotFound) || (err == nil && d.State != store.DayClosed) {
		return fmt.Errorf("%w: %s", ErrDayNotClosed, sp.Day)
	}
	return err
}

// Submit queues a job for sp (or returns the one already queued or
// running for it). The day must be closed.
func (s *Service) Submit(sp Spec) (Job, error) {
	if err := s.check(sp); err != nil {
		return Job{}, err
	}
	return s.jobs.submit(sp)
}

// Job returns a job by id.
func (s *Service) Job(id string) (Job, bool) { return s.jobs.get(id) }

// Extensions of the files a job writes.
const (
	ExtCSV     = ".csv"
	ExtJSON    = ".json"
	ExtMT940   = ".mt940"
	ExtCamt053 = ".camt053.xml"
	ExtSHA256  = ".sha256"
)

// path is where a file lives: Dir/settlements/DAY/PARTNER.csv,
// Dir/statements/DAY/ACCOUNT.mt940.
func (s *Service) path(kind Kind, day, name, ext string) string {
	sub := "settlements"
	if kind == KindStatement {
		sub = "statements"
	}
	return filepath.Join(s.cfg.Dir, sub, day, name+ext)
}

// Open opens a produced file (ext may end in .sha256 for its checksum).
// It is ErrNoFile until a job wrote it.
func (s *Service) Open(kind Kind, day, name, ext string) (*os.File, error) {
	if !store.ValidDay(day) || !ValidName(name) {
		return nil, fmt.Errorf("%w: bad day or name", ErrBadRequest)
	}
	f, err := os.Open(s.path(kind, day, name, ext))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoFile
	}
	return f, err
}

func (s *Service) run(ctx context.Context, sp Spec) ([]File, error) {
	switch sp.Kind {
	case KindSettlement:
		var rows int64
		files, err := s.writeFiles(sp, []string{ExtCSV, ExtJSON}, func(ws []io.Writer) (err error) {
			rows, err = WriteSettlement(ctx, s.ledger, sp.Day, sp.Partner, ws[0], ws[1])
			return err
		})
		for i := range files {
			files[i].Rows = rows
		}
		return files, err
	case KindStatement:
		return s.statement(ctx, sp)
	case KindRecon:
		return s.runRecon(ctx, sp)
	}
	return nil, fmt.Errorf("%w: kind %q", ErrBadRequest, sp.Kind)
}

// writeFiles writes the files of one job: each goes to a temporary file,
// is synced, then renamed into place after its .sha256 (sha256sum format),
// so a reader never sees a half-written file under the final name.
func (s *Service) writeFiles(sp Spec, exts []string, write func([]io.Writer) error) ([]File, error) {
	name := sp.Partner
	if sp.Kind == KindStatement {
		name = sp.Account
	}
	dir := filepath.Dir(s.path(sp.Kind, sp.Day, name, ""))
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("settle: %w", err)
	}
	type out struct {
		f    *os.File
		h    hash.Hash
		n    *countWriter
		dest string
	}
	outs := make([]out, len(exts))
	ws := make([]io.Writer, len(exts))
	defer func() {
		for _, o := range outs {
			if o.f != nil {
				o.f.Close()
				os.Remove(o.f.Name())
			}
		}
	}()
	for i, ext := range exts {
		f, err := os.CreateTemp(dir, ".tmp-*")
		if err != nil {
			return nil, fmt.Errorf("settle: %w", err)
		}
		h := sha256.New()
		n := &countWriter{}
		outs[i] = out{f: f, h: h, n: n, dest: s.path(sp.Kind, sp.Day, name, ext)}
		ws[i] = io.MultiWriter(f, h, n)
	}
	if err := write(ws); err != nil {
		return nil, err
	}
	files := make([]File, len(exts))
	for i, o := range outs {
		sum := hex.EncodeToString(o.h.Sum(nil))
		base := filepath.Base(o.dest)
		if err := o.f.Sync(); err != nil {
			return nil, fmt.Errorf("settle: %w", err)
		}
		if err := o.f.Close(); err != nil {
			return nil, fmt.Errorf("settle: %w", err)
		}
		if err := os.WriteFile(o.dest+ExtSHA256+".tmp", []byte(sum+"  "+base+"\n"), 0o640); err != nil {
			return nil, fmt.Errorf("settle: %w", err)
		}
		if err := os.Rename(o.dest+ExtSHA256+".tmp", o.dest+ExtSHA256); err != nil {
			return nil, fmt.Errorf("settle: %w", err)
		}
		if err := os.Rename(o.f.Name(), o.dest); err != nil {
			return nil, fmt.Errorf("settle: %w", err)
		}
		outs[i].f = nil
		files[i] = File{Name: base, Bytes: o.n.n, SHA256: sum}
	}
	return files, nil
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
