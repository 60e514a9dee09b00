package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// Business-day, settlement and statement commands:
//
//	switchctl day status
//	switchctl day close [--day D]
//	switchctl settlement pull --day D --partner P [--out DIR] [--format csv|json|all]
//	switchctl statement pull --day D --account A [--out DIR] [--format mt940|camt053|all]

// fileBytesMax bounds one downloaded file (a million-row settlement file
// is ~200 MB).
const fileBytesMax = 4 << 30

// call sends one request and returns the status and body. Problem
// documents of non-2xx answers become errors unless accept lists the
// status.
func (o *opsFlags) call(ctx context.Context, method, path string, body any, maxBytes int64, accept ...int) (int, []byte, error) {
	u := strings.TrimRight(o.base, "/") + path
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, usagef("--ops %q: %v", o.base, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := o.authorize(ctx, req); err != nil {
		return 0, nil, err
	}
	hc := o.httpClient()
	resp, err := hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return 0, nil, fmt.Errorf("cannot reach the ops API: %s %s: connection refused; is switchd running? (--ops)", method, u)
		}
		return 0, nil, fmt.Errorf("cannot reach the ops API: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBytes+1))
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: reading the answer: %w", method, u, err)
	}
	if int64(len(b)) > maxBytes {
		return 0, nil, fmt.Errorf("%s %s: answer larger than %d bytes", method, u, maxBytes)
	}
	for _, a := range accept {
		if resp.StatusCode == a {
			return resp.StatusCode, b, nil
		}
	}
	if resp.StatusCode/100 != 2 {
		var p struct {
			Title  string `json:"title"`
			Detail string `json:"detail"`
		}
		msg := http.StatusText(resp.StatusCode)
		if json.Unmarshal(b, &p) == nil && p.Title != "" {
			msg = p.Title
			if p.Detail != "" {
				msg += ": " + p.Detail
			}
		}
		if resp.StatusCode == http.StatusUnauthorized && req.Header.Get("Authorization") == "" {
			msg += "; " + unauthenticatedHint
		}
		return resp.StatusCode, nil, fmt.Errorf("%s %s: %d %s", method, u, resp.StatusCode, msg)
	}
	return resp.StatusCode, b, nil
}

// dayCmd: switchctl day status | close.
func dayCmd(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "status" && args[0] != "close") {
		return usagef("day: want \"day status\" or \"day close [--day YYYY-MM-DD]\"")
	}
	var o opsFlags
	fs := flag.NewFlagSet("switchctl day "+args[0], flag.ContinueOnError)
	o.register(fs)
	day := fs.String("day", "", "the day to close; it must be the open one (default: whichever is open)")
	printDay := fs.Bool("print-day", false, "close: print only the closed day, YYYY-MM-DD (for scripts: day=$(switchctl day close --print-day))")
	pos, err := parseCmd(fs, args[1:], stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("day %s: unexpected argument %q", args[0], pos[0])
	}
	if args[0] == "status" {
		body, err := o.get(ctx, "/v1/days", nil)
		if err != nil {
			return err
		}
		if o.json {
			return printJSON(stdout, body)
		}
		var st struct {
			Open string `json:"open"`
			Days []struct {
				Day      string `json:"day"`
				State    string `json:"state"`
				OpenedAt int64  `json:"opened_at"`
				ClosedAt int64  `json:"closed_at"`
			} `json:"days"`
		}
		if err := json.Unmarshal(body, &st); err != nil {
			return fmt.Errorf("decoding days: %w", err)
		}
		fmt.Fprintf(stdout, "open business day: %s\n", orDash(st.Open))
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "DAY\tSTATE\tOPENED\tCLOSED")
		for _, d := range st.Days {
			closed := "-"
			if d.ClosedAt != 0 {
				closed = time.Unix(0, d.ClosedAt).UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.Day, d.State, time.Unix(0, d.OpenedAt).UTC().Format(time.RFC3339), closed)
		}
		return tw.Flush()
	}
	var req any
	if *day != "" {
		req = map[string]string{"day": *day}
	}
	_, body, err := o.call(ctx, http.MethodPost, "/v1/days/close", req, opsBodyBytesMax)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(stdout, body)
	}
	var res struct {
		Closed        string `json:"closed"`
		Open          string `json:"open"`
		AlreadyClosed bool   `json:"already_closed"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return fmt.Errorf("decoding the close: %w", err)
	}
	if *printDay {
		fmt.Fprintln(stdout, res.Closed)
	} else if res.AlreadyClosed {
		fmt.Fprintf(stdout, "business day %s was already closed; open: %s\n", res.Closed, res.Open)
	} else {
		fmt.Fprintf(stdout, "closed business day %s; open: %s\n", res.Closed, res.Open)
	}
	return nil
}

// job is the ops API's job, as this client reads it.
type job struct {
	ID    string `json:"id"`
	State string `json:"state"`
	Error string `json:"error"`
	Files []struct {
		Name   string `json:"name"`
		Bytes  int64  `json:"bytes"`
		SHA256 string `json:"sha256"`
		Rows   int64  `json:"rows"`
	} `json:"files"`
}

// pullCmd: switchctl settlement pull | statement pull.
func pullCmd(ctx context.Context, what string, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "pull" {
		return usagef("%s: want \"%s pull\"", what, what)
	}
	var o opsFlags
	fs := flag.NewFlagSet("switchctl "+what+" pull", flag.ContinueOnError)
	o.register(fs)
	day := fs.String("day", "", "business day YYYY-MM-DD (must be closed)")
	out := fs.String("out", ".", "`dir` to write the files into")
	wait := fs.Duration("wait", 5*time.Minute, "how long to wait for the job")
	var name, format *string
	var exts []string
	if what == "settlement" {
		name = fs.String("partner", "", "partner id")
		format = fs.String("format", "all", "csv, json or all")
	} else {
		name = fs.String("account", "", "account id")
		format = fs.String("format", "all", "mt940, camt053 or all")
	}
	pos, err := parseCmd(fs, args[1:], stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("%s pull: unexpected argument %q", what, pos[0])
	}
	if *day == "" || *name == "" {
		return usagef("%s pull: --day and --%s are required", what, map[string]string{"settlement": "partner", "statement": "account"}[what])
	}
	switch what + "/" + *format {
	case "settlement/csv":
		exts = []string{".csv"}
	case "settlement/json":
		exts = []string{".json"}
	case "settlement/all":
		exts = []string{".csv", ".json"}
	case "statement/mt940":
		exts = []string{".mt940"}
	case "statement/camt053":
		exts = []string{".camt053.xml"}
	case "statement/all":
		exts = []string{".mt940", ".camt053.xml"}
	default:
		return usagef("%s pull: unknown --format %q", what, *format)
	}
	req := map[string]string{"day": *day}
	path := "/v1/settlements"
	if what == "settlement" {
		req["partner"] = *name
	} else {
		req["account"] = *name
		path = "/v1/statements"
	}
	_, body, err := o.call(ctx, http.MethodPost, path, req, opsBodyBytesMax)
	if err != nil {
		return err
	}
	var j job
	if err := json.Unmarshal(body, &j); err != nil {
		return fmt.Errorf("decoding the job: %w", err)
	}
	deadline := time.Now().Add(*wait)
	for j.State != "done" {
		if j.State == "failed" {
			return fmt.Errorf("job %s failed: %s", j.ID, j.Error)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("job %s still %s after %s (--wait)", j.ID, j.State, *wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if body, err = o.get(ctx, "/v1/jobs/"+j.ID, nil); err != nil {
			return err
		}
		j = job{}
		if err := json.Unmarshal(body, &j); err != nil {
			return fmt.Errorf("decoding the job: %w", err)
		}
	}
	sums := map[string]string{}
	for _, f := range j.Files {
		sums[f.Name] = f.SHA256
	}
	if err := os.MkdirAll(*out, 0o750); err != nil {
		return err
	}
	for _, ext := range exts {
		var url, file string
		if what == "settlement" {
			file = *name + ext
			url = "/v1/settlements/" + *day + "/" + file
		} else {
			file = *day + ext
			url = "/v1/statements/" + *name + "/" + file
		}
		_, data, err := o.call(ctx, http.MethodGet, url, nil, fileBytesMax)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		got := hex.EncodeToString(sum[:])
		if want := sums[file]; want != "" && want != got {
			return fmt.Errorf("%s: SHA-256 %s, the job reported %s", file, got, want)
		}
		dest := filepath.Join(*out, file)
		if what == "statement" {
			dest = filepath.Join(*out, *name+"-"+file)
		}
		if err := os.WriteFile(dest, data, 0o640); err != nil {
			return err
		}
		if err := os.WriteFile(dest+".sha256", []byte(got+"  "+filepath.Base(dest)+"\n"), 0o640); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s  %d bytes  sha256 %s\n", dest, len(data), got)
	}
	return nil
}
