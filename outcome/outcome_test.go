package outcome

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/switchd/switchd/card"
	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/disk"
	"github.com/switchd/switchd/settle"
	"github.com/switchd/switchd/store"
)

func TestTable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code string
		http int
	}{
		{nil, "00", http.StatusOK},
		{store.ErrInsufficientFunds, "51", http.StatusUnprocessableEntity},
		{store.ErrUnknownAccount, "14", http.StatusNotFound},
		{store.ErrUnknownOriginal, "25", http.StatusNotFound},
		{store.ErrFingerprintMismatch, "94", http.StatusConflict},
		{store.ErrInvalidAmount, "13", http.StatusUnprocessableEntity},
		{store.ErrExceedsOriginal, "13", http.StatusUnprocessableEntity},
		{store.ErrAlreadyFinal, "12", http.StatusConflict},
		{codec.ErrInvalidPAN, "14", http.StatusBadRequest},
		{codec.ErrMissingField, "30", http.StatusBadRequest},
		{&codec.FieldError{Field: 4, Offset: 20, Err: codec.ErrFormat}, "30", http.StatusBadRequest},
		{currency.ErrUnknown, "30", http.StatusBadRequest},
		{fmt.Errorf("opening: %w", currency.ErrAmount), "13", http.StatusBadRequest},
		{ErrNotPermitted, "57", http.StatusForbidden},
		{ErrLimitExceeded, "61", http.StatusUnprocessableEntity},
		{ErrUnknownPartner, "05", http.StatusForbidden},
		{ErrDestinationUnavailable, "91", http.StatusBadGateway},
		{fmt.Errorf("account x: %w: Luhn check failed", card.ErrInvalidPAN), "14", http.StatusBadRequest},
		{ErrPartnerSuspended, "62", http.StatusForbidden},
		{store.ErrAgentLimit, "61", http.StatusUnprocessableEntity},
		{store.ErrOfflineLimit, "61", http.StatusUnprocessableEntity},
		{store.StatusOfflineLimit.Err(), "61", http.StatusUnprocessableEntity},
		// Partner API authorizations: their own problems, not the ledger
		// errors they wrap.
		{fmt.Errorf("%w: %w", ErrCreditCheckRejected, store.ErrInsufficientFunds), "51", http.StatusUnprocessableEntity},
		{fmt.Errorf("%w: %w", ErrAuthenticationNoLongerValid, store.ErrAlreadyFinal), "12", http.StatusUnprocessableEntity},
		{fmt.Errorf("%w: redirect", ErrNotImplemented), "12", http.StatusNotImplemented},
		// Fail closed: no decision made means 96, never 00.
		{cluster.ErrNotLeader, "96", http.StatusServiceUnavailable},
		{cluster.ErrUnknownOutcome, "96", http.StatusServiceUnavailable},
		{fmt.Errorf("wrapped: %w", cluster.ErrOverloaded), "96", http.StatusServiceUnavailable},
		{errors.New("disk on fire"), "96", http.StatusInternalServerError},
		// Issue 9 item 2: a full disk.
		{fmt.Errorf("volume raft: %w", disk.ErrLowSpace), "96", http.StatusInsufficientStorage},
		{store.ErrFailed, "96", http.StatusServiceUnavailable},
		// Settlement and reconciliation: ops only, each its own problem.
		{fmt.Errorf("%w: B0000001: %w", settle.ErrBreakResolved, store.ErrAlreadyFinal), "96", http.StatusConflict},
		{settle.ErrDayNotClosed, "96", http.StatusConflict},
		{settle.ErrQueueFull, "96", http.StatusServiceUnavailable},
		{settle.ErrNoRecon, "96", http.StatusNotFound},
		{fmt.Errorf("row 3: %w", settle.ErrInput), "96", http.StatusUnprocessableEntity},
		{fmt.Errorf("%w: fsm: %w", cluster.ErrUnknownOutcome, store.ErrFailed), "96", http.StatusServiceUnavailable},
	} {
		o := Of(tc.err)
		if o.Code != tc.code || o.HTTPStatus != tc.http {
			t.Errorf("%v: got %s/%d, want %s/%d", tc.err, o.Code, o.HTTPStatus, tc.code, tc.http)
		}
	}
}

// Every store status has a row, so no ledger decline falls through to 96.
func TestEveryStoreStatusMapped(t *testing.T) {
	for s := store.StatusInsufficientFunds; s <= store.StatusDuplicateReference; s++ {
		if s == store.StatusInvalidCommand {
			continue // a programmer error: 96 is its right answer
		}
		if o := Of(s.Err()); o == fallback {
			t.Errorf("status %d (%v) has no row in the table", s, s.Err())
		}
	}
	for _, s := range []store.Status{store.StatusAuthenticationState, store.StatusAuthenticationExpired, store.StatusTokenMismatch} {
		if o := Of(s.Err()); o == fallback {
			t.Errorf("status %d (%v) has no row in the table", s, s.Err())
		}
	}
}

func TestNoApprovalForAnyError(t *testing.T) {
	for _, e := range table {
		if e.out.Code == Approved || e.out.HTTPStatus < 300 {
			t.Errorf("%v maps to an approval", e.err)
		}
	}
}

// A resolved break is its own problem, not the ledger's "original final";
// the queue-full answer says when to retry; only entries marked Detail
// show the error's text.
func TestProblemAttributes(t *testing.T) {
	if o := Of(fmt.Errorf("%w: %w", settle.ErrBreakResolved, store.ErrAlreadyFinal)); o.Problem != "break-resolved" || !o.Detail {
		t.Fatalf("resolved break: %+v", o)
	}
	if o := Of(settle.ErrQueueFull); o.RetryAfter <= 0 {
		t.Fatalf("queue full without Retry-After: %+v", o)
	}
	if o := Of(fmt.Errorf("forward: %w", cluster.ErrNotLeader)); o.RetryAfter <= 0 || o.HTTPStatus != http.StatusServiceUnavailable {
		t.Fatalf("not the leader: want 503 with Retry-After, got %+v", o)
	}
	if o := Of(store.ErrInsufficientFunds); o.Detail || o.RetryAfter != 0 {
		t.Fatalf("a ledger decline shows its text or a retry: %+v", o)
	}
}

// A host's decline reaches the partner with the host's code when it is
// one of ISO 8583's, else 05; a timeout is 91, or 68 where the
// destination says; none of them is ever an approval.
func TestHostDecline(t *testing.T) {
	for _, c := range []struct {
		err  error
		code string
		http int
	}{
		{&HostDecline{Code: "51", Destination: "iss"}, "51", 422},
		{&HostDecline{Code: "N7", Destination: "iss"}, "05", 422},
		{&HostDecline{Code: "00", Destination: "iss"}, "05", 422},
		{&HostDecline{Code: "", Destination: "iss"}, "05", 422},
		{&HostDecline{Code: "91", Destination: "iss", Timeout: true}, "91", 504},
		{&HostDecline{Code: "68", Destination: "iss", Timeout: true}, "68", 504},
		{fmt.Errorf("wrapped: %w", &HostDecline{Code: "14", Destination: "iss"}), "14", 422},
	} {
		if o := Of(c.err); o.Code != c.code || o.HTTPStatus != c.http {
			t.Errorf("%v: %s %d, want %s %d", c.err, o.Code, o.HTTPStatus, c.code, c.http)
		}
	}
}
