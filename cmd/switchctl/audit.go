package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The audit chain:
//
//	switchctl audit list [--object route/r1] [--from T] [--to T] [--after SEQ] [--limit N]
//	switchctl audit verify
//
// --from and --to are RFC 3339 times or days (YYYY-MM-DD, midnight UTC);
// --json shows each record's before and after. verify exits 1 when the
// chain is broken and names the first bad record.

type auditRecord struct {
	Seq    uint64          `json:"seq"`
	Time   int64           `json:"time"`
	Actor  string          `json:"actor"`
	Remote string          `json:"remote"`
	Action string          `json:"action"`
	Object string          `json:"object"`
	Before json.RawMessage `json:"before"`
	After  json.RawMessage `json:"after"`
	Reason string          `json:"reason"`
}

// changeBytesMax bounds the CHANGE column (in characters) of one record; --json has all.
const changeBytesMax = 160

// auditChange says what a record changed, field by field: "f: old → new"
// for the top-level fields that differ, "created" or "deleted" when there
// was no before or after.
func auditChange(before, after json.RawMessage) string {
	var b, a map[string]json.RawMessage
	_ = json.Unmarshal(before, &b)
	_ = json.Unmarshal(after, &a)
	switch {
	case len(b) == 0 && len(a) == 0:
		return "-"
	case len(b) == 0:
		return "created"
	case len(a) == 0:
		return "deleted"
	}
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		if string(a[k]) != string(b[k]) {
			parts = append(parts, fmt.Sprintf("%s: %s → %s", k, orDash(string(b[k])), orDash(string(a[k]))))
		}
	}
	out := strings.Join(parts, "; ")
	if out == "" {
		return "no change"
	}
	if r := []rune(out); len(r) > changeBytesMax {
		out = string(r[:changeBytesMax]) + "…"
	}
	return out
}

// auditTime turns a --from/--to value into RFC 3339.
func auditTime(name, s string) (string, error) {
	if _, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return s, nil
	}
	if d, err := time.Parse(time.DateOnly, s); err == nil {
		return d.UTC().Format(time.RFC3339), nil
	}
	return "", usagef("--%s %q: want RFC 3339 (2026-03-06T09:00:00Z) or a day (2026-03-06)", name, s)
}

func auditCmd(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("audit: want list or verify")
	}
	var o opsFlags
	fs := flag.NewFlagSet("switchctl audit "+args[0], flag.ContinueOnError)
	o.register(fs)
	switch args[0] {
	case "list":
		object := fs.String("object", "", "only records of this object, e.g. route/r1, partner/acme, agent/acme:T1, node/n2, day/2026-03-06")
		from := fs.String("from", "", "records at or after this time")
		to := fs.String("to", "", "records before this time")
		pg := pageFlags(fs, "records after this sequence number (paging)", "records per page (API default 100, at most 1000)")
		if err := noArgs(fs, args, stdout); err != nil {
			return err
		}
		q := url.Values{}
		for name, v := range map[string]*string{"from": from, "to": to} {
			if *v != "" {
				t, err := auditTime(name, *v)
				if err != nil {
					return err
				}
				q.Set(name, t)
			}
		}
		if *object != "" {
			q.Set("object", *object)
		}
		pg.set(q)
		body, err := o.get(ctx, "/v1/audit", q)
		if err != nil || o.json {
			return jsonOr(err, stdout, body)
		}
		var page struct {
			Records   []auditRecord `json:"records"`
			NextAfter uint64        `json:"next_after"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return fmt.Errorf("decoding the audit records: %w", err)
		}
		t := newTable("SEQ", "TIME", "ACTOR", "FROM", "ACTION", "OBJECT", "REASON", "CHANGE (BEFORE → AFTER)").alignRight("SEQ")
		for _, r := range page.Records {
			t.add(strconv.FormatUint(r.Seq, 10), time.Unix(0, r.Time).UTC().Format(time.RFC3339), r.Actor, orDash(r.Remote),
				r.Action, r.Object, orDash(r.Reason), auditChange(r.Before, r.After))
		}
		if err := t.write(stdout); err != nil {
			return err
		}
		if page.NextAfter != 0 {
			fmt.Fprintf(stdout, "(more: --after %d)\n", page.NextAfter)
		}
		return nil
	case "verify":
		if err := noArgs(fs, args, stdout); err != nil {
			return err
		}
		body, err := o.get(ctx, "/v1/audit/verify", nil)
		if err != nil {
			return err
		}
		var v struct {
			OK           bool   `json:"ok"`
			Records      uint64 `json:"records"`
			Head         string `json:"head"`
			AppliedIndex uint64 `json:"applied_index"`
			BadSeq       uint64 `json:"bad_seq"`
			Problem      string `json:"problem"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			return fmt.Errorf("decoding the verdict: %w", err)
		}
		if o.json {
			if err := printJSON(stdout, body); err != nil {
				return err
			}
		} else if v.OK {
			fmt.Fprintf(stdout, "audit chain OK: %d records, head %s, at applied index %d\n", v.Records, v.Head, v.AppliedIndex)
		}
		if !v.OK {
			return fmt.Errorf("audit chain BROKEN at record %d: %s (applied index %d)", v.BadSeq, v.Problem, v.AppliedIndex)
		}
		return nil
	}
	return usagef("audit: unknown command %q (want list or verify)", args[0])
}
