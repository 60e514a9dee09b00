package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
)

// The SCA redirect step (issue 12). An authorization that needs strong
// customer authentication is stored (store.OpPutAuthorization) as
// authentication_required. The partner asks for a redirect with its
// return URL and gets a one-time link to the confirmation page on this
// listener; the customer's browser opens it, sees the amount, the
// merchant and the reference, and approves or declines. The decision is
// a replicated state change (the token is consumed in apply, so two
// submissions of one link decide once); an approval then reserves the
// hold through the core under a key derived from the authorization id,
// so a retry after a crash between the two steps (the partner's next
// GET, capture or cancel finishes it) reserves exactly once. The browser
// goes back to the return URL with ?authorization_id=…&status=….
//
// What authenticates: this page is switchd's own confirmation step,
// standing in for the issuer's authenticator. Possession of the link (a
// 256-bit single-use token from the node's crypto/rand, sent to the
// customer by the partner) is the one factor; there is no second one.
// A real authenticator (the issuer's app, an OTP, a 3-D Secure ACS)
// plugs in where scaDecide proposes the completion: it would verify its
// own factors and then propose the same store.AuthComplete change, with
// the same token hash as the proof that it is this authorization's
// session. Nothing else changes.
//
// The token travels only in the link and the form: the command, the
// record, the raft log and snapshots hold its SHA-256; it is never
// logged (the page answers Referrer-Policy: no-referrer, so it does not
// leak to the return URL's site either).

// Limits of the SCA step.
const (
	// scaTokenBytes is the one-time token's entropy: 256 bits.
	scaTokenBytes = 32
	// scaTokenChars is its base64url length (unpadded).
	scaTokenChars = 43
	// scaFormBytesMax bounds the confirmation form's body (a token and a
	// decision).
	scaFormBytesMax = 1 << 10
	// scaCompleteKeyHex is how much of the token hash names the
	// completion's idempotency key: one decision per token.
	scaCompleteKeyHex = 32
	// accountShownChars is how much of an account id the page shows.
	accountShownChars = 4
	// scaIDBytes is an SCA authorization id's length ("sca-" + hex).
	scaIDBytes = len(scaIDPrefix) + scaIDHexLen
)

// scaPageCSP is the page's Content-Security-Policy: no script, style,
// image, frame or plugin; the form posts only back here and to the
// return URL's origin (the answer's 303 goes there, and browsers apply
// form-action to the redirect).
const scaPageCSP = "default-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// originRE is what a return URL's origin must look like to be named in
// the CSP header (url.Parse has checked it; this keeps ';' and spaces out).
var originRE = regexp.MustCompile(`^https?://[A-Za-z0-9.\-]+(:[0-9]+)?$|^https?://\[[0-9A-Fa-f:.]+\](:[0-9]+)?$`)

// Redirect is the answer to a redirect request.
type Redirect struct {
	RedirectURL string `json:"redirect_url" doc:"Send the customer's browser here; it is valid once, until expires_at, and is shown only in this answer"`
	ExpiresAt   string `json:"expires_at" doc:"RFC 3339, UTC: the authentication's time limit"`
}

type redirectAnswer struct {
	Status int
	Body   Redirect
}

// checkReturnURL refuses a return URL that is not absolute https (or
// http to loopback where the config allows it), carries credentials or
// a fragment, or is not one of the partner's prefixes when it has some.
func (s *Server) checkReturnURL(partner, raw string) *Problem {
	if len(raw) > returnURLBytesMax {
		return validation("return_url", fmt.Sprintf("at most %d bytes", returnURLBytesMax))
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return validation("return_url", "an absolute https URL without credentials or a fragment")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !s.cfg.SCA.AllowLoopbackHTTP || !loopback(u.Hostname()) {
			return validation("return_url", "must be https (http only to a loopback host, where sca.allow_loopback_http is set)")
		}
	default:
		return validation("return_url", "must be https")
	}
	if prefixes, ok := s.cfg.SCA.ReturnURLPrefixes[partner]; ok && !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(raw, p) }) {
		return validation("return_url", "not under one of the partner's registered return URLs (sca.return_url_prefixes)")
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// publicURL is the listener's address as browsers reach it.
func (s *Server) publicURL() string { return publicURL(s.cfg) }

func publicURL(cfg Config) string {
	if cfg.PublicURL != "" {
		return strings.TrimSuffix(cfg.PublicURL, "/")
	}
	return "https://" + cfg.Listen
}

func tokenHash(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// createSCA stores an authorization that needs SCA (nothing reserved)
// and answers it as created: the same bytes on a replay.
func (s *Server) createSCA(ctx context.Context, c *caller, key string, req authorizationRequest, amount int64, ccy currency.Currency) (*authorizationAnswer, error) {
	id := scaID(c.partner.ID, req.Reference)
	if _, err := s.ledger.Authorization(id); errors.Is(err, store.ErrNotFound) {
		// A new one (not a replay): its reference must be free among the
		// holds too, or the hold its approval reserves would be refused
		// (blocks and authorizations share references). Read after the
		// funds check's ReadIndex; two racing requests are still caught
		// then, by the hold's duplicate reference.
		if _, err := s.ledger.TransferByOriginal(c.partner.ID + "|" + blockOriginalPrefix + req.Reference); err == nil {
			return nil, problemOf(fmt.Errorf("%w: a funds block or authorization has reference %q already", store.ErrDuplicateReference, req.Reference))
		}
	}
	ch := store.AuthorizationChange{Action: store.AuthCreate, ID: id, TTL: int64(s.cfg.SCA.ttl()), Authorization: &store.Authorization{
		ID: id, Partner: c.partner.ID, Account: req.Account, Amount: amount, Currency: ccy.Code, Reference: req.Reference}}
	res, err := s.core.ProposeAuthorization(ctx, c.partner.ID, "rest|"+key,
		[]string{"authorization-sca", req.Account, req.Amount, ccy.Code, req.Reference, req.RiskFlag}, ch)
	if err != nil {
		return nil, problemOf(err)
	}
	a, err := s.scaRecord(ctx, id)
	if err != nil {
		return nil, problemOf(err)
	}
	out := scaView(a, ccy)
	// As it was made: a replay after the redirect still says required.
	out.Status, out.Links = store.AuthRequired, &Links{Redirect: "/v1/authorizations/" + id + "/redirect"}
	ans := &authorizationAnswer{Status: http.StatusCreated, Location: "/v1/authorizations/" + id, Body: out}
	if res.Replayed {
		ans.Replayed = "true"
	}
	return ans, nil
}

// scaReferenceTaken refuses a hold (a block, an authorization without
// SCA) under a reference an SCA authorization of the partner has: its
// approval would reserve under the same reference.
func (s *Server) scaReferenceTaken(c *caller, reference string) *Problem {
	if _, err := s.ledger.Authorization(scaID(c.partner.ID, reference)); err == nil {
		return problemOf(fmt.Errorf("%w: an authorization awaiting SCA has reference %q already", store.ErrDuplicateReference, reference))
	}
	return nil
}

// scaRecord reads authorization id, applied on this node by the time
// the core answers (a ReadIndex otherwise).
func (s *Server) scaRecord(ctx context.Context, id string) (store.Authorization, error) {
	a, err := s.ledger.Authorization(id)
	if errors.Is(err, store.ErrNotFound) {
		if rerr := s.ledger.ReadIndex(ctx); rerr != nil {
			return a, rerr
		}
		a, err = s.ledger.Authorization(id)
	}
	return a, err
}

// ownSCA is authorization id after a ReadIndex when it is the caller's;
// another partner's looks like none at all (404, as everywhere in this
// API: an id does not tell a stranger that it exists).
func (s *Server) ownSCA(ctx context.Context, c *caller, id string) (store.Authorization, error) {
	if err := s.ledger.ReadIndex(ctx); err != nil {
		return store.Authorization{}, problemOf(err)
	}
	a, err := s.ledger.Authorization(id)
	if err == nil && a.Partner != c.partner.ID {
		err = store.ErrNotFound
	}
	if err != nil {
		if p := problemOf(err); p.Status != http.StatusNotFound {
			return a, p
		}
		return a, &Problem{Type: problemBase + "not-found", Title: "Not found", Status: http.StatusNotFound, Detail: "no such authorization"}
	}
	return a, nil
}

// scaView shows a as an authorization, from the record alone.
func scaView(a store.Authorization, ccy currency.Currency) Authorization {
	return Authorization{ID: a.ID, Status: a.State, Account: a.Account, Amount: currency.FormatMinor(a.Amount, ccy, '.'), Currency: ccy.Code,
		Reference: a.Reference, ExpiresAt: rfc3339(a.Expiry), CreatedAt: rfc3339(a.Created)}
}

// scaAuthorization is a as GET shows it now: its state at the core's
// clock, and once authenticated the hold it reserved (reserved,
// captured, …) under the authorization's own id.
func (s *Server) scaAuthorization(a store.Authorization) (Authorization, error) {
	ccy, err := currency.ByCode(a.Currency)
	if err != nil {
		return Authorization{}, err
	}
	out := scaView(a, ccy)
	out.Status = a.StateAt(s.core.Now().UnixNano())
	switch out.Status {
	case store.AuthRequired, store.AuthStarted:
		out.Links = &Links{Redirect: "/v1/authorizations/" + a.ID + "/redirect"}
	case store.AuthAuthenticated:
		if t, ok := s.heldFor(a); ok {
			v, err := authorizationOf(t)
			if err != nil {
				return out, err
			}
			v.ID, v.CreatedAt = a.ID, out.CreatedAt
			return v, nil
		}
	}
	return out, nil
}

// holdOriginal is the original reference of a's hold (holdIntent's, as
// the core scopes it).
func holdOriginal(a store.Authorization) string {
	return a.Partner + "|" + blockOriginalPrefix + a.Reference
}

// heldFor is the hold authenticated authorization a reserved, if it is
// there yet.
func (s *Server) heldFor(a store.Authorization) (store.Transfer, bool) {
	t, err := s.ledger.TransferByOriginal(holdOriginal(a))
	ok := err == nil && t.Op == store.OpAuthorize && t.Partner == a.Partner && t.Debit == a.Account && t.Amount == a.Amount && t.Currency == a.Currency
	return t, ok
}

// ensureHold is the hold of authenticated authorization a, reserved now
// if it is not there yet: through the core, as the partner (its lane and
// acquirer; Delegated, because the request may come from the customer's
// browser), under a key derived from a's id, so however often it is
// tried it reserves once.
func (s *Server) ensureHold(ctx context.Context, a store.Authorization) (store.Transfer, error) {
	if t, ok := s.heldFor(a); ok {
		return t, nil
	}
	p, ok := s.ledger.Directory().Partner(a.Partner)
	if !ok || len(p.AcquirerIDs) == 0 {
		return store.Transfer{}, problemOf(fmt.Errorf("%w: %q", outcome.ErrUnknownPartner, a.Partner))
	}
	c := &caller{partner: p, origin: payment.Origin{Lane: s.cfg.Lane, Delegated: true}}
	in := s.holdIntent(c, "sca|"+a.ID, a.Account, a.Amount, a.Currency, a.Reference)
	in.Fingerprint = []string{"authorization-sca-hold", a.ID}
	t, _, err := s.decide(ctx, in, creditCheck)
	return t, err
}

// scaHold is the hold behind authorization id for a capture or a
// cancellation: there only once it is authenticated (422
// invalid-authentication-state before, authentication-is-no-longer-valid
// once expired).
func (s *Server) scaHold(ctx context.Context, c *caller, id string) (store.Transfer, error) {
	a, err := s.ownSCA(ctx, c, id)
	if err != nil {
		return store.Transfer{}, err
	}
	switch st := a.StateAt(s.core.Now().UnixNano()); st {
	case store.AuthAuthenticated:
		return s.ensureHold(ctx, a)
	case store.AuthExpired:
		return store.Transfer{}, problemOf(fmt.Errorf("%w: authorization %s was not authenticated in time", store.ErrAuthenticationExpired, id))
	default:
		return store.Transfer{}, problemOf(fmt.Errorf("%w: authorization %s is %s; nothing is reserved before it is authenticated", store.ErrAuthenticationState, id, st))
	}
}

// redirect starts (or restarts) the SCA redirect: a new one-time token,
// whose hash the FSM keeps (replacing the last one); the link is in this
// answer only. A repeat of the call under the same key cannot show the
// link again (its token is nowhere): 409 conflict, and a new key makes a
// new link (at most store's three per authorization).
func (s *Server) redirect(ctx context.Context, key, id string, req redirectRequest) (*redirectAnswer, error) {
	if p := checkKey(key); p != nil {
		return nil, p
	}
	c := callerOf(ctx)
	if p := s.checkReturnURL(c.partner.ID, req.ReturnURL); p != nil {
		return nil, p
	}
	if !strings.HasPrefix(id, scaIDPrefix) {
		// A reserved authorization (a ledger id) needs no redirect.
		if _, err := s.ownHold(ctx, c, "", id, "no such authorization"); err != nil {
			return nil, err
		}
		return nil, problemOf(fmt.Errorf("%w: authorization %s needed no SCA: it is reserved already", store.ErrAuthenticationState, id))
	}
	a, err := s.ownSCA(ctx, c, id)
	if err != nil {
		return nil, err
	}
	var raw [scaTokenBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, problemOf(err)
	}
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	res, err := s.core.ProposeAuthorization(ctx, c.partner.ID, "rest|"+key, []string{"authorization-redirect", id, req.ReturnURL},
		store.AuthorizationChange{Action: store.AuthRedirect, ID: id, ReturnURL: req.ReturnURL, TokenHash: tokenHash(tok)})
	if err != nil {
		return nil, problemOf(err)
	}
	if res.Replayed {
		return nil, problemOf(fmt.Errorf("%w: this key started a redirect already; its link is shown once (only its hash is kept): use a new Idempotency-Key for a new link", outcome.ErrConflict))
	}
	return &redirectAnswer{Status: http.StatusCreated, Body: Redirect{
		RedirectURL: s.publicURL() + "/v1/sca/" + url.PathEscape(a.ID) + "?token=" + tok, ExpiresAt: rfc3339(a.Expiry)}}, nil
}

// The confirmation page. No script, no external resource; the amount,
// the merchant (the partner) and the reference, the account's last
// characters only.
var scaPageTmpl = template.Must(template.New("sca").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Confirm a payment</title></head>
<body>
{{if .Refusal}}<h1>{{.Title}}</h1><p>{{.Refusal}}</p>{{else}}<h1>Confirm a payment</h1>
<p>This is switchd's confirmation step: the single-use link you followed is what identifies you.</p>
<dl><dt>Merchant</dt><dd>{{.Merchant}}</dd><dt>Amount</dt><dd>{{.Amount}} {{.Currency}}</dd>
<dt>Reference</dt><dd>{{.Reference}}</dd><dt>Account</dt><dd>{{.Account}}</dd><dt>Valid until</dt><dd>{{.Expires}}</dd></dl>
<form method="post" action="{{.Action}}"><input type="hidden" name="token" value="{{.Token}}">
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="decline">Decline</button></form>{{end}}
</body></html>
`))

type scaPageData struct {
	Title, Refusal                                          string
	Merchant, Amount, Currency, Reference, Account, Expires string
	Action, Token                                           string
}

// scaHeaders are the page's: never cached, never a referrer, no script.
func scaHeaders(w http.ResponseWriter, formTo string) {
	h := w.Header()
	csp := scaPageCSP
	if formTo != "" {
		csp += " " + formTo
	}
	h.Set("Content-Security-Policy", csp)
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Type", "text/html; charset=utf-8")
}

// refuse answers the refusal page: nothing was changed.
func (s *Server) refuse(w http.ResponseWriter, status int, title, why string) {
	scaHeaders(w, "")
	w.WriteHeader(status)
	_ = scaPageTmpl.Execute(w, scaPageData{Title: title, Refusal: why})
}

// scaLink is authorization id when tok is its current token and it
// awaits the decision; else the refusal's status and text. Nothing is
// proposed either way.
func (s *Server) scaLink(ctx context.Context, id, tok string) (store.Authorization, int, string) {
	const refused = "This link is not valid: it is wrong, it was replaced by a newer one, or it was used already."
	if len(tok) != scaTokenChars || !strings.HasPrefix(id, scaIDPrefix) || len(id) != scaIDBytes {
		return store.Authorization{}, http.StatusForbidden, refused
	}
	if err := s.ledger.ReadIndex(ctx); err != nil {
		return store.Authorization{}, http.StatusServiceUnavailable, "The service is unavailable; try the link again in a moment."
	}
	a, err := s.ledger.Authorization(id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return a, http.StatusForbidden, refused
		}
		return a, http.StatusServiceUnavailable, "The service is unavailable; try the link again in a moment."
	}
	if subtle.ConstantTimeCompare([]byte(a.TokenHash), []byte(tokenHash(tok))) != 1 {
		return a, http.StatusForbidden, refused
	}
	switch a.StateAt(s.core.Now().UnixNano()) {
	case store.AuthStarted:
		return a, 0, ""
	case store.AuthExpired:
		return a, http.StatusUnprocessableEntity, "This payment can no longer be confirmed: its time limit has passed."
	}
	return a, http.StatusForbidden, refused
}

// returnOrigin is the return URL's origin for the CSP's form-action, or
// "" when it does not look like one.
func returnOrigin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	o := u.Scheme + "://" + u.Host
	if !originRE.MatchString(o) {
		return ""
	}
	return o
}

// scaPage is GET /v1/sca/{id}?token=: the confirmation page.
func (s *Server) scaPage(w http.ResponseWriter, r *http.Request) {
	id, tok := r.PathValue("id"), r.URL.Query().Get("token")
	a, status, why := s.scaLink(r.Context(), id, tok)
	if status != 0 {
		s.refuse(w, status, "Not valid", why)
		return
	}
	ccy, err := currency.ByCode(a.Currency)
	if err != nil {
		s.refuse(w, http.StatusInternalServerError, "Error", "This payment cannot be shown.")
		return
	}
	acct := a.Account
	if len(acct) > accountShownChars {
		acct = "…" + acct[len(acct)-accountShownChars:]
	}
	origin := returnOrigin(a.ReturnURL)
	scaHeaders(w, origin)
	_ = scaPageTmpl.Execute(w, scaPageData{Merchant: a.Partner, Amount: currency.FormatMinor(a.Amount, ccy, '.'), Currency: ccy.Code,
		Reference: a.Reference, Account: acct, Expires: rfc3339(a.Expiry), Action: "/v1/sca/" + url.PathEscape(a.ID), Token: tok})
}

// scaDecide is POST /v1/sca/{id} (token, decision): the customer's
// decision, proposed as the completion (the token consumed in apply);
// an approval then reserves the hold. 303 to the return URL. A wrong or
// used token, or a form that does not parse, gets the refusal page and
// changes nothing. CSRF: the form carries the single-use token, which
// is the credential; a page elsewhere cannot know it.
func (s *Server) scaDecide(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, scaFormBytesMax)
	if err := r.ParseForm(); err != nil {
		s.refuse(w, http.StatusBadRequest, "Not valid", "The form could not be read.")
		return
	}
	id, tok, decision := r.PathValue("id"), r.PostForm.Get("token"), r.PostForm.Get("decision")
	if decision != "approve" && decision != "decline" {
		s.refuse(w, http.StatusBadRequest, "Not valid", "Choose Approve or Decline.")
		return
	}
	ctx := r.Context()
	a, status, why := s.scaLink(ctx, id, tok)
	if status != 0 {
		s.refuse(w, status, "Not valid", why)
		return
	}
	h := tokenHash(tok)
	_, err := s.core.ProposeAuthorization(ctx, a.Partner, "sca-complete|"+h[:scaCompleteKeyHex], []string{"authorization-complete", id, decision},
		store.AuthorizationChange{Action: store.AuthComplete, ID: id, TokenHash: h, Approve: decision == "approve"})
	switch {
	case errors.Is(err, store.ErrTokenMismatch):
		// Another submission of this link decided first.
		s.refuse(w, http.StatusForbidden, "Not valid", "This link was used already.")
		return
	case errors.Is(err, store.ErrAuthenticationExpired):
		s.refuse(w, http.StatusUnprocessableEntity, "Not valid", "This payment can no longer be confirmed: its time limit has passed.")
		return
	case err != nil:
		s.log.Warn("sca completion not recorded", "authorization", id, "err", err)
		s.refuse(w, http.StatusServiceUnavailable, "Not recorded", "Your decision could not be recorded; try again in a moment.")
		return
	}
	st := store.AuthFailed
	if decision == "approve" {
		st = store.AuthAuthenticated
		if _, err := s.ensureHold(ctx, a); err != nil {
			// Authenticated stands; the partner's next call on it tries
			// the reservation again (same key: once).
			s.log.Warn("sca hold not reserved yet", "authorization", id, "err", err)
		} else {
			st = "reserved"
		}
	}
	u, _ := url.Parse(a.ReturnURL) // checked before it was stored
	q := u.Query()
	q.Set("authorization_id", id)
	q.Set("status", st)
	u.RawQuery = q.Encode()
	scaHeaders(w, "")
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}
