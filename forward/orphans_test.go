package forward_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchd/switchd/forward"
	"github.com/switchd/switchd/sim"
	"github.com/switchd/switchd/store"
)

// A partner reverses a purchase whose destination ops deleted after it
// was approved: the money comes back and the host's 0420 is queued for a
// destination no sender serves. The leader's check finds it (an alarm),
// leaves it while it may still be sent (ops may put the destination
// back), and expires it once past its expiry, as a sender would.
func TestCheckOrphans(t *testing.T) {
	r := newRig(t, sim.DefaultBehavior())
	if _, err := r.buy(31, 700); err != nil {
		t.Fatal(err)
	}
	ctx := r.opsChange(store.OpDeleteDestination, &store.Admin{ID: "demo-issuer", Actor: "alice", Reason: "contract ended"})
	if seen, expired := r.fwd.CheckOrphans(ctx); seen != 0 || expired != 0 {
		t.Fatalf("before the reversal: %d seen, %d expired", seen, expired)
	}
	r.waitFor("the deleted destination's sender stopped", func() bool { return r.fwd.Client("demo-issuer") == nil })
	if _, err := r.reverse(31, 33, 700); err != nil {
		t.Fatalf("reversal: %v", err)
	}
	fw, _ := r.st.Forward("demo-acquirer|100001|000031")
	if fw.SAF == "" {
		t.Fatalf("no 0420 queued: %+v", fw)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(forward.NewCollector(r.fwd, r.st))
	if seen, expired := r.fwd.CheckOrphans(ctx); seen != 1 || expired != 0 {
		t.Fatalf("queued, not expired: %d seen, %d expired", seen, expired)
	}
	if n := metric(t, reg, "switchd_destination_saf_orphaned", map[string]string{"destination": "demo-issuer"}); n != 1 {
		t.Fatalf("orphaned gauge %v, want 1", n)
	}
	e, _ := r.st.SAFEntry(fw.SAF)
	if e.State != store.SAFQueued {
		t.Fatalf("entry %+v", e)
	}
	r.now.Store(e.ExpiresAt - time.Now().UnixNano() + int64(time.Minute)) // the forwarder's clock past its expiry
	if seen, expired := r.fwd.CheckOrphans(ctx); seen != 1 || expired != 1 {
		t.Fatalf("past its expiry: %d seen, %d expired", seen, expired)
	}
	if e, _ := r.st.SAFEntry(fw.SAF); e.State != store.SAFExpired {
		t.Fatalf("entry after the check %+v", e)
	}
	if seen, _ := r.fwd.CheckOrphans(ctx); seen != 0 || len(r.fwd.Orphans()) != 0 {
		t.Fatalf("an expired entry is no longer queued: %d seen, orphans %v", seen, r.fwd.Orphans())
	}
	if adv := r.issuer.Stats().Advices; adv.Received != 0 {
		t.Fatalf("the host got advices: %+v", adv)
	}
}

// A disabled destination has no sender: its advices wait for it, and one
// past its expiry is expired by the leader's check, not reported as an
// orphan.
func TestCheckOrphansDisabled(t *testing.T) {
	r := newRig(t, sim.DefaultBehavior())
	if _, err := r.buy(35, 400); err != nil {
		t.Fatal(err)
	}
	d, _ := r.st.Directory().Destination("demo-issuer")
	off := *d
	off.Disabled = true
	ctx := r.opsChange(store.OpPutDestination, &store.Admin{Destination: &off, Actor: "alice", Reason: "maintenance"})
	r.waitFor("the disabled destination's sender stopped", func() bool { return r.fwd.Client("demo-issuer") == nil })
	if _, err := r.reverse(35, 37, 400); err != nil {
		t.Fatalf("reversal: %v", err)
	}
	fw, _ := r.st.Forward("demo-acquirer|100001|000035")
	if seen, expired := r.fwd.CheckOrphans(ctx); seen != 0 || expired != 0 {
		t.Fatalf("before its expiry: %d seen, %d expired", seen, expired)
	}
	e, _ := r.st.SAFEntry(fw.SAF)
	if e.State != store.SAFQueued {
		t.Fatalf("entry %+v", e)
	}
	r.now.Store(e.ExpiresAt - time.Now().UnixNano() + int64(time.Minute))
	if seen, expired := r.fwd.CheckOrphans(ctx); seen != 0 || expired != 1 || len(r.fwd.Orphans()) != 0 {
		t.Fatalf("past its expiry: %d seen, %d expired, orphans %v", seen, expired, r.fwd.Orphans())
	}
	if e, _ := r.st.SAFEntry(fw.SAF); e.State != store.SAFExpired {
		t.Fatalf("entry after the check %+v", e)
	}
	if adv := r.issuer.Stats().Advices; adv.Received != 0 {
		t.Fatalf("the host got advices: %+v", adv)
	}
}

// opsChange applies an ops change of demo-issuer through raft, as the ops
// API does, and returns a context for the rest of the test.
func (r *rig) opsChange(op store.Op, adm *store.Admin) context.Context {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	r.t.Cleanup(cancel)
	key := fmt.Sprintf("admin|%d|demo-issuer", op)
	res, err := r.cn.Propose(ctx, store.Command{Op: op, Key: key, Fingerprint: key, Time: time.Now().UnixNano(), Admin: adm})
	if err != nil || res.Status != store.StatusOK {
		r.t.Fatalf("%s of demo-issuer: %+v %v", op, res, err)
	}
	return ctx
}
