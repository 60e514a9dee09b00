package ops

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/host"
	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/store"
)

// Destinations (store/destinations.go, issue 13), changed like partners:
//
//	GET    /v1/destinations        {destinations}
//	GET    /v1/destinations/{id}   the destination
//	PUT    /v1/destinations/{id}   {kind, settlement_account, bins, disabled, iso8583 | http, reason}
//	DELETE /v1/destinations/{id}   {reason} (refused while a route names it)
//
// Every change is a raft command with its audit record (actions
// destination.put and destination.delete).

func (s *Server) registerDestinations() {
	s.handle("GET /v1/destinations", oauth.ScopeOpsRead, s.listDestinations)
	s.handle("GET /v1/destinations/{id}", oauth.ScopeOpsRead, s.getDestination)
	s.handle("PUT /v1/destinations/{id}", oauth.ScopeRoutesWrite, s.putDestination)
	s.handle("DELETE /v1/destinations/{id}", oauth.ScopeRoutesWrite, s.deleteDestination)
}

// destinationRequest is the body of PUT /v1/destinations/{id}.
type destinationRequest struct {
	Kind              string                 `json:"kind"`
	SettlementAccount string                 `json:"settlement_account"`
	BINs              []string               `json:"bins"`
	Disabled          bool                   `json:"disabled"`
	ISO8583           *store.HostDestination `json:"iso8583"`
	HTTP              *store.HTTPDestination `json:"http"`
	Reason            string                 `json:"reason"`
}

type destinationView struct {
	*store.Destination
	Replayed bool `json:"replayed,omitempty"`
}

func noDestination(id string) error {
	return fmt.Errorf("%w: no destination %q", store.ErrNotFound, id)
}

func (s *Server) listDestinations(w http.ResponseWriter, r *http.Request) {
	if !s.caughtUp(w, r) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"destinations": s.ledger.Directory().Destinations()})
}

func (s *Server) getDestination(w http.ResponseWriter, r *http.Request) {
	if !s.caughtUp(w, r) {
		return
	}
	x, ok := s.ledger.Directory().Destination(r.PathValue("id"))
	if !ok {
		s.fail(w, noDestination(r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, x)
}

func (s *Server) putDestination(w http.ResponseWriter, r *http.Request) {
	adm, ok := s.requireActor(w, r)
	if !ok {
		return
	}
	var req destinationRequest
	if !decodeBody(w, r, &req, bodyBytesMax, false) {
		return
	}
	if err := needReason(req.Reason); err != nil {
		s.fail(w, err)
		return
	}
	key, _, err := requestKey(r)
	if err != nil {
		answer(w, badRequest(err.Error()))
		return
	}
	if !s.caughtUp(w, r) {
		return
	}
	id := r.PathValue("id")
	x := store.Destination{ID: id, Kind: req.Kind, SettlementAccount: req.SettlementAccount, BINs: req.BINs,
		Disabled: req.Disabled, ISO8583: req.ISO8583, HTTP: req.HTTP}
	var readErr error
	cerr := s.ledger.Directory().CheckDestination(x, s.accountLookup(&readErr))
	if readErr != nil {
		s.fail(w, readErr)
		return
	}
	if cerr == nil && x.Kind == store.DestinationKindISO8583 {
		cerr = checkHostConfig(&x)
	}
	if cerr != nil {
		s.fail(w, cerr)
		return
	}
	_, existed := s.ledger.Directory().Destination(id)
	adm.Reason, adm.Destination = req.Reason, &x
	ctx, cancel := writeContext(r)
	defer cancel()
	res, err := s.propose(ctx, change{op: store.OpPutDestination, key: "admin|destination.put|" + id + "|" + key,
		fp: fingerprint("destination.put", x, req.Reason), admin: adm})
	if err != nil {
		s.fail(w, err)
		return
	}
	if !s.caughtUp(w, r) {
		return
	}
	stored, ok := s.ledger.Directory().Destination(id)
	if !ok {
		s.fail(w, noDestination(id))
		return
	}
	status := http.StatusOK
	if !existed && !res.Replayed {
		status = http.StatusCreated
	}
	writeJSON(w, status, destinationView{Destination: stored, Replayed: res.Replayed})
}

// checkHostConfig is what only a node can check: the dialect loads and
// the settings make a working client.
func checkHostConfig(x *store.Destination) error {
	_, err := host.FromDestination(x)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, codec.ErrUnknownDialect):
		return changeError("iso8583.dialect", "%q is not a dialect this node knows", x.ISO8583.Dialect)
	}
	return changeError("iso8583", "%v", err)
}

func (s *Server) deleteDestination(w http.ResponseWriter, r *http.Request) {
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
	before, exists := s.ledger.Directory().Destination(id)
	if !exists && !client {
		s.fail(w, noDestination(id))
		return
	}
	adm.Reason, adm.ID = req.Reason, id
	ctx, cancel := writeContext(r)
	defer cancel()
	res, err := s.propose(ctx, change{op: store.OpDeleteDestination, key: "admin|destination.delete|" + id + "|" + key,
		fp: fingerprint("destination.delete", id, req.Reason), admin: adm})
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, destinationView{Destination: before, Replayed: res.Replayed})
}
