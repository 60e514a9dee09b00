package payment

import (
	"context"
	"fmt"

	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/store"
)

// Forwarder sends an off-us request to its destination and returns the
// host's decision (package forward). It records the request and the
// answer in the replicated state itself (store.OpForward and
// OpForwardResult), so the exactly-once contract holds across the hop.
type Forwarder interface {
	Forward(ctx context.Context, req ForwardRequest) (ForwardAnswer, error)
	// Advise takes a partner's advice (Intent.Advice) for the destination
	// and queues it for the host in the replicated SAF queue; Approved
	// means taken (posted at acceptance, advice.go), else the error says
	// why not and nothing was recorded.
	Advise(ctx context.Context, req ForwardRequest) (ForwardAnswer, error)
}

// ForwardRequest is a request the core routed off-us.
type ForwardRequest struct {
	// Command is the ledger command the core would propose on-us: key,
	// fingerprint, time, business day, partner, amount, currency,
	// reference, payer type. Its Op is the forward's to set.
	Command     store.Command
	Kind        Kind
	Destination *store.Destination
	Route       string
	// Credit is the account the approval credits (the route's or the
	// partner's settlement account); the debit is the destination's.
	Credit string
	PAN    PAN
	Intent *Intent
}

// ForwardAnswer is the host's decision as recorded.
type ForwardAnswer struct {
	// Approved with AuthCode and the TransferID the ledger posted; else
	// RC is the code the partner gets (the host's, or the destination's
	// timeout code), TimedOut when the host did not answer in time.
	Approved   bool
	RC         string
	AuthCode   string
	TransferID string
	TimedOut   bool
	Replayed   bool
}

// UseForwarder makes the core send requests routed to iso8583 and http
// destinations through f. Without one such requests are declined as
// destination unavailable (91). Call it before the front doors start.
func (c *Core) UseForwarder(f Forwarder) { c.fwd = f }

// offUs is the destination a request goes to when it is not the ledger:
// the card's BIN for card kinds, else the route's destination.
func offUs(d *store.Directory, in *Intent, routeID string) (*store.Destination, bool) {
	if !in.PAN.IsZero() && in.Account == "" && in.Kind != KindBillPayment {
		// Card kinds follow the card's BIN (a bill payment follows its
		// biller's route, whoever issued the card).
		if x, ok := d.DestinationForPAN(in.PAN.Digits()); ok {
			return x, true
		}
	}
	if routeID == "" {
		return nil, false
	}
	if r, ok := d.Route(routeID); ok && r.Destination != store.DestinationLedger {
		x, ok := d.Destination(r.Destination)
		return x, ok
	}
	return nil, false
}

// forward hands an off-us request to the forwarder and turns its answer
// into the core's.
func (c *Core) forward(ctx context.Context, in *Intent, dc decision, dest *store.Destination, cmd store.Command, out Outcome) (Outcome, error) {
	switch {
	case dest.Kind == store.DestinationKindHTTP && in.Kind != KindBillPayment:
		// A biller takes bill payments only.
		return out, fmt.Errorf("%w: %s routed to biller %s", outcome.ErrUnsupported, in.Kind, dest.ID)
	case dest.Kind == store.DestinationKindHTTP:
		// A bill payment names the bill: no card number goes to the biller.
	case in.Kind == KindRefund && in.Advice:
		// A refund the partner already made would credit the issuer's
		// cardholder on its word alone: declined, never posted on-us.
		return out, fmt.Errorf("%w: refund advice of a card routed to destination %s", outcome.ErrUnsupported, dest.ID)
	case in.Kind != KindPurchase && in.Kind != KindCashWithdrawal && in.Kind != KindRefund && in.Kind != KindAuthorize:
		// Funds blocks (an account's, on-us by nature) and reads of off-us
		// cards are not forwarded: declined, never posted on-us.
		return out, fmt.Errorf("%w: %s of a card routed to destination %s (not forwarded)", outcome.ErrUnsupported, in.Kind, dest.ID)
	case dest.Kind != store.DestinationKindISO8583:
		return out, fmt.Errorf("%w: destination %s is %s (not forwarded to)", outcome.ErrDestinationUnavailable, dest.ID, dest.Kind)
	case in.PAN.IsZero():
		return out, fmt.Errorf("%w: an off-us request needs the card number", outcome.ErrUnsupported)
	}
	switch {
	case dest.Disabled:
		return out, fmt.Errorf("%w: destination %s is disabled", outcome.ErrDestinationUnavailable, dest.ID)
	case c.fwd == nil:
		return out, fmt.Errorf("%w: no forwarder on this node", outcome.ErrDestinationUnavailable)
	}
	credit := dc.account
	req := ForwardRequest{Command: cmd, Kind: in.Kind, Destination: dest, Route: dc.route, Credit: credit, PAN: in.PAN, Intent: in}
	send := c.fwd.Forward
	if in.Advice {
		send = c.fwd.Advise // advice.go
	}
	ans, err := send(ctx, req)
	if err != nil {
		return out, err
	}
	out.Result = store.Result{Status: store.StatusOK, TransferID: ans.TransferID, AuthCode: ans.AuthCode, Replayed: ans.Replayed}
	if ans.Approved {
		out.AuthCode = ans.AuthCode
		return out, nil
	}
	return out, &outcome.HostDecline{Code: ans.RC, Destination: dest.ID, Timeout: ans.TimedOut}
}
