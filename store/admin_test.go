package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

func adminCmd(op Op, key string, a *Admin) Command {
	if a.Actor == "" {
		a.Actor = "alice"
	}
	if a.Reason == "" {
		a.Reason = "test"
	}
	return Command{Op: op, Key: key, Fingerprint: "fp-" + key, Time: t0, Admin: a}
}

func putPartnerCmd(key string, p Partner) Command {
	return adminCmd(OpPutPartner, key, &Admin{Partner: &p})
}

func putRouteCmd(key string, r Route) Command {
	return adminCmd(OpPutRoute, key, &Admin{Route: &r})
}

// adminFixture is fixture plus partner p1 (acquirer 1001, settles to
// settle) and partner ag (OTC agents, acquirer 2002).
func adminFixture(t *testing.T) *Store {
	t.Helper()
	s := fixture(t)
	mustOK(t, s,
		putPartnerCmd("pp1", Partner{ID: "p1", AcquirerIDs: []string{"001001"}, Lanes: []string{"l1"},
			SettlementAccount: "settle", PayerType: PayerBankCustomer, PayerTypes: []string{PayerMFSUser}}),
		putPartnerCmd("pag", Partner{ID: "ag", AcquirerIDs: []string{"2002"}, Lanes: []string{"l1"},
			SettlementAccount: "settle", PayerType: PayerOTCAgent}))
	return s
}

func TestRoutesApplyAndIndex(t *testing.T) {
	s := adminFixture(t)
	r := mustOK(t, s,
		putRouteCmd("r1", Route{ID: "default", Destination: DestinationLedger}),
		putRouteCmd("r2", Route{ID: "elec", BillType: "ELEC", Destination: DestinationLedger, SettlementAccount: "merch"}))
	if r[1].Version != 2 {
		t.Errorf("version after two puts = %d, want 2", r[1].Version)
	}
	d := s.Directory()
	got, ok := d.Lookup(RouteKey{BillType: "ELEC", PayerType: PayerBankCustomer, Partner: "p1"})
	if !ok || got.ID != "elec" {
		t.Fatalf("ELEC routes to %+v", got)
	}
	if got, _ := d.Lookup(RouteKey{BillType: "WATR", PayerType: PayerBankCustomer, Partner: "p1"}); got.ID != "default" {
		t.Errorf("WATR routes to %q", got.ID)
	}
	if p, ok := d.PartnerByAcquirer("1001"); !ok || p.ID != "p1" {
		t.Errorf("acquirer 1001 (stored 001001) → %v %v", p, ok)
	}
	// A partner-specific rule for bill type * loses to a bill-type rule:
	// bill type outranks partner at equal specificity.
	mustOK(t, s, putRouteCmd("r3", Route{ID: "p1-all", Partner: "p1", Destination: DestinationLedger, SettlementAccount: "settle"}))
	if got, _ := s.Directory().Lookup(RouteKey{BillType: "ELEC", PayerType: "x", Partner: "p1"}); got.ID != "elec" {
		t.Errorf("ELEC from p1 → %q, want elec", got.ID)
	}
	_, steps := s.Directory().Explain(RouteKey{BillType: "ELEC", PayerType: "x", Partner: "p1"})
	if n := len(steps); n != 5 || steps[n-1].Route.ID != "elec" || steps[0].Route != nil {
		t.Errorf("explain: %+v", steps)
	}
	// Survives a reopen: the directory is rebuilt from pebble.
	s2 := reopen(t, s)
	if got, ok := s2.Directory().Lookup(RouteKey{BillType: "ELEC", Partner: "p1", PayerType: "x"}); !ok || got.ID != "elec" || s2.Directory().Version() != 3 {
		t.Errorf("after reopen: %+v v%d", got, s2.Directory().Version())
	}
}

func TestAdminRefusals(t *testing.T) {
	s := adminFixture(t)
	mustOK(t, s, putRouteCmd("r1", Route{ID: "default", Destination: DestinationLedger}))
	audit0, _ := s.Audit(AuditFilter{})
	cases := []struct {
		name  string
		cmd   Command
		want  Status
		field string
	}{
		{"no actor", Command{Op: OpPutRoute, Key: "k1", Time: t0, Admin: &Admin{Reason: "x", Route: &Route{ID: "a", Destination: "ledger"}}}, StatusInvalidChange, "actor"},
		{"no reason", Command{Op: OpPutRoute, Key: "k2", Time: t0, Admin: &Admin{Actor: "a", Reason: " ", Route: &Route{ID: "a", Destination: "ledger"}}}, StatusInvalidChange, "reason"},
		{"unknown account", putRouteCmd("k3", Route{ID: "a", BillType: "X", Destination: "ledger", SettlementAccount: "nope"}), StatusInvalidChange, "route.settlement_account"},
		{"unknown partner", putRouteCmd("k4", Route{ID: "a", Partner: "zz", Destination: "ledger"}), StatusInvalidChange, "route.partner"},
		{"unknown destination", putRouteCmd("k5", Route{ID: "a", BillType: "X", Destination: "mars"}), StatusInvalidChange, "route.destination"},
		{"same key", putRouteCmd("k6", Route{ID: "other", BillType: "*", Destination: "ledger"}), StatusInvalidChange, "route"},
		{"currency", putRouteCmd("k7", Route{ID: "a", Partner: "p1", Destination: "ledger", SettlementAccount: "eur1"}), StatusInvalidChange, "route.settlement_account"},
		{"bad id", putRouteCmd("k8", Route{ID: "a b", Destination: "ledger"}), StatusInvalidChange, "route.id"},
		{"delete missing", adminCmd(OpDeleteRoute, "k9", &Admin{ID: "nope"}), StatusNotFound, "id"},
		{"stale replace", adminCmd(OpReplaceRoutes, "k10", &Admin{BaseVersion: 0, Routes: []Route{{ID: "x", Destination: "ledger"}}}), StatusVersionConflict, "base_version"},
		{"dup id in replace", adminCmd(OpReplaceRoutes, "k11", &Admin{BaseVersion: 1, Routes: []Route{{ID: "x", Destination: "ledger"}, {ID: "x", BillType: "B", Destination: "ledger"}}}), StatusInvalidChange, "routes[1].id"},
		{"acquirer taken", putPartnerCmd("k12", Partner{ID: "p9", AcquirerIDs: []string{"1001"}, PayerType: "x"}), StatusInvalidChange, "partner.acquirer_ids"},
		{"agent under bank partner", adminCmd(OpPutAgent, "k13", &Admin{Agent: &Agent{Partner: "p1", Terminal: "T1", Currency: "USD", CashLimit: 10}}), StatusInvalidChange, "agent.partner"},
	}
	for _, c := range cases {
		r := run1(t, s, c.cmd)
		if r.Status != c.want || !strings.HasPrefix(r.Detail, c.field+":") {
			t.Errorf("%s: %v %q, want %v naming %s", c.name, r.Status, r.Detail, c.want, c.field)
		}
		// Not stored: the same key with a corrected change is free.
		if _, ok, _ := s.Replay(c.cmd.Key, c.cmd.Fingerprint); ok {
			t.Errorf("%s: refusal stored under its key", c.name)
		}
	}
	// Nothing changed: the same rules, partners and audit records.
	if audit1, _ := s.Audit(AuditFilter{}); len(audit1) != len(audit0) {
		t.Errorf("refusals appended %d audit records", len(audit1)-len(audit0))
	}
	d := s.Directory()
	if rs := d.Routes(); len(rs) != 1 || d.Version() != 1 || len(d.Partners()) != 2 {
		t.Errorf("directory changed: v%d %+v %+v", d.Version(), rs, d.Partners())
	}
	if v, _ := s.VerifyAudit(); !v.OK {
		t.Errorf("audit: %+v", v)
	}
}

func TestReplaceRoutes10k(t *testing.T) {
	s := adminFixture(t)
	mustOK(t, s, putRouteCmd("r1", Route{ID: "old", BillType: "OLD", Destination: DestinationLedger}))
	routes := make([]Route, 10_000)
	for i := range routes {
		routes[i] = Route{ID: fmt.Sprintf("r%05d", i), BillType: fmt.Sprintf("B%05d", i), Destination: DestinationLedger, SettlementAccount: "merch"}
	}
	c := adminCmd(OpReplaceRoutes, "rep", &Admin{BaseVersion: 1, Routes: routes})
	data, err := EncodeBatch([]Command{c})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("10,000-rule replace: one command of %d bytes", len(data))
	r := run1(t, s, c)
	if r.Status != StatusOK || r.Version != 2 {
		t.Fatalf("replace: %+v", r)
	}
	d := s.Directory()
	if len(d.Routes()) != 10_000 {
		t.Errorf("%d rules", len(d.Routes()))
	}
	if _, ok := d.Route("old"); ok {
		t.Error("old rule survived the replace")
	}
	if got, ok := d.Lookup(RouteKey{BillType: "B04711", PayerType: "x", Partner: "p1"}); !ok || got.ID != "r04711" {
		t.Errorf("lookup: %+v", got)
	}
	recs, _ := s.Audit(AuditFilter{Object: "routes"})
	if len(recs) != 1 || !strings.Contains(string(recs[0].After), `"rules":10000`) {
		t.Errorf("audit of replace: %+v", recs)
	}
	// A repeat of the same command is a replay, not a version conflict.
	if r := run1(t, s, c); !r.Replayed || r.Status != StatusOK {
		t.Errorf("repeat: %+v", r)
	}
}

func TestPartnerSuspendAudited(t *testing.T) {
	s := adminFixture(t)
	p, _ := s.Directory().Partner("p1")
	sp := *p
	sp.Suspended = true
	mustOK(t, s, adminCmd(OpPutPartner, "susp", &Admin{Actor: "bob", Remote: "10.0.0.1:5000", Reason: "partner outage", Partner: &sp}))
	if p, _ := s.Directory().Partner("p1"); !p.Suspended {
		t.Fatal("not suspended")
	}
	recs, err := s.Audit(AuditFilter{Object: "partner/p1"})
	if err != nil || len(recs) != 2 {
		t.Fatalf("audit: %v %+v", err, recs)
	}
	r := recs[1]
	if r.Action != "partner.suspend" || r.Actor != "bob" || r.Remote != "10.0.0.1:5000" || r.Reason != "partner outage" ||
		!strings.Contains(string(r.Before), `"id":"p1"`) || !strings.Contains(string(r.After), `"suspended":true`) {
		t.Errorf("record: %+v", r)
	}
}

// A suspension names the partner, not a copy of it: a change of the
// partner applied just before it (a PUT racing the suspend) stays.
func TestSuspendFlipsOnlyTheFlag(t *testing.T) {
	s := adminFixture(t)
	p, _ := s.Directory().Partner("p1")
	moved := *p
	moved.Lanes = []string{"l1", "l2"}
	on, off := true, false
	mustOK(t, s,
		adminCmd(OpPutPartner, "put", &Admin{Partner: &moved}),
		adminCmd(OpPutPartner, "susp", &Admin{ID: "p1", Suspend: &on}))
	got, _ := s.Directory().Partner("p1")
	if !got.Suspended || len(got.Lanes) != 2 {
		t.Fatalf("after a put and a suspend: %+v", got)
	}
	mustOK(t, s, adminCmd(OpPutPartner, "res", &Admin{ID: "p1", Suspend: &off}))
	if got, _ := s.Directory().Partner("p1"); got.Suspended || len(got.Lanes) != 2 {
		t.Fatalf("after resume: %+v", got)
	}
	if recs, _ := s.Audit(AuditFilter{Object: "partner/p1"}); len(recs) != 4 || recs[2].Action != "partner.suspend" || recs[3].Action != "partner.resume" {
		t.Errorf("audit: %+v", recs)
	}
	if r := run1(t, s, adminCmd(OpPutPartner, "nope", &Admin{ID: "zz", Suspend: &on})); r.Status != StatusNotFound {
		t.Errorf("suspend of no partner: %+v", r)
	}
}

func TestAgentCashLimit(t *testing.T) {
	s := adminFixture(t)
	mustOK(t, s, adminCmd(OpPutAgent, "ag1", &Admin{Agent: &Agent{Partner: "ag", Terminal: "T1", Currency: "USD", CashLimit: 1000}}))
	id := AgentID("ag", "T1")
	pay := func(key string, amt int64) Command {
		c := postCardCmd(key, "h1", "merch", amt, "")
		c.Partner, c.PayerType, c.Agent = "ag", PayerOTCAgent, id
		return c
	}
	mustOK(t, s, pay("c1", 600), pay("c2", 400))
	before := getAcct(t, s, "merch")
	if r := run1(t, s, pay("c3", 1)); r.Status != StatusAgentLimit {
		t.Fatalf("over limit: %+v", r)
	}
	if got := getAcct(t, s, "merch"); balOf(got) != balOf(before) {
		t.Error("refused posting moved money")
	}
	// Its repeat is refused the same way (the decline is stored).
	if r := run1(t, s, pay("c3", 1)); r.Status != StatusAgentLimit || !r.Replayed {
		t.Errorf("repeat: %+v", r)
	}
	settle := func(key string, amt int64) Command {
		return adminCmd(OpSettleAgent, key, &Admin{Settlement: &AgentSettlement{Agent: id, Amount: amt, Currency: "USD", Reference: key}})
	}
	if r := run1(t, s, settle("s0", 1001)); r.Status != StatusInvalidChange {
		t.Errorf("settling more than held: %+v", r)
	}
	mustOK(t, s, settle("s1", 300))
	if r := run1(t, s, settle("s1", 300)); !r.Replayed {
		t.Errorf("settlement repeat not a replay: %+v", r)
	}
	a, _ := s.Agent(id)
	if a.CashHeld != 700 || a.Settled != 300 {
		t.Errorf("agent after settling: %+v", a)
	}
	c4 := pay("c4", 300)
	c4.OriginalRef = "C4"
	mustOK(t, s, c4)
	if r := run1(t, s, pay("c5", 1)); r.Status != StatusAgentLimit {
		t.Errorf("limit not back: %+v", r)
	}
	xfers, _ := s.Transfers(TransferFilter{PayerType: PayerOTCAgent})
	if len(xfers) != 3 || xfers[0].Agent != id || xfers[0].PayerType != PayerOTCAgent {
		t.Fatalf("agent transfers: %+v", xfers)
	}
	// A reversal gives the cash back to the customer and frees the limit.
	mustOK(t, s, Command{Op: OpReverse, Key: "rv", Fingerprint: "rv", Time: t0 + 2, BusinessDay: "2026-03-02", Partner: "ag",
		Original: "C4", Amount: 100, Currency: "USD"})
	if a, _ := s.Agent(id); a.CashHeld != 900 {
		t.Errorf("after reversing 100: %+v", a)
	}
	mustOK(t, s, pay("c5b", 100))
	// Unknown agent: refused, nothing posted.
	c := pay("c6", 1)
	c.Agent = AgentID("ag", "NOPE")
	if r := run1(t, s, c); r.Status != StatusUnknownAgent {
		t.Errorf("unknown agent: %+v", r)
	}
}

func TestAuditChainVerifyFindsTampering(t *testing.T) {
	s := adminFixture(t)
	mustOK(t, s,
		putRouteCmd("r1", Route{ID: "default", Destination: DestinationLedger}),
		putRouteCmd("r2", Route{ID: "elec", BillType: "ELEC", Destination: DestinationLedger, SettlementAccount: "merch"}))
	v, err := s.VerifyAudit()
	if err != nil || !v.OK || v.Records < 4 {
		t.Fatalf("verify: %v %+v", err, v)
	}
	recs, _ := s.Audit(AuditFilter{Object: "route/elec"})
	if len(recs) != 1 {
		t.Fatalf("records: %+v", recs)
	}
	target := recs[0].Seq
	_, h0, _ := s.StateHash()
	cfg := s.cfg
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Change the reason of one record in pebble directly, as someone with
	// the disk would.
	db, err := pebble.Open(cfg.Dir, &pebble.Options{Logger: pebbleLogger{s.log}})
	if err != nil {
		t.Fatal(err)
	}
	v0, closer, err := db.Get(auditKey(target))
	if err != nil {
		t.Fatal(err)
	}
	var rec AuditRecord
	if err := json.Unmarshal(bytes.Clone(v0), &rec); err != nil {
		t.Fatal(err)
	}
	_ = closer.Close()
	rec.Reason = "nobody will notice"
	if err := db.Set(auditKey(target), mustJSON(&rec), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openCfg(t, cfg)
	v, err = s2.VerifyAudit()
	if err != nil || v.OK || v.BadSeq != target || !strings.Contains(v.Problem, "does not match its hash") {
		t.Errorf("verify after tampering: %v %+v (target %d)", err, v, target)
	}
	if _, h1, _ := s2.StateHash(); h1 == h0 {
		t.Error("state hash blind to the audit chain")
	}
}

func TestAuditRecordsDayAndAccountChanges(t *testing.T) {
	s := openTest(t)
	run(t, s, createCmd(acct("a1", KindBiller, "USD")))
	mustOK(t, s, Command{Op: OpOpenDay, Time: t0, BusinessDay: "2026-03-02"})
	mustOK(t, s, Command{Op: OpCloseDay, Time: t0 + 1, BusinessDay: "2026-03-02", NextDay: "2026-03-03",
		Admin: &Admin{Actor: "carol", Remote: "127.0.0.1:1"}})
	recs, err := s.Audit(AuditFilter{})
	if err != nil || len(recs) != 3 {
		t.Fatalf("%v %+v", err, recs)
	}
	if recs[0].Action != "account.create" || recs[0].Actor != "system" || recs[1].Action != "day.open" ||
		recs[2].Action != "day.close" || recs[2].Actor != "carol" {
		t.Errorf("records: %+v", recs)
	}
	// Closing again is a replay: no second record.
	mustOK(t, s, Command{Op: OpCloseDay, Time: t0 + 2, BusinessDay: "2026-03-02", NextDay: "2026-03-03"})
	if recs, _ := s.Audit(AuditFilter{}); len(recs) != 3 {
		t.Errorf("replayed close appended: %d records", len(recs))
	}
}

func TestDirectorySurvivesSnapshotRestore(t *testing.T) {
	src := adminFixture(t)
	mustOK(t, src, putRouteCmd("r1", Route{ID: "elec", BillType: "ELEC", Destination: DestinationLedger, SettlementAccount: "merch"}))
	data := snapshotBytes(t, src)
	dst := openTest(t)
	if err := dst.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if r, ok := dst.Directory().Route("elec"); !ok || r.SettlementAccount != "merch" {
		t.Errorf("restored directory: %+v", r)
	}
	if _, ok := dst.Directory().PartnerByAcquirer("2002"); !ok {
		t.Error("restored directory lost partners")
	}
	if v, _ := dst.VerifyAudit(); !v.OK {
		t.Errorf("restored audit: %+v", v)
	}
}

func TestAdminEncodingRoundTrip(t *testing.T) {
	c := adminCmd(OpPutRoute, "k", &Admin{Actor: "a", Remote: "r", Reason: "why", Route: &Route{ID: "x", Destination: "ledger"}})
	c.PayerType, c.Agent = PayerOTCAgent, "ag:T1"
	data, err := EncodeBatch([]Command{c})
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeBatch(data)
	if err != nil || got[0].Admin == nil || *got[0].Admin.Route != *c.Admin.Route || got[0].Admin.Reason != "why" ||
		got[0].PayerType != PayerOTCAgent || got[0].Agent != "ag:T1" {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	// An admin blob that is no JSON is corrupt, not a panic.
	bad := bytes.Replace(data, []byte(`{"actor"`), []byte(`{"actor`), 1)
	if _, err := DecodeBatch(bad); !errors.Is(err, ErrCorrupt) {
		t.Errorf("bad admin: %v", err)
	}
}

// BenchmarkRouteLookup10k: with 10,000 rules a lookup is a few map
// probes, no allocation (issue 10: ≤ 1 µs, 0 allocs).
func BenchmarkRouteLookup10k(b *testing.B) {
	partners := make([]Partner, 100)
	for i := range partners {
		partners[i] = Partner{ID: fmt.Sprintf("p%03d", i), AcquirerIDs: []string{fmt.Sprint(1000 + i)}, PayerType: PayerBankCustomer}
	}
	routes := make([]Route, 0, 10_000)
	for i := 0; len(routes) < 10_000; i++ {
		routes = append(routes, Route{ID: fmt.Sprintf("r%05d", i), BillType: fmt.Sprintf("B%03d", i%100),
			PayerType: []string{PayerBankCustomer, PayerMFSUser, PayerOTCAgent, Wildcard}[i/100%4],
			Partner:   partners[i/400%100].ID, Destination: DestinationLedger})
	}
	routes = append(routes, Route{ID: "default", Destination: DestinationLedger})
	d := NewDirectory(partners, routes)
	keys := []RouteKey{
		{BillType: "B042", PayerType: PayerMFSUser, Partner: "p007"}, // probably falls back several levels
		{BillType: "NONE", PayerType: "nobody", Partner: "p999"},     // all eight probes, the default
		{BillType: routes[4711].BillType, PayerType: routes[4711].PayerType, Partner: routes[4711].Partner},
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := d.Lookup(keys[i%len(keys)]); !ok {
			b.Fatal("no route")
		}
	}
}

// Pins with a not-after: a partner may hold two live pins (the
// certificate in use and its successor), never three at the command's
// time; pins past their not-after may stay in the record (a suspension
// rewrites it) and name nobody. Which pins are live is judged at
// Command.Time, so replaying the same entry decides alike. Each refusal
// stores nothing.
func TestPartnerCertPins(t *testing.T) {
	s := adminFixture(t)
	at := time.Unix(0, t0)
	pin := func(c string, notAfter time.Time) CertPin {
		return CertPin{SHA256: strings.Repeat(c, 64), NotAfter: notAfter}
	}
	base, _ := s.Directory().Partner("p1")
	with := func(key string, pins ...CertPin) Command {
		p := *base
		p.CertPins = pins
		return putPartnerCmd(key, p)
	}
	old, next, third := pin("a", at.Add(time.Hour)), pin("b", at.Add(48*time.Hour)), pin("c", at.Add(72*time.Hour))
	gone := pin("d", at.Add(-time.Hour)) // past its not-after at the command's time
	for _, c := range []struct {
		name string
		cmd  Command
		want string // "" for OK, else the detail's start
	}{
		{"three live", with("k1", old, next, third), "partner.cert_pins: 3 pins live at once, at most 2"},
		{"no not_after", with("k2", CertPin{SHA256: strings.Repeat("a", 64)}), "partner.cert_pins: aaaaaaaaaaaaaaaa…: not_after is required"},
		{"twice", with("k3", old, old), "partner.cert_pins: aaaaaaaaaaaaaaaa… appears twice"},
		{"upper case", with("k4", pin("A", at.Add(time.Hour))), "partner.cert_pins:"},
		{"too many", with("k5", pin("1", at), pin("2", at), pin("3", at), pin("4", at), pin("5", at), pin("6", at), pin("7", at), pin("8", at), pin("9", at)), "partner.cert_pins: 9 entries, at most 8"},
		{"two live and one expired", with("k6", gone, old, next), ""},
	} {
		r := run1(t, s, c.cmd)
		switch {
		case c.want == "" && r.Status != StatusOK:
			t.Errorf("%s: %v %s", c.name, r.Status, r.Detail)
		case c.want != "" && (r.Status != StatusInvalidChange || !strings.HasPrefix(r.Detail, c.want)):
			t.Errorf("%s: %v %q, want %q", c.name, r.Status, r.Detail, c.want)
		}
	}
	p, _ := s.Directory().Partner("p1")
	if len(p.CertPins) != 3 {
		t.Fatalf("stored pins: %+v", p.CertPins)
	}
	// The same three pins an hour later: old has expired by then, so a
	// successor fits beside next.
	later := with("k7", gone, old, next, third)
	later.Time = at.Add(2 * time.Hour).UnixNano()
	if r := run1(t, s, later); r.Status != StatusOK {
		t.Fatalf("a third pin once the first has expired: %v %s", r.Status, r.Detail)
	}
	// A suspension rewrites the record whatever the proposer's clock
	// says of its pins (at t0, three of them would be live).
	on := true
	mustOK(t, s, adminCmd(OpPutPartner, "susp", &Admin{ID: "p1", Suspend: &on}))

	p, _ = s.Directory().Partner("p1")
	for _, c := range []struct {
		pin  string
		at   time.Time
		want bool
	}{
		{old.SHA256, at, true},
		{old.SHA256, old.NotAfter, false}, // the not-after itself is past it
		{old.SHA256, time.Time{}, false},  // no handshake time: nobody
		{next.SHA256, old.NotAfter, true},
		{gone.SHA256, at, false},
		{gone.SHA256, at.Add(-2 * time.Hour), true}, // a handshake before its not-after
		{strings.Repeat("e", 64), at, false},
		{"", at, false},
	} {
		if got := p.Pinned(c.pin, c.at); got != c.want {
			t.Errorf("Pinned(%.8s…, %s) = %v, want %v", c.pin, c.at, got, c.want)
		}
	}
}
