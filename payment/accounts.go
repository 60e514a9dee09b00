package payment

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/store"
)

// Accounts the switch creates: the config's seed accounts (seed.go runs
// them on the bootstrapping node) and the ops API's account creation, both
// as idempotent ledger commands.

// AccountSeed is an account the config (or an ops caller) wants to exist,
// with an opening balance funded from a funding account (so the ledger
// still sums to zero).
type AccountSeed struct {
	ID       string            `yaml:"id"`
	Kind     store.AccountKind `yaml:"kind"`
	Currency string            `yaml:"currency"`
	Partner  string            `yaml:"partner"`
	// PAN of a cardholder account. Only its keyed hash and masked form are
	// stored; the config file itself is the only place it appears.
	PAN       string `yaml:"pan"`
	Unlimited bool   `yaml:"unlimited"`
	// Floor in minor units (0 for cardholders).
	Floor int64 `yaml:"floor"`
	// Opening is the opening balance as a decimal string ("1000.00"),
	// posted from FundedBy.
	Opening  string `yaml:"opening"`
	FundedBy string `yaml:"funded_by"`
}

// CreateAccount creates one account (and its opening balance) for the ops
// API; admin names the caller on the create command, so the audit record
// says who (nil: actor "system"). The same id with the same content is a
// no-op (created=false); the same id with other content is
// store.ErrFingerprintMismatch. Short of disk it is refused like a
// partner's request (disk.ErrLowSpace, HTTP 507).
func (c *Core) CreateAccount(ctx context.Context, s AccountSeed, admin *store.Admin) (created bool, err error) {
	fp := c.fingerprint(PAN{}, []string{s.ID, string(s.Kind), s.Currency, s.Partner, s.PAN,
		strconv.FormatBool(s.Unlimited), strconv.FormatInt(s.Floor, 10), s.Opening, s.FundedBy})
	if c.disk != nil {
		if err := c.disk.Check(); err != nil {
			return false, fmt.Errorf("payment: account %q: %w", s.ID, err)
		}
	}
	return c.createAccount(ctx, s, opsPrefix, fp, admin, c.now())
}

// opsPrefix starts the keys of the ops API's account commands.
const opsPrefix = "ops"

func (c *Core) createAccount(ctx context.Context, s AccountSeed, keyPrefix, fp string, admin *store.Admin, now time.Time) (bool, error) {
	ccy, err := currency.ByCode(s.Currency)
	if err != nil {
		return false, fmt.Errorf("payment: account %q: %w", s.ID, err)
	}
	switch s.Kind {
	case store.KindCardholder, store.KindSettlement, store.KindFunding, store.KindBiller:
	default:
		return false, fmt.Errorf("payment: account %q: kind %q: %w", s.ID, s.Kind, outcome.ErrUnsupported)
	}
	acct := store.Account{
		ID: s.ID, Kind: s.Kind, Currency: s.Currency, Partner: s.Partner,
		Floor: s.Floor, Unlimited: s.Unlimited,
	}
	if s.PAN != "" {
		pan, err := ParsePAN(s.PAN)
		if err != nil {
			return false, fmt.Errorf("payment: account %q: %w", s.ID, err)
		}
		acct.CardHash = c.CardHash(pan)
		acct.MaskedPAN = pan.Masked()
	}
	minor, err := openingMinor(s, ccy)
	if err != nil {
		return false, err
	}
	res, err := c.ledger.Propose(ctx, store.Command{
		Op: store.OpCreateAccount, Key: keyPrefix + "|account|" + s.ID, Fingerprint: fp,
		Time: now.UnixNano(), Account: &acct, Admin: admin,
	})
	if err != nil {
		return false, fmt.Errorf("payment: account %q: %w", s.ID, err)
	}
	if err := res.Status.Err(); err != nil {
		if keyPrefix == seedPrefix && errors.Is(err, store.ErrAccountExists) {
			return false, nil
		}
		return false, fmt.Errorf("payment: account %q: %w", s.ID, err)
	}
	created := !res.Replayed
	if minor == 0 {
		return created, nil
	}
	res, err = c.ledger.Propose(ctx, store.Command{
		Op: store.OpPost, Key: keyPrefix + "|opening|" + s.ID, Fingerprint: fp,
		Time: now.UnixNano(), BusinessDay: now.In(c.loc).Format(time.DateOnly),
		Debit: s.FundedBy, Credit: s.ID, Amount: minor, Currency: s.Currency,
	})
	if err != nil {
		return created, fmt.Errorf("payment: account %q opening: %w", s.ID, err)
	}
	if err := res.Status.Err(); err != nil {
		return created, fmt.Errorf("payment: account %q opening: %w", s.ID, err)
	}
	return created, nil
}

// openingMinor is s's opening balance in minor units of ccy (0 for none).
func openingMinor(s AccountSeed, ccy currency.Currency) (int64, error) {
	if s.Opening == "" {
		return 0, nil
	}
	minor, err := currency.ParseMinor(s.Opening, ccy, '.')
	if err != nil {
		return 0, fmt.Errorf("payment: account %q opening: %w", s.ID, err)
	}
	if minor < 0 {
		return 0, fmt.Errorf("payment: account %q opening: %w", s.ID, store.ErrInvalidAmount)
	}
	return minor, nil
}
