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
}

// DefaultConfig closes the day at 23:55.
func DefaultConfig() Config {
	return Config{
		Cutover:       "23:55",
		CheckInterval: 10 * time.Second,
		JobQueueMax:   64,
		JobsKeptMax:   1024,
		JobTimeout:    10 * time.Minute,
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
