package store

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
)

// wrappedN stands for a wrapped key: the FSM checks its size, never opens it.
func wrappedN(b byte) []byte { return bytes.Repeat([]byte{b}, 44) }

func macKeyCmd(key string, at int64, m MACKeyChange) Command {
	c := adminCmd(OpPutMACKey, key, &Admin{MACKey: &m})
	c.Time = at
	return c
}

func x919Change(kcv string, w byte, overlap time.Duration) MACKeyChange {
	return MACKeyChange{Partner: "p1", Alg: "x919", Padding: "m1", KCV: kcv, KEK: "ABCDEF", Wrapped: wrappedN(w), Overlap: overlap}
}

func TestMACKeyChangeOverlapAndAudit(t *testing.T) {
	s := adminFixture(t)
	if !OpPutMACKey.IsAdmin() || OpPutMACKey.String() != "put_mac_key" {
		t.Fatalf("op 17: admin %v, %s", OpPutMACKey.IsAdmin(), OpPutMACKey)
	}
	mustOK(t, s, macKeyCmd("m1", t0, x919Change("111111", 1, time.Hour)))
	p, _ := s.Directory().Partner("p1")
	if p.MAC == nil || p.MAC.Current.KCV != "111111" || p.MAC.Previous != nil || p.MAC.Current.Since != t0 ||
		!bytes.Equal(p.MACKeys().Current, wrappedN(1)) {
		t.Fatalf("first key: %+v %+v", p.MAC, p.MACKeys())
	}
	// The second key: the first stays valid until the command's time plus
	// the overlap (the proposer's clock, not the applying node's).
	at := t0 + int64(time.Minute)
	mustOK(t, s, macKeyCmd("m2", at, MACKeyChange{Partner: "p1", Alg: "aes-cmac", KCV: "222222", KEK: "ABCDEF", Wrapped: wrappedN(2), Overlap: 24 * time.Hour}))
	p, _ = s.Directory().Partner("p1")
	if p.MAC.Current.KCV != "222222" || p.MAC.Current.Alg != "aes-cmac" || p.MAC.Previous == nil || p.MAC.Previous.KCV != "111111" ||
		p.MAC.Previous.Until != at+int64(24*time.Hour) || !bytes.Equal(p.MACKeys().Previous, wrappedN(1)) {
		t.Fatalf("second key: %+v %+v", p.MAC, p.MACKeys())
	}
	if !p.MAC.PreviousValid(at+int64(24*time.Hour)-1) || p.MAC.PreviousValid(at+int64(24*time.Hour)) {
		t.Error("previous key validity is not [.., until)")
	}
	// A PUT of the partner keeps its keys: only op 17 changes them.
	cur := *p
	cur.MAC = nil
	cur.WithdrawalMax = 777
	mustOK(t, s, putPartnerCmd("pp1b", cur))
	p, _ = s.Directory().Partner("p1")
	if p.WithdrawalMax != 777 || p.MAC == nil || p.MAC.Current.KCV != "222222" || p.MACKeys() == nil {
		t.Fatalf("partner put dropped the MAC: %+v %+v", p.MAC, p.MACKeys())
	}
	// A third key with no overlap replaces at once and forgets the oldest.
	mustOK(t, s, macKeyCmd("m3", at+1, x919Change("333333", 3, 0)))
	p, _ = s.Directory().Partner("p1")
	if p.MAC.Previous != nil || p.MACKeys().Previous != nil {
		t.Fatalf("no overlap kept a previous key: %+v", p.MAC)
	}
	// Survives a reopen and a snapshot restore, keys attached.
	s2 := reopen(t, s)
	if p, _ := s2.Directory().Partner("p1"); p.MAC == nil || p.MAC.Current.KCV != "333333" || !bytes.Equal(p.MACKeys().Current, wrappedN(3)) {
		t.Fatalf("after reopen: %+v", p)
	}
	dst := openTest(t)
	if err := dst.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, s2)))); err != nil {
		t.Fatal(err)
	}
	if p, _ := dst.Directory().Partner("p1"); p.MAC == nil || !bytes.Equal(p.MACKeys().Current, wrappedN(3)) {
		t.Fatalf("after restore: %+v", p)
	}
	// Audit: one record per change, KCVs and never the wrapped bytes; the
	// partner record's own JSON (views, partner.put audits) has none either.
	recs, _ := s2.Audit(AuditFilter{Object: "partner/p1"})
	var macRecs []AuditRecord
	for _, r := range recs {
		if r.Action == "partner.mac_key" {
			macRecs = append(macRecs, r)
		}
		for _, raw := range []json.RawMessage{r.Before, r.After} {
			if bytes.Contains(raw, []byte("AQEBAQEB")) || bytes.Contains(raw, []byte("wrapped")) { // base64 of 0x01…
				t.Errorf("audit %d %s holds key material: %s", r.Seq, r.Action, raw)
			}
		}
	}
	if len(macRecs) != 3 || !strings.Contains(string(macRecs[1].After), `"kcv":"222222"`) || !strings.Contains(string(macRecs[1].Before), `"kcv":"111111"`) {
		t.Fatalf("mac audit records: %+v", macRecs)
	}
	if b, _ := json.Marshal(p); bytes.Contains(b, []byte("wrapped")) || bytes.Contains(b, []byte("AQEBAQEB")) {
		t.Errorf("partner JSON holds key material: %s", b)
	}
	if v, _ := s2.VerifyAudit(); !v.OK {
		t.Errorf("audit: %+v", v)
	}
	// Removal.
	mustOK(t, s2, macKeyCmd("m4", at+2, MACKeyChange{Partner: "p1", Alg: MACAlgNone}))
	if p, _ := s2.Directory().Partner("p1"); p.MAC != nil || p.MACKeys() != nil {
		t.Fatalf("after none: %+v", p)
	}
	if p, _ := reopen(t, s2).Directory().Partner("p1"); p.MAC != nil {
		t.Fatalf("after none and reopen: %+v", p)
	}
}

func TestMACKeyChangeRefusals(t *testing.T) {
	s := adminFixture(t)
	mustOK(t, s, macKeyCmd("m1", t0, x919Change("111111", 1, time.Hour)))
	audit0, _ := s.Audit(AuditFilter{})
	noReason := macKeyCmd("r0", t0, x919Change("999999", 9, 0))
	noReason.Admin.Reason = " "
	cases := []struct {
		name  string
		cmd   Command
		want  Status
		field string
	}{
		{"no reason", noReason, StatusInvalidChange, "reason"},
		{"unknown partner", macKeyCmd("r1", t0, MACKeyChange{Partner: "zz", Alg: "x919", Padding: "m1", KCV: "999999", KEK: "ABCDEF", Wrapped: wrappedN(9)}), StatusNotFound, "mac_key.partner"},
		{"unknown alg", macKeyCmd("r2", t0, MACKeyChange{Partner: "p1", Alg: "des", Padding: "m1", KCV: "999999", KEK: "ABCDEF", Wrapped: wrappedN(9)}), StatusInvalidChange, "mac_key.alg"},
		{"x919 without padding", macKeyCmd("r3", t0, MACKeyChange{Partner: "p1", Alg: "x919", KCV: "999999", KEK: "ABCDEF", Wrapped: wrappedN(9)}), StatusInvalidChange, "mac_key.alg"},
		{"cmac with padding", macKeyCmd("r4", t0, MACKeyChange{Partner: "p1", Alg: "aes-cmac", Padding: "m2", KCV: "999999", KEK: "ABCDEF", Wrapped: wrappedN(9)}), StatusInvalidChange, "mac_key.alg"},
		{"bad kcv", macKeyCmd("r5", t0, x919Change("99999g", 9, 0)), StatusInvalidChange, "mac_key.kcv"},
		{"lower-case kcv", macKeyCmd("r6", t0, x919Change("abcdef", 9, 0)), StatusInvalidChange, "mac_key.kcv"},
		{"no kek", macKeyCmd("r7", t0, MACKeyChange{Partner: "p1", Alg: "x919", Padding: "m1", KCV: "999999", Wrapped: wrappedN(9)}), StatusInvalidChange, "mac_key.kek"},
		{"short wrapped", macKeyCmd("r8", t0, MACKeyChange{Partner: "p1", Alg: "x919", Padding: "m1", KCV: "999999", KEK: "ABCDEF", Wrapped: wrappedN(9)[:20]}), StatusInvalidChange, "mac_key.wrapped"},
		{"overlap too long", macKeyCmd("r9", t0, x919Change("999999", 9, 31*24*time.Hour)), StatusInvalidChange, "mac_key.overlap"},
		{"negative overlap", macKeyCmd("r10", t0, x919Change("999999", 9, -time.Second)), StatusInvalidChange, "mac_key.overlap"},
		{"same key again", macKeyCmd("r11", t0, x919Change("111111", 9, time.Hour)), StatusInvalidChange, "mac_key.kcv"},
		{"none with a key", macKeyCmd("r12", t0, MACKeyChange{Partner: "p1", Alg: MACAlgNone, KCV: "999999"}), StatusInvalidChange, "mac_key.alg"},
		{"none on a partner without", macKeyCmd("r13", t0, MACKeyChange{Partner: "ag", Alg: MACAlgNone}), StatusInvalidChange, "mac_key.alg"},
		{"no change", adminCmd(OpPutMACKey, "r14", &Admin{}), StatusInvalidChange, "mac_key"},
	}
	for _, c := range cases {
		r := run1(t, s, c.cmd)
		if r.Status != c.want || !strings.HasPrefix(r.Detail, c.field+":") {
			t.Errorf("%s: %v %q, want %v naming %s", c.name, r.Status, r.Detail, c.want, c.field)
		}
		if _, ok, _ := s.Replay(c.cmd.Key, c.cmd.Fingerprint); ok {
			t.Errorf("%s: refusal stored under its key", c.name)
		}
	}
	// Nothing happened: the same key, no audit record.
	if p, _ := s.Directory().Partner("p1"); p.MAC.Current.KCV != "111111" || p.MAC.Previous != nil {
		t.Errorf("refusals changed the key: %+v", p.MAC)
	}
	if audit1, _ := s.Audit(AuditFilter{}); len(audit1) != len(audit0) {
		t.Errorf("refusals appended %d audit records", len(audit1)-len(audit0))
	}
}
