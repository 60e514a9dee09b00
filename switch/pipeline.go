package switching

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/switchd/switchd/card"
	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
)

// Pipeline is the ISO 8583 front door: per message it builds one
// payment.Intent, has the core decide it (one Submit), and writes the
// Outcome into fields 38, 39 and 54. What is ISO 8583 stays here: MTI and
// processing code → Kind, field 48's tags, the idempotency key and
// original reference formats, the fingerprint's parts. It is safe for
// concurrent use; it holds no per-connection state.
type Pipeline struct {
	core *payment.Core
	log  *slog.Logger
	macs *macGuard // MAC keys of partners that require one (mac.go)
}

// NewPipeline builds the front door over core.
func NewPipeline(core *payment.Core, logger *slog.Logger) *Pipeline {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Pipeline{core: core, log: logger, macs: newMACGuard()}
}

// Process answers req, which came from o, into resp and returns the
// error behind a decline (nil for approvals).
func (p *Pipeline) Process(ctx context.Context, o payment.Origin, req, resp *codec.Message) error {
	r, err := codec.ParseRequest(req)
	if err != nil {
		respond(req, resp, err, "", nil)
		return err
	}
	auth, bal, err := p.dispatch(ctx, o, r)
	respond(req, resp, err, auth, bal)
	return err
}

func respond(req, resp *codec.Message, err error, authCode string, bal []codec.Balance) {
	out := codec.Response{Code: outcome.Code(err), Balances: bal}
	if err == nil {
		out.AuthCode = authCode
	}
	codec.BuildResponse(req, out, resp)
	if resp.MTI == "" {
		resp.MTI = codec.GenericResponseMTI(req.MTI)
	}
}

func (p *Pipeline) dispatch(ctx context.Context, o payment.Origin, r *codec.Request) (string, []codec.Balance, error) {
	class := r.MTI.Class()
	if class == "080" {
		return "", nil, network(r)
	}
	in, err := intentOf(o, r, class)
	if err != nil {
		// Who sends is checked before what they ask: an unknown or
		// suspended partner learns nothing about what is supported.
		if _, aerr := p.core.Admit(ctx, o, r.Acquirer); aerr != nil {
			return "", nil, aerr
		}
		return "", nil, err
	}
	out, err := p.core.Submit(ctx, in)
	if err != nil || in.Kind != payment.KindBalanceInquiry {
		return out.AuthCode, nil, err
	}
	bal, err := balances(r, out.Balance)
	return "", bal, err
}

func network(r *codec.Request) error {
	switch r.NetworkCode {
	case codec.NetworkSignOn, codec.NetworkSignOff, codec.NetworkEcho:
		return nil
	}
	return fmt.Errorf("%w: network management code %q", outcome.ErrUnsupported, r.NetworkCode)
}

// balances is field 54 for an inquiry: ledger (01) and available (02)
// balance, under the account type the request asked from.
func balances(r *codec.Request, b payment.Balance) ([]codec.Balance, error) {
	ccy, err := currency.ByCode(b.Currency)
	if err != nil {
		return nil, err
	}
	acctType := r.ProcCode.From
	return []codec.Balance{
		{AccountType: acctType, AmountType: "01", Currency: ccy, Minor: b.Posted},
		{AccountType: acctType, AmountType: "02", Currency: ccy, Minor: b.Available},
	}, nil
}

// kindOf maps the message class and processing code to what is asked.
func kindOf(r *codec.Request, class string) (payment.Kind, error) {
	t := r.ProcCode.Type
	switch class {
	case "010", "020":
		switch {
		case t == codec.ProcBalance:
			return payment.KindBalanceInquiry, nil
		case class == "010" && (t == codec.ProcPurchase || t == codec.ProcCash):
			return payment.KindAuthorize, nil
		case class == "020" && t == codec.ProcPurchase:
			return payment.KindPurchase, nil
		case class == "020" && t == codec.ProcBillPay:
			return payment.KindBillPayment, nil
		case class == "020" && t == codec.ProcCash:
			return payment.KindCashWithdrawal, nil
		case class == "020" && t == codec.ProcRefund:
			return payment.KindRefund, nil
		}
		return payment.KindUnknown, fmt.Errorf("%w: processing code %s on %s", outcome.ErrNotPermitted, t, r.MTI)
	case "022", "012":
		if r.Original != nil {
			if class == "022" {
				return payment.KindCompletion, nil // the capture of the hold field 90 names
			}
			return payment.KindUnknown, fmt.Errorf("%w: %s with an original", outcome.ErrUnsupported, r.MTI)
		}
		return adviceKind(r)
	case "040", "042":
		return payment.KindReversal, nil
	}
	return payment.KindUnknown, fmt.Errorf("%w: message class %s", outcome.ErrUnsupported, class)
}

// intentOf is the Intent of a financial or authorization request.
func intentOf(o payment.Origin, r *codec.Request, class string) (payment.Intent, error) {
	kind, err := kindOf(r, class)
	if err != nil {
		return payment.Intent{}, err
	}
	pan := r.PAN // checked by the codec: the same card.PAN type
	if pan.IsZero() {
		return payment.Intent{}, fmt.Errorf("%w: no card number", card.ErrInvalidPAN)
	}
	proc := r.ProcCode.String()
	in := payment.Intent{
		Kind:      kind,
		Origin:    o,
		Acquirer:  r.Acquirer,
		PayerType: tag(r.AdditionalData, "PT"),
		PAN:       pan,
		Terminal:  r.Terminal,
		Merchant:  r.Merchant,
		Amount:    r.Amount,
		Currency:  r.Currency.Code,
		BillType:  tag(r.AdditionalData, "BT"),
		Ref: store.Ref{
			MTI: string(r.MTI), ProcCode: proc, STAN: r.STAN, RRN: r.RRN, TransmissionTime: r.TransmissionTime,
		},
	}
	if kind == payment.KindBalanceInquiry {
		return in, nil // a read: no key, no fingerprint
	}
	in.IdempotencyKey = idempotencyKey(r, class)
	in.Fingerprint = fingerprintParts(r, class, proc)
	switch {
	case isAdvice(r, class):
		adviceIntent(&in, r, class) // advice.go
	case kind == payment.KindCompletion:
		in.Original = originalOf(r.Original)
		in.OriginalRef = originalRef(r.Acquirer, r.STAN, r.TransmissionTime, class)
		in.Final = completionFinal(tag(r.AdditionalData, "CS"))
	case kind == payment.KindReversal:
		// Field 4 of a reversal is the original amount; field 95 (when
		// present) the amount that stands, so the difference is reversed.
		in.Original = originalOf(r.Original)
		in.ActualAmount = r.ActualAmount
	default:
		in.OriginalRef = originalRef(r.Acquirer, r.STAN, r.TransmissionTime, class)
	}
	return in, nil
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

// tag reads one tag of field 48, our dialect's use of the private field:
// "KEY=VALUE;KEY=VALUE" with BT bill type, CS clearing sequence, PT payer
// type. The last of repeated tags wins; "" when absent.
func tag(f48, key string) string {
	var v string
	for f48 != "" {
		var kv string
		kv, f48, _ = strings.Cut(f48, ";")
		if k, val, ok := strings.Cut(kv, "="); ok && strings.TrimSpace(k) == key {
			v = strings.TrimSpace(val)
		}
	}
	return v
}

// idempotencyKey is DESIGN.md invariant 2's key without the partner (the
// core puts it in front): acquirer, STAN, transmission time, RRN and
// message class (repeats share their original's class, so 0201 finds
// 0200).
func idempotencyKey(r *codec.Request, class string) string {
	return strings.Join([]string{store.TrimZeros(r.Acquirer), r.STAN, r.TransmissionTime, r.RRN, class}, "|")
}

// originalRef is how a later message (field 90) names this one: field 90
// carries MTI, STAN, transmission time and acquirer but no RRN.
func originalRef(acquirer, stan, f7, class string) string {
	return strings.Join([]string{store.TrimZeros(acquirer), stan, f7, class}, "|")
}

func originalOf(o *codec.Original) string {
	if o == nil {
		return ""
	}
	return originalRef(o.Acquirer, o.STAN, o.TransmissionTime, codec.MTI(o.MTI).Class())
}

// fingerprintParts is what must be the same for a repeat to be a repeat:
// class, processing code, amount, currency, card, terminal, merchant,
// field 48, field 90 and field 95, in this order (the order is part of
// every stored record's fingerprint: changing it makes repeats of
// requests answered before the change 94s).
func fingerprintParts(r *codec.Request, class, proc string) []string {
	var o string
	if r.Original != nil {
		o = r.Original.MTI + r.Original.STAN + r.Original.TransmissionTime + store.TrimZeros(r.Original.Acquirer)
	}
	var actual string
	if r.ActualAmount != nil {
		actual = strconv.FormatInt(*r.ActualAmount, 10)
	}
	return []string{class, proc, strconv.FormatInt(r.Amount, 10), r.Currency.Code, payment.FingerprintPAN,
		r.Terminal, r.Merchant, r.AdditionalData, o, actual}
}
