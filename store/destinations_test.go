package store

import (
	"fmt"
	"strings"
	"testing"
)

func issuerDest(id string, bins ...string) Destination {
	return Destination{ID: id, Kind: DestinationKindISO8583, SettlementAccount: "settle", BINs: bins,
		ISO8583: &HostDestination{Addrs: []string{"127.0.0.1:9583"}, Dialect: "iso87ascii", Header: "binary2",
			PoolSize: 2, TimeoutMs: 5000, SignOn: true, EchoIntervalMs: 30000}}
}

func putDestCmd(key string, x Destination) Command {
	return adminCmd(OpPutDestination, key, &Admin{Destination: &x})
}

func TestDestinationsApplyIndexAndAudit(t *testing.T) {
	s := adminFixture(t)
	mustOK(t, s, putDestCmd("d1", issuerDest("visa-issuer", "400000", "4000001")),
		putDestCmd("d2", Destination{ID: "water", Kind: DestinationKindHTTP, SettlementAccount: "merch",
			HTTP: &HTTPDestination{URL: "http://127.0.0.1:9584/payments", TimeoutMs: 3000, SigningSecretEnv: "WATER_SECRET"}}))
	d := s.Directory()
	if x, ok := d.DestinationForPAN("4000000000000002"); !ok || x.ID != "visa-issuer" {
		t.Fatalf("BIN 400000: %+v %v", x, ok)
	}
	if _, ok := d.DestinationForPAN("4111111111111111"); ok {
		t.Fatal("an on-us card routed off-us")
	}
	if _, ok := d.DestinationForPAN("40000"); ok {
		t.Fatal("a five-digit number matched a BIN")
	}
	// A route may now name the destination; before, only the ledger.
	mustOK(t, s, putRouteCmd("rw", Route{ID: "water", BillType: "WATER", Destination: "water", SettlementAccount: "merch"}))
	if r := run1(t, s, putRouteCmd("rx", Route{ID: "x", BillType: "GAS", Destination: "nowhere", SettlementAccount: "merch"})); r.Status != StatusInvalidChange || !strings.Contains(r.Detail, "water") {
		t.Fatalf("route to an unknown destination: %+v", r)
	}
	// Deleting a destination a route names is refused, and changes nothing.
	if r := run1(t, s, adminCmd(OpDeleteDestination, "del-w", &Admin{ID: "water"})); r.Status != StatusInvalidChange || !strings.Contains(r.Detail, `route "water"`) {
		t.Fatalf("delete of a destination in use: %+v", r)
	}
	if _, ok := s.Directory().Destination("water"); !ok {
		t.Fatal("refused delete removed the destination")
	}
	mustOK(t, s, adminCmd(OpDeleteRoute, "del-rw", &Admin{ID: "water"}), adminCmd(OpDeleteDestination, "del-w2", &Admin{ID: "water"}))
	// Replacing a destination moves its BINs.
	mustOK(t, s, putDestCmd("d3", issuerDest("visa-issuer", "400001")))
	if _, ok := s.Directory().DestinationForPAN("4000000000000002"); ok {
		t.Fatal("a BIN taken off the destination still routes")
	}
	s2 := reopen(t, s)
	if x, ok := s2.Directory().DestinationForPAN("4000010000000000"); !ok || x.ID != "visa-issuer" || len(s2.Directory().Destinations()) != 1 {
		t.Fatalf("after reopen: %+v %v %d", x, ok, len(s2.Directory().Destinations()))
	}
	recs, err := s2.Audit(AuditFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, r := range recs {
		if strings.HasPrefix(r.Action, "destination.") {
			actions = append(actions, r.Action+" "+r.Object)
		}
	}
	want := "destination.put destination/visa-issuer,destination.put destination/water,destination.delete destination/water,destination.put destination/visa-issuer"
	if got := strings.Join(actions, ","); got != want {
		t.Fatalf("audit:\n got %s\nwant %s", got, want)
	}
}

// Every rule of CheckDestination refuses, and a refused change stores
// nothing and writes no audit record.
func TestDestinationRefusals(t *testing.T) {
	s := adminFixture(t)
	mustOK(t, s, putDestCmd("d1", issuerDest("a", "400000")))
	head, _ := s.Audit(AuditFilter{Limit: 1000})
	for name, c := range map[string]struct {
		x     func(*Destination)
		field string
	}{
		"bad id":            {func(x *Destination) { x.ID = "a b" }, "id"},
		"ledger":            {func(x *Destination) { x.ID = "ledger" }, "id"},
		"no account":        {func(x *Destination) { x.SettlementAccount = "nope" }, "settlement_account"},
		"short bin":         {func(x *Destination) { x.BINs = []string{"40000"} }, "bins"},
		"bin letters":       {func(x *Destination) { x.BINs = []string{"40000a"} }, "bins"},
		"bin taken":         {func(x *Destination) { x.BINs = []string{"400000"} }, "bins"},
		"bin twice":         {func(x *Destination) { x.BINs = []string{"510000", "510000"} }, "bins"},
		"kind":              {func(x *Destination) { x.Kind = "smtp" }, "kind"},
		"no host":           {func(x *Destination) { x.ISO8583 = nil }, "iso8583"},
		"addr":              {func(x *Destination) { x.ISO8583.Addrs = []string{"127.0.0.1"} }, "iso8583.addrs"},
		"port":              {func(x *Destination) { x.ISO8583.Addrs = []string{"127.0.0.1:99999"} }, "iso8583.addrs"},
		"header":            {func(x *Destination) { x.ISO8583.Header = "ascii9" }, "iso8583.header"},
		"pool":              {func(x *Destination) { x.ISO8583.PoolSize = 0 }, "iso8583.pool_size"},
		"timeout":           {func(x *Destination) { x.ISO8583.TimeoutMs = 60001 }, "iso8583.timeout_ms"},
		"echo < timeout":    {func(x *Destination) { x.ISO8583.EchoIntervalMs = 100 }, "iso8583.echo_interval_ms"},
		"timeout code":      {func(x *Destination) { x.ISO8583.TimeoutCode = "05" }, "iso8583.timeout_code"},
		"match 39":          {func(x *Destination) { x.ISO8583.Match = map[string][]int{"02": {11, 39}} }, "iso8583.match"},
		"cert without key":  {func(x *Destination) { x.ISO8583.TLS = &HostTLS{CertFile: "c.pem"} }, "iso8583.tls"},
		"http without http": {func(x *Destination) { x.Kind = DestinationKindHTTP }, "http"},
	} {
		x := issuerDest("b", "510000")
		h := *x.ISO8583
		x.ISO8583 = &h
		c.x(&x)
		r := run1(t, s, putDestCmd("bad-"+name, x))
		if r.Status != StatusInvalidChange || !strings.HasPrefix(r.Detail, c.field+":") {
			t.Errorf("%s: %+v, want invalid change of %s", name, r, c.field)
		}
	}
	for name, h := range map[string]HTTPDestination{
		"scheme":              {URL: "ftp://x", TimeoutMs: 1000},
		"timeout":             {URL: "https://x", TimeoutMs: 0},
		"env":                 {URL: "https://x", TimeoutMs: 1000, TokenEnv: "lower-case"},
		"two signing secrets": {URL: "https://x", TimeoutMs: 1000, SigningSecretEnv: "S", SigningSecretFile: "s.secret"},
		"signing file nul":    {URL: "https://x", TimeoutMs: 1000, SigningSecretFile: "s\x00"},
		"tls over http":       {URL: "http://x", TimeoutMs: 1000, TLS: &HostTLS{CAFile: "ca.pem"}},
		"tls cert no key":     {URL: "https://x", TimeoutMs: 1000, TLS: &HostTLS{CertFile: "c.pem"}},
	} {
		r := run1(t, s, putDestCmd("bad-http-"+name, Destination{ID: "h", Kind: DestinationKindHTTP, SettlementAccount: "merch", HTTP: &h}))
		if r.Status != StatusInvalidChange {
			t.Errorf("http %s: %+v", name, r)
		}
	}
	if r := run1(t, s, adminCmd(OpPutDestination, "no-reason", &Admin{Reason: " ", Destination: ptr(issuerDest("c"))})); r.Status != StatusInvalidChange {
		t.Errorf("no reason: %+v", r)
	}
	if len(s.Directory().Destinations()) != 1 {
		t.Fatalf("refused changes stored destinations: %+v", s.Directory().Destinations())
	}
	if after, _ := s.Audit(AuditFilter{Limit: 1000}); len(after) != len(head) {
		t.Fatalf("refused changes wrote %d audit records", len(after)-len(head))
	}
}

func ptr[T any](v T) *T { return &v }

// A destination cannot be deleted while a request waits for its answer or
// an advice waits in its SAF queue: its sender stops with it, so the
// host would never hear of the reversal. Each refusal changes nothing and
// writes no audit record; another destination's traffic holds up nobody.
func TestDeleteDestinationBusy(t *testing.T) {
	s := forwardFixture(t)
	mustOK(t, s, putDestCmd("d-other", issuerDest("other", "500000")))
	del := func(key, id string) Result { return run1(t, s, adminCmd(OpDeleteDestination, key, &Admin{ID: id})) }
	refused := func(r Result, want string) {
		t.Helper()
		head, _ := s.Audit(AuditFilter{Limit: 1000})
		if r.Status != StatusInvalidChange || !strings.Contains(r.Detail, want) {
			t.Fatalf("delete of a busy destination: %+v (want %q)", r, want)
		}
		if _, ok := s.Directory().Destination("iss"); !ok {
			t.Fatal("a refused delete removed the destination")
		}
		if after, _ := s.Audit(AuditFilter{Limit: 1000}); len(after) != len(head) {
			t.Fatal("a refused delete was audited")
		}
	}
	mustOK(t, s, fwdCmd("p1|k1", 100))
	refused(del("del-1", "iss"), "requests waiting for its answer (forward F00000000000001)")
	mustOK(t, s, fwdResult("p1|k1", OutcomeTimeout, "", "", t0+1))
	refused(del("del-2", "iss"), "advices queued for its host (switchctl saf list --dest iss)")
	// The other destination has neither: its deletion goes through.
	if r := del("del-other", "other"); r.Status != StatusOK {
		t.Fatalf("delete of an idle destination: %+v", r)
	}
	drop := Command{Op: OpSAFUpdate, Key: "drop-1", Fingerprint: "fp-drop-1", Time: t0 + 3e9,
		Admin:   &Admin{Actor: "alice", Reason: "host confirmed by phone"},
		Forward: &ForwardCommand{SAF: &SAFUpdate{ID: "S00000000000001", Action: SAFActionDrop}}}
	mustOK(t, s, drop)
	if r := del("del-3", "iss"); r.Status != StatusOK {
		t.Fatalf("delete once the queue is empty: %+v", r)
	}
	if _, ok := s.Directory().Destination("iss"); ok {
		t.Fatal("destination still there")
	}
	// The dropped advice cannot be put back in a queue nobody reads.
	retry := drop
	retry.Key, retry.Fingerprint, retry.Forward = "retry-1", "fp-retry-1", &ForwardCommand{SAF: &SAFUpdate{ID: "S00000000000001", Action: SAFActionRetry}}
	if r := run1(t, s, retry); r.Status != StatusInvalidChange || !strings.Contains(r.Detail, `destination "iss", which no longer exists`) {
		t.Fatalf("retry for a deleted destination: %+v", r)
	}
	if e, err := s.SAFEntry("S00000000000001"); err != nil || e.State != SAFDropped {
		t.Fatalf("refused retry changed the entry: %+v %v", e, err)
	}
}

// Past pendingScanMax pending forwards (of any destination) the deletion
// is refused rather than walking them all inside the FSM.
func TestDeleteDestinationPendingBound(t *testing.T) {
	s := forwardFixture(t)
	mustOK(t, s, putDestCmd("d-other", issuerDest("other", "500000")))
	cmds := make([]Command, 0, pendingScanMax+1)
	for i := range pendingScanMax + 1 {
		c := fwdCmd(fmt.Sprintf("p1|b%d", i), 100)
		c.Forward.Request.Destination = "other"
		cmds = append(cmds, c)
	}
	mustOK(t, s, cmds...)
	r := run1(t, s, adminCmd(OpDeleteDestination, "del-iss", &Admin{ID: "iss"}))
	if r.Status != StatusInvalidChange || !strings.Contains(r.Detail, "more than 4096 requests wait") {
		t.Fatalf("delete past the bound: %+v", r)
	}
	if _, ok := s.Directory().Destination("iss"); !ok {
		t.Fatal("a refused delete removed the destination")
	}
}

// SAFQueueDestinations names each destination with queued advices once,
// in order, up to max; one whose queue emptied is gone.
func TestSAFQueueDestinations(t *testing.T) {
	s := forwardFixture(t)
	mustOK(t, s, putDestCmd("d-other", issuerDest("other", "500000")))
	other := func(key string) Command {
		c := fwdCmd(key, 100)
		c.Forward.Request.Destination = "other"
		return c
	}
	mustOK(t, s, fwdCmd("p1|k1", 100), fwdResult("p1|k1", OutcomeTimeout, "", "", t0+1),
		fwdCmd("p1|k2", 100), fwdResult("p1|k2", OutcomeTimeout, "", "", t0+1),
		other("p1|k3"), fwdResult("p1|k3", OutcomeTimeout, "", "", t0+1))
	got := func(max int) string {
		t.Helper()
		ds, err := s.SAFQueueDestinations(max)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(ds, ",")
	}
	if g := got(10); g != "iss,other" {
		t.Fatalf("destinations %q", g)
	}
	if g := got(1); g != "iss" {
		t.Fatalf("max 1: %q", g)
	}
	for i, id := range []string{"S00000000000001", "S00000000000002"} {
		mustOK(t, s, Command{Op: OpSAFUpdate, Key: fmt.Sprintf("d%d", i), Fingerprint: "fp", Time: t0 + 3e9,
			Forward: &ForwardCommand{SAF: &SAFUpdate{ID: id, Action: SAFActionDelivered, RC: "00"}}})
	}
	if g := got(10); g != "other" {
		t.Fatalf("after iss's queue emptied: %q", g)
	}
}
