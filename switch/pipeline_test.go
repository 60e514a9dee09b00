package switching

import (
	"encoding/hex"
	"testing"

	"github.com/switchd/switchd/codec"
)

func testConfig() Config {
	c := DefaultConfig()
	c.CardKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	return c
}

// The pooled hash must be the codec's PAN.Hash exactly: accounts created
// with one are looked up with the other.
func TestCardHashMatchesPANHash(t *testing.T) {
	p, err := NewPipeline(testConfig(), nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := hex.DecodeString(string(testConfig().CardKey))
	for _, s := range []string{"4111111111111111", "5500000000000004", "378282246310005"} {
		pan, err := codec.ParsePAN(s)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ { // pooled: a reused hash must be reset
			if got, want := p.CardHash(pan), pan.Hash(key); got != want {
				t.Fatalf("%s: pooled %s, codec %s", pan, got, want)
			}
		}
	}
}

func TestCompletionFinal(t *testing.T) {
	for cs, want := range map[string]bool{"": true, "0103": false, "0303": true, "0403": true, "xx03": true, "0100": true, "01": true} {
		if got := completionFinal(cs); got != want {
			t.Errorf("CS=%q: final %v, want %v", cs, got, want)
		}
	}
}

func TestRoutesMostSpecificFirst(t *testing.T) {
	partners := []Partner{{ID: "p1", AcquirerIDs: []string{"1"}, SettlementAccount: "p1-settle"}}
	r := newRoutes([]Route{
		{BillType: "*", PayerType: "*", Partner: "*", Destination: "ledger"},
		{BillType: "ELEC", PayerType: "*", Partner: "*", Destination: "ledger", SettlementAccount: "biller"},
		{BillType: "ELEC", PayerType: "card", Partner: "p1", Destination: "ledger", SettlementAccount: "biller-p1"},
	}, partners)
	for _, tc := range []struct {
		k    routeKey
		want string
	}{
		{routeKey{"", "card", "p1"}, "p1-settle"},
		{routeKey{"ELEC", "account", "p1"}, "biller"},
		{routeKey{"ELEC", "card", "p1"}, "biller-p1"},
		{routeKey{"GAS", "card", "p1"}, "p1-settle"},
	} {
		d, err := r.lookup(tc.k)
		if err != nil || d.SettlementAccount != tc.want {
			t.Errorf("%+v: got %q %v, want %q", tc.k, d.SettlementAccount, err, tc.want)
		}
	}
	if _, err := newRoutes(nil, partners).lookup(routeKey{"", "card", "p1"}); err == nil {
		t.Error("empty table routed a request")
	}
}
