package ops

import (
	"fmt"
	"net/http"
	"time"

	"github.com/switchd/switchd/store"
)

// Partners (store.Directory), read and changed like routes (routes.go):
//
//	GET  /v1/partners              {partners}
//	GET  /v1/partners/{id}         the partner
//	PUT  /v1/partners/{id}         {acquirer_ids, lanes, settlement_account, withdrawal_max, payer_type, payer_types, allow, cert_pins: [{sha256, not_after}], suspended, reason}
//	POST /v1/partners/{id}/suspend {reason}
//	POST /v1/partners/{id}/resume  {reason}
//
// A suspended partner is refused on every lane; its history (transfers,
// settlement files, audit records) stays. Suspend and resume read the
// partner and write it back with only Suspended changed: the FSM keeps no
// version per partner, so a PUT racing a suspend may lose to it (the audit
// chain shows both).

// partnerRequest is the body of PUT /v1/partners/{id}; the id is the path's.
type partnerRequest struct {
	AcquirerIDs       []string `json:"acquirer_ids"`
	Lanes             []string `json:"lanes"`
	SettlementAccount string   `json:"settlement_account"`
	// WithdrawalMax caps one cash withdrawal, minor units (a JSON
	// integer); 0 is no cap.
	WithdrawalMax int64    `json:"withdrawal_max"`
	PayerType     string   `json:"payer_type"`
	PayerTypes    []string `json:"payer_types"`
	// Allow: source networks (CIDR) the partner's messages may come from.
	Allow []string `json:"allow"`
	// CertPins: its client certificates, [{sha256, not_after}] (SHA-256
	// hex of each public key, RFC 3339), at most two live at once.
	CertPins  []store.CertPin `json:"cert_pins"`
	Suspended bool            `json:"suspended"`
	Reason    string          `json:"reason"`
}

// partnerView is a partner after a change.
type partnerView struct {
	*store.Partner
	Replayed bool `json:"replayed,omitempty"`
	// Unchanged: a suspend of a suspended partner (or a resume of an
	// active one) proposes nothing.
	Unchanged bool `json:"unchanged,omitempty"`
}

func noPartner(id string) error { return fmt.Errorf("%w: no partner %q", store.ErrNotFound, id) }

func (s *Server) listPartners(w http.ResponseWriter, r *http.Request) {
	if !s.caughtUp(w, r) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"partners": s.ledger.Directory().Partners()})
}

func (s *Server) getPartner(w http.ResponseWriter, r *http.Request) {
	if !s.caughtUp(w, r) {
		return
	}
	p, ok := s.ledger.Directory().Partner(r.PathValue("id"))
	if !ok {
		s.fail(w, noPartner(r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) putPartner(w http.ResponseWriter, r *http.Request) {
	adm, ok := s.requireActor(w, r)
	if !ok {
		return
	}
	var req partnerRequest
	if !decodeBody(w, r, &req, bodyBytesMax, false) {
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
	_, existed := s.ledger.Directory().Partner(id)
	p := store.Partner{ID: id, AcquirerIDs: req.AcquirerIDs, Lanes: req.Lanes, SettlementAccount: req.SettlementAccount,
		WithdrawalMax: req.WithdrawalMax, PayerType: req.PayerType, PayerTypes: req.PayerTypes, Allow: req.Allow, CertPins: req.CertPins, Suspended: req.Suspended}
	status := http.StatusOK
	if !existed {
		status = http.StatusCreated
	}
	s.writePartner(w, r, adm, p, req.Reason, "partner.put", status)
}

// suspend and resume: POST /v1/partners/{id}/suspend|resume {reason}.
func (s *Server) suspendPartner(suspended bool) http.HandlerFunc {
	action := "partner.resume"
	if suspended {
		action = "partner.suspend"
	}
	return func(w http.ResponseWriter, r *http.Request) {
		adm, ok := s.requireActor(w, r)
		if !ok {
			return
		}
		var req struct {
			Reason string `json:"reason"`
		}
		if !decodeBody(w, r, &req, bodyBytesMax, false) {
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
		cur, ok := s.ledger.Directory().Partner(id)
		if !ok {
			s.fail(w, noPartner(id))
			return
		}
		if cur.Suspended == suspended {
			writeJSON(w, http.StatusOK, partnerView{Partner: cur, Unchanged: true})
			return
		}
		key, _, err := requestKey(r)
		if err != nil {
			answer(w, badRequest(err.Error()))
			return
		}
		// The FSM flips the flag on the partner as it stands when the
		// command applies, so a PUT of the partner racing this suspension
		// is neither undone by it nor undoes it.
		adm.Reason, adm.ID, adm.Suspend = req.Reason, id, &suspended
		ctx, cancel := writeContext(r)
		defer cancel()
		res, err := s.propose(ctx, change{op: store.OpPutPartner, key: "admin|" + action + "|" + id + "|" + key,
			fp: fingerprint(action, id, req.Reason), admin: adm})
		if err != nil {
			s.fail(w, err)
			return
		}
		if !s.caughtUp(w, r) {
			return
		}
		stored, ok := s.ledger.Directory().Partner(id)
		if !ok {
			s.fail(w, noPartner(id))
			return
		}
		writeJSON(w, http.StatusOK, partnerView{Partner: stored, Replayed: res.Replayed})
	}
}

// writePartner checks p, proposes it and answers with it as stored.
func (s *Server) writePartner(w http.ResponseWriter, r *http.Request, adm *store.Admin, p store.Partner, reason, action string, status int) {
	key, _, err := requestKey(r)
	if err != nil {
		answer(w, badRequest(err.Error()))
		return
	}
	var readErr error
	cerr := s.ledger.Directory().CheckPartner(p, s.accountLookup(&readErr), time.Now())
	if readErr != nil {
		s.fail(w, readErr)
		return
	}
	if cerr != nil {
		s.fail(w, cerr)
		return
	}
	adm.Reason, adm.Partner = reason, &p
	ctx, cancel := writeContext(r)
	defer cancel()
	res, err := s.propose(ctx, change{op: store.OpPutPartner, key: "admin|" + action + "|" + p.ID + "|" + key,
		fp: fingerprint(action, p, reason), admin: adm})
	if err != nil {
		s.fail(w, err)
		return
	}
	if !s.caughtUp(w, r) {
		return
	}
	stored, ok := s.ledger.Directory().Partner(p.ID)
	if !ok {
		s.fail(w, noPartner(p.ID))
		return
	}
	if res.Replayed {
		status = http.StatusOK
	}
	writeJSON(w, status, partnerView{Partner: stored, Replayed: res.Replayed})
}
