package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// Reconciliation commands:
//
//	switchctl recon run --day D --partner P --partner-file F --biller-file F [--biller B] [--wait 5m]
//	switchctl recon status ID
//	switchctl recon breaks ID [--code B2] [--csv]
//	switchctl recon assign ID BREAK --to WHO
//	switchctl recon resolve ID BREAK --note TEXT

// uploadBytesMax bounds what recon run sends (both files).
const uploadBytesMax = 2<<30 + 1<<20

func reconCmd(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("recon: want run, status, breaks, assign or resolve")
	}
	var o opsFlags
	fs := flag.NewFlagSet("switchctl recon "+args[0], flag.ContinueOnError)
	o.register(fs)
	switch args[0] {
	case "run":
		day := fs.String("day", "", "business day YYYY-MM-DD")
		partner := fs.String("partner", "", "partner id")
		pf := fs.String("partner-file", "", "the partner's settlement `file` (CSV)")
		bf := fs.String("biller-file", "", "the biller's posting `file` (CSV)")
		biller := fs.String("biller", "", "the `biller` the biller file is from: an http destination or a biller account (B2 then covers only its payments); default: every biller")
		wait := fs.Duration("wait", 5*time.Minute, "how long to wait for the result (0: do not wait)")
		printID := fs.Bool("print-id", false, "print only the reconciliation's id (for scripts: rec=$(switchctl recon run … --print-id))")
		if err := noArgs(fs, args, stdout); err != nil {
			return err
		}
		if *day == "" || *partner == "" || *pf == "" || *bf == "" {
			return usagef("recon run: --day, --partner, --partner-file and --biller-file are required")
		}
		return reconRun(ctx, &o, reconUpload{day: *day, partner: *partner, biller: *biller, partnerFile: *pf, billerFile: *bf}, *wait, *printID, stdout)
	case "status":
		id, err := oneID(fs, args[1:], stdout, "reconciliation id")
		if err != nil {
			return err
		}
		body, err := o.get(ctx, "/v1/reconciliations/"+url.PathEscape(id), nil)
		if err != nil {
			return err
		}
		return printRecon(&o, body, stdout)
	case "breaks":
		code := fs.String("code", "", "only breaks with this code (B1..B5)")
		asCSV := fs.Bool("csv", false, "print CSV")
		id, err := oneID(fs, args[1:], stdout, "reconciliation id")
		if err != nil {
			return err
		}
		q := url.Values{}
		if *code != "" {
			q.Set("code", *code)
		}
		if *asCSV {
			q.Set("format", "csv")
		}
		body, err := o.get(ctx, "/v1/reconciliations/"+url.PathEscape(id)+"/breaks", q)
		if err != nil {
			return err
		}
		if *asCSV {
			_, err := stdout.Write(body)
			return err
		}
		if o.json {
			return printJSON(stdout, body)
		}
		var list struct {
			Breaks []struct {
				ID, Code, Owner, Source, RRN, STAN, State, Assignee, Detail string
			} `json:"breaks"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			return fmt.Errorf("decoding breaks: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tCODE\tOWNER\tSOURCE\tRRN\tSTAN\tSTATE\tASSIGNEE\tDETAIL")
		for _, b := range list.Breaks {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", b.ID, b.Code, b.Owner, b.Source, orDash(b.RRN), orDash(b.STAN), b.State, orDash(b.Assignee), b.Detail)
		}
		return tw.Flush()
	case "assign", "resolve":
		to := fs.String("to", "", "assignee (assign)")
		note := fs.String("note", "", "why (resolve)")
		pos, err := parseCmd(fs, args[1:], stdout)
		if err != nil {
			return err
		}
		if len(pos) != 2 {
			return usagef("recon %s: want a reconciliation id and a break id", args[0])
		}
		if args[0] == "assign" && *to == "" || args[0] == "resolve" && *note == "" {
			return usagef("recon assign needs --to, recon resolve needs --note")
		}
		req := map[string]string{"action": args[0], "assignee": *to, "note": *note}
		_, body, err := o.call(ctx, http.MethodPost, "/v1/reconciliations/"+url.PathEscape(pos[0])+"/breaks/"+url.PathEscape(pos[1]), req, opsBodyBytesMax)
		if err != nil {
			return err
		}
		if o.json {
			return printJSON(stdout, body)
		}
		var d struct {
			ID, Code, State, Assignee, Note string
		}
		if err := json.Unmarshal(body, &d); err != nil {
			return fmt.Errorf("decoding the break: %w", err)
		}
		fmt.Fprintf(stdout, "%s %s: %s", d.ID, d.Code, d.State)
		if d.Assignee != "" {
			fmt.Fprintf(stdout, " (assigned to %s)", d.Assignee)
		}
		if d.Note != "" {
			fmt.Fprintf(stdout, ": %s", d.Note)
		}
		fmt.Fprintln(stdout)
		return nil
	}
	return usagef("recon: unknown subcommand %q", args[0])
}

// paging is a list command's -after and -limit flags.
type paging struct {
	after *string
	limit *int
}

// pageFlags registers -after and -limit on fs with these usage texts.
func pageFlags(fs *flag.FlagSet, afterUsage, limitUsage string) paging {
	return paging{after: fs.String("after", "", afterUsage), limit: fs.Int("limit", 0, limitUsage)}
}

// set puts the flags that were given into q.
func (p paging) set(q url.Values) {
	if *p.after != "" {
		q.Set("after", *p.after)
	}
	if *p.limit != 0 {
		q.Set("limit", strconv.Itoa(*p.limit))
	}
}

func noArgs(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	pos, err := parseCmd(fs, args[1:], stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), pos[0])
	}
	return nil
}

// reconUpload is what recon run sends: the form fields and the two files.
type reconUpload struct {
	day, partner, biller    string
	partnerFile, billerFile string // paths
}

func reconRun(ctx context.Context, o *opsFlags, up reconUpload, wait time.Duration, printID bool, stdout io.Writer) error {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("day", up.day)
	mw.WriteField("partner", up.partner)
	if up.biller != "" {
		mw.WriteField("biller", up.biller)
	}
	for field, path := range map[string]string{"partner_file": up.partnerFile, "biller_file": up.billerFile} {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		w, _ := mw.CreateFormFile(field, filepath.Base(path))
		_, err = io.Copy(w, io.LimitReader(f, uploadBytesMax))
		f.Close()
		if err != nil {
			return err
		}
	}
	mw.Close()
	if body.Len() > uploadBytesMax {
		return fmt.Errorf("the files are larger than %d bytes together", uploadBytesMax)
	}
	u := strings.TrimRight(o.base, "/") + "/v1/reconciliations"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, &body)
	if err != nil {
		return usagef("--ops %q: %v", o.base, err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if err := o.authorize(ctx, req); err != nil {
		return err
	}
	hc := o.httpClient()
	resp, err := hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("cannot reach the ops API: POST %s: connection refused; is switchd running? (--ops)", u)
		}
		return fmt.Errorf("cannot reach the ops API: %w", err)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, opsBodyBytesMax))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %d %s", u, resp.StatusCode, problemText(b, resp.StatusCode))
	}
	var st struct {
		ID, State, Error string
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("decoding the reconciliation: %w", err)
	}
	deadline := time.Now().Add(wait)
	for wait > 0 && st.State != "done" && st.State != "failed" {
		if time.Now().After(deadline) {
			return fmt.Errorf("reconciliation %s still %s after %s (--wait); see: switchctl recon status %s", st.ID, st.State, wait, st.ID)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if b, err = o.get(ctx, "/v1/reconciliations/"+st.ID, nil); err != nil {
			return err
		}
		if err := json.Unmarshal(b, &st); err != nil {
			return fmt.Errorf("decoding the reconciliation: %w", err)
		}
	}
	if printID {
		fmt.Fprintln(stdout, st.ID)
	} else if err := printRecon(o, b, stdout); err != nil {
		return err
	}
	if st.State == "failed" {
		return fmt.Errorf("reconciliation %s failed: %s", st.ID, st.Error)
	}
	return nil
}

func problemText(b []byte, status int) string {
	var p struct{ Title, Detail string }
	if json.Unmarshal(b, &p) == nil && p.Title != "" {
		if p.Detail != "" {
			return p.Title + ": " + p.Detail
		}
		return p.Title
	}
	return http.StatusText(status)
}

func printRecon(o *opsFlags, body []byte, stdout io.Writer) error {
	if o.json {
		return printJSON(stdout, body)
	}
	var st struct {
		ID, Day, Partner, Biller, State, Error string
		PartnerRows                            int               `json:"partner_rows"`
		BillerRows                             int               `json:"biller_rows"`
		LedgerRows                             int               `json:"ledger_rows"`
		Matched                                int               `json:"matched"`
		Counts                                 map[string]int    `json:"counts"`
		Owners                                 map[string]string `json:"owners"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("decoding the reconciliation: %w", err)
	}
	biller := ""
	if st.Biller != "" {
		biller = "  biller " + st.Biller
	}
	fmt.Fprintf(stdout, "reconciliation %s  day %s  partner %s%s  %s\n", st.ID, st.Day, st.Partner, biller, st.State)
	if st.Error != "" {
		fmt.Fprintf(stdout, "error: %s\n", st.Error)
	}
	if st.State != "done" {
		return nil
	}
	fmt.Fprintf(stdout, "rows: partner %d, biller %d, ledger %d; matched %d\n", st.PartnerRows, st.BillerRows, st.LedgerRows, st.Matched)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CODE\tCOUNT\tOWNER")
	for _, c := range []string{"B1", "B2", "B3", "B4", "B5"} {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", c, st.Counts[c], st.Owners[c])
	}
	return tw.Flush()
}
