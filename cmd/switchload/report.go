package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Summary is the result of a run, written as JSON with --json.
type Summary struct {
	RunID       string     `json:"run_id"`
	Config      configView `json:"config"`
	Interrupted bool       `json:"interrupted,omitempty"`
	// LoadSeconds is the load phase; ElapsedSeconds adds the drain.
	LoadSeconds    float64     `json:"load_seconds"`
	ElapsedSeconds float64     `json:"elapsed_seconds"`
	Setup          SetupReport `json:"setup"`

	Sent     int64 `json:"sent"`
	Resent   int64 `json:"resent"`
	Answered int64 `json:"answered"`
	Approved int64 `json:"approved"`
	// TPS is answers per second over the whole run, drain included.
	TPS         float64 `json:"tps"`
	ApprovedTPS float64 `json:"approved_tps"`
	// Scheduled and BacklogUnsent are for open loop: tickets handed out,
	// and requests the schedule wanted in the window that never went out.
	Scheduled     int64         `json:"scheduled,omitempty"`
	BacklogUnsent int64         `json:"backlog_unsent,omitempty"`
	Latency       LatencyReport `json:"latency_ms"`

	ByMTI  map[string]map[string]int64 `json:"by_mti"`
	ByRC   map[string]int64            `json:"by_rc"`
	ByKind map[string]int64            `json:"by_kind"`

	Timeouts     int64 `json:"timeouts"`
	RC96Repeated int64 `json:"rc96_repeated"`
	Unresolved   int64 `json:"unresolved"`
	LateAnswers  int64 `json:"late_answers"`
	BadAnswers   int64 `json:"bad_answers"`
	ConnLost     int64 `json:"connections_lost"`
	PackErrors   int64 `json:"pack_errors"`
	Fallbacks    int64 `json:"mix_fallbacks"`

	Repeats        RepeatReport  `json:"repeats"`
	Balances       BalanceReport `json:"balance_inquiries"`
	Verification   *Verification `json:"verification,omitempty"`
	SwitchRSSBytes *int64        `json:"switch_rss_bytes,omitempty"`
	OK             bool          `json:"ok"`
}

// SetupReport says how the load cards came to be.
type SetupReport struct {
	Created  int `json:"created"`
	Existing int `json:"existing"`
}

// LatencyReport is in milliseconds, from the intended send time to the
// final answer (repeats included).
type LatencyReport struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func latencyOf(h *histogram) LatencyReport {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return LatencyReport{
		P50: ms(h.quantile(0.50)), P90: ms(h.quantile(0.90)), P99: ms(h.quantile(0.99)),
		P999: ms(h.quantile(0.999)), Max: ms(time.Duration(h.max)), Mean: ms(h.mean()),
	}
}

// RepeatReport: repeats sent by the mix and those whose 39/38 differed
// from the original answer.
type RepeatReport struct {
	Checked    int64            `json:"checked"`
	Mismatches int64            `json:"mismatches"`
	Examples   []RepeatMismatch `json:"examples,omitempty"`
}

// BalanceReport: approved balance inquiries and those whose field 54 was
// malformed.
type BalanceReport struct {
	Checked int64  `json:"checked"`
	Errors  int64  `json:"errors"`
	Example string `json:"example,omitempty"`
}

// Verification compares every card's balance change with the model.
type Verification struct {
	AccountsChecked int               `json:"accounts_checked"`
	Mismatches      []BalanceMismatch `json:"mismatches"`
	// Unverifiable cards had a request whose outcome stayed unknown.
	Unverifiable []string `json:"unverifiable,omitempty"`
	OK           bool     `json:"ok"`
}

// BalanceMismatch is one account whose balances after the run are not
// before + the change our approvals imply. Minor units.
type BalanceMismatch struct {
	Account       string `json:"account"`
	PostedBefore  int64  `json:"posted_before"`
	PostedWant    int64  `json:"posted_expected"`
	PostedGot     int64  `json:"posted_actual"`
	PendingBefore int64  `json:"pending_before"`
	PendingWant   int64  `json:"pending_expected"`
	PendingGot    int64  `json:"pending_actual"`
}

// finish derives rates and the verdict.
func (s *Summary) finish() {
	if s.ElapsedSeconds > 0 {
		s.TPS = float64(s.Answered) / s.ElapsedSeconds
		s.ApprovedTPS = float64(s.Approved) / s.ElapsedSeconds
	}
	if s.Verification != nil {
		s.Verification.OK = len(s.Verification.Mismatches) == 0 && len(s.Verification.Unverifiable) == 0
		if s.Verification.Mismatches == nil {
			s.Verification.Mismatches = []BalanceMismatch{}
		}
	}
	s.OK = s.Repeats.Mismatches == 0 && s.Balances.Errors == 0 && (s.Verification == nil || s.Verification.OK)
}

func (s *Summary) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

// writeText prints the summary for a human.
func (s *Summary) writeText(w io.Writer) {
	c := s.Config
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	mode := "closed loop"
	if c.Rate > 0 {
		mode = fmt.Sprintf("open loop at %d/s", c.Rate)
	}
	p("switchload run %s: %s, %d conns x %d inflight, %s against %s", s.RunID, mode, c.Conns, c.Inflight, c.Duration, c.Addr)
	if s.Interrupted {
		p("  INTERRUPTED: partial run")
	}
	p("  mix          %s (seed %d)", c.Mix, c.Seed)
	p("  cards        %d (%d created, %d existing)", c.Cards, s.Setup.Created, s.Setup.Existing)
	p("  time         load %.1fs, total %.1fs with drain", s.LoadSeconds, s.ElapsedSeconds)
	p("  requests     sent %d, answered %d, approved %d, resent %d", s.Sent, s.Answered, s.Approved, s.Resent)
	p("  throughput   %.0f answers/s, %.0f approvals/s", s.TPS, s.ApprovedTPS)
	if c.Rate > 0 {
		behind := ""
		if s.BacklogUnsent > 0 {
			behind = " (the switch fell behind the offered rate)"
		}
		p("  schedule     %d handed out, %d never sent%s", s.Scheduled, s.BacklogUnsent, behind)
	}
	l := s.Latency
	p("  latency ms   p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  mean %.2f", l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean)
	for _, mti := range sortedKeys(s.ByMTI) {
		var b strings.Builder
		for _, rc := range sortedKeys(s.ByMTI[mti]) {
			fmt.Fprintf(&b, " %s=%d", rc, s.ByMTI[mti][rc])
		}
		p("  mti %s     rc%s", mti, b.String())
	}
	p("  wire         timeouts %d, 96 repeated %d, unresolved %d, late answers %d, bad answers %d, connections lost %d, mix fallbacks %d",
		s.Timeouts, s.RC96Repeated, s.Unresolved, s.LateAnswers, s.BadAnswers, s.ConnLost, s.Fallbacks)
	p("  repeats      %d checked, %d mismatches", s.Repeats.Checked, s.Repeats.Mismatches)
	for _, m := range s.Repeats.Examples {
		p("    MISMATCH %s STAN %s f7 %s RRN %s: 39 %q→%q, 38 %q→%q", m.MTI, m.STAN, m.TransmissionTime, m.RRN, m.WantRC, m.GotRC, m.WantAuthCode, m.GotAuthCode)
	}
	p("  balances     %d inquiries checked, %d malformed %s", s.Balances.Checked, s.Balances.Errors, s.Balances.Example)
	if v := s.Verification; v != nil {
		p("  verification %d accounts checked, %d mismatches, %d unverifiable", v.AccountsChecked, len(v.Mismatches), len(v.Unverifiable))
		for _, m := range v.Mismatches {
			p("    MISMATCH %s posted %d→ want %d got %d; pending %d→ want %d got %d",
				m.Account, m.PostedBefore, m.PostedWant, m.PostedGot, m.PendingBefore, m.PendingWant, m.PendingGot)
		}
		if len(v.Unverifiable) > 0 {
			p("    unverifiable (outcome unknown): %s", strings.Join(v.Unverifiable, " "))
		}
	} else {
		p("  verification off")
	}
	if s.SwitchRSSBytes != nil {
		p("  switch RSS   %.1f MiB", float64(*s.SwitchRSSBytes)/(1<<20))
	}
	verdict := "OK"
	if !s.OK {
		verdict = "FAILED"
	}
	p("  result       %s", verdict)
}

// sortedKeys returns a map's keys in order, for stable output.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
