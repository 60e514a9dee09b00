package ops

import (
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/settle"
	"github.com/switchd/switchd/store"
)

// Settlement is what the business-day and file routes use (settle.Service).
type Settlement interface {
	CloseDay(ctx context.Context, day string, admin *store.Admin) (settle.DayResult, error)
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
	s.handle("GET /v1/days", oauth.ScopeOpsRead, h.days)
	s.handle("POST /v1/days/close", oauth.ScopeSettleWrite, h.closeDay)
	s.handle("POST /v1/settlements", oauth.ScopeSettleWrite, h.submit(settle.KindSettlement))
	s.handle("GET /v1/settlements/{day}/{file}", oauth.ScopeOpsRead, h.settlementFile)
	s.handle("POST /v1/statements", oauth.ScopeSettleWrite, h.submit(settle.KindStatement))
	s.handle("GET /v1/statements/{account}/{file}", oauth.ScopeOpsRead, h.statementFile)
	s.handle("GET /v1/jobs/{id}", oauth.ScopeOpsRead, h.job)
}

type settleHandlers struct {
	s   *Server
	svc Settlement
}

// fail answers through the one error table (Server.fail).
func (h *settleHandlers) fail(w http.ResponseWriter, err error) { h.s.fail(w, err) }

func decodeSettleBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, bodyBytesMax))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		answer(w, badRequest("body must be one JSON object with known fields"))
		return false
	}
	return true
}

func (h *settleHandlers) days(w http.ResponseWriter, r *http.Request) {
	limit, err := pageLimit(r)
	if err != nil {
		answer(w, badRequest(err.Error()))
		return
	}
	if !h.s.caughtUp(w, r) { // a day closed through another node shows here too
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

// closeDay closes the day for the token's client (the day.close audit record
// names them; the cutover's names "system").
func (h *settleHandlers) closeDay(w http.ResponseWriter, r *http.Request) {
	adm, ok := h.s.requireActor(w, r)
	if !ok {
		return
	}
	var req struct {
		Day    string `json:"day"`
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 && !decodeSettleBody(w, r, &req) {
		return
	}
	if req.Day != "" && !store.ValidDay(req.Day) {
		answer(w, badRequest("day must be YYYY-MM-DD"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeoutMax)
	defer cancel()
	adm.Reason = req.Reason
	res, err := h.svc.CloseDay(ctx, req.Day, adm)
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
		answer(w, fmt.Errorf("%w: jobs are kept in memory on the node that ran them", outcome.ErrNoJob))
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
		answer(w, fmt.Errorf("%w: want {partner}.csv or .json (+ .sha256)", settle.ErrNoFile))
		return
	}
	h.serve(w, r, settle.Spec{Kind: settle.KindSettlement, Day: r.PathValue("day"), Partner: partner}, partner, ext)
}

func (h *settleHandlers) statementFile(w http.ResponseWriter, r *http.Request) {
	day, ext, ok := splitExt(r.PathValue("file"), settle.ExtMT940, settle.ExtCamt053)
	if !ok {
		answer(w, fmt.Errorf("%w: want {day}.mt940 or .camt053.xml (+ .sha256)", settle.ErrNoFile))
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

// Recon is what the reconciliation routes use (settle.Service).
type Recon interface {
	UploadBytesMax() int64
	StartRecon(day, partner, biller string, partnerFile, billerFile io.Reader) (settle.ReconStatus, error)
	Recon(id string) (settle.ReconStatus, error)
	ReconBreaks(id, code string) ([]settle.Break, error)
	ReconBreak(id, bid string) (settle.BreakDetail, error)
	UpdateBreak(ctx context.Context, id, bid string, u store.BreakUpdate, key string, now int64, admin *store.Admin) (settle.BreakDetail, error)
}

// uploadMemoryBytes is how much of an upload is held in memory; the rest
// is spooled to temporary files.
const uploadMemoryBytes = 32 << 20

// HandleRecon adds the reconciliation routes. Call it before Start.
//
//	POST /v1/reconciliations                    multipart: day, partner, [biller], partner_file, biller_file → 202
//	GET  /v1/reconciliations/{id}               state, counts per code, matched
//	GET  /v1/reconciliations/{id}/breaks        ?code=B2 &format=csv (or Accept: text/csv)
//	GET  /v1/reconciliations/{id}/breaks/{bid}  one break with its audit trail
//	POST /v1/reconciliations/{id}/breaks/{bid}  {"action":"assign|resolve","assignee","note"}
func (s *Server) HandleRecon(svc Recon) {
	h := &reconHandlers{s: s, svc: svc}
	s.handle("POST /v1/reconciliations", oauth.ScopeSettleWrite, h.start)
	s.handle("GET /v1/reconciliations/{id}", oauth.ScopeOpsRead, h.status)
	s.handle("GET /v1/reconciliations/{id}/breaks", oauth.ScopeOpsRead, h.breaks)
	s.handle("GET /v1/reconciliations/{id}/breaks/{bid}", oauth.ScopeOpsRead, h.breakDetail)
	s.handle("POST /v1/reconciliations/{id}/breaks/{bid}", oauth.ScopeSettleWrite, h.update)
}

type reconHandlers struct {
	s   *Server
	svc Recon
}

// fail answers through the one error table (Server.fail).
func (h *reconHandlers) fail(w http.ResponseWriter, err error) { h.s.fail(w, err) }

func (h *reconHandlers) start(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, h.svc.UploadBytesMax())
	if err := r.ParseMultipartForm(uploadMemoryBytes); err != nil {
		answer(w, badRequest(fmt.Sprintf("want multipart/form-data with day, partner, partner_file and biller_file (and biller, optional), at most %d bytes", h.svc.UploadBytesMax())))
		return
	}
	defer r.MultipartForm.RemoveAll()
	var files [2]io.Reader
	for i, name := range []string{"partner_file", "biller_file"} {
		f, _, err := r.FormFile(name)
		if err != nil {
			answer(w, badRequest("missing file "+name))
			return
		}
		defer f.Close()
		files[i] = f
	}
	// biller, optional: whose the biller file is (settle.Service.StartRecon).
	st, err := h.svc.StartRecon(r.FormValue("day"), r.FormValue("partner"), r.FormValue("biller"), files[0], files[1])
	if err != nil {
		h.fail(w, err)
		return
	}
	w.Header().Set("Location", "/v1/reconciliations/"+st.ID)
	writeJSON(w, http.StatusAccepted, st)
}

func (h *reconHandlers) status(w http.ResponseWriter, r *http.Request) {
	st, err := h.svc.Recon(r.PathValue("id"))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

var breakColumns = []string{"id", "code", "owner", "source", "partner", "rrn", "stan",
	"ledger_transfer_id", "ledger_amount", "ledger_currency", "ledger_day", "ledger_status",
	"file_row", "file_amount", "file_currency", "file_day", "file_status", "state", "assignee", "note", "detail"}

func (h *reconHandlers) breaks(w http.ResponseWriter, r *http.Request) {
	code := r.URL.Query().Get("code")
	switch code {
	case "", settle.B1, settle.B2, settle.B3, settle.B4, settle.B5:
	default:
		answer(w, badRequest("code must be B1..B5"))
		return
	}
	if !h.s.caughtUp(w, r) { // assignments and resolutions made through another node
		return
	}
	bs, err := h.svc.ReconBreaks(r.PathValue("id"), code)
	if err != nil {
		h.fail(w, err)
		return
	}
	if r.URL.Query().Get("format") == "csv" || strings.Contains(r.Header.Get("Accept"), "text/csv") {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		cw := csv.NewWriter(w)
		cw.Write(breakColumns)
		for _, b := range bs {
			var o, f settle.Side
			if b.Ours != nil {
				o = *b.Ours
			}
			if b.Theirs != nil {
				f = *b.Theirs
			}
			row := ""
			if f.Row > 0 {
				row = strconv.Itoa(f.Row)
			}
			cw.Write([]string{b.ID, b.Code, b.Owner, b.Source, b.Partner, b.RRN, b.STAN,
				o.Transfer, o.Amount, o.Currency, o.Day, o.Status, row, f.Amount, f.Currency, f.Day, f.Status,
				b.State, b.Assignee, b.Note, b.Detail})
		}
		cw.Flush()
		return
	}
	if bs == nil {
		bs = []settle.Break{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"breaks": bs})
}

func (h *reconHandlers) breakDetail(w http.ResponseWriter, r *http.Request) {
	if !h.s.caughtUp(w, r) {
		return
	}
	d, err := h.svc.ReconBreak(r.PathValue("id"), r.PathValue("bid"))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// update assigns or resolves a break for the token's client. A body's "actor"
// (what older clients send) must be the same.
func (h *reconHandlers) update(w http.ResponseWriter, r *http.Request) {
	adm, ok := h.s.requireActor(w, r)
	if !ok {
		return
	}
	var u store.BreakUpdate
	if !decodeSettleBody(w, r, &u) {
		return
	}
	if u.Actor != "" && u.Actor != adm.Actor {
		answer(w, badRequest("the body's actor is not the token's client"))
		return
	}
	u.Actor, adm.Reason = adm.Actor, u.Note
	if u.Action != store.BreakAssign && u.Action != store.BreakResolve {
		answer(w, badRequest(`action must be "assign" or "resolve"`))
		return
	}
	// A client retrying after a lost answer sends the same key; without
	// one every request is a new change.
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		key = hex.EncodeToString(b[:])
	}
	if len(key) > 64 {
		answer(w, badRequest("Idempotency-Key longer than 64 characters"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeoutMax)
	defer cancel()
	if _, err := h.svc.UpdateBreak(ctx, r.PathValue("id"), r.PathValue("bid"), u, key, time.Now().UnixNano(), adm); err != nil {
		h.fail(w, err)
		return
	}
	// Through a follower the change was applied on the leader when
	// UpdateBreak returns, not yet here: read it back after catching up,
	// so the answer shows the change it made.
	if !h.s.caughtUp(w, r) {
		return
	}
	d, err := h.svc.ReconBreak(r.PathValue("id"), r.PathValue("bid"))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}
