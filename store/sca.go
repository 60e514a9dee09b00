package store

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

// Authorizations awaiting strong customer authentication (issue 12, the
// partner API's SCA redirect step). An authorization that needs SCA is
// replicated state from its creation: every node can show it, start its
// redirect and complete it, and every transition is decided here, in
// apply, from the command alone (its time is Command.Time, the proposer's
// clock), so every replica decides the same. It is machine state, not a
// person's change: no audit record (the hold it leads to is a transfer).
//
// The one-time redirect token is made by the proposing node (crypto/rand)
// and handed to the customer's browser; only its SHA-256 goes into the
// command and the record, so neither the raft log, a snapshot nor pebble
// holds anything that opens the link.

// OpPutAuthorization creates an authorization awaiting SCA, starts its
// redirect or completes it (Command.Authorization says which, carried in
// the command's extension object, ext.go). Idempotent by Key like every
// op.
const OpPutAuthorization Op = 21

const pfxAuthorization = 'q' // q<authorization id> → authorization (JSON)

// Authorization states.
const (
	// AuthRequired: created, no redirect issued yet.
	AuthRequired = "authentication_required"
	// AuthStarted: a redirect (a one-time token) was issued.
	AuthStarted = "authentication_started"
	// AuthAuthenticated: the customer approved; the proposer then reserves
	// the hold (a transfer of its own, by a key derived from the id).
	AuthAuthenticated = "authenticated"
	// AuthFailed: the customer declined.
	AuthFailed = "authentication_failed"
	// AuthExpired: a step came after Expiry (stored by that step, so the
	// record says so; a record past Expiry that no step touched is shown
	// as expired by readers that know the time: Authorization.StateAt).
	AuthExpired = "expired"
)

// Authorization change actions.
const (
	AuthCreate   = "create"
	AuthRedirect = "redirect"
	AuthComplete = "complete"
)

// Limits of an authorization.
const (
	// authRedirectsMax bounds the redirects one authorization may issue
	// (a customer who lost the link gets a new one; each replaces the
	// last): enough for a retry or two, not a token mill.
	authRedirectsMax = 3
	// authTTLMax bounds the authentication's time limit.
	authTTLMax = int64(24 * 3600 * 1e9)
	// returnURLBytesMax bounds the stored return URL (the API checks the
	// URL itself; the FSM only its size).
	returnURLBytesMax = 2048
	// referenceBytesMax bounds a partner's reference (ISO 20022's 35).
	authReferenceBytesMax = 35
	// tokenHashHexLen is a SHA-256 in hex.
	tokenHashHexLen = 64
)

// Statuses of OpPutAuthorization. They are numbered from 121 (this op is
// 21) so that statuses added by other work, counting up from 19, never
// take the same value: a status is stored in idempotency records forever.
const (
	// StatusAuthenticationState: the step is not possible in the state the
	// authorization is in (a completed one redirected again, a completion
	// before any redirect, too many redirects). Stored like a decline.
	StatusAuthenticationState Status = 121
	// StatusAuthenticationExpired: the step came after the time limit; the
	// record becomes expired. Stored like a decline.
	StatusAuthenticationExpired Status = 122
	// StatusTokenMismatch: a completion whose token is not the one the
	// last redirect issued (wrong, replaced or already used). Not stored:
	// nothing changes, not even an idempotency record.
	StatusTokenMismatch Status = 123
)

// Errors of the statuses above.
var (
	ErrAuthenticationState   = errors.New("store: not possible in the authorization's authentication state")
	ErrAuthenticationExpired = errors.New("store: the authorization's authentication time limit has passed")
	ErrTokenMismatch         = errors.New("store: not the authorization's current one-time token")
)

// Authorization is an authorization awaiting (or past) SCA.
type Authorization struct {
	ID        string `json:"id"`
	Partner   string `json:"partner"`
	Account   string `json:"account"`
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	Reference string `json:"reference"`
	State     string `json:"state"`
	// Created and Expiry are unix ns: Expiry = Created + the TTL the
	// create carried.
	Created int64 `json:"created"`
	Expiry  int64 `json:"expiry"`
	// Updated is the time of the last transition.
	Updated int64 `json:"updated"`
	// ReturnURL is where the customer's browser goes after the decision.
	ReturnURL string `json:"return_url,omitempty"`
	// TokenHash is the hex SHA-256 of the current one-time token; cleared
	// when it is used.
	TokenHash string `json:"token_hash,omitempty"`
	// Attempts counts the redirects issued.
	Attempts int `json:"attempts,omitempty"`
}

// StateAt is the authorization's state as seen at now (unix ns): one
// still awaiting authentication past its Expiry is expired, whether or
// not a step has recorded it.
func (a *Authorization) StateAt(now int64) string {
	if (a.State == AuthRequired || a.State == AuthStarted) && now >= a.Expiry {
		return AuthExpired
	}
	return a.State
}

// AuthorizationChange is what an OpPutAuthorization does.
type AuthorizationChange struct {
	Action string `json:"action"`
	// ID names the authorization (every action).
	ID string `json:"id"`
	// Create: the record's fields (State, times, token and attempts are
	// the FSM's) and the time limit in ns.
	Authorization *Authorization `json:"authorization,omitempty"`
	TTL           int64          `json:"ttl,omitempty"`
	// Redirect: the return URL and the new token's hash.
	ReturnURL string `json:"return_url,omitempty"`
	// TokenHash: on a redirect the new token's, on a completion the
	// presented token's.
	TokenHash string `json:"token_hash,omitempty"`
	// Approve on a completion: the customer's decision.
	Approve bool `json:"approve,omitempty"`
}

func validTokenHash(s string) bool {
	if len(s) != tokenHashHexLen {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// Authorization returns the stored authorization id.
func (s *Store) Authorization(id string) (Authorization, error) {
	var a Authorization
	err := s.read(func(db *pebble.DB) (err error) {
		a, err = getRecord(db, key1(pfxAuthorization, id), func(v []byte) (Authorization, error) {
			var a Authorization
			if err := json.Unmarshal(v, &a); err != nil {
				return a, fmt.Errorf("%w: authorization %q: %v", ErrCorrupt, id, err)
			}
			return a, nil
		})
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return Authorization{}, fmt.Errorf("authorization %q: %w", id, ErrNotFound)
	}
	return a, err
}

func (t *txn) authorization(id string) (*Authorization, bool) {
	v, ok := t.get(skey1(pfxAuthorization, id))
	if !ok {
		return nil, false
	}
	a := new(Authorization)
	mustDecode(json.Unmarshal(v, a))
	return a, true
}

// putAuthorization applies an OpPutAuthorization.
func (t *txn) putAuthorization(c *Command) Result {
	ch := c.Authorization
	if ch == nil || !validID(ch.ID) || c.Partner == "" {
		return invalid()
	}
	cur, exists := t.authorization(ch.ID)
	if exists && cur.Partner != c.Partner {
		// Another partner's authorization is none at all to this one.
		return Result{Status: StatusNotFound}
	}
	var next Authorization
	switch ch.Action {
	case AuthCreate:
		a := ch.Authorization
		if a == nil || a.ID != ch.ID || a.Partner != c.Partner || !validID(a.Account) || a.Amount <= 0 || a.Amount > amountMax ||
			!validCurrency(a.Currency) || a.Reference == "" || len(a.Reference) > authReferenceBytesMax || ch.TTL <= 0 || ch.TTL > authTTLMax {
			return invalid()
		}
		if exists {
			// The id is derived from the partner's reference: a second
			// authorization under the same reference is a new key with an
			// old reference.
			return Result{Status: StatusDuplicateReference}
		}
		next = Authorization{ID: a.ID, Partner: a.Partner, Account: a.Account, Amount: a.Amount, Currency: a.Currency,
			Reference: a.Reference, State: AuthRequired, Created: c.Time, Expiry: c.Time + ch.TTL, Updated: c.Time}
	case AuthRedirect, AuthComplete:
		if !exists {
			return Result{Status: StatusNotFound}
		}
		if !validTokenHash(ch.TokenHash) {
			return invalid()
		}
		next = *cur
		if r, done := t.authStep(c, ch, &next); done {
			return r
		}
	default:
		return invalid()
	}
	t.set(skey1(pfxAuthorization, next.ID), mustJSON(&next))
	return Result{Status: StatusOK}
}

// authStep applies a redirect or completion to a (a copy of the stored
// record); done with a result when the step is refused (an expiry is
// stored first).
func (t *txn) authStep(c *Command, ch *AuthorizationChange, a *Authorization) (Result, bool) {
	pending := a.State == AuthRequired || a.State == AuthStarted
	if pending && c.Time >= a.Expiry {
		a.State, a.TokenHash, a.Updated = AuthExpired, "", c.Time
		t.set(skey1(pfxAuthorization, a.ID), mustJSON(a))
		return Result{Status: StatusAuthenticationExpired}, true
	}
	if a.State == AuthExpired {
		return Result{Status: StatusAuthenticationExpired}, true
	}
	switch ch.Action {
	case AuthRedirect:
		if !pending || a.Attempts >= authRedirectsMax {
			return Result{Status: StatusAuthenticationState}, true
		}
		if ch.ReturnURL == "" || len(ch.ReturnURL) > returnURLBytesMax {
			return invalid(), true
		}
		a.State, a.ReturnURL, a.TokenHash = AuthStarted, ch.ReturnURL, ch.TokenHash
		a.Attempts++
	case AuthComplete:
		if a.State != AuthStarted {
			if a.State == AuthRequired {
				return Result{Status: StatusAuthenticationState}, true
			}
			// Completed already: the token was used.
			return Result{Status: StatusTokenMismatch}, true
		}
		if a.TokenHash != ch.TokenHash {
			return Result{Status: StatusTokenMismatch}, true
		}
		a.State, a.TokenHash = AuthFailed, ""
		if ch.Approve {
			a.State = AuthAuthenticated
		}
	}
	a.Updated = c.Time
	return Result{}, false
}

// TransferByOriginal returns the transfer that answers to original
// reference ref (Command.OriginalRef, partner-scoped), or ErrNotFound:
// how the partner API finds the hold an authenticated authorization
// reserved, by the reference the hold was made under.
func (s *Store) TransferByOriginal(ref string) (Transfer, error) {
	var t Transfer
	err := s.read(func(db *pebble.DB) error {
		v, closer, err := db.Get(key1(pfxOrigRef, ref))
		if errors.Is(err, pebble.ErrNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("store: get: %w", err)
		}
		id := string(v)
		closer.Close()
		t, err = getRecord(db, key1(pfxTransfer, id), decodeTransferRecord)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return Transfer{}, fmt.Errorf("original reference: %w", ErrNotFound)
	}
	return t, err
}
