package switching

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/store"
)

// Accounts the switch creates: the config's seed accounts (seed.go runs
// them on the bootstrapping node) and the ops API's account creation, both
// as idempotent ledger commands.

// AccountSeed is an account the config wants to exist, with an opening
// balance funded from a funding account (so the ledger still sums to zero).
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

// Seed creates the seeded accounts and their opening balances through the
// ledger, now, and fails if the ledger cannot take them: the synchronous
// form for test harnesses that own a ready one-node cluster. switchd seeds
// with StartSeeder, which never holds up a start. Every command has a
// fixed key, so seeding again changes nothing.
func (p *Pipeline) Seed(ctx context.Context, seeds []AccountSeed, now time.Time) error {
	for _, s := range seeds {
		if _, err := p.createAccount(ctx, s, seedPrefix, seedFingerprint, now); err != nil {
			return err
		}
	}
	return nil
}

// CreateAccount creates one account (and its opening balance) for the ops
// API. The same id with the same content is a no-op (created=false); the
// same id with other content is store.ErrFingerprintMismatch.
func (p *Pipeline) CreateAccount(ctx context.Context, s AccountSeed) (created bool, err error) {
	fp := p.fingerprintOf(s.ID, string(s.Kind), s.Currency, s.Partner, s.PAN,
		strconv.FormatBool(s.Unlimited), strconv.FormatInt(s.Floor, 10), s.Opening, s.FundedBy)
	if p.disk != nil {
		// Short of disk, ops writes are refused like partners' (HTTP 507).
		if err := p.disk.Check(); err != nil {
			return false, fmt.Errorf("switch: account %q: %w", s.ID, err)
		}
	}
	return p.createAccount(ctx, s, "ops", fp, p.now())
}

func (p *Pipeline) createAccount(ctx context.Context, s AccountSeed, keyPrefix, fp string, now time.Time) (bool, error) {
	ccy, err := currency.ByCode(s.Currency)
	if err != nil {
		return false, fmt.Errorf("switch: account %q: %w", s.ID, err)
	}
	switch s.Kind {
	case store.KindCardholder, store.KindSettlement, store.KindFunding, store.KindBiller:
	default:
		return false, fmt.Errorf("switch: account %q: kind %q: %w", s.ID, s.Kind, outcome.ErrUnsupported)
	}
	acct := store.Account{
		ID: s.ID, Kind: s.Kind, Currency: s.Currency, Partner: s.Partner,
		Floor: s.Floor, Unlimited: s.Unlimited,
	}
	if s.PAN != "" {
		pan, err := codec.ParsePAN(s.PAN)
		if err != nil {
			return false, fmt.Errorf("switch: account %q: %w", s.ID, err)
		}
		acct.CardHash = p.CardHash(pan)
		acct.MaskedPAN = pan.Masked()
	}
	minor, err := openingMinor(s, ccy)
	if err != nil {
		return false, err
	}
	res, err := p.ledger.Propose(ctx, store.Command{
		Op: store.OpCreateAccount, Key: keyPrefix + "|account|" + s.ID, Fingerprint: fp, // seedKey for seeds
		Time: now.UnixNano(), Account: &acct,
	})
	if err != nil {
		return false, fmt.Errorf("switch: account %q: %w", s.ID, err)
	}
	if err := res.Status.Err(); err != nil {
		if keyPrefix == seedPrefix && errors.Is(err, store.ErrAccountExists) {
			return false, nil
		}
		return false, fmt.Errorf("switch: account %q: %w", s.ID, err)
	}
	created := !res.Replayed
	if minor == 0 {
		return created, nil
	}
	res, err = p.ledger.Propose(ctx, store.Command{
		Op: store.OpPost, Key: keyPrefix + "|opening|" + s.ID, Fingerprint: fp,
		Time: now.UnixNano(), BusinessDay: now.In(p.loc).Format(time.DateOnly),
		Debit: s.FundedBy, Credit: s.ID, Amount: minor, Currency: s.Currency,
	})
	if err != nil {
		return created, fmt.Errorf("switch: account %q opening: %w", s.ID, err)
	}
	if err := res.Status.Err(); err != nil {
		return created, fmt.Errorf("switch: account %q opening: %w", s.ID, err)
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
		return 0, fmt.Errorf("switch: account %q opening: %w", s.ID, err)
	}
	if minor < 0 {
		return 0, fmt.Errorf("switch: account %q opening: %w", s.ID, store.ErrInvalidAmount)
	}
	return minor, nil
}
