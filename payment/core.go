package payment

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/store"
)

// Ledger is the write path: a command in, the FSM's result out, after
// commit and apply (cluster.Node, on any node: followers forward).
type Ledger interface {
	Propose(ctx context.Context, cmd store.Command) (store.Result, error)
	// ReadIndex returns once the local store reflects every command
	// committed before the call, so a read after it is linearizable.
	ReadIndex(ctx context.Context) error
}

// Reader is the read path for balance inquiries (store.Store), read only
// after Ledger.ReadIndex.
type Reader interface {
	AccountByCard(cardHash string) (store.Account, error)
	Account(id string) (store.Account, error)
}

// DirectorySource returns the routing state as of the last applied batch
// ((*store.Store).Directory): the core reads it once per request, so a
// change applied through the store routes the very next request.
type DirectorySource func() *store.Directory

// DiskGuard says whether the node may take new state changes (disk.Guard):
// Check fails (wrapping disk.ErrLowSpace) while a volume is short of space.
type DiskGuard interface {
	Check() error
}

// Replayer answers a repeat from the applied state without a log write
// (store.Store.Replay).
type Replayer interface {
	Replay(key, fingerprint string) (store.Result, bool, error)
}

// fingerprintBytes is the bytes of HMAC kept: 128 bits makes a collision
// irrelevant.
const fingerprintBytes = 16

// Core decides requests. It is safe for concurrent use and holds no
// per-request state.
type Core struct {
	cfg    Config
	log    *slog.Logger
	ledger Ledger
	reader Reader
	dir    DirectorySource
	loc    *time.Location
	now    func() time.Time
	macs   sync.Pool // hash.Hash keyed with the card key

	// disk and replays are set once by GuardDisk, before any request.
	disk    DiskGuard
	replays Replayer
	// fwd sends off-us requests (forward.go); set once by UseForwarder.
	fwd Forwarder
}

// NewCore builds the core. now is the clock (time.Now in production; a
// fixed clock in golden tests).
func NewCore(cfg Config, ledger Ledger, reader Reader, dir DirectorySource, logger *slog.Logger, now func() time.Time) (*Core, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if dir == nil {
		return nil, fmt.Errorf("%w: no directory source", ErrConfig)
	}
	key, _ := hex.DecodeString(string(cfg.CardKey)) // checked by Validate
	loc, _ := time.LoadLocation(cfg.BusinessDayZone)
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Core{cfg: cfg, log: logger, ledger: ledger, reader: reader, dir: dir, loc: loc, now: now}
	c.macs.New = func() any { return hmac.New(sha256.New, key) }
	logger.Info("payment core", "hold_expiry", cfg.HoldExpiry, "business_day_zone", cfg.BusinessDayZone)
	return c, nil
}

// GuardDisk makes the core refuse state changes while g fails (issue 9
// item 2): a repeat whose answer r already holds still gets it; anything
// else is declined with g's error (96, HTTP 507) and nothing is proposed.
// Reads are not affected. Call it before the front doors start.
func (c *Core) GuardDisk(g DiskGuard, r Replayer) { c.disk, c.replays = g, r }

// CardHash is the keyed lookup hash of a PAN, as stored on accounts
// (hex HMAC-SHA256 with the card key), from a pooled HMAC because it is
// on every request's path.
func (c *Core) CardHash(pan PAN) string {
	h := c.macs.Get().(hash.Hash)
	defer c.macs.Put(h)
	h.Reset()
	h.Write([]byte(pan.Digits()))
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0]))
}

// fingerprint is the keyed hash of parts, each ended by a NUL so that
// "1"+"23" and "12"+"3" differ; FingerprintPAN hashes as pan's digits.
func (c *Core) fingerprint(pan PAN, parts []string) string {
	h := c.macs.Get().(hash.Hash)
	defer c.macs.Put(h)
	h.Reset()
	for _, s := range parts {
		if s == FingerprintPAN {
			s = pan.Digits()
		}
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:fingerprintBytes])
}

// RecordOf is the idempotency key and fingerprint under which the
// ledger records in for partner: exactly what Submit proposes, so a
// caller that kept the request (a payment batch's item) can read its
// decision back (store.Store.Replay) on any node, without proposing.
func (c *Core) RecordOf(partner string, in Intent) (key, fingerprint string) {
	return partner + "|" + in.IdempotencyKey, c.fingerprint(in.PAN, in.Fingerprint)
}

// Admit returns the partner that may send as acquirer on lane: known in
// the replicated directory (else outcome.ErrUnknownPartner), on that lane
// (else outcome.ErrUnknownPartner too: a lane does not tell a stranger
// which partners exist elsewhere) and not suspended (else
// outcome.ErrPartnerSuspended). A refusal is confirmed like Submit's.
// Submit starts with the same checks; a front door calls Admit itself
// only to rank its own refusals after the partner's.
// Origin is where a request came from, as the front door saw it: the
// lane (or endpoint), the connection's source address and, over mutual
// TLS, the SHA-256 pin (hex) of the client certificate's public key and
// when the handshake presented it (a pin names its partner only if it
// was live then: store.Partner.Pinned).
type Origin struct {
	Lane    string
	Source  netip.Addr
	CertPin string
	CertAt  time.Time
	// Delegated: the request continues one the partner made and the front
	// door admitted then, arriving over a connection that is not the
	// partner's (the SCA confirmation, posted from the customer's browser,
	// reserves the partner's authorization). Its source address and
	// certificate are not the partner's, so they are not checked; the
	// lane, the acquirer and suspension are. Only front-door code sets
	// it, never anything a request says.
	Delegated bool
}

func (c *Core) Admit(ctx context.Context, o Origin, acquirer string) (*store.Partner, error) {
	p, err := admit(c.dir(), o, acquirer)
	if err == nil {
		return p, nil
	}
	if rerr := c.ledger.ReadIndex(ctx); rerr != nil {
		return nil, rerr
	}
	return admit(c.dir(), o, acquirer)
}

func admit(d *store.Directory, o Origin, acquirer string) (*store.Partner, error) {
	lane, source := o.Lane, o.Source
	p, ok := d.PartnerByAcquirer(acquirer)
	if o.CertPin != "" && (!ok || !p.Pinned(o.CertPin, o.CertAt)) {
		// The certificate names a partner, and this acquirer id is not
		// one of that partner's: first, whatever lane, because the caller
		// proved who it is and claims to be someone else.
		return nil, fmt.Errorf("%w: acquirer %q over a connection whose certificate is not that partner's", outcome.ErrCertMismatch, acquirer)
	}
	if !ok || !p.OnLane(lane) {
		return nil, fmt.Errorf("%w: acquirer %q on lane %q", outcome.ErrUnknownPartner, acquirer, lane)
	}
	if o.CertPin == "" && len(p.CertPins) > 0 && !o.Delegated {
		// This partner proves itself with a certificate: not over a lane
		// without one.
		return nil, fmt.Errorf("%w: partner %s without its client certificate", outcome.ErrCertMismatch, p.ID)
	}
	if !o.Delegated && !p.AllowsSource(source) {
		// The lane let the address in (its list covers every partner's
		// networks); this partner's own list does not name it.
		return nil, fmt.Errorf("%w: partner %s from %s", outcome.ErrSourceNotAllowed, p.ID, source)
	}
	if p.Suspended {
		return nil, fmt.Errorf("%w: %s", outcome.ErrPartnerSuspended, p.ID)
	}
	return p, nil
}

// classify is the payer type of p's request that asks for refinement
// ("" for the partner's own).
func classify(p *store.Partner, refinement string) (string, error) {
	if refinement == "" || refinement == p.PayerType {
		return p.PayerType, nil
	}
	if !p.MayRefineTo(refinement) {
		return "", fmt.Errorf("%w: payer type %q for partner %s", outcome.ErrNotPermitted, refinement, p.ID)
	}
	return refinement, nil
}

// decision is what the directory says about a request.
type decision struct {
	partner   *store.Partner
	payerType string
	account   string // the routed settlement account ("" when not routed)
	route     string
}

// decide applies the directory's rules to in, in order: partner, lane,
// suspension, payer type, the partner's limits, the route.
func decide(d *store.Directory, in *Intent) (decision, error) {
	var dc decision
	p, err := admit(d, in.Origin, in.Acquirer)
	if err != nil {
		return dc, err
	}
	dc.partner = p
	if dc.payerType, err = classify(p, in.PayerType); err != nil {
		return dc, err
	}
	if in.Kind.reads() {
		return dc, nil
	}
	if dc.payerType == store.PayerOTCAgent {
		switch in.Kind {
		case KindAuthorize, KindFundsBlock:
			// The FSM counts an agent's cash on OpPost; a hold and its
			// later completion would pass beside the agent's limit.
			return dc, fmt.Errorf("%w: %s by an OTC agent", outcome.ErrNotPermitted, in.Kind)
		case KindRefund, KindCashWithdrawal:
			// The agent would pay cash out, which its limit (cash
			// collected, not yet handed in) does not track.
			return dc, fmt.Errorf("%w: %s by an OTC agent (agents collect cash)", outcome.ErrNotPermitted, in.Kind)
		}
	}
	if in.Kind == KindCashWithdrawal && p.WithdrawalMax > 0 && in.Amount > p.WithdrawalMax {
		return dc, fmt.Errorf("%w: withdrawal above partner cap", outcome.ErrLimitExceeded)
	}
	if in.Kind.routed() {
		dc.account, dc.route, err = route(d, p, in.BillType, dc.payerType)
	}
	return dc, err
}

// Submit decides one request: the partner, its payer type, its limits and
// the route from the replicated directory, then the ledger command,
// proposed through the cluster; or, for reads, a linearizable read. The
// error is the reason for a decline (nil for an approval), to be answered
// from outcome's table; the Outcome says how far the request got.
//
// The directory is the node's applied copy, so an approval may follow a
// change by the time the node applies it (as any state does). A refusal
// is confirmed first: after a ReadIndex the request is decided again on
// the caught-up directory, so a node that restarted alone, or lags, never
// refuses a partner the cluster knows (it answers the read's error, 96,
// instead).
func (c *Core) Submit(ctx context.Context, in Intent) (Outcome, error) {
	var out Outcome
	if in.Kind == KindUnknown || in.Kind >= kindEnd {
		return out, fmt.Errorf("%w: kind %d", outcome.ErrUnsupported, in.Kind)
	}
	dc, err := decide(c.dir(), &in)
	if err != nil {
		if rerr := c.ledger.ReadIndex(ctx); rerr != nil {
			return out, rerr
		}
		dc, err = decide(c.dir(), &in)
	}
	if dc.partner != nil {
		out.Partner = dc.partner.ID
	}
	out.PayerType, out.Route = dc.payerType, dc.route
	if err != nil {
		return out, err
	}
	if in.Kind.reads() {
		return c.read(ctx, in, out)
	}
	if in.IdempotencyKey == "" {
		return out, fmt.Errorf("%w: %s intent without an idempotency key", store.ErrInvalidCommand, in.Kind)
	}
	p := dc.partner
	dest, isOffUs := offUs(c.dir(), &in, dc.route)
	var card string
	switch {
	case !isOffUs || dest.Kind == store.DestinationKindHTTP && in.Kind == KindBillPayment:
		// A bill paid to a biller is paid from the payer's account like an
		// on-us one.
		if card, err = c.payer(ctx, in, p.ID); err != nil {
			return out, err
		}
	case !in.PAN.IsZero():
		// An off-us card is its issuer's to answer for: it has no account
		// here, and is named by its hash, so a completion or reversal
		// must name the card its forward did (store.forwardCard).
		card = c.CardHash(in.PAN)
	}
	now := c.now()
	cmd := store.Command{
		Key:         p.ID + "|" + in.IdempotencyKey,
		Fingerprint: c.fingerprint(in.PAN, in.Fingerprint),
		Time:        now.UnixNano(),
		BusinessDay: now.In(c.loc).Format(time.DateOnly),
		Partner:     p.ID,
		Card:        card,
		Amount:      in.Amount,
		Currency:    in.Currency,
		Ref:         in.Ref,
		PayerType:   dc.payerType,
	}
	cmd.Ref.Acquirer, cmd.Ref.Terminal, cmd.Ref.Merchant = in.Acquirer, in.Terminal, in.Merchant
	if dc.payerType == store.PayerOTCAgent {
		cmd.Agent = store.AgentID(p.ID, in.Terminal)
	}
	if in.OriginalRef != "" {
		cmd.OriginalRef = p.ID + "|" + in.OriginalRef
	}
	if in.Original != "" {
		cmd.Original = p.ID + "|" + in.Original
	}
	switch in.Kind {
	case KindAuthorize, KindFundsBlock:
		cmd.Op = store.OpAuthorize
		cmd.Credit = dc.account
		cmd.HoldExpiry = now.Add(c.cfg.HoldExpiry).UnixNano()
	case KindPurchase, KindBillPayment, KindCashWithdrawal:
		cmd.Op = store.OpPost
		cmd.Credit = dc.account
	case KindRefund:
		cmd.Op = store.OpPost
		cmd.CreditCard = true
		cmd.Debit = dc.account
	case KindCompletion:
		cmd.Op = store.OpComplete
		cmd.Final = in.Final
	case KindReversal:
		cmd.Op = store.OpReverse
		cmd.OriginalRef = "" // a reversal is never an original
		if in.ActualAmount != nil {
			cmd.Amount = in.Amount - *in.ActualAmount
		}
		if cmd.Amount <= 0 {
			return out, fmt.Errorf("%w: nothing to reverse", store.ErrInvalidAmount)
		}
	}
	if in.Advice && !isOffUs {
		if err := onUsAdvice(&cmd, dc); err != nil { // advice.go
			return out, err
		}
	}
	if c.disk != nil {
		if err := c.disk.Check(); err != nil {
			return c.replayOrRefuse(cmd, out, err)
		}
	}
	if isOffUs && in.Kind != KindReversal && in.Kind != KindCompletion {
		return c.forward(ctx, &in, dc, dest, cmd, out) // forward.go
	}
	// A reversal of an off-us purchase goes to the ledger like any other:
	// the store reverses the posted transfer and queues the host's 0420
	// in the same apply (or, before the host answered, times the forward
	// out). A completion of an off-us authorization captures the hold its
	// approval placed and queues the host's 0220 the same way.
	res, err := c.ledger.Propose(ctx, cmd)
	if err != nil {
		return out, err
	}
	out.Result, out.AuthCode = res, res.AuthCode
	return out, res.Status.Err()
}

// Now is the core's clock: what Command.Time will say, so a front door
// shows an expiry the way the FSM decides it.
func (c *Core) Now() time.Time { return c.now() }

// ProposeAuthorization proposes an SCA authorization change
// (store.OpPutAuthorization) of partner under its key (partner-relative,
// scoped like an Intent's), with the core's clock and a keyed
// fingerprint of parts. The front door has admitted the partner (or, for
// the customer's confirmation, holds the one-time token); a partner the
// directory no longer has, or one suspended, is refused here as in
// Submit. The error is the FSM's decline, if any.
func (c *Core) ProposeAuthorization(ctx context.Context, partner, key string, parts []string, ch store.AuthorizationChange) (store.Result, error) {
	p, ok := c.dir().Partner(partner)
	if !ok {
		if err := c.ledger.ReadIndex(ctx); err != nil {
			return store.Result{}, err
		}
		if p, ok = c.dir().Partner(partner); !ok {
			return store.Result{}, fmt.Errorf("%w: %q", outcome.ErrUnknownPartner, partner)
		}
	}
	if p.Suspended {
		return store.Result{}, fmt.Errorf("%w: %s", outcome.ErrPartnerSuspended, p.ID)
	}
	if key == "" {
		return store.Result{}, fmt.Errorf("%w: authorization change without an idempotency key", store.ErrInvalidCommand)
	}
	cmd := store.Command{Op: store.OpPutAuthorization, Key: p.ID + "|" + key, Fingerprint: c.fingerprint(PAN{}, parts),
		Time: c.now().UnixNano(), Partner: p.ID, Authorization: &ch}
	if c.disk != nil {
		if err := c.disk.Check(); err != nil {
			out, err := c.replayOrRefuse(cmd, Outcome{}, err)
			return out.Result, err
		}
	}
	res, err := c.ledger.Propose(ctx, cmd)
	if err != nil {
		return res, err
	}
	return res, res.Status.Err()
}

// route is the settlement account and rule id for a request of partner p:
// the directory's most specific rule for (bill type, payer type, partner);
// a rule without an account uses the partner's.
func route(d *store.Directory, p *store.Partner, billType, payerType string) (account, id string, err error) {
	r, ok := d.Lookup(store.RouteKey{BillType: billType, PayerType: payerType, Partner: p.ID})
	if !ok {
		return "", "", fmt.Errorf("%w: bill type %q, payer type %q, partner %q", outcome.ErrNoRoute, billType, payerType, p.ID)
	}
	// A route to another destination than the ledger is the forwarder's
	// (forward.go); its account is credited the same way.
	account = r.SettlementAccount
	if account == "" {
		account = p.SettlementAccount
	}
	if account == "" {
		return "", r.ID, fmt.Errorf("%w: route %s for partner %q has no settlement account", outcome.ErrNoRoute, r.ID, p.ID)
	}
	return account, r.ID, nil
}

// replayOrRefuse answers cmd while the disk guard refuses: the stored
// answer when cmd repeats a recorded request (a record is never changed,
// only pruned after the retention, so a local read is exact without a
// ReadIndex), else refused. A record not applied here yet is not found,
// which only turns a repeat into a 96 the partner retries: never an
// answer that was not decided.
func (c *Core) replayOrRefuse(cmd store.Command, out Outcome, refused error) (Outcome, error) {
	if c.replays != nil {
		res, ok, err := c.replays.Replay(cmd.Key, cmd.Fingerprint)
		if err == nil && ok {
			out.Result, out.AuthCode = res, res.AuthCode
			return out, res.Status.Err()
		}
	}
	return out, refused
}

// payer is the card hash of the account the intent pays from: its PAN's,
// or, for a front door that names accounts (REST), the account's own.
// An account named by id must be a payer account (one with a card) and,
// when it belongs to a partner, the requesting partner's.
func (c *Core) payer(ctx context.Context, in Intent, partner string) (string, error) {
	if in.Account == "" {
		return c.CardHash(in.PAN), nil
	}
	acct, err := c.reader.Account(in.Account)
	if errors.Is(err, store.ErrNotFound) {
		// Created on another node a moment ago: read again once caught up.
		if rerr := c.ledger.ReadIndex(ctx); rerr != nil {
			return "", rerr
		}
		acct, err = c.reader.Account(in.Account)
	}
	if errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("%w: %q", store.ErrUnknownAccount, in.Account)
	}
	if err != nil {
		return "", err
	}
	if acct.CardHash == "" || acct.Partner != "" && acct.Partner != partner {
		// Another partner's account looks the same as none at all.
		return "", fmt.Errorf("%w: %q is not an account this partner may pay from", store.ErrUnknownAccount, in.Account)
	}
	return acct.CardHash, nil
}

// read answers a balance inquiry or funds check from the local store after
// a ReadIndex: on every node, leader or follower, the answer reflects
// every posting approved before the request arrived (linearizable).
func (c *Core) read(ctx context.Context, in Intent, out Outcome) (Outcome, error) {
	if in.Kind == KindFundsCheck && (in.Amount <= 0 || in.Currency == "") {
		return out, fmt.Errorf("%w: a funds check needs an amount and a currency", store.ErrInvalidAmount)
	}
	if err := c.ledger.ReadIndex(ctx); err != nil {
		return out, err
	}
	card, err := c.payer(ctx, in, out.Partner)
	if err != nil {
		return out, err
	}
	acct, err := c.reader.AccountByCard(card)
	if errors.Is(err, store.ErrNotFound) {
		return out, store.ErrUnknownAccount
	}
	if err != nil {
		return out, err
	}
	out.Balance = Balance{Posted: acct.Posted(), Available: acct.Available(), Currency: acct.Currency}
	if in.Kind == KindFundsCheck {
		switch {
		case in.Currency != acct.Currency:
			return out, store.ErrCurrencyMismatch
		case !acct.Unlimited && acct.Available()-in.Amount < acct.Floor:
			return out, store.ErrInsufficientFunds
		}
	}
	return out, nil
}
