package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchd/switchd/store"
	switching "github.com/switchd/switchd/switch"
)

// The demo's partners, routes and agents seed the directory with their
// defaults filled in: lanes from the lanes' partners: lists, payer type
// bank_customer, route ids route-N where none is given.
func TestDemoSeeds(t *testing.T) {
	f := Demo()
	f.Finish()
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	s := f.Seeds()
	got := fmt.Sprintf("%+v", s.Partners)
	for _, want := range []string{
		"ID:demo-acquirer AcquirerIDs:[100001] Lanes:[demo api] SettlementAccount:demo-acquirer-settlement WithdrawalMax:50000 PayerType:bank_customer PayerTypes:[mfs_user]",
		"ID:demo-agents AcquirerIDs:[100002] Lanes:[demo] SettlementAccount:demo-agents-settlement WithdrawalMax:0 PayerType:otc_agent",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("seed partners %s\nlack %s", got, want)
		}
	}
	if len(s.Routes) != 4 || s.Routes[0].ID != "elec" || s.Routes[2].Key() != (store.RouteKey{BillType: "*", PayerType: "*", Partner: "*"}) ||
		s.Routes[3].Destination != "demo-biller" {
		t.Errorf("seed routes: %+v", s.Routes)
	}
	if len(s.Agents) != 1 {
		t.Fatalf("seed agents: %+v", s.Agents)
	}
	if a, err := s.Agents[0].Agent(); err != nil || a.CashLimit != 100000 || a.Terminal != "AGENT001" {
		t.Errorf("agent: %+v %v", a, err)
	}
	ids := map[string]bool{}
	for _, a := range s.Accounts {
		ids[a.ID] = true
	}
	for _, id := range []string{"biller-grid-co", "demo-agents-settlement", "demo-acquirer-settlement", "biller-power-co"} {
		if !ids[id] {
			t.Errorf("demo account %s missing", id)
		}
	}
}

func TestRouteAndPartnerDefaults(t *testing.T) {
	f, err := Load(write(t, withKey(`
switch:
  lanes:
    - {name: a, listen: '127.0.0.1:1', partners: [p1, p2]}
    - {name: b, listen: '127.0.0.1:2', partners: [p1]}
  partners:
    - {id: p1, acquirer_ids: ["1"], settlement_account: s}
    - {id: p2, acquirer_ids: ["2"], lanes: [c], payer_type: mfs_user, payer_types: [otc_agent]}
  routes:
    - {bill_type: ELEC, destination: ledger, settlement_account: biller}
    - {id: catch-all, destination: ledger}
agents: []
`)))
	if err != nil {
		t.Fatal(err)
	}
	f.Finish()
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	partners, routes := f.Switch.DirectorySeeds()
	if fmt.Sprintf("%v %s %v %s", partners[0].Lanes, partners[0].PayerType, partners[1].Lanes, partners[1].PayerType) != "[a b] bank_customer [c] mfs_user" {
		t.Fatalf("partner defaults: %+v", partners)
	}
	if routes[0].ID != "route-1" || routes[1].ID != "catch-all" || routes[0].PayerType != "*" || routes[0].Partner != "*" {
		t.Fatalf("route defaults: %+v", routes)
	}
}

// Two routes with one key are refused, naming both; so is anything the
// FSM would refuse when seeding (bad payer types, an agent of a partner
// that cannot be otc_agent).
func TestDirectoryRejects(t *testing.T) {
	for name, tc := range map[string]struct{ body, want string }{
		"same key": {`switch:
  routes:
    - {id: one, bill_type: ELEC, destination: ledger, settlement_account: x}
    - {id: two, bill_type: ELEC, payer_type: "*", partner: "*", destination: ledger, settlement_account: y}
`, `"one" (switch.routes[0]) and "two" (switch.routes[1]) have the same key`},
		"same id": {`switch:
  routes:
    - {id: one, bill_type: ELEC, destination: ledger, settlement_account: x}
    - {id: one, bill_type: GAS, destination: ledger, settlement_account: y}
`, `same id "one"`},
		"default id taken": {`switch:
  routes:
    - {id: route-2, bill_type: ELEC, destination: ledger, settlement_account: x}
    - {bill_type: GAS, destination: ledger, settlement_account: y}
`, `same id "route-2"`},
		"bad destination": {`switch:
  routes:
    - {destination: moon}
`, "destination"},
		"route partner unknown": {`switch:
  routes:
    - {partner: nobody, destination: ledger, settlement_account: x}
`, `no partner "nobody"`},
		"bad payer type": {`switch:
  partners:
    - {id: demo-acquirer, acquirer_ids: ["7"], payer_type: "bank customer"}
`, "payer_type"},
		"agent of a bank partner": {"agents:\n  - {partner: demo-acquirer, terminal: T1, currency: USD, cash_limit: '10.00'}\n", "otc_agent"},
		"agent bad limit":         {"agents:\n  - {partner: demo-agents, terminal: T1, currency: USD, cash_limit: '10.001'}\n", "cash_limit"},
		"agent twice": {"agents:\n  - {partner: demo-agents, terminal: T1, currency: USD, cash_limit: '1.00'}\n" +
			"  - {partner: demo-agents, terminal: T1, currency: USD, cash_limit: '2.00'}\n", "duplicate"},
	} {
		t.Run(name, func(t *testing.T) {
			f, err := Load(write(t, withKey(tc.body)))
			if err == nil {
				f.Finish()
				err = f.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// Routing precedence among equally specific rules is fixed now (bill type
// > payer type > partner: store.Directory.Lookup), where it used to be
// the order of the list. For every config we ship the two agree on every
// request key, so nothing routes differently.
func TestShippedConfigsRouteAsBefore(t *testing.T) {
	files := map[string]File{"demo": Demo()}
	examples, _ := filepath.Glob("examples/*.yaml")
	dir := t.TempDir()
	key := filepath.Join(dir, "card.key")
	if err := os.WriteFile(key, []byte(testCardKey), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range examples {
		if filepath.Base(p) == "tls.yaml" {
			// Its lane loads certificates the README makes with openssl
			// (make readme runs it); it routes with the demo's table.
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b = []byte(strings.ReplaceAll(string(b), "data/byhand/card.key", key))
		b = []byte(strings.ReplaceAll(string(b), "data/mac/card.key", key)) // mac.yaml's KEK is read at start, not by Load
		f, err := Load(write(t, string(b)))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		files[p] = f
	}
	if len(files) < 3 {
		t.Fatalf("examples not found: %v", examples)
	}
	for name, f := range files {
		partners, routes := f.Switch.DirectorySeeds()
		d := store.NewDirectory(partners, routes)
		for _, bt := range []string{"", "ELEC", "GRID", "GAS"} {
			for _, pt := range []string{store.PayerBankCustomer, store.PayerMFSUser, store.PayerOTCAgent} {
				for _, p := range partners {
					k := store.RouteKey{BillType: bt, PayerType: pt, Partner: p.ID}
					r, ok := d.Lookup(k)
					old, oldOK := listOrderLookup(f.Switch.Routes, k)
					if ok != oldOK || ok && r.SettlementAccount != old.SettlementAccount {
						t.Errorf("%s %+v: routes to %+v, the list order rule to %+v", name, k, r, old)
					}
				}
			}
		}
	}
}

// listOrderLookup is the rule before the replicated directory: the rule
// naming the most key fields wins, ties go to the first listed.
func listOrderLookup(rules []switching.Route, k store.RouteKey) (switching.Route, bool) {
	match := func(pattern, v string) bool { return pattern == "" || pattern == "*" || pattern == v }
	best, bestN := switching.Route{}, -1
	for _, r := range rules {
		if !match(r.BillType, k.BillType) || !match(r.PayerType, k.PayerType) || !match(r.Partner, k.Partner) {
			continue
		}
		n := 0
		for _, f := range []string{r.BillType, r.PayerType, r.Partner} {
			if f != "" && f != "*" {
				n++
			}
		}
		if n > bestN {
			best, bestN = r, n
		}
	}
	return best, bestN >= 0
}
