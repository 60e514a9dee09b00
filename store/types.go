package store

// AccountKind says what an account is for; the ledger rules are the same
// for every kind, only limits and display differ.
type AccountKind string

const (
	KindCardholder AccountKind = "cardholder"
	KindSettlement AccountKind = "settlement"
	KindFunding    AccountKind = "funding"
	KindBiller     AccountKind = "biller"
)

// Account is a ledger account. Balances are credit-normal: posted is
// credits posted minus debits posted; the sum of posted over all accounts
// of one currency is zero (double entry, DESIGN.md invariant 3).
type Account struct {
	ID       string      `json:"id"`
	Kind     AccountKind `json:"kind"`
	Currency string      `json:"ccy"`
	Partner  string      `json:"partner,omitempty"`
	// CardHash is the keyed hash of the PAN (hex) for lookup; MaskedPAN is
	// first 6 and last 4 for display. The full PAN is never stored.
	CardHash  string `json:"card_hash,omitempty"`
	MaskedPAN string `json:"masked_pan,omitempty"`
	// Floor is the lowest available balance the account may reach, minor
	// units (0 for cardholders; negative for settlement and funding
	// accounts). Unlimited accounts have no floor at all.
	Floor     int64 `json:"floor"`
	Unlimited bool  `json:"unlimited,omitempty"`

	DebitsPending  int64 `json:"debits_pending"`
	DebitsPosted   int64 `json:"debits_posted"`
	CreditsPending int64 `json:"credits_pending"`
	CreditsPosted  int64 `json:"credits_posted"`
}

// Posted is credits posted minus debits posted.
func (a *Account) Posted() int64 { return a.CreditsPosted - a.DebitsPosted }

// Available is posted minus the holds against the account (pending debits).
// Pending credits are not spendable until posted.
func (a *Account) Available() int64 { return a.Posted() - a.DebitsPending }

// TransferStatus is the life of a transfer.
type TransferStatus string

const (
	// TransferPending is a hold that may still be completed or voided.
	TransferPending TransferStatus = "pending"
	// TransferPosted moved money.
	TransferPosted TransferStatus = "posted"
	// TransferVoided was a hold released by a reversal.
	TransferVoided TransferStatus = "voided"
	// TransferExpired was a hold that lapsed.
	TransferExpired TransferStatus = "expired"
	// TransferCompleted was a hold fully captured or closed by a final
	// completion; the captures are transfers of their own.
	TransferCompleted TransferStatus = "completed"
)

// Transfer is one movement between two accounts of the same currency.
type Transfer struct {
	ID       string         `json:"id"`
	Op       Op             `json:"op"`
	Status   TransferStatus `json:"status"`
	Debit    string         `json:"debit"`
	Credit   string         `json:"credit"`
	Amount   int64          `json:"amount"`
	Currency string         `json:"ccy"`
	// Held is what is still held by a pending transfer (authorization);
	// Captured is what completions have posted from it so far; Reversed is
	// what reversals have taken back (holds voided or posts compensated).
	Held     int64 `json:"held,omitempty"`
	Captured int64 `json:"captured,omitempty"`
	Reversed int64 `json:"reversed,omitempty"`
	// Expiry of a hold, unix nanoseconds.
	Expiry int64 `json:"expiry,omitempty"`
	// Time the transfer was made (the command's time), unix nanoseconds.
	Time        int64  `json:"time"`
	BusinessDay string `json:"day"`
	Partner     string `json:"partner"`
	// Original is the id of the transfer this one completes or reverses.
	Original string `json:"original,omitempty"`
	Ref      Ref    `json:"ref"`
	// PayerType is how the front door classified the payer.
	PayerType string `json:"payer_type,omitempty"`
	// Agent is the OTC agent whose cash limit the transfer counts against.
	Agent string `json:"agent,omitempty"`
}

// TransferFilter selects transfers for ops queries. Empty fields match all.
type TransferFilter struct {
	Account     string
	Partner     string
	BusinessDay string
	Status      TransferStatus
	PayerType   string
	// Op, when set, keeps only transfers made by that operation (a
	// payment is OpPost, a refund OpReverse).
	Op Op
	// DayFrom and DayTo, when set, keep business days in [DayFrom, DayTo]
	// (YYYY-MM-DD, so string order is day order). A range of one day
	// walks the by-day-and-partner index as BusinessDay does.
	DayFrom, DayTo string
	// Limit caps the number returned; After is the last id of the previous
	// page.
	Limit int
	After string
}
