package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/switchd/switchd/settle"
	"github.com/switchd/switchd/store"
)

// Settlement is what the business-day and file routes use (settle.Service).
type Settlement interface {
	CloseDay(ctx context.Context, day string) (settle.DayResult, error)
	ListDays(before string, limit int) (open string, days []store.Day, err error)
	Submit(sp settle.Spec) (settle.Job, error)
	Job(id string) (settle.Job, bool)
	Open(kind settle.Kind, day, name, ext string) (*os.File, error)
}

// HandleSettlement adds the business-day, settlement-file, statement and
// job routes. Call it before Start.
//
//	GET  /v1/days                              open day and recent days
//	POST /v1/days/close {"day": optional}      close the open day now
//	POST /v1/settlements {"day","partner"}     → 202 job
//	GET  /v1/settlements/{day}/{partner}.csv   (.json, .csv.sha256, .json.sha256)
//	POST /v1/statements {"day","account"}      → 202 job
//	GET  /v1/statements/{account}/{day}.mt940  (.camt053.xml, + .sha256)
//	GET  /v1/jobs/{id}
//
// A GET for a file not produced yet starts its job and answers 202 with
// the job; poll it, then GET again.
func (s *Server) HandleSettlement(svc Settlement) {
	h := &settleHandlers{s: s, svc: svc}
	s.mux.HandleFunc("GET /v1/days", h.days)
	s.mux.HandleFunc("POST /v1/days/close", h.closeDay)
	s.mux.HandleFunc("POST /v1/settlements", h.submit(settle.KindSettlement))
	s.mux.HandleFunc("GET /v1/settlements/{day}/{file}", h.settlementFile)
	s.mux.HandleFunc("POST /v1/statements", h.submit(settle.KindStatement))
	s.mux.HandleFunc("GET /v1/statements/{account}/{file}", h.statementFile)
	s.mux.HandleFunc("GET /v1/jobs/{id}", h.job)
}

type settleHandlers struct {
	s   *Server
	svc Settlement
}

// settleFail answers the settle package's errors; the rest go through the
// outcome table.
func (h *settleHandlers) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, settle.ErrBadRequest):
		problem(w, http.StatusBadRequest, "bad-request", "Bad request", err.Error())
	case errors.Is(err, settle.ErrDayNotClosed):
		problem(w, http.StatusConflict, "day-not-closed", "Business day not closed", err.Error())
	case errors.Is(err, settle.ErrNoOpenDay):
		problem(w, http.StatusConflict, "no-open-day", "No business day open", err.Error())
	case errors.Is(err, store.ErrDayMismatch):
		problem(w, http.StatusConflict, "day-mismatch", "Not the open business day", err.Error())
	case errors.Is(err, settle.ErrQueueFull):
		w.Header().Set("Retry-After", "10")
		problem(w, http.StatusServiceUnavailable, "queue-full", "Job queue full", err.Error())
	case errors.Is(err, settle.ErrNoFile):
		problem(w, http.StatusNotFound, "no-file", "No such file", "")
	default:
		h.s.fail(w, err)
	}
}

func decodeSettleBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, bodyBytesMax))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		problem(w, http.StatusBadRequest, "bad-request", "Bad request", "body must be one JSON object with known fields")
		return false
	}
	return true
}

func (h *settleHandlers) days(w http.ResponseWriter, r *http.Request) {
	limit, err := pageLimit(r)
	if err != nil {
		problem(w, http.StatusBadRequest, "bad-request", "Bad request", err.Error())
		return
	}
	open, days, err := h.svc.ListDays(r.URL.Query().Get("before"), limit)
	if err != nil {
		h.fail(w, err)
		return
	}
	if days == nil {
		days = []store.Day{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"open": open, "days": days})
}

func (h *settleHandlers) closeDay(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Day string `json:"day"`
	}
	if r.ContentLength != 0 && !decodeSettleBody(w, r, &req) {
		return
	}
	if req.Day != "" && !store.ValidDay(req.Day) {
		problem(w, http.StatusBadRequest, "bad-request", "Bad request", "day must be YYYY-MM-DD")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeoutMax)
	defer cancel()
	res, err := h.svc.CloseDay(ctx, req.Day)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (h *settleHandlers) submit(kind settle.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Day     string `json:"day"`
			Partner string `json:"partner"`
			Account string `json:"account"`
		}
		if !decodeSettleBody(w, r, &req) {
			return
		}
		h.start(w, settle.Spec{Kind: kind, Day: req.Day, Partner: req.Partner, Account: req.Account})
	}
}

func (h *settleHandlers) start(w http.ResponseWriter, sp settle.Spec) {
	job, err := h.svc.Submit(sp)
	if err != nil {
		h.fail(w, err)
		return
	}
	w.Header().Set("Location", "/v1/jobs/"+job.ID)
	writeJSON(w, http.StatusAccepted, job)
}

func (h *settleHandlers) job(w http.ResponseWriter, r *http.Request) {
	job, ok := h.svc.Job(r.PathValue("id"))
	if !ok {
		problem(w, http.StatusNotFound, "no-job", "No such job", "jobs are kept in memory on the node that ran them")
		return
	}
	writeJSON(w, http.StatusOK, job)
}

// splitExt cuts the first known extension off name.
func splitExt(name string, exts ...string) (base, ext string, ok bool) {
	for _, e := range exts {
		for _, full := range []string{e + settle.ExtSHA256, e} {
			if b, found := strings.CutSuffix(name, full); found && b != "" {
				return b, full, true
			}
		}
	}
	return "", "", false
}

var contentTypes = map[string]string{
	settle.ExtCSV:     "text/csv; charset=utf-8",
	settle.ExtJSON:    "application/json",
	settle.ExtMT940:   "text/plain; charset=us-ascii",
	settle.ExtCamt053: "application/xml",
}

func (h *settleHandlers) settlementFile(w http.ResponseWriter, r *http.Request) {
	partner, ext, ok := splitExt(r.PathValue("file"), settle.ExtCSV, settle.ExtJSON)
	if !ok {
		problem(w, http.StatusNotFound, "no-file", "No such file", "want {partner}.csv or .json (+ .sha256)")
		return
	}
	h.serve(w, r, settle.Spec{Kind: settle.KindSettlement, Day: r.PathValue("day"), Partner: partner}, partner, ext)
}

func (h *settleHandlers) statementFile(w http.ResponseWriter, r *http.Request) {
	day, ext, ok := splitExt(r.PathValue("file"), settle.ExtMT940, settle.ExtCamt053)
	if !ok {
		problem(w, http.StatusNotFound, "no-file", "No such file", "want {day}.mt940 or .camt053.xml (+ .sha256)")
		return
	}
	acct := r.PathValue("account")
	h.serve(w, r, settle.Spec{Kind: settle.KindStatement, Day: day, Account: acct}, acct, ext)
}

func (h *settleHandlers) serve(w http.ResponseWriter, r *http.Request, sp settle.Spec, name, ext string) {
	f, err := h.svc.Open(sp.Kind, sp.Day, name, ext)
	if errors.Is(err, settle.ErrNoFile) {
		h.start(w, sp) // not made yet: make it
		return
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		h.s.fail(w, fmt.Errorf("ops: %w", err))
		return
	}
	ct := contentTypes[strings.TrimSuffix(ext, settle.ExtSHA256)]
	if strings.HasSuffix(ext, settle.ExtSHA256) {
		ct = "text/plain; charset=us-ascii"
	}
	w.Header().Set("Content-Type", ct)
	http.ServeContent(w, r, "", st.ModTime(), f)
}
