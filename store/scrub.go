package store

// Card numbers in forward records.
//
// A forward keeps the partner's card number, sealed under the KEK, only
// while an advice may still be built from it: the reversal (0420) of a
// partner or of a timeout, the completion (0220) of a hold. Each SAF
// entry carries its own sealed copy, dropped once the host has it
// (SAFActionDelivered); an entry that expired or was dropped keeps it, as
// ops may still retry it. The forward's own copy goes with OpExpire's
// housekeeping once the forward is older than the idempotency retention
// (RetainAfter) and final: not pending, and not an open hold that a
// completion could still capture. By then no partner repeat or reversal
// of the request can find it through the idempotency records either.
//
// OpExpire walks the forwards in the order they were made (f<id>, ids
// drawn from one sequence) from a cursor in the meta keys, at most
// Config.ExpireBatchMax of them per command, and stops at the first one
// that is too young or not yet final: a later forward waits for it, which
// bounds the walk without a time index (forwards are made in time order,
// and none stays pending or held beyond the hold expiry).

// keyForwardScrubbed is the id of the last forward OpExpire has walked
// past: every forward up to it holds no card number.
var keyForwardScrubbed = []byte{pfxMeta, 'f', 's', 'c', 'r', 'u', 'b'}

// scrubStep is how many forwards one read of the walk takes.
const scrubStep = 64

// scrubForwards drops the sealed card number of forwards older than
// retainAfter that are final, and returns how many it scrubbed.
func (t *txn) scrubForwards(retainAfter int64) int {
	cursor, _ := t.get(string(keyForwardScrubbed))
	lo := []byte(skey1(pfxForwardID, string(cursor)))
	if len(cursor) > 0 {
		lo = append(lo, 0) // after the cursor
	}
	n, last, walked := 0, "", 0
	hi := prefixEnd([]byte{pfxForwardID})
walk:
	for walked < t.cfg.ExpireBatchMax {
		// In small steps: the first forward usually stops the walk, and a
		// tick should not read a whole batch's keys to learn that.
		keys := t.scanKeys(lo, hi, min(scrubStep, t.cfg.ExpireBatchMax-walked))
		if len(keys) == 0 {
			break
		}
		for _, k := range keys {
			key, _ := t.get(k)
			f := t.forwardRecord(string(key))
			if f == nil {
				panic("store: apply: forward id index names a missing forward")
			}
			if f.Time >= retainAfter || f.State == ForwardPending || t.openHold(f) {
				break walk
			}
			if len(f.PAN) > 0 {
				f.PAN = nil
				t.putForward(f)
				n++
			}
			last, walked = k[1:], walked+1
		}
		lo = append([]byte(keys[len(keys)-1]), 0)
	}
	if last != "" {
		t.set(string(keyForwardScrubbed), []byte(last))
	}
	return n
}

// openHold reports whether f approved a hold that a completion may still
// capture (its advice needs the card number).
func (t *txn) openHold(f *Forward) bool {
	if f.TransferID == "" {
		return false
	}
	o := t.transfer(f.TransferID)
	return o != nil && o.Status == TransferPending
}
