package switching

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/currency"
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
}

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

// fingerprintN is the bytes of HMAC kept: 128 bits makes a collision irrelevant.
const fingerprintN = 16

// Pipeline turns one decoded request into one answer. It is safe for
// concurrent use; it holds no per-connection state.
type Pipeline struct {
	cfg       Config
	log       *slog.Logger
	ledger    Ledger
	reader    Reader
	routes    *routes
	loc       *time.Location
	now       func() time.Time
	acquirers map[string]string // field 32 (no leading zeros) → partner id
	partners  map[string]Partner
	macs      sync.Pool // hash.Hash keyed with the card key

	// disk and replays are set once by GuardDisk, before any request.
	disk    DiskGuard
	replays Replayer
}

// GuardDisk makes the pipeline refuse state-changing requests while g
// fails (issue 9 item 2): a repeat whose answer r already holds still gets
// it; anything else is declined with g's error (96) and nothing is
// proposed. Balance inquiries and network management are not affected.
// Call it before the lanes start.
func (p *Pipeline) GuardDisk(g DiskGuard, r Replayer) {
	p.disk, p.replays = g, r
}

// NewPipeline builds the pipeline. now is the clock (time.Now in
// production; a fixed clock in golden tests).
func NewPipeline(cfg Config, ledger Ledger, reader Reader, logger *slog.Logger, now func() time.Time) (*Pipeline, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	key, _ := hex.DecodeString(string(cfg.CardKey)) // checked by Validate
	loc, _ := time.LoadLocation(cfg.BusinessDayZone)
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Pipeline{
		cfg:       cfg,
		log:       logger,
		ledger:    ledger,
		reader:    reader,
		routes:    newRoutes(cfg.Routes, cfg.Partners),
		loc:       loc,
		now:       now,
		acquirers: map[string]string{},
		partners:  map[string]Partner{},
	}
	p.macs.New = func() any { return hmac.New(sha256.New, key) }
	for _, pt := range cfg.Partners {
		p.partners[pt.ID] = pt
		for _, a := range pt.AcquirerIDs {
			p.acquirers[trimZeros(a)] = pt.ID
		}
	}
	return p, nil
}

// CardHash is the keyed lookup hash of a PAN, as stored on accounts: the
// same value as pan.Hash(card key), from a pooled HMAC because it is on
// every request's path.
func (p *Pipeline) CardHash(pan codec.PAN) string {
	h := p.macs.Get().(hash.Hash)
	defer p.macs.Put(h)
	h.Reset()
	h.Write([]byte(pan.Digits()))
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0]))
}

// Process answers req into resp and returns the error behind a decline (nil
// for approvals). lanePartners are the partner ids allowed on the lane.
func (p *Pipeline) Process(ctx context.Context, lanePartners map[string]bool, req, resp *codec.Message) error {
	r, err := codec.ParseRequest(req)
	if err != nil {
		p.respond(req, resp, err, store.Result{}, nil)
		return err
	}
	res, bal, err := p.dispatch(ctx, lanePartners, r)
	p.respond(req, resp, err, res, bal)
	return err
}

func (p *Pipeline) respond(req, resp *codec.Message, err error, res store.Result, bal []codec.Balance) {
	out := codec.Response{Code: outcome.Code(err), Balances: bal}
	if err == nil {
		out.AuthCode = res.AuthCode
	}
	codec.BuildResponse(req, out, resp)
	if resp.MTI == "" {
		resp.MTI = codec.GenericResponseMTI(req.MTI)
	}
}

func (p *Pipeline) dispatch(ctx context.Context, lanePartners map[string]bool, r *codec.Request) (store.Result, []codec.Balance, error) {
	class := r.MTI.Class()
	if class == "080" {
		return store.Result{}, nil, p.network(r)
	}
	partner, err := p.partnerOf(lanePartners, r.Acquirer)
	if err != nil {
		return store.Result{}, nil, err
	}
	if r.ProcCode.Type == codec.ProcBalance && (class == "010" || class == "020") {
		return p.balance(ctx, r)
	}
	cmd, err := p.command(r, partner, class)
	if err != nil {
		return store.Result{}, nil, err
	}
	if p.disk != nil {
		if err := p.disk.Check(); err != nil {
			return p.replayOrRefuse(cmd, err)
		}
	}
	res, err := p.ledger.Propose(ctx, cmd)
	if err != nil {
		return store.Result{}, nil, err
	}
	return res, nil, res.Status.Err()
}

// replayOrRefuse answers cmd while the disk guard refuses: the stored
// answer when cmd repeats a recorded request (a record is never changed,
// only pruned after the retention, so a local read is exact without a
// ReadIndex), else refused. A record
// not applied here yet is not found, which only turns a repeat into a 96
// the partner retries: never an answer that was not decided.
func (p *Pipeline) replayOrRefuse(cmd store.Command, refused error) (store.Result, []codec.Balance, error) {
	if p.replays != nil {
		res, ok, err := p.replays.Replay(cmd.Key, cmd.Fingerprint)
		if err == nil && ok {
			return res, nil, res.Status.Err()
		}
	}
	return store.Result{}, nil, refused
}

func (p *Pipeline) network(r *codec.Request) error {
	switch r.NetworkCode {
	case codec.NetworkSignOn, codec.NetworkSignOff, codec.NetworkEcho:
		return nil
	}
	return fmt.Errorf("%w: network management code %q", outcome.ErrUnsupported, r.NetworkCode)
}

func (p *Pipeline) partnerOf(lanePartners map[string]bool, acquirer string) (Partner, error) {
	id, ok := p.acquirers[trimZeros(acquirer)]
	if !ok || !lanePartners[id] {
		return Partner{}, fmt.Errorf("%w: acquirer %q on this lane", outcome.ErrUnknownPartner, acquirer)
	}
	return p.partners[id], nil
}

// balance answers an inquiry from the local store after a ReadIndex: on
// every node, leader or follower, the answer reflects every posting
// approved before the inquiry arrived (linearizable).
func (p *Pipeline) balance(ctx context.Context, r *codec.Request) (store.Result, []codec.Balance, error) {
	if err := p.ledger.ReadIndex(ctx); err != nil {
		return store.Result{}, nil, err
	}
	acct, err := p.reader.AccountByCard(p.CardHash(r.PAN))
	if errors.Is(err, store.ErrNotFound) {
		return store.Result{}, nil, store.ErrUnknownAccount
	}
	if err != nil {
		return store.Result{}, nil, err
	}
	ccy, err := currency.ByCode(acct.Currency)
	if err != nil {
		return store.Result{}, nil, err
	}
	acctType := r.ProcCode.From
	bal := []codec.Balance{
		{AccountType: acctType, AmountType: "01", Currency: ccy, Minor: acct.Posted()},
		{AccountType: acctType, AmountType: "02", Currency: ccy, Minor: acct.Available()},
	}
	return store.Result{}, bal, nil
}

// command builds the ledger command for a financial request.
func (p *Pipeline) command(r *codec.Request, partner Partner, class string) (store.Command, error) {
	now := p.now()
	cmd := store.Command{
		Key:         idempotencyKey(partner.ID, r, class),
		Fingerprint: p.fingerprint(r, class),
		Time:        now.UnixNano(),
		BusinessDay: now.In(p.loc).Format(time.DateOnly),
		Partner:     partner.ID,
		Card:        p.CardHash(r.PAN),
		Amount:      r.Amount,
		Currency:    r.Currency.Code,
		Ref: store.Ref{
			MTI: string(r.MTI), ProcCode: r.ProcCode.Type + r.ProcCode.From + r.ProcCode.To,
			STAN: r.STAN, RRN: r.RRN, Acquirer: r.Acquirer, Terminal: r.Terminal,
			Merchant: r.Merchant, TransmissionTime: r.TransmissionTime,
		},
	}
	data := privateData(r.AdditionalData)
	switch class {
	case "010", "020":
		dest, err := p.routes.lookup(routeKey{BillType: data["BT"], PayerType: payerTypeCard, Partner: partner.ID})
		if err != nil {
			return cmd, err
		}
		cmd.OriginalRef = originalRef(partner.ID, r.Acquirer, r.STAN, r.TransmissionTime, class)
		switch {
		case class == "010" && (r.ProcCode.Type == codec.ProcPurchase || r.ProcCode.Type == codec.ProcCash):
			cmd.Op = store.OpAuthorize
			cmd.Credit = dest.SettlementAccount
			cmd.HoldExpiry = now.Add(p.cfg.HoldExpiry).UnixNano()
		case class == "020" && (r.ProcCode.Type == codec.ProcPurchase || r.ProcCode.Type == codec.ProcBillPay):
			cmd.Op = store.OpPost
			cmd.Credit = dest.SettlementAccount
		case class == "020" && r.ProcCode.Type == codec.ProcCash:
			if partner.WithdrawalMax > 0 && r.Amount > partner.WithdrawalMax {
				return cmd, fmt.Errorf("%w: withdrawal above partner cap", outcome.ErrLimitExceeded)
			}
			cmd.Op = store.OpPost
			cmd.Credit = dest.SettlementAccount
		case class == "020" && r.ProcCode.Type == codec.ProcRefund:
			cmd.Op = store.OpPost
			cmd.CreditCard = true
			cmd.Debit = dest.SettlementAccount
		default:
			return cmd, fmt.Errorf("%w: processing code %s on %s", outcome.ErrNotPermitted, r.ProcCode.Type, r.MTI)
		}
	case "022":
		cmd.Op = store.OpComplete
		cmd.Original = originalOf(partner.ID, r.Original)
		cmd.OriginalRef = originalRef(partner.ID, r.Acquirer, r.STAN, r.TransmissionTime, class)
		cmd.Final = completionFinal(data["CS"])
	case "040", "042":
		cmd.Op = store.OpReverse
		cmd.Original = originalOf(partner.ID, r.Original)
		// Field 4 of a reversal is the original amount; field 95 (when
		// present) the amount that stands, so the difference is reversed.
		cmd.Amount = r.Amount
		if r.ActualAmount != nil {
			cmd.Amount = r.Amount - *r.ActualAmount
		}
		if cmd.Amount <= 0 {
			return cmd, fmt.Errorf("%w: nothing to reverse", store.ErrInvalidAmount)
		}
	default:
		return cmd, fmt.Errorf("%w: message class %s", outcome.ErrUnsupported, class)
	}
	return cmd, nil
}

// completionFinal reads the clearing sequence "ssnn" (this is capture ss of
// nn) from private data; a completion without one is the only, final one.
func completionFinal(cs string) bool {
	if len(cs) != 4 {
		return true
	}
	seq, err1 := strconv.Atoi(cs[:2])
	count, err2 := strconv.Atoi(cs[2:])
	if err1 != nil || err2 != nil || count == 0 {
		return true
	}
	return seq >= count
}

// privateData parses field 48 as "KEY=VALUE;KEY=VALUE" (our dialect's use of
// the private field: BT bill type, CS clearing sequence).
func privateData(s string) map[string]string {
	if s == "" {
		return nil
	}
	m := map[string]string{}
	for _, kv := range strings.Split(s, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

// idempotencyKey is DESIGN.md invariant 2's key: partner, acquirer, STAN,
// transmission time, RRN and message class (repeats share their original's
// class, so 0201 finds 0200).
func idempotencyKey(partner string, r *codec.Request, class string) string {
	return strings.Join([]string{partner, trimZeros(r.Acquirer), r.STAN, r.TransmissionTime, r.RRN, class}, "|")
}

// originalRef is how a later message (field 90) names this one: field 90
// carries MTI, STAN, transmission time and acquirer but no RRN.
func originalRef(partner, acquirer, stan, f7, class string) string {
	return strings.Join([]string{partner, trimZeros(acquirer), stan, f7, class}, "|")
}

func originalOf(partner string, o *codec.Original) string {
	if o == nil {
		return ""
	}
	return originalRef(partner, o.Acquirer, o.STAN, o.TransmissionTime, codec.MTI(o.MTI).Class())
}

// fingerprint is a keyed hash of what must be the same for a repeat to be a
// repeat. It covers the PAN, hence the key.
func (p *Pipeline) fingerprint(r *codec.Request, class string) string {
	var o string
	if r.Original != nil {
		o = r.Original.MTI + r.Original.STAN + r.Original.TransmissionTime + trimZeros(r.Original.Acquirer)
	}
	var actual string
	if r.ActualAmount != nil {
		actual = strconv.FormatInt(*r.ActualAmount, 10)
	}
	return p.fingerprintOf(class, r.ProcCode.Type+r.ProcCode.From+r.ProcCode.To,
		strconv.FormatInt(r.Amount, 10), r.Currency.Code, r.PAN.Digits(), r.Terminal, r.Merchant,
		r.AdditionalData, o, actual)
}

// fingerprintOf is the keyed hash of parts, each ended by a NUL so that
// "1"+"23" and "12"+"3" differ.
func (p *Pipeline) fingerprintOf(parts ...string) string {
	h := p.macs.Get().(hash.Hash)
	defer p.macs.Put(h)
	h.Reset()
	for _, s := range parts {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:fingerprintN])
}

func trimZeros(s string) string {
	t := strings.TrimLeft(s, "0")
	if t == "" && s != "" {
		return "0"
	}
	return t
}
