package settle

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/switchd/switchd/store"
)

// forwardsOfDay records, for partner acq on 2026-03-02, three purchases
// forwarded to host "iss" that timed out (each queues its 0420): one the
// host confirms, one it approves late after the timeout, one whose
// advice expires unconfirmed; and one the host approves in time (an
// ordinary transfer row).
func forwardsOfDay(t *testing.T, l *ledger) {
	t.Helper()
	seedAccounts(t, l)
	at := tBase.Add(time.Hour)
	l.must(t, store.Command{Op: store.OpPutDestination, Key: "dest|iss", Fingerprint: "fp", Time: at.UnixNano(),
		Admin: &store.Admin{Actor: "alice", Reason: "test", Destination: &store.Destination{ID: "iss", Kind: store.DestinationKindISO8583,
			SettlementAccount: "fund", BINs: []string{"400000"},
			ISO8583: &store.HostDestination{Addrs: []string{"127.0.0.1:9"}, Dialect: "iso87ascii", Header: "binary2", PoolSize: 1, TimeoutMs: 1000}}}})
	fwd := func(key string, amt int64, outcome, rc, auth string) {
		c := txn(store.OpForward, key, amt, at)
		c.Forward = &store.ForwardCommand{Request: &store.ForwardRequest{Destination: "iss", Debit: "fund", Credit: "acq-settle", MTI: "0200",
			Fields:    map[int]string{3: "000000", 4: "000000000100", 7: "0302100000", 32: "100001", 49: "840"},
			MaskedPAN: "400000******0002", TimeoutAt: at.Add(5 * time.Second).UnixNano()}}
		r := store.Command{Op: store.OpForwardResult, Key: "fwd|" + outcome + "|" + key, Fingerprint: "fp", Time: at.Add(time.Second).UnixNano(),
			Forward: &store.ForwardCommand{Result: &store.ForwardResult{Key: key, Outcome: outcome, RC: rc, AuthCode: auth, Reason: "timeout",
				SAFExpiresAt: at.Add(time.Hour).UnixNano()}}}
		l.must(t, c, r)
	}
	fwd("fwd-000011", 100, store.OutcomeTimeout, "", "")
	fwd("fwd-000012", 200, store.OutcomeTimeout, "", "")
	fwd("fwd-000013", 300, store.OutcomeTimeout, "", "")
	fwd("fwd-000014", 400, store.OutcomeApproved, "00", "A00014")
	saf := func(key, id, action string, at time.Time) store.Command {
		return store.Command{Op: store.OpSAFUpdate, Key: key, Fingerprint: key, Time: at.UnixNano(),
			Forward: &store.ForwardCommand{SAF: &store.SAFUpdate{ID: id, Action: action, RC: "00"}}}
	}
	l.must(t, saf("s1", "S00000000000001", store.SAFActionDelivered, at.Add(2*time.Second)))
	late := store.Command{Op: store.OpForwardResult, Key: "fwd|approved|fwd-000012", Fingerprint: "fp", Time: at.Add(3 * time.Second).UnixNano(),
		Forward: &store.ForwardCommand{Result: &store.ForwardResult{Key: "fwd-000012", Outcome: store.OutcomeApproved, RC: "00", AuthCode: "A00012", Reason: "late"}}}
	l.must(t, late, saf("s2", "S00000000000002", store.SAFActionDelivered, at.Add(4*time.Second)))
	l.must(t, saf("s3", "S00000000000003", store.SAFActionExpire, at.Add(2*time.Hour)))
}

// The settlement file shows each timed-out forward as a pair of "A"
// records (the partner's request, timed out; the 0420 owed to the host,
// naming it), outside the trailer's money. Reconciliation reports the
// late approval and the expired advice as host status breaks, and no
// break for the pair the host confirmed.
func TestReversedForwardsInSettlementAndRecon(t *testing.T) {
	l := newLedger(t)
	forwardsOfDay(t, l)
	csv, _ := settlementBytes(t, l, "2026-03-02", "acq")
	var pairs []string
	for _, line := range strings.Split(strings.TrimSpace(string(csv)), "\n") {
		if strings.HasPrefix(line, "A,") {
			pairs = append(pairs, line)
		}
	}
	if len(pairs) != 6 {
		t.Fatalf("%d A records, want 3 pairs:\n%s", len(pairs), csv)
	}
	orig, adv := strings.Split(pairs[0], ","), strings.Split(pairs[1], ",")
	if orig[4] != "financial" || orig[7] != "000011" || orig[12] != "1.00" || orig[16] != "timed_out" ||
		adv[4] != "reversal_advice" || adv[5] != "0420" || adv[16] != "reversed" || adv[17] != orig[3] || adv[19] != "000011" {
		t.Fatalf("pair:\n%s\n%s", pairs[0], pairs[1])
	}
	if !strings.Contains(string(csv), "\nT,2026-03-02,acq,USD,1,1,0.00,4.00,4.00\n") {
		t.Fatalf("trailer counts only the approved forward's transfer:\n%s", csv)
	}
	if strings.Contains(string(csv), "4000000000000002") {
		t.Fatal("a card number in the settlement file")
	}

	sym := newSymbols()
	res, err := reconcile(context.Background(), l, &reconInput{id: "R", day: "2026-03-02", partner: "acq", sym: sym})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts[B4] != 2 || len(res.Breaks) != 2 {
		t.Fatalf("breaks %+v", res.Breaks)
	}
	late, expired := res.Breaks[0], res.Breaks[1]
	if late.STAN != "000012" || late.Source != "host" || !strings.Contains(late.Detail, "approved after the timeout") ||
		expired.STAN != "000013" || !strings.Contains(expired.Detail, "expired unconfirmed") || expired.Ours.Status != "timed_out" {
		t.Fatalf("breaks %+v %+v", late, expired)
	}

	// A partner that agrees sends our file back: its A records moved no
	// money and are skipped, so they are no B1 (only the host's two).
	in := &reconInput{id: "R2", day: "2026-03-02", partner: "acq", sym: newSymbols()}
	if in.partnerRows, err = parseFile("partner.csv", bytes.NewReader(csv), DefaultPartnerMapping(), 1<<20, in.sym, "acq"); err != nil || len(in.partnerRows) != 1 {
		t.Fatalf("partner file (%d rows): %v", len(in.partnerRows), err)
	}
	if res, err := reconcile(context.Background(), l, in); err != nil || len(res.Breaks) != 2 || res.Counts[B1] != 0 || res.Counts[B4] != 2 {
		t.Fatalf("our own file back: %v %+v", err, res)
	}
}
