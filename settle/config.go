// Package settle turns business days into files: it closes days (a
// scheduled cutover and a manual close, both replicated commands), writes
// settlement files per partner per closed day, MT940 and camt.053
// statements per account per day, and runs reconciliation. It reads the
// ledger and changes it only through commands (DESIGN.md).
package settle

import (
	"errors"
	"fmt"
	"time"
)

// Bounds of Config, each with its reason.
const (
	// jobQueueMaxLimit: a job can read a million transfers; more queued
	// than this is an operator script gone wrong, not a backlog to keep.
	jobQueueMaxLimit = 10_000
	// jobsKeptMaxLimit bounds the finished jobs remembered for GET /v1/jobs.
	jobsKeptMaxLimit = 100_000
	checkIntervalMin = 100 * time.Millisecond
	checkIntervalMax = 10 * time.Minute
	jobTimeoutMax    = 2 * time.Hour
	// reconFileBytesMaxLimit: 4 GiB is ~20M rows, past what one day's
	// reconciliation can hold in memory.
	reconFileBytesMaxLimit = 4 << 30
	toleranceDaysMax       = 7
)

// ErrConfig is wrapped by every Validate error.
var ErrConfig = errors.New("settle: invalid config")

// Config configures business-day cutover and the file jobs.
type Config struct {
	// Dir holds the generated files (settlements/, statements/); set from
	// the data dir.
	Dir string `yaml:"-"`
	// Zone is the IANA time zone of the cutover; empty means the switch's
	// business_day_zone.
	Zone string `yaml:"zone"`
	// Cutover is the local time (HH:MM) at which the open business day
	// closes and the next opens: with 23:55, a message at 23:56 belongs to
	// tomorrow. "00:00" closes at midnight.
	Cutover string `yaml:"cutover"`
	// CheckInterval is how often the leader checks whether the cutover
	// passed; a close is late by at most this much.
	CheckInterval time.Duration `yaml:"check_interval"`
	// JobQueueMax bounds queued file jobs; past it a request is refused
	// (HTTP 503) instead of queueing without end.
	JobQueueMax int `yaml:"job_queue_max"`
	// JobsKeptMax bounds the jobs remembered (the oldest finished are
	// forgotten first; their files stay on disk).
	JobsKeptMax int `yaml:"jobs_kept_max"`
	// JobTimeout bounds one job.
	JobTimeout time.Duration `yaml:"job_timeout"`
	// Recon configures reconciliation.
	Recon ReconConfig `yaml:"recon"`
}

// ReconConfig configures reconciliation: file limits, date tolerance and
// the column mapping of each partner's file and of biller files.
type ReconConfig struct {
	// FileBytesMax bounds one uploaded file; a larger one is refused
	// whole.
	FileBytesMax int64 `yaml:"file_bytes_max"`
	// ToleranceDays: a file's date may differ from our business day by
	// this many days before it is a B5 break (late cutover, time zones).
	ToleranceDays int `yaml:"tolerance_days"`
	// Partners maps a partner id to its file's columns; partners not
	// listed send our own settlement file format.
	Partners map[string]Mapping `yaml:"partners"`
	// Biller is the biller posting file's columns.
	Biller Mapping `yaml:"biller"`
}

// mapping returns partner's column mapping.
func (c ReconConfig) mapping(partner string) Mapping {
	if m, ok := c.Partners[partner]; ok {
		return m.withDefaults()
	}
	return DefaultPartnerMapping()
}

// DefaultConfig closes the day at 23:55.
func DefaultConfig() Config {
	return Config{
		Cutover:       "23:55",
		CheckInterval: 10 * time.Second,
		JobQueueMax:   64,
		JobsKeptMax:   1024,
		JobTimeout:    10 * time.Minute,
		Recon: ReconConfig{
			FileBytesMax:  512 << 20,
			ToleranceDays: 1,
			Biller:        DefaultBillerMapping(),
		},
	}
}

// Validate reports the first bad field.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	if _, err := parseCutover(c.Cutover); err != nil {
		return bad("cutover %q: want HH:MM", c.Cutover)
	}
	if c.Zone != "" {
		if _, err := time.LoadLocation(c.Zone); err != nil {
			return bad("zone %q: %v", c.Zone, err)
		}
	}
	switch {
	case c.CheckInterval < checkIntervalMin || c.CheckInterval > checkIntervalMax:
		return bad("check_interval %s not in [%s, %s]", c.CheckInterval, checkIntervalMin, checkIntervalMax)
	case c.JobQueueMax < 1 || c.JobQueueMax > jobQueueMaxLimit:
		return bad("job_queue_max %d not in [1, %d]", c.JobQueueMax, jobQueueMaxLimit)
	case c.JobsKeptMax < 1 || c.JobsKeptMax > jobsKeptMaxLimit:
		return bad("jobs_kept_max %d not in [1, %d]", c.JobsKeptMax, jobsKeptMaxLimit)
	case c.JobTimeout <= 0 || c.JobTimeout > jobTimeoutMax:
		return bad("job_timeout %s not in (0, %s]", c.JobTimeout, jobTimeoutMax)
	case c.Recon.FileBytesMax < 1 || c.Recon.FileBytesMax > reconFileBytesMaxLimit:
		return bad("recon.file_bytes_max %d not in [1, %d]", c.Recon.FileBytesMax, reconFileBytesMaxLimit)
	case c.Recon.ToleranceDays < 0 || c.Recon.ToleranceDays > toleranceDaysMax:
		return bad("recon.tolerance_days %d not in [0, %d]", c.Recon.ToleranceDays, toleranceDaysMax)
	}
	if err := c.Recon.Biller.withDefaults().validate("recon.biller"); err != nil {
		return err
	}
	for p, m := range c.Recon.Partners {
		if err := m.withDefaults().validate("recon.partners." + p); err != nil {
			return err
		}
	}
	return nil
}

// parseCutover parses HH:MM into the offset from local midnight.
func parseCutover(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", s)
	if err != nil || len(s) != 5 {
		return 0, fmt.Errorf("%w: cutover %q", ErrConfig, s)
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}
