package ops

import (
	"fmt"
	"net/http"

	"github.com/switchd/switchd/store"
)

// The routing table (store.Directory): every read is linearizable (a
// ReadIndex first, so a change made through any node shows), every change
// is checked here with the FSM's own rules before it is proposed and again
// by the FSM when it is applied, and each one appends its audit record in
// the same raft entry.
//
//	GET    /v1/routes                       {version, routes}
//	GET    /v1/routes/explain?bill_type=&payer_type=&partner=
//	GET    /v1/routes/{id}                  {version, route}
//	PUT    /v1/routes/{id}                  {bill_type, payer_type, partner, destination, settlement_account, reason}
//	DELETE /v1/routes/{id}                  {reason} or ?reason=
//	PUT    /v1/routes                       {base_version, reason, routes: [...]}: replace the whole table
//
// A route whose id is "explain" can be changed but not read by id: the
// explain route is the more specific pattern.

// routeRequest is the body of PUT /v1/routes/{id}; the id is the path's.
type routeRequest struct {
	BillType          string `json:"bill_type"`
	PayerType         string `json:"payer_type"`
	Partner           string `json:"partner"`
	Destination       string `json:"destination"`
	SettlementAccount string `json:"settlement_account"`
	Reason            string `json:"reason"`
}

// routesReplace is the body of PUT /v1/routes. BaseVersion is required:
// the table is replaced only while it is still at that version.
type routesReplace struct {
	BaseVersion *uint64       `json:"base_version"`
	Reason      string        `json:"reason"`
	Routes      []store.Route `json:"routes"`
}

// routeView is one route and the table's version.
type routeView struct {
	Version uint64       `json:"version"`
	Route   *store.Route `json:"route,omitempty"`
	// Replayed: the answer to a retry (same Idempotency-Key); nothing
	// changed now, the version is the table's current one.
	Replayed bool `json:"replayed,omitempty"`
}

// tableView is the whole table; it is also the file format of switchctl
// routes export and import.
type tableView struct {
	Version  uint64        `json:"version"`
	Routes   []store.Route `json:"routes"`
	Replayed bool          `json:"replayed,omitempty"`
}

func wildcard(s string) string {
	if s == "" {
		return store.Wildcard
	}
	return s
}

func noRoute(id string) error { return fmt.Errorf("%w: no route %q", store.ErrNotFound, id) }

func (s *Server) listRoutes(w http.ResponseWriter, r *http.Request) {
	if !s.caughtUp(w, r) {
		return
	}
	d := s.ledger.Directory()
	writeJSON(w, http.StatusOK, tableView{Version: d.Version(), Routes: d.Routes()})
}

func (s *Server) getRoute(w http.ResponseWriter, r *http.Request) {
	if !s.caughtUp(w, r) {
		return
	}
	d := s.ledger.Directory()
	rt, ok := d.Route(r.PathValue("id"))
	if !ok {
		s.fail(w, noRoute(r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, routeView{Version: d.Version(), Route: rt})
}

// explainRoute says which rule routes a request with the given key and,
// for each more specific key probed before it, that no rule has it.
func (s *Server) explainRoute(w http.ResponseWriter, r *http.Request) {
	if !s.caughtUp(w, r) {
		return
	}
	q := r.URL.Query()
	k := store.RouteKey{BillType: wildcard(q.Get("bill_type")), PayerType: wildcard(q.Get("payer_type")), Partner: wildcard(q.Get("partner"))}
	d := s.ledger.Directory()
	match, steps := d.Explain(k)
	writeJSON(w, http.StatusOK, map[string]any{
		"version": d.Version(),
		"key":     map[string]string{"bill_type": k.BillType, "payer_type": k.PayerType, "partner": k.Partner},
		"match":   match,
		"steps":   steps,
	})
}

func (s *Server) putRoute(w http.ResponseWriter, r *http.Request) {
	adm, ok := s.requireActor(w, r)
	if !ok {
		return
	}
	var req routeRequest
	if !decodeBody(w, r, &req, bodyBytesMax, false) {
		return
	}
	key, _, err := requestKey(r)
	if err != nil {
		answer(w, badRequest(err.Error()))
		return
	}
	if err := needReason(req.Reason); err != nil {
		s.fail(w, err)
		return
	}
	id := r.PathValue("id")
	rt := store.Route{ID: id, BillType: wildcard(req.BillType), PayerType: wildcard(req.PayerType), Partner: wildcard(req.Partner),
		Destination: req.Destination, SettlementAccount: req.SettlementAccount}
	if !s.caughtUp(w, r) {
		return
	}
	d := s.ledger.Directory()
	_, existed := d.Route(id)
	var readErr error
	cerr := d.CheckRoute(rt, s.accountLookup(&readErr), "route")
	if readErr != nil {
		s.fail(w, readErr)
		return
	}
	if cerr != nil {
		s.fail(w, cerr)
		return
	}
	adm.Reason, adm.Route = req.Reason, &rt
	ctx, cancel := writeContext(r)
	defer cancel()
	res, err := s.propose(ctx, change{op: store.OpPutRoute, key: "admin|route.put|" + id + "|" + key,
		fp: fingerprint("route.put", rt, req.Reason), admin: adm})
	if err != nil {
		s.fail(w, err)
		return
	}
	status := http.StatusOK
	if !existed && !res.Replayed {
		status = http.StatusCreated
	}
	s.answerRoute(w, r, id, res, status)
}

// answerRoute reads the route back once this node has applied the change
// (through a follower it was applied on the leader first).
func (s *Server) answerRoute(w http.ResponseWriter, r *http.Request, id string, res store.Result, status int) {
	if !s.caughtUp(w, r) {
		return
	}
	d := s.ledger.Directory()
	v := routeView{Version: res.Version, Replayed: res.Replayed}
	if res.Replayed || v.Version == 0 {
		v.Version = d.Version()
	}
	if rt, ok := d.Route(id); ok {
		v.Route = rt
	}
	writeJSON(w, status, v)
}

func (s *Server) deleteRoute(w http.ResponseWriter, r *http.Request) {
	adm, ok := s.requireActor(w, r)
	if !ok {
		return
	}
	var req struct {
		Reason string `json:"reason"`
	}
	if !decodeBody(w, r, &req, bodyBytesMax, true) {
		return
	}
	if req.Reason == "" {
		req.Reason = r.URL.Query().Get("reason")
	}
	key, client, err := requestKey(r)
	if err != nil {
		answer(w, badRequest(err.Error()))
		return
	}
	if err := needReason(req.Reason); err != nil {
		s.fail(w, err)
		return
	}
	if !s.caughtUp(w, r) {
		return
	}
	id := r.PathValue("id")
	before, exists := s.ledger.Directory().Route(id)
	// A retry (the client's key) may find the route gone because its
	// first try deleted it: the FSM answers that from its record. Without
	// a key a missing route is refused here, with nothing proposed.
	if !exists && !client {
		s.fail(w, noRoute(id))
		return
	}
	adm.Reason, adm.ID = req.Reason, id
	ctx, cancel := writeContext(r)
	defer cancel()
	res, err := s.propose(ctx, change{op: store.OpDeleteRoute, key: "admin|route.delete|" + id + "|" + key,
		fp: fingerprint("route.delete", id, req.Reason), admin: adm})
	if err != nil {
		s.fail(w, err)
		return
	}
	if !s.caughtUp(w, r) {
		return
	}
	v := routeView{Version: res.Version, Route: before, Replayed: res.Replayed}
	if res.Replayed || v.Version == 0 {
		v.Version = s.ledger.Directory().Version()
	}
	writeJSON(w, http.StatusOK, v)
}

// replaceRoutes replaces the whole table when it is still at
// base_version: every rule is checked first (a 10,000-rule table in one
// request), nothing is applied if one is wrong or the table moved on.
func (s *Server) replaceRoutes(w http.ResponseWriter, r *http.Request) {
	adm, ok := s.requireActor(w, r)
	if !ok {
		return
	}
	var req routesReplace
	if !decodeBody(w, r, &req, routesBodyBytesMax, false) {
		return
	}
	key, client, err := requestKey(r)
	if err != nil {
		answer(w, badRequest(err.Error()))
		return
	}
	switch {
	case req.BaseVersion == nil:
		err = changeError("base_version", "required: the version the new table is based on (GET /v1/routes)")
	case req.Routes == nil:
		err = changeError("routes", "required (an empty list empties the table)")
	default:
		err = needReason(req.Reason)
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	if !s.caughtUp(w, r) {
		return
	}
	d := s.ledger.Directory()
	// A retry (the client's key) finds the version moved on by its own
	// first try: the FSM answers that from its record.
	if d.Version() != *req.BaseVersion && !client {
		s.fail(w, fmt.Errorf("%w: base_version: %d, the table is at version %d", store.ErrVersionConflict, *req.BaseVersion, d.Version()))
		return
	}
	for i := range req.Routes {
		rt := &req.Routes[i]
		rt.BillType, rt.PayerType, rt.Partner = wildcard(rt.BillType), wildcard(rt.PayerType), wildcard(rt.Partner)
	}
	if err := checkTable(d, req.Routes, s.cachedAccountLookup()); err != nil {
		s.fail(w, err)
		return
	}
	adm.Reason, adm.Routes, adm.BaseVersion = req.Reason, req.Routes, *req.BaseVersion
	ctx, cancel := writeContext(r)
	defer cancel()
	res, err := s.propose(ctx, change{op: store.OpReplaceRoutes, key: "admin|routes.replace|" + key,
		fp: fingerprint("routes.replace", *req.BaseVersion, req.Routes, req.Reason), admin: adm})
	if err != nil {
		s.fail(w, err)
		return
	}
	if !s.caughtUp(w, r) {
		return
	}
	d = s.ledger.Directory()
	v := tableView{Version: res.Version, Routes: d.Routes(), Replayed: res.Replayed}
	if res.Replayed || v.Version == 0 {
		v.Version = d.Version()
	}
	writeJSON(w, http.StatusOK, v)
}

// checkTable checks a new table as the FSM will: each rule against the
// partners and accounts, ids and keys unique within the new table (a key
// held by a rule being replaced is free).
func checkTable(d *store.Directory, routes []store.Route, lookup func(*error) store.AccountLookup) error {
	// The partners and destinations it may name, none of the old rules.
	partnersOnly := store.NewDirectory(d.Partners(), nil).WithDestinations(d.Destinations())
	ids := make(map[string]struct{}, len(routes))
	keys := make(map[store.RouteKey]string, len(routes))
	var readErr error
	accounts := lookup(&readErr)
	for i, rt := range routes {
		field := fmt.Sprintf("routes[%d]", i)
		if _, dup := ids[rt.ID]; dup {
			return changeError(field+".id", "%q appears twice", rt.ID)
		}
		if err := partnersOnly.CheckRoute(rt, accounts, field); err != nil {
			if readErr != nil {
				return readErr
			}
			return err
		}
		k := rt.Key()
		if other, dup := keys[k]; dup {
			return changeError(field, "route %q already has key (bill_type %s, payer_type %s, partner %s)", other, k.BillType, k.PayerType, k.Partner)
		}
		ids[rt.ID], keys[k] = struct{}{}, rt.ID
	}
	return readErr
}

// cachedAccountLookup is accountLookup remembering each answer: a large
// table names the same few settlement accounts many times.
func (s *Server) cachedAccountLookup() func(*error) store.AccountLookup {
	return func(readErr *error) store.AccountLookup {
		inner := s.accountLookup(readErr)
		type found struct {
			a  store.Account
			ok bool
		}
		seen := map[string]found{}
		return func(id string) (store.Account, bool) {
			if f, ok := seen[id]; ok {
				return f.a, f.ok
			}
			a, ok := inner(id)
			seen[id] = found{a, ok}
			return a, ok
		}
	}
}
