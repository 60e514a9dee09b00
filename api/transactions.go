package api

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/store"
)

// The transaction listing: the caller partner's transfers, filtered, a
// page at a time (JSON), or every matching one as a CSV export streamed
// in bounded memory. Both read the ledger in pages of at most
// exportPageMax transfers, each page from its own pebble snapshot, so a
// slow client never holds the store's read lock (a Restore waits for it,
// and every other read behind that).

// Limits.
const (
	// listLimitMax bounds one JSON page (the limit parameter's maximum
	// tag says the same to huma and the document).
	listLimitMax = 1000
	// exportPageMax is how many transfers an export holds at once.
	exportPageMax = 1000
	// exportTimeout bounds one export's writing (the listener's
	// writeTimeout is for calls; 1,000,000 rows take a few seconds).
	exportTimeout = 10 * time.Minute
	// exportBufferBytes is the CSV writer's buffer: flushed to the client
	// after every page.
	exportBufferBytes = 64 << 10
)

// Transaction is a transfer as the listing shows it.
type Transaction struct {
	ID              string `json:"id"`
	Type            string `json:"type" enum:"authorize,post,complete,reverse" doc:"The operation that made it: post (a payment), reverse (a refund or reversal), authorize (a hold), complete (a capture)"`
	Status          string `json:"status" enum:"pending,posted,voided,expired,completed"`
	Amount          string `json:"amount" doc:"Decimal string with the currency's exponent"`
	Reversed        string `json:"reversed" doc:"What reversals and refunds have taken back"`
	Currency        string `json:"currency"`
	DebtorAccount   string `json:"debtor_account"`
	CreditorAccount string `json:"creditor_account"`
	Original        string `json:"original,omitempty" doc:"The transaction this one completes or reverses"`
	Reference       string `json:"reference,omitempty"`
	BusinessDay     string `json:"business_day"`
	CreatedAt       string `json:"created_at" doc:"RFC 3339, UTC"`
}

// csvHeader is the export's first row; csvRow follows it field for field.
var csvHeader = []string{"id", "type", "status", "amount", "reversed", "currency", "debtor_account", "creditor_account",
	"original", "reference", "business_day", "created_at"}

func (x *Transaction) csvRow(row []string) []string {
	return append(row[:0], x.ID, x.Type, x.Status, x.Amount, x.Reversed, x.Currency, x.DebtorAccount, x.CreditorAccount,
		x.Original, x.Reference, x.BusinessDay, x.CreatedAt)
}

// TransactionPage is one page of the listing.
type TransactionPage struct {
	Transactions []Transaction `json:"transactions"`
	// Next is the cursor of the next page (its after), empty on the last.
	Next string `json:"next,omitempty" doc:"Pass as after for the next page; absent on the last page"`
}

type listRequest struct {
	From    string `query:"from" pattern:"^[0-9]{4}-[0-9]{2}-[0-9]{2}$" doc:"First business day, YYYY-MM-DD (inclusive)"`
	To      string `query:"to" pattern:"^[0-9]{4}-[0-9]{2}-[0-9]{2}$" doc:"Last business day, YYYY-MM-DD (inclusive)"`
	Account string `query:"account" maxLength:"64" doc:"Only transactions debiting or crediting this account"`
	Status  string `query:"status" enum:"pending,posted,voided,expired,completed"`
	Type    string `query:"type" enum:"authorize,post,complete,reverse"`
	After   string `query:"after" pattern:"^T[0-9]{14}$" doc:"The next cursor of the previous page"`
	Limit   int    `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"Page size (JSON); the CSV export ignores it"`
	Accept  string `header:"Accept" doc:"text/csv: every matching transaction as CSV, streamed, no pages"`
}

var transactionTypes = map[string]store.Op{"authorize": store.OpAuthorize, "post": store.OpPost, "complete": store.OpComplete, "reverse": store.OpReverse}

func (s *Server) registerTransactions() {
	op := huma.Operation{
		OperationID: "list-transactions", Method: http.MethodGet, Path: "/v1/transactions", Summary: "List or export transactions",
		Description: "The caller partner's transactions in id order (which is time order), filtered by business day range, account, status and type. " +
			"JSON: a page of at most limit, with a next cursor. Accept: text/csv: every matching transaction, streamed (header row; money as decimal strings; RFC 3339 UTC times).",
		Errors: []int{400, 401, 403, 503}, Tags: []string{"payments"},
		Security: []map[string][]string{{"oauth2": {ScopePaymentsRead}}}, Metadata: map[string]any{"scope": ScopePaymentsRead},
		// The answer is streamed (huma.StreamResponse), so its schemas are
		// given here.
		Responses: map[string]*huma.Response{"200": {Description: "OK", Content: map[string]*huma.MediaType{
			"application/json": {Schema: s.api.OpenAPI().Components.Schemas.Schema(reflect.TypeOf(TransactionPage{}), true, "TransactionPage")},
			"text/csv":         {Schema: &huma.Schema{Type: huma.TypeString}},
		}}},
	}
	huma.Register(s.api, op, func(ctx context.Context, in *listRequest) (*huma.StreamResponse, error) {
		f, perr := transactionFilter(callerOf(ctx), in)
		if perr != nil {
			return nil, perr
		}
		if err := s.ledger.ReadIndex(ctx); err != nil {
			return nil, problemOf(err)
		}
		if wantsCSV(in.Accept) {
			f.Limit = exportPageMax
			first, err := s.ledger.Transfers(f)
			if err != nil {
				return nil, problemOf(err)
			}
			return &huma.StreamResponse{Body: func(hc huma.Context) { s.exportCSV(hc, f, first) }}, nil
		}
		limit := min(in.Limit, listLimitMax)
		// One more than the page: whether a next page exists.
		f.Limit = limit + 1
		ts, err := s.ledger.Transfers(f)
		if err != nil {
			return nil, problemOf(err)
		}
		page := TransactionPage{Transactions: make([]Transaction, 0, min(len(ts), limit))}
		for i := range ts {
			if i == limit {
				page.Next = ts[i-1].ID
				break
			}
			x, err := transactionOf(&ts[i])
			if err != nil {
				return nil, problemOf(err)
			}
			page.Transactions = append(page.Transactions, x)
		}
		return &huma.StreamResponse{Body: func(hc huma.Context) {
			hc.SetHeader("Content-Type", "application/json")
			hc.SetStatus(http.StatusOK)
			_ = json.NewEncoder(hc.BodyWriter()).Encode(page)
		}}, nil
	})
}

// transactionFilter is the store filter of a listing: always the caller's
// partner, whatever else is asked.
func transactionFilter(c *caller, in *listRequest) (store.TransferFilter, *Problem) {
	f := store.TransferFilter{Partner: c.partner.ID, Account: in.Account, Status: store.TransferStatus(in.Status), After: in.After}
	for _, d := range []struct{ name, v string }{{"from", in.From}, {"to", in.To}} {
		if d.v == "" {
			continue
		}
		if _, err := time.Parse(time.DateOnly, d.v); err != nil {
			return f, validation(d.name, "a calendar day, YYYY-MM-DD")
		}
	}
	if in.From != "" && in.To != "" && in.To < in.From {
		return f, validation("to", "before from")
	}
	f.DayFrom, f.DayTo = in.From, in.To
	if in.Type != "" {
		f.Op = transactionTypes[in.Type]
	}
	return f, nil
}

// wantsCSV: the Accept header names text/csv (before any JSON type).
func wantsCSV(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, _, _ := strings.Cut(part, ";")
		switch strings.ToLower(strings.TrimSpace(mt)) {
		case "text/csv":
			return true
		case "application/json", "application/*":
			return false
		}
	}
	return false
}

// exportCSV writes every transfer matching f, first being its first page,
// flushing after each page. An error once rows are out cannot become a
// problem: the connection is aborted, so the client sees a broken
// transfer rather than a short file that looks whole.
func (s *Server) exportCSV(hc huma.Context, f store.TransferFilter, first []store.Transfer) {
	r, w := humago.Unwrap(hc)
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(exportTimeout))
	hc.SetHeader("Content-Type", "text/csv; charset=utf-8")
	hc.SetHeader("Content-Disposition", `attachment; filename="transactions.csv"`)
	hc.SetStatus(http.StatusOK)
	bw := bufio.NewWriterSize(hc.BodyWriter(), exportBufferBytes)
	cw := csv.NewWriter(bw)
	fail := func(err error) {
		s.log.Warn("transaction export stopped", "partner", f.Partner, "after", f.After, "err", err)
		panic(http.ErrAbortHandler)
	}
	if err := cw.Write(csvHeader); err != nil {
		fail(err)
	}
	row := make([]string, 0, len(csvHeader))
	for page := first; ; {
		for i := range page {
			x, err := transactionOf(&page[i])
			if err != nil {
				fail(err)
			}
			if err := cw.Write(x.csvRow(row)); err != nil {
				fail(err)
			}
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			fail(err)
		}
		if err := bw.Flush(); err != nil {
			fail(err)
		}
		if err := rc.Flush(); err != nil {
			fail(err)
		}
		if len(page) < f.Limit {
			return
		}
		if err := r.Context().Err(); err != nil {
			fail(err)
		}
		f.After = page[len(page)-1].ID
		var err error
		if page, err = s.ledger.Transfers(f); err != nil {
			fail(err)
		}
	}
}

func transactionOf(t *store.Transfer) (Transaction, error) {
	ccy, err := currency.ByCode(t.Currency)
	if err != nil {
		return Transaction{}, fmt.Errorf("transfer %s: %w", t.ID, err)
	}
	return Transaction{ID: t.ID, Type: t.Op.String(), Status: string(t.Status),
		Amount: currency.FormatMinor(t.Amount, ccy, '.'), Reversed: currency.FormatMinor(t.Reversed, ccy, '.'), Currency: ccy.Code,
		DebtorAccount: t.Debit, CreditorAccount: t.Credit, Original: t.Original, Reference: t.Ref.RRN,
		BusinessDay: t.BusinessDay, CreatedAt: rfc3339(t.Time)}, nil
}
