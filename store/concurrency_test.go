package store

import (
	"bytes"
	"io"
	"sync"
	"sync/atomic"
	"testing"
)

// TestReadsSeeWholeBatches reads the whole ledger with one iterator while
// entries are applied and restored: every read must balance (no half
// batch), and the applied index must never go backwards except across a
// Restore to an older snapshot.
func TestReadsSeeWholeBatches(t *testing.T) {
	s := fixture(t)
	data := snapshotBytes(t, s)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var reads atomic.Int64
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				accts, err := s.Accounts("", 100)
				if err != nil {
					t.Error(err)
					return
				}
				var sum int64
				for _, a := range accts {
					if a.Currency == "USD" {
						sum += a.Posted()
					}
				}
				if sum != 0 {
					t.Errorf("read a half-applied batch: posted sums to %d", sum)
					return
				}
				if _, _, err := s.StateHash(); err != nil {
					t.Error(err)
					return
				}
				reads.Add(1)
			}
		}()
	}
	for i := 0; i < 200; i++ {
		// Each entry moves money over several accounts; only whole entries balance.
		mustOK(t, s, postCmd(keyN("a", i), "fund", "card2", 10), postCmd(keyN("b", i), "card2", "merch", 4),
			postCardCmd(keyN("c", i), "h1", "merch", 1, ""))
		if i == 100 {
			if err := s.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
				t.Fatal(err)
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	if reads.Load() == 0 {
		t.Error("readers never ran")
	}
	checkInvariants(t, s)
}
