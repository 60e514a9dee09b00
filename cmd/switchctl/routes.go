package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
)

// The routing table:
//
//	switchctl routes list
//	switchctl routes get ID
//	switchctl routes set ID [--bill-type B] [--payer-type P] [--partner P] [--destination ledger] [--settlement-account A] --reason TEXT
//	switchctl routes delete ID --reason TEXT
//	switchctl routes export [--out FILE]
//	switchctl routes import FILE --reason TEXT [--base-version N]
//	switchctl routes explain [--bill-type B] [--payer-type P] [--partner P]
//
// export writes the table as JSON ({"version", "routes"}) and import reads
// the same file: the version it holds is the one the table must still be
// at (else 409, nothing changed), so an edit of an exported file cannot
// undo a change made meanwhile. --base-version overrides it.

// routesBytesMax bounds a routing table answer (100,000 rules are ~15 MB).
const routesBytesMax = 64 << 20

// route is a routing rule as the ops API shows it.
type route struct {
	ID                string `json:"id"`
	BillType          string `json:"bill_type"`
	PayerType         string `json:"payer_type"`
	Partner           string `json:"partner"`
	Destination       string `json:"destination"`
	SettlementAccount string `json:"settlement_account,omitempty"`
}

// routeTable is GET /v1/routes, and the export/import file.
type routeTable struct {
	Version uint64  `json:"version"`
	Routes  []route `json:"routes"`
}

// write sends a change and returns the answer.
func (o *opsFlags) write(ctx context.Context, method, path string, body any, maxBytes int64) ([]byte, error) {
	_, b, err := o.call(ctx, method, path, body, maxBytes)
	return b, err
}

// isSet reports whether flag name was given.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func routesCmd(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("routes: want list, get, set, delete, export, import or explain")
	}
	var o opsFlags
	fs := flag.NewFlagSet("switchctl routes "+args[0], flag.ContinueOnError)
	o.register(fs)
	switch args[0] {
	case "list":
		if err := noArgs(fs, args, stdout); err != nil {
			return err
		}
		body, err := o.getMax(ctx, "/v1/routes", routesBytesMax)
		if err != nil || o.json {
			return jsonOr(err, stdout, body)
		}
		var tb routeTable
		if err := json.Unmarshal(body, &tb); err != nil {
			return fmt.Errorf("decoding the routes: %w", err)
		}
		fmt.Fprintf(stdout, "routing table version %d, %s\n", tb.Version, rules(len(tb.Routes)))
		return routeRows(tb.Routes).write(stdout)
	case "get":
		id, err := oneID(fs, args[1:], stdout, "route id")
		if err != nil {
			return err
		}
		body, err := o.get(ctx, "/v1/routes/"+url.PathEscape(id), nil)
		if err != nil || o.json {
			return jsonOr(err, stdout, body)
		}
		return printRouteAnswer(stdout, body, "")
	case "set":
		return routeSet(ctx, &o, fs, args[1:], stdout)
	case "delete":
		reason := reasonFlag(fs)
		id, err := oneWithReason(fs, args[1:], stdout, "route id", reason)
		if err != nil {
			return err
		}
		body, err := o.write(ctx, http.MethodDelete, "/v1/routes/"+url.PathEscape(id), map[string]string{"reason": *reason}, opsBodyBytesMax)
		if err != nil || o.json {
			return jsonOr(err, stdout, body)
		}
		var v struct {
			Version uint64 `json:"version"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			return fmt.Errorf("decoding the answer: %w", err)
		}
		fmt.Fprintf(stdout, "route %s deleted (table version %d)\n", id, v.Version)
		return nil
	case "export":
		out := fs.String("out", "", "write the table to `FILE` (default: standard output)")
		if err := noArgs(fs, args, stdout); err != nil {
			return err
		}
		body, err := o.getMax(ctx, "/v1/routes", routesBytesMax)
		if err != nil {
			return err
		}
		var tb routeTable
		if err := json.Unmarshal(body, &tb); err != nil {
			return fmt.Errorf("decoding the routes: %w", err)
		}
		file, err := json.MarshalIndent(tb, "", "  ")
		if err != nil {
			return err
		}
		file = append(file, '\n')
		if *out == "" {
			_, err := stdout.Write(file)
			return err
		}
		if err := os.WriteFile(*out, file, 0o640); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s of table version %d written to %s\n", rules(len(tb.Routes)), tb.Version, *out)
		return nil
	case "import":
		reason := fs.String("reason", "", "why (required: the audit chain records it)")
		baseVersion := fs.String("base-version", "", "the table `version` the file replaces (default: the file's version)")
		pos, err := parseCmd(fs, args[1:], stdout)
		if err != nil {
			return err
		}
		if len(pos) != 1 || *reason == "" {
			return usagef("routes import: want one file and --reason")
		}
		tb, err := readRouteFile(pos[0])
		if err != nil {
			return err
		}
		base := tb.Version
		if *baseVersion != "" {
			if base, err = strconv.ParseUint(*baseVersion, 10, 64); err != nil {
				return usagef("routes import: --base-version %q is not a version", *baseVersion)
			}
		}
		req := map[string]any{"base_version": base, "reason": *reason, "routes": tb.Routes}
		body, err := o.write(ctx, http.MethodPut, "/v1/routes", req, routesBytesMax)
		if err != nil || o.json {
			return jsonOr(err, stdout, body)
		}
		var now routeTable
		if err := json.Unmarshal(body, &now); err != nil {
			return fmt.Errorf("decoding the answer: %w", err)
		}
		fmt.Fprintf(stdout, "imported %s from %s: table version %d → %d\n", rules(len(now.Routes)), pos[0], base, now.Version)
		return nil
	case "explain":
		q := url.Values{}
		vals := map[string]*string{}
		for _, f := range []struct{ flag, param, usage string }{
			{"bill-type", "bill_type", "the request's bill type (default *)"},
			{"payer-type", "payer_type", "the request's payer type (default *)"},
			{"partner", "partner", "the sending partner (default *)"},
		} {
			vals[f.param] = fs.String(f.flag, "", f.usage)
		}
		if err := noArgs(fs, args, stdout); err != nil {
			return err
		}
		for p, v := range vals {
			if *v != "" {
				q.Set(p, *v)
			}
		}
		body, err := o.get(ctx, "/v1/routes/explain", q)
		if err != nil || o.json {
			return jsonOr(err, stdout, body)
		}
		return printExplain(stdout, body)
	}
	return usagef("routes: unknown command %q (want list, get, set, delete, export, import or explain)", args[0])
}

// routeSet changes the flags given of route id (the others stay) or
// creates it (destination ledger unless given).
func routeSet(ctx context.Context, o *opsFlags, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	fields := []struct{ flag, usage string }{
		{"bill-type", "bill type the rule matches (* for any)"},
		{"payer-type", "payer type the rule matches (* for any)"},
		{"partner", "sending partner the rule matches (* for any)"},
		{"destination", "where matching requests go (ledger: on-us)"},
		{"settlement-account", "account credited (empty: the partner's settlement account)"},
	}
	vals := make([]*string, len(fields))
	for i, f := range fields {
		vals[i] = fs.String(f.flag, "", f.usage)
	}
	reason := fs.String("reason", "", "why (required: the audit chain records it)")
	pos, err := parseCmd(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *reason == "" {
		return usagef("routes set: want one route id and --reason")
	}
	id := pos[0]
	cur := route{Destination: "ledger"}
	code, body, err := o.call(ctx, http.MethodGet, "/v1/routes/"+url.PathEscape(id), nil, opsBodyBytesMax, http.StatusNotFound)
	if err != nil {
		return err
	}
	if code != http.StatusNotFound {
		var v struct {
			Route route `json:"route"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			return fmt.Errorf("decoding route %s: %w", id, err)
		}
		cur = v.Route
	}
	into := []*string{&cur.BillType, &cur.PayerType, &cur.Partner, &cur.Destination, &cur.SettlementAccount}
	for i, f := range fields {
		if isSet(fs, f.flag) {
			*into[i] = *vals[i]
		}
	}
	req := map[string]string{"bill_type": cur.BillType, "payer_type": cur.PayerType, "partner": cur.Partner,
		"destination": cur.Destination, "settlement_account": cur.SettlementAccount, "reason": *reason}
	body, err = o.write(ctx, http.MethodPut, "/v1/routes/"+url.PathEscape(id), req, opsBodyBytesMax)
	if err != nil || o.json {
		return jsonOr(err, stdout, body)
	}
	verb := "changed"
	if code == http.StatusNotFound {
		verb = "created"
	}
	return printRouteAnswer(stdout, body, verb)
}

func rules(n int) string {
	if n == 1 {
		return "1 rule"
	}
	return strconv.Itoa(n) + " rules"
}

// jsonOr returns err, or prints body for --json.
func jsonOr(err error, stdout io.Writer, body []byte) error {
	if err != nil {
		return err
	}
	return printJSON(stdout, body)
}

// getMax is get with an answer bound other than opsBodyBytesMax.
func (o *opsFlags) getMax(ctx context.Context, path string, maxBytes int64) ([]byte, error) {
	_, body, err := o.call(ctx, http.MethodGet, path, nil, maxBytes)
	return body, err
}

func routeRows(rs []route) *table {
	t := newTable("ID", "BILL TYPE", "PAYER TYPE", "PARTNER", "DESTINATION", "SETTLEMENT ACCOUNT")
	for _, r := range rs {
		t.add(r.ID, r.BillType, r.PayerType, r.Partner, r.Destination, orDash(r.SettlementAccount))
	}
	return t
}

func printRouteAnswer(stdout io.Writer, body []byte, verb string) error {
	var v struct {
		Version  uint64 `json:"version"`
		Route    *route `json:"route"`
		Replayed bool   `json:"replayed"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.Route == nil {
		return fmt.Errorf("decoding the route: %v", errors.Join(err, errors.New("no route in the answer")))
	}
	if verb != "" {
		fmt.Fprintf(stdout, "route %s %s (table version %d)\n", v.Route.ID, verb, v.Version)
	} else {
		fmt.Fprintf(stdout, "table version %d\n", v.Version)
	}
	return routeRows([]route{*v.Route}).write(stdout)
}

func printExplain(stdout io.Writer, body []byte) error {
	var ex struct {
		Version uint64            `json:"version"`
		Key     map[string]string `json:"key"`
		Match   *route            `json:"match"`
		Steps   []struct {
			BillType  string `json:"bill_type"`
			PayerType string `json:"payer_type"`
			Partner   string `json:"partner"`
			Route     *route `json:"route"`
			Why       string `json:"why"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(body, &ex); err != nil {
		return fmt.Errorf("decoding the explanation: %w", err)
	}
	fmt.Fprintf(stdout, "request: bill type %s, payer type %s, partner %s (table version %d)\n",
		ex.Key["bill_type"], ex.Key["payer_type"], ex.Key["partner"], ex.Version)
	t := newTable("PROBE", "BILL TYPE", "PAYER TYPE", "PARTNER", "RESULT")
	for i, s := range ex.Steps {
		res := s.Why
		if s.Route != nil {
			res = "route " + s.Route.ID + ": " + s.Why
		}
		t.add(strconv.Itoa(i+1), s.BillType, s.PayerType, s.Partner, res)
	}
	if err := t.write(stdout); err != nil {
		return err
	}
	if ex.Match == nil {
		fmt.Fprintln(stdout, "no route matches: such a request is declined (no-route)")
		return nil
	}
	acct := ex.Match.SettlementAccount
	if acct == "" {
		acct = "the partner's settlement account"
	}
	fmt.Fprintf(stdout, "→ route %s: destination %s, settles to %s\n", ex.Match.ID, ex.Match.Destination, acct)
	return nil
}

// readRouteFile reads an export file (strictly: a misspelt field is an
// error, not a rule without it).
func readRouteFile(path string) (routeTable, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return routeTable{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var tb routeTable
	if err := dec.Decode(&tb); err != nil {
		return routeTable{}, fmt.Errorf("%s: not a routes file (switchctl routes export writes one): %w", path, err)
	}
	if tb.Routes == nil {
		return routeTable{}, fmt.Errorf("%s: no \"routes\" list (an empty list empties the table)", path)
	}
	return tb, nil
}
