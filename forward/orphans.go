package forward

import (
	"context"
	"maps"
	"sync"

	"github.com/switchd/switchd/store"
)

// orphans is what the last check found: destination → advices queued
// for it (up to store.SAFBatchMax), for the metrics.
type orphans struct {
	mu     sync.Mutex
	queued map[string]int
}

func (o *orphans) set(m map[string]int) {
	o.mu.Lock()
	o.queued = m
	o.mu.Unlock()
}

// Orphans is what the leader's last check found: each destination the
// directory no longer has, with how many advices wait for it (none on a
// follower, or before the first check).
func (f *Forwarder) Orphans() map[string]int {
	f.orphans.mu.Lock()
	defer f.orphans.mu.Unlock()
	return maps.Clone(f.orphans.queued)
}

// orphanLedger is what CheckOrphans reads besides the SAF queues.
type orphanLedger interface {
	SAFQueueDestinations(max int) ([]string, error)
}

// destinationsScanMax bounds the destinations with queued advices one
// check reads: store bounds live destinations at 256, and as many
// deleted ones again is already a directory in trouble.
const destinationsScanMax = 512

// CheckOrphans looks for advices queued for destinations the directory no
// longer has. No sender takes them: a destination is not deleted while
// its queue holds advices, but a partner's reversal or completion of an
// older off-us payment queues its advice for the payment's destination,
// which may have been deleted since. Each is an alarm (an error log line
// naming the destination and how many wait), and one past its expiry is
// expired as a sender would: the host never heard of it, which
// reconciliation reports as a host break. A disabled destination has no
// sender either: its advices wait for it to be enabled, but those past
// their expiry are expired the same way (an error line, no orphan). It
// returns how many orphans it saw, and how many advices it expired. The
// leader runs it every forward.orphan_check (a minute).
func (f *Forwarder) CheckOrphans(ctx context.Context) (seen, expired int) {
	ol, ok := f.safLedger.(orphanLedger)
	if !ok {
		return 0, 0
	}
	dests, err := ol.SAFQueueDestinations(destinationsScanMax)
	if err != nil {
		f.log.Warn("SAF orphan check", "err", err)
		return 0, 0
	}
	dir := f.ledger.Directory()
	now := f.opt.Now().UnixNano()
	found := map[string]int{}
	defer func() { f.orphans.set(found) }()
	for _, id := range dests {
		d, known := dir.Destination(id)
		if known && !d.Disabled {
			continue // its sender expires what it must
		}
		entries, err := f.safLedger.SAFQueue(id, store.SAFBatchMax)
		if err != nil {
			f.log.Warn("SAF orphan check", "destination", id, "err", err)
			continue
		}
		n := f.expireDue(ctx, id, entries, now)
		expired += n
		if known {
			if n > 0 {
				f.log.Error("SAF advices expired undelivered while their destination is disabled: the host never confirmed the reversals (reconcile by hand)",
					"destination", id, "expired", n)
			}
			continue
		}
		seen += len(entries)
		if left := len(entries) - n; left > 0 {
			found[id] = left
		}
		f.log.Error("advices queued for a destination that no longer exists: no sender takes them (put the destination back with switchctl destinations put, or drop them with switchctl saf drop)",
			"destination", id, "queued", len(entries), "expired_now", n)
	}
	return seen, expired
}

// expireDue expires the entries of destination dest past their expiry at
// now, as its sender would, and returns how many it expired.
func (f *Forwarder) expireDue(ctx context.Context, dest string, entries []store.SAFEntry, now int64) int {
	n := 0
	for _, e := range entries {
		if now < e.ExpiresAt {
			continue
		}
		res, err := f.ledger.Propose(ctx, safCommand(e, store.SAFUpdate{ID: e.ID, Action: store.SAFActionExpire}, now))
		if err == nil && res.Status == store.StatusAlreadyFinal {
			continue // a sender, or another check, got there first
		}
		if err == nil {
			err = res.Status.Err()
		}
		if err != nil {
			f.log.Warn("SAF expiry", "destination", dest, "saf", e.ID, "err", err)
			continue
		}
		n++
	}
	return n
}
