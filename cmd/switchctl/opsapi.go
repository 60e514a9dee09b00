package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchd/switchd/currency"
)

// Ops API client limits.
const (
	opsTimeout      = 30 * time.Second
	opsBodyBytesMax = 16 << 20 // a page of 1000 transfers is ~1 MiB
	// apiPageDefault is the ops API's page length when no limit is given.
	apiPageDefault = 100
)

// opsFlags are the options every ops subcommand shares.
type opsFlags struct {
	base    string
	json    bool
	timeout time.Duration
	auth    authFlags // auth.go: credentials, token, TLS to the ops API
}

func (o *opsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&o.base, "ops", "http://127.0.0.1:8080", "switchd ops API `URL` (https:// when its listener has tls)")
	fs.BoolVar(&o.json, "json", false, "print the raw JSON answer")
	fs.DurationVar(&o.timeout, "timeout", opsTimeout, "HTTP timeout")
	o.auth.register(fs)
}

// get fetches path?query and returns the JSON body of a 2xx answer. Errors
// say what was tried and, for problem documents, what the API said.
func (o *opsFlags) get(ctx context.Context, path string, query url.Values) ([]byte, error) {
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	_, body, err := o.call(ctx, http.MethodGet, path, nil, opsBodyBytesMax)
	return body, err
}

// printJSON indents an API answer for --json.
func printJSON(w io.Writer, body []byte) error {
	var b bytes.Buffer
	if err := json.Indent(&b, body, "", "  "); err != nil {
		return fmt.Errorf("the ops API answered invalid JSON: %w", err)
	}
	b.WriteByte('\n')
	_, err := b.WriteTo(w)
	return err
}

// The ops API's JSON, as this client reads it.
type account struct {
	ID        string `json:"id"`
	Kind      string `json:"kind"`
	Currency  string `json:"currency"`
	Partner   string `json:"partner"`
	MaskedPAN string `json:"masked_pan"`
	Posted    int64  `json:"posted"`
	Pending   int64  `json:"pending"`
	Available int64  `json:"available"`
	Floor     *int64 `json:"floor"`
}

type transferRef struct {
	MTI  string `json:"mti"`
	PC   string `json:"pc"`
	STAN string `json:"stan"`
	RRN  string `json:"rrn"`
}

type transfer struct {
	ID       string      `json:"id"`
	Op       int         `json:"op"`
	Status   string      `json:"status"`
	Debit    string      `json:"debit"`
	Credit   string      `json:"credit"`
	Amount   int64       `json:"amount"`
	Currency string      `json:"ccy"`
	Held     int64       `json:"held"`
	Day      string      `json:"day"`
	Partner  string      `json:"partner"`
	Original string      `json:"original"`
	Ref      transferRef `json:"ref"`
	// PayerType is how the front door classified the payer; Agent the OTC
	// agent whose cash limit it counts against.
	PayerType string `json:"payer_type"`
	Agent     string `json:"agent"`
}

// opName names a ledger operation (store.Op values, which are stable).
func opName(op int) string {
	switch op {
	case 1:
		return "create_account"
	case 2:
		return "authorize"
	case 3:
		return "post"
	case 4:
		return "complete"
	case 5:
		return "reverse"
	case 6:
		return "expire"
	}
	return strconv.Itoa(op)
}

// money formats minor units in a currency; an unknown currency shows the
// bare minor units rather than guessing an exponent.
func money(minor int64, code string) string {
	c, err := currency.ByCode(code)
	if err != nil {
		return strconv.FormatInt(minor, 10)
	}
	return currency.FormatMinor(minor, c, '.')
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// accountsCmd: switchctl accounts [ID].
func accountsCmd(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "create" {
		return accountsCreate(ctx, args[1:], stdout)
	}
	var o opsFlags
	fs := flag.NewFlagSet("switchctl accounts", flag.ContinueOnError)
	o.register(fs)
	pg := pageFlags(fs, "list accounts after this id (paging)", "accounts per page (API default 100, at most 1000)")
	pos, err := parseCmd(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("accounts: at most one account id")
	}
	if len(pos) == 1 {
		body, err := o.get(ctx, "/v1/accounts/"+url.PathEscape(pos[0]), nil)
		if err != nil {
			return err
		}
		if o.json {
			return printJSON(stdout, body)
		}
		var a account
		if err := json.Unmarshal(body, &a); err != nil {
			return fmt.Errorf("decoding the account: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "id\t%s\nkind\t%s\ncurrency\t%s\npartner\t%s\ncard\t%s\n", a.ID, a.Kind, a.Currency, orDash(a.Partner), orDash(a.MaskedPAN))
		fmt.Fprintf(tw, "posted\t%s\npending\t%s\navailable\t%s\n", money(a.Posted, a.Currency), money(a.Pending, a.Currency), money(a.Available, a.Currency))
		floor := "unlimited"
		if a.Floor != nil {
			floor = money(*a.Floor, a.Currency)
		}
		fmt.Fprintf(tw, "floor\t%s\n", floor)
		return tw.Flush()
	}
	q := url.Values{}
	pg.set(q)
	body, err := o.get(ctx, "/v1/accounts", q)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(stdout, body)
	}
	var page struct {
		Accounts []account `json:"accounts"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return fmt.Errorf("decoding accounts: %w", err)
	}
	t := newTable("ID", "KIND", "CCY", "CARD", "POSTED", "PENDING", "AVAILABLE").alignRight("POSTED", "PENDING", "AVAILABLE")
	for _, a := range page.Accounts {
		t.add(a.ID, a.Kind, a.Currency, orDash(a.MaskedPAN),
			money(a.Posted, a.Currency), money(a.Pending, a.Currency), money(a.Available, a.Currency))
	}
	if err := t.write(stdout); err != nil {
		return err
	}
	if n := len(page.Accounts); n > 0 && n == pageSize(*pg.limit) {
		fmt.Fprintf(stdout, "(more: --after %s)\n", page.Accounts[n-1].ID)
	}
	return nil
}

// pageSize is the page length the API uses for a --limit value.
func pageSize(limit int) int {
	if limit == 0 {
		return apiPageDefault
	}
	return limit
}

// transfersCmd: switchctl transfers [--account A] [--partner P] [--day D] [--status S].
func transfersCmd(ctx context.Context, args []string, stdout io.Writer) error {
	var o opsFlags
	fs := flag.NewFlagSet("switchctl transfers", flag.ContinueOnError)
	o.register(fs)
	q := url.Values{}
	filters := []struct{ name, usage string }{
		{"account", "only transfers debiting or crediting this account"},
		{"partner", "only this partner's transfers"},
		{"day", "only this business day (YYYY-MM-DD)"},
		{"status", "only this status: pending, posted, voided, expired, completed"},
		{"payer-type", "only this payer type, e.g. otc_agent"},
		{"after", "list transfers after this id (paging)"},
		{"limit", "transfers per page (API default 100, at most 1000)"},
	}
	vals := make([]*string, len(filters))
	for i, f := range filters {
		vals[i] = fs.String(f.name, "", f.usage)
	}
	pos, err := parseCmd(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("transfers: unexpected argument %q (filters are flags: --account, --partner, --day, --status)", pos[0])
	}
	for i, f := range filters {
		if *vals[i] != "" {
			q.Set(strings.ReplaceAll(f.name, "-", "_"), *vals[i])
		}
	}
	body, err := o.get(ctx, "/v1/transfers", q)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(stdout, body)
	}
	var page struct {
		Transfers []transfer `json:"transfers"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return fmt.Errorf("decoding transfers: %w", err)
	}
	t := newTable("ID", "DAY", "OP", "STATUS", "MTI", "STAN", "RRN", "DEBIT", "CREDIT", "AMOUNT", "HELD", "CCY", "PAYER", "AGENT", "ORIGINAL").
		alignRight("AMOUNT", "HELD")
	for _, tr := range page.Transfers {
		held := "-"
		if tr.Status == "pending" {
			held = money(tr.Held, tr.Currency)
		}
		t.add(tr.ID, tr.Day, opName(tr.Op), tr.Status, orDash(tr.Ref.MTI), orDash(tr.Ref.STAN), orDash(tr.Ref.RRN),
			tr.Debit, tr.Credit, money(tr.Amount, tr.Currency), held, tr.Currency, orDash(tr.PayerType), orDash(tr.Agent), orDash(tr.Original))
	}
	if err := t.write(stdout); err != nil {
		return err
	}
	if n := len(page.Transfers); n > 0 && n == pageSize(atoiOr0(*vals[len(vals)-1])) {
		fmt.Fprintf(stdout, "(more: --after %s)\n", page.Transfers[n-1].ID)
	}
	return nil
}

func atoiOr0(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// accountsCreate is "switchctl accounts create ID --kind K --currency C …":
// POST /v1/accounts, replicated and audited (account.create). The same id
// with the same content again is a no-op; with other content, 409.
func accountsCreate(ctx context.Context, args []string, stdout io.Writer) error {
	var o opsFlags
	fs := flag.NewFlagSet("switchctl accounts create", flag.ContinueOnError)
	o.register(fs)
	kind := fs.String("kind", "", "cardholder, settlement, funding or biller")
	ccy := fs.String("currency", "USD", "ISO 4217 currency")
	partner := fs.String("partner", "", "owning partner (settlement accounts)")
	pan := fs.String("pan", "", "card number of a cardholder account (only its keyed hash and masked form are stored)")
	opening := fs.String("opening", "", "opening balance as a decimal, posted from --funded-by")
	fundedBy := fs.String("funded-by", "", "account the opening balance comes from")
	floor := fs.String("floor", "", "lowest available balance as a decimal (negative: an overdraft; default 0)")
	unlimited := fs.Bool("unlimited", false, "no floor at all (funding and settlement accounts)")
	pos, err := parseCmd(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *kind == "" {
		return usagef("accounts create: want one account id and --kind")
	}
	req := map[string]any{"id": pos[0], "kind": *kind, "currency": *ccy, "partner": *partner, "pan": *pan,
		"opening": *opening, "funded_by": *fundedBy, "unlimited": *unlimited}
	if *floor != "" {
		c, err := currency.ByCode(*ccy)
		if err != nil {
			return usagef("--currency %q: %v", *ccy, err)
		}
		minor, err := currency.ParseMinor(*floor, c, '.')
		if err != nil {
			return usagef("--floor %q: %v", *floor, err)
		}
		req["floor"] = minor
	}
	body, err := o.write(ctx, http.MethodPost, "/v1/accounts", req, opsBodyBytesMax)
	if err != nil || o.json {
		return jsonOr(err, stdout, body)
	}
	var a account
	if err := json.Unmarshal(body, &a); err != nil {
		return fmt.Errorf("decoding the account: %w", err)
	}
	fmt.Fprintf(stdout, "account %s: %s %s, posted %s\n", a.ID, a.Kind, a.Currency, money(a.Posted, a.Currency))
	return nil
}
