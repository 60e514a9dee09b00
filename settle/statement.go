package settle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/store"
)

// statementEntriesMax bounds the entries of one account-day statement held
// in memory while it is written (~200 bytes each).
const statementEntriesMax = 2_000_000

// ErrTooLarge: a statement has more entries than statementEntriesMax, or
// an amount does not fit the format.
var ErrTooLarge = errors.New("settle: statement too large for the format")

// Entry is one booked movement on the statement's account.
type Entry struct {
	TransferID string
	// Credit: the account was credited (else debited).
	Credit bool
	// Reversal: the entry reverses an earlier one (MT940 RC/RD, camt
	// RvslInd).
	Reversal bool
	Amount   int64 // minor units, > 0
	Type     string
	Ref      store.Ref
	Partner  string
	// Counterparty is the other account of the transfer.
	Counterparty string
	// Original is the transfer a completion or reversal refers to.
	Original string
}

// Statement is an account's booked movements of one business day.
// Opening + Σ entries = Closing (credit-normal: credits positive).
type Statement struct {
	Account  string
	Currency currency.Currency
	Day      string
	// Created is when the day closed (from the ledger): files carry no
	// clock of the node that wrote them.
	Created time.Time
	Opening int64
	Closing int64
	Entries []Entry
}

// movement reports whether t moved posted balances: posts, captures and
// compensating reversals are created posted and stay so; an authorization
// only holds (its capture is a transfer of its own).
func movement(t *store.Transfer) bool {
	return t.Op == store.OpPost || t.Op == store.OpComplete || t.Op == store.OpReverse
}

// StatementLedger is what BuildStatement reads.
type StatementLedger interface {
	ScanAccountBack(ctx context.Context, account string, fn func(t *store.Transfer) (bool, error)) (store.Account, error)
	Day(day string) (store.Day, error)
}

// BuildStatement collects account's statement for day. It reads the
// account's transfers newest first, down to the day (business days never
// go back, store.ScanAccountBack): the closing balance is the posted
// balance now less every movement booked after the day, the opening is the
// closing less the day's entries. Its cost follows the account's activity
// since the day, not its whole history.
func BuildStatement(ctx context.Context, l StatementLedger, account, day string) (*Statement, error) {
	d, err := l.Day(day)
	if err != nil {
		return nil, err
	}
	st := &Statement{Account: account, Day: day, Created: time.Unix(0, d.ClosedAt).UTC()}
	var later, dayNet int64 // signed movements after the day, and on it
	a, err := l.ScanAccountBack(ctx, account, func(t *store.Transfer) (bool, error) {
		if t.BusinessDay < day {
			return false, nil
		}
		if !movement(t) {
			return true, nil
		}
		credit := t.Credit == account
		signed := t.Amount
		if !credit {
			signed = -signed
		}
		if t.BusinessDay > day {
			later += signed
			return true, nil
		}
		if len(st.Entries) >= statementEntriesMax {
			return false, fmt.Errorf("%w: more than %d entries", ErrTooLarge, statementEntriesMax)
		}
		other := t.Debit
		if !credit {
			other = t.Credit
		}
		st.Entries = append(st.Entries, Entry{TransferID: t.ID, Credit: credit, Reversal: t.Op == store.OpReverse,
			Amount: t.Amount, Type: rowType(t), Ref: t.Ref, Partner: t.Partner, Counterparty: other, Original: t.Original})
		dayNet += signed
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	slices.Reverse(st.Entries) // oldest first
	if st.Currency, err = currency.ByCode(a.Currency); err != nil {
		return nil, err
	}
	st.Account = a.ID
	st.Closing = a.Posted() - later
	st.Opening = st.Closing - dayNet
	return st, nil
}

func (s *Service) statement(ctx context.Context, sp Spec) ([]File, error) {
	st, err := BuildStatement(ctx, s.ledger, sp.Account, sp.Day)
	if err != nil {
		return nil, err
	}
	files, err := s.writeFiles(sp, []string{ExtMT940, ExtCamt053}, func(ws []io.Writer) error {
		if err := WriteMT940(ws[0], st); err != nil {
			return err
		}
		return WriteCamt053(ws[1], st)
	})
	for i := range files {
		files[i].Rows = int64(len(st.Entries))
	}
	return files, err
}
