package ops

import (
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/switchd/switchd/mac"
	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/store"
)

// Partner MAC keys (admin op 17), in the style of partners.go:
//
//	POST /v1/partners/{id}/mac-key {alg, padding, key, kcv, overlap, reason}
//
// alg is x919 (padding m1 or m2) or aes-cmac (no padding), or none to drop
// the requirement. key is the new key as hex: it reaches this node in
// clear (the ops listener is a trusted address; OAuth2 and TLS come with
// the lead's change), is wrapped under this node's KEK before anything is
// proposed, and is neither logged, echoed in a problem, nor kept. kcv,
// when given, must be the key's own check value (what the partner's key
// ceremony printed): a typo in the key is refused instead of becoming the
// partner's key. overlap ("24h") keeps the current key valid that long
// after the change. The answer is the partner as stored, with its MAC's
// KCVs.

// macKeyRequest is the body of POST /v1/partners/{id}/mac-key.
type macKeyRequest struct {
	Alg     string `json:"alg"`
	Padding string `json:"padding"`
	Key     string `json:"key"`
	KCV     string `json:"kcv"`
	Overlap string `json:"overlap"`
	Reason  string `json:"reason"`
}

// HandleMACKeys serves POST /v1/partners/{id}/mac-key with kek, the
// node's KEK (nil: the node has none, and only alg none is served).
func (s *Server) HandleMACKeys(kek *mac.KEK) {
	s.handle("POST /v1/partners/{id}/mac-key", oauth.ScopeKeysWrite, func(w http.ResponseWriter, r *http.Request) { s.putMACKey(w, r, kek) })
}

func (s *Server) putMACKey(w http.ResponseWriter, r *http.Request, kek *mac.KEK) {
	adm, ok := s.requireActor(w, r)
	if !ok {
		return
	}
	var req macKeyRequest
	defer func() { req.Key = "" }()
	// Not decodeBody: its problem quotes the decoder, and the decoder may
	// quote a character of the key.
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, bodyBytesMax))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		answer(w, badRequest("body must be one JSON object {alg, padding, key, kcv, overlap, reason}"))
		return
	}
	if err := needReason(req.Reason); err != nil {
		s.fail(w, err)
		return
	}
	var overlap time.Duration
	if req.Overlap != "" {
		d, err := time.ParseDuration(req.Overlap)
		if err != nil {
			s.fail(w, changeError("overlap", "%q is not a duration (e.g. 24h)", req.Overlap))
			return
		}
		overlap = d
	}
	if !s.caughtUp(w, r) {
		return
	}
	id := r.PathValue("id")
	if _, ok := s.ledger.Directory().Partner(id); !ok {
		s.fail(w, noPartner(id))
		return
	}
	ch := store.MACKeyChange{Partner: id, Alg: req.Alg, Padding: req.Padding, Overlap: overlap}
	if req.Alg != store.MACAlgNone {
		if kek == nil {
			s.fail(w, mac.ErrNoKEK)
			return
		}
		material, err := hex.DecodeString(strings.TrimSpace(req.Key))
		if err != nil || len(material) == 0 {
			s.fail(w, changeError("key", "want the key as hex digits"))
			return
		}
		wrapped, kcv, err := kek.Wrap(id, mac.Alg(req.Alg), mac.Padding(req.Padding), material)
		clear(material)
		if err != nil {
			s.fail(w, err)
			return
		}
		if req.KCV != "" && !strings.EqualFold(req.KCV, kcv) {
			s.fail(w, changeError("kcv", "the key's check value is %s, not %s: the key or the KCV has a typo", kcv, req.KCV))
			return
		}
		ch.KCV, ch.KEK, ch.Wrapped = kcv, kek.ID(), wrapped
	} else if req.Key != "" || req.KCV != "" {
		s.fail(w, changeError("alg", "none removes the MAC: no key or kcv"))
		return
	}
	key, client, err := requestKey(r)
	if err != nil {
		answer(w, badRequest(err.Error()))
		return
	}
	// A retry (the client's own key) goes to the FSM as it is: the FSM
	// answers it from its record, where this check would now find the key
	// already current. A new change is checked here, and nothing proposed
	// when it is refused.
	if err := s.ledger.Directory().CheckMACKeyChange(&ch); err != nil && !client {
		s.fail(w, err)
		return
	}
	adm.Reason, adm.MACKey = req.Reason, &ch
	ctx, cancel := writeContext(r)
	defer cancel()
	// The fingerprint names the key by its KCV: the wrapping is new on
	// every try (a random nonce), the key is the same.
	res, err := s.propose(ctx, change{op: store.OpPutMACKey, key: "admin|partner.mac_key|" + id + "|" + key,
		fp: fingerprint("partner.mac_key", id, ch.Alg, ch.Padding, ch.KCV, ch.Overlap, req.Reason), admin: adm})
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
