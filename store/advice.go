package store

import (
	"errors"
	"strconv"
	"strings"
)

// Offline advices of OTC agents (issue 13, docs/ADVICES.md).
//
// An agent on an unreliable link takes payments offline and reports each
// one after reconnecting as an advice (0220 or 0120 without an original).
// The payment already happened at the counter, so an advice is not asked
// for the agent's cash limit: it is an OpPost with Command.Offline, counted
// against the agent's offline limit instead. What that limit bounds is the
// replicated Agent.OfflineHeld: the sum of offline-accepted amounts not yet
// handed in. A settlement reduces it first (the oldest exposure is the cash
// nobody asked the switch about), a reversal keeps it within CashHeld.
// Online postings still need CashHeld + amount <= CashLimit, and CashHeld
// includes offline cash, so CashHeld never exceeds CashLimit +
// OfflineLimit.
//
// An advice is posted in full or not at all: a refused one (over the
// limit, or an agent without one) moves no money and leaves the agent
// unchanged, and its decline is stored under its idempotency key like any
// other, so the agent's retransmission (0221) sees the same code.

// StatusOfflineLimit: an offline advice would take the agent's offline
// cash above its offline limit (or the agent has none).
const StatusOfflineLimit Status = 131

// ErrOfflineLimit is StatusOfflineLimit's error.
var ErrOfflineLimit = errors.New("store: agent offline limit exceeded")

// settleOffline frees offline limit for amt handed in: offline cash is
// settled first, and what is left never exceeds the cash still held.
func (a *Agent) settleOffline(amt int64) {
	a.OfflineHeld = min(max(0, a.OfflineHeld-amt), a.CashHeld)
}

// Advices of partners for off-us cards (issue 13, docs/ADVICES.md): a
// 0220 or 0120 without an original for a card whose BIN routes to an ISO
// 8583 destination is the partner's stand-in: it paid already and tells
// the issuer. OpForwardAdvice takes it in one apply: it posts the transfer
// an approved forward would (the destination's settlement account → the
// partner's route account), records it as a forward (so it has our STAN
// and RRN toward the host, and shows in GET /v1/forwards/{id}), and queues
// the advice in the destination's SAF queue, which the leader's sender
// delivers head-of-line like a reversal (0221 on a repeat). It posts at
// acceptance, not on the host's 0230: an advice is not a request the host
// may decline, the acquirer is owed the money from the moment we accept
// it, and a SAF entry that expires undelivered is an alarm for
// reconciliation either way. A posting the ledger refuses (the
// destination's settlement account at its floor) queues nothing.

// OpForwardAdvice takes a partner's advice for an off-us card:
// Forward.Request as for OpForward, whose TimeoutAt is when the SAF entry
// expires undelivered.
const OpForwardAdvice Op = 31

// forwardAdvice applies OpForwardAdvice (idempotency was checked by
// apply).
func (t *txn) forwardAdvice(c *Command) Result {
	q := c.Forward.Request
	if q == nil || (q.MTI != "0220" && q.MTI != "0120") || !validID(q.Destination) || !validID(q.Debit) ||
		!validID(q.Credit) || q.Debit == q.Credit || !validOptional(q.Route, idBytesMax) ||
		len(q.Fields) > forwardFieldsMax || len(q.PAN) == 0 || len(q.PAN) > wrappedPANBytesMax ||
		len(q.MaskedPAN) > idBytesMax || q.TimeoutAt <= c.Time || c.Partner == "" || !validCurrency(c.Currency) {
		return invalid()
	}
	for id, v := range q.Fields {
		if id < 3 || id > 128 || id == 11 || id == 37 || id == 90 || len(v) > forwardFieldBytesMax {
			return invalid()
		}
	}
	if _, ok := t.directory().Destination(q.Destination); !ok {
		return Result{Status: StatusNotFound, Detail: "destination: no destination " + strconv.Quote(q.Destination)}
	}
	mv := Command{Op: OpPost, Time: c.Time, BusinessDay: c.BusinessDay, Partner: c.Partner, Debit: q.Debit, Credit: q.Credit,
		Amount: c.Amount, Currency: c.Currency, Ref: c.Ref, PayerType: c.PayerType}
	r := t.move(&mv)
	if r.Status != StatusOK {
		return r
	}
	f := &Forward{
		ID: formatID('F', t.nextSeq(keyForwardSeq)), Key: strings.Clone(c.Key), Partner: strings.Clone(c.Partner),
		Destination: q.Destination, Route: q.Route, Debit: q.Debit, Credit: q.Credit,
		Amount: c.Amount, Currency: strings.Clone(c.Currency), BusinessDay: strings.Clone(c.BusinessDay), Time: c.Time,
		TimeoutAt: q.TimeoutAt, PayerType: strings.Clone(c.PayerType), Ref: c.Ref,
		MTI: q.MTI, Fields: q.Fields, PAN: q.PAN, MaskedPAN: q.MaskedPAN,
		State: ForwardAdvised, TransferID: r.TransferID, DecidedAt: c.Time,
	}
	f.SAF = t.queueAdvice(f, c.Time, q.TimeoutAt)
	t.putForward(f)
	t.set(skey1(pfxForwardID, f.ID), []byte(f.Key))
	return Result{Status: StatusOK, TransferID: r.TransferID}
}

// ForwardAdvised is the state of a forward that is a partner's advice:
// posted when accepted, its delivery to the host is its SAF entry's.
const ForwardAdvised = "advised"
