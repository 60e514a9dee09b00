package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// repeatExamplesMax bounds the repeat mismatches kept for the report; all
// are counted.
const repeatExamplesMax = 20

// RepeatMismatch is a repeat whose answer differed from the original's:
// an exactly-once violation (DESIGN.md invariant 2).
type RepeatMismatch struct {
	MTI              string `json:"mti"`
	STAN             string `json:"stan"`
	TransmissionTime string `json:"f7"`
	RRN              string `json:"rrn"`
	WantRC           string `json:"want_39"`
	GotRC            string `json:"got_39"`
	WantAuthCode     string `json:"want_38"`
	GotAuthCode      string `json:"got_38"`
}

// stats counts what happened on the wire. Connections and the book report
// into it; the progress printer and the summary read it.
type stats struct {
	mu sync.Mutex // protects everything below

	sent     int64 // distinct requests written at least once
	resent   int64 // extra writes: repeats after a timeout, a lost connection or a 96
	answered int64 // requests with their final answer
	approved int64
	byMTI    map[string]map[string]int64 // request MTI as first sent → field 39 → count
	byRC     map[string]int64
	byKind   [kindCount]int64

	timeouts       int64 // answers that did not come within --timeout
	rc96           int64 // 96 answers that were repeated
	late           int64 // answers to nothing outstanding (a repeat's twin, mostly)
	badAnswers     int64 // frames that did not unpack
	connLost       int64
	packErrors     int64
	unresolved     int64 // requests whose outcome stayed unknown
	repeatChecked  int64
	repeatMismatch int64
	repeatExamples []RepeatMismatch
	balanceChecked int64
	balanceErrors  int64
	balanceExample string

	lat      histogram // whole run
	interval histogram // since the last progress line
}

func newStats() *stats {
	return &stats{byMTI: map[string]map[string]int64{}, byRC: map[string]int64{}}
}

func (s *stats) sentOne() {
	s.mu.Lock()
	s.sent++
	s.mu.Unlock()
}

func (s *stats) add(field *int64, n int64) {
	s.mu.Lock()
	*field += n
	s.mu.Unlock()
}

// answer records r's final answer rc, after lat, with what the book made
// of it.
func (s *stats) answer(r *request, rc string, lat time.Duration, v verdict) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answered++
	if v.approved {
		s.approved++
	}
	m := s.byMTI[r.mti]
	if m == nil {
		m = map[string]int64{}
		s.byMTI[r.mti] = m
	}
	m[rc]++
	s.byRC[rc]++
	s.byKind[r.kind]++
	if rc == "96" {
		s.unresolved++
	}
	s.lat.record(lat)
	s.interval.record(lat)
	if v.repeatChecked {
		s.repeatChecked++
	}
	if v.repeatMismatch != nil {
		s.repeatMismatch++
		if len(s.repeatExamples) < repeatExamplesMax {
			s.repeatExamples = append(s.repeatExamples, *v.repeatMismatch)
		}
	}
	if v.balanceChecked {
		s.balanceChecked++
		if v.balanceError != "" {
			s.balanceErrors++
			if s.balanceExample == "" {
				s.balanceExample = v.balanceError
			}
		}
	}
}

// progress writes one line about the last interval and resets the
// interval histogram.
type progress struct {
	start        time.Time
	last         time.Time
	lastAnswered int64
}

func (p *progress) line(w io.Writer, s *stats, now time.Time, inflight int) {
	s.mu.Lock()
	answered := s.answered
	p50, p99 := s.interval.quantile(0.50), s.interval.quantile(0.99)
	s.interval.reset()
	var rcs strings.Builder
	for _, rc := range sortedKeys(s.byRC) {
		fmt.Fprintf(&rcs, " %s=%d", rc, s.byRC[rc])
	}
	timeouts, resent := s.timeouts, s.resent
	s.mu.Unlock()

	elapsed := now.Sub(p.start)
	tps := float64(answered-p.lastAnswered) / now.Sub(p.last).Seconds()
	avg := float64(answered) / elapsed.Seconds()
	fmt.Fprintf(w, "[%5.1fs] %7.0f tps (avg %7.0f)  p50 %s p99 %s  answered %d inflight %d  rc%s  timeouts %d resent %d\n",
		elapsed.Seconds(), tps, avg, fmtMillis(p50), fmtMillis(p99), answered, inflight, rcs.String(), timeouts, resent)
	p.last, p.lastAnswered = now, answered
}

func fmtMillis(d time.Duration) string { return fmt.Sprintf("%.2fms", millis(d)) }

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
