package store

import "errors"

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

// chargeAgentOffline counts amt, collected offline, against the agent's
// offline limit; it returns a decline status when it may not.
func (t *txn) chargeAgentOffline(c *Command, amt int64) Status {
	a := t.agent(c.Agent)
	if a == nil {
		return StatusUnknownAgent
	}
	if a.Currency != c.Currency {
		return StatusCurrencyMismatch
	}
	if amt > a.OfflineLimit-a.OfflineHeld {
		return StatusOfflineLimit
	}
	a.CashHeld += amt
	a.OfflineHeld += amt
	t.putAgentRecord(a)
	return StatusOK
}

// settleOffline frees offline limit for amt handed in: offline cash is
// settled first, and what is left never exceeds the cash still held.
func (a *Agent) settleOffline(amt int64) {
	a.OfflineHeld = min(max(0, a.OfflineHeld-amt), a.CashHeld)
}
