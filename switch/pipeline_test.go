package switching

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
)

func TestCompletionFinal(t *testing.T) {
	for cs, want := range map[string]bool{"": true, "0103": false, "0303": true, "0403": true, "xx03": true, "0100": true, "01": true} {
		if got := completionFinal(cs); got != want {
			t.Errorf("CS=%q: final %v, want %v", cs, got, want)
		}
	}
}

func TestTag(t *testing.T) {
	for _, tc := range []struct{ f48, key, want string }{
		{"", "BT", ""},
		{"BT=ELEC", "BT", "ELEC"},
		{"CS=0103;BT=GAS", "BT", "GAS"},
		{" PT = mfs_user ;BT=X", "PT", "mfs_user"},
		{"BT=A;BT=B", "BT", "B"},
		{"BTX=A;XBT=B;BT", "BT", ""},
	} {
		if got := tag(tc.f48, tc.key); got != tc.want {
			t.Errorf("tag(%q, %q) = %q, want %q", tc.f48, tc.key, got, tc.want)
		}
	}
}

// capture is a ledger that keeps the command it is given: the test looks
// at what the front door and the core make of a message, not at what the
// FSM does with it.
type capture struct{ cmd store.Command }

func (c *capture) Propose(_ context.Context, cmd store.Command) (store.Result, error) {
	c.cmd = cmd
	return store.Result{Status: store.StatusOK}, nil
}
func (c *capture) ReadIndex(context.Context) error { return nil }

// Keys and fingerprints are stored in idempotency records and original
// references: a node after the refactor must compute exactly what a node
// before it computed, or a repeat of a request answered before an upgrade
// is a 94 after it. The want values were computed by the pipeline before
// the payment core existed (b5b1bc9), card key 00..1f.
func TestCommandsUnchangedByTheCore(t *testing.T) {
	cfg := payment.DefaultConfig()
	cfg.CardKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	dir := store.NewDirectory([]store.Partner{{ID: "demo-acquirer", AcquirerIDs: []string{"100001"}, Lanes: []string{"demo"},
		SettlementAccount: "demo-acquirer-settlement", PayerType: store.PayerBankCustomer}},
		[]store.Route{{ID: "default", BillType: "*", PayerType: "*", Partner: "*", Destination: store.DestinationLedger}})
	led := &capture{}
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	core, err := payment.NewCore(cfg, led, nil, func() *store.Directory { return dir }, nil, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	p := NewPipeline(core, nil)
	pan, _ := codec.ParsePAN("4111111111111111")
	usd, _ := currency.ByCode("USD")
	actual := int64(400)
	for _, tc := range []struct {
		r                   *codec.Request
		key, fp, oref, orig string
		op                  store.Op
		amount              int64
	}{
		{
			r: &codec.Request{MTI: "0200", ProcCode: codec.ProcCode{Type: "00", From: "00", To: "00"}, PAN: pan, Amount: 1234, Currency: usd,
				TransmissionTime: "1121120000", STAN: "000001", Acquirer: "00100001", RRN: "000000000001", Terminal: "TERM0001",
				Merchant: "MERCHANT0000001", AdditionalData: "BT=ELEC"},
			key: "demo-acquirer|100001|000001|1121120000|000000000001|020", fp: "926737d7146c7ffa43a0edd827109a91",
			oref: "demo-acquirer|100001|000001|1121120000|020", op: store.OpPost, amount: 1234,
		},
		{
			r: &codec.Request{MTI: "0420", ProcCode: codec.ProcCode{Type: "00", From: "00", To: "00"}, PAN: pan, Amount: 1000, Currency: usd,
				TransmissionTime: "1121120500", STAN: "000009", Acquirer: "100001", RRN: "000000000009",
				Original: &codec.Original{MTI: "0200", STAN: "000001", TransmissionTime: "1121120000", Acquirer: "100001"}, ActualAmount: &actual},
			key: "demo-acquirer|100001|000009|1121120500|000000000009|042", fp: "c4d39329ae8079c0c8272325f15318ba",
			orig: "demo-acquirer|100001|000001|1121120000|020", op: store.OpReverse, amount: 600,
		},
	} {
		if _, _, err := p.dispatch(context.Background(), payment.Origin{Lane: "demo", Source: netip.MustParseAddr("127.0.0.1")}, tc.r); err != nil {
			t.Fatalf("%s: %v", tc.r.MTI, err)
		}
		c := led.cmd
		if c.Key != tc.key || c.Fingerprint != tc.fp || c.OriginalRef != tc.oref || c.Original != tc.orig || c.Op != tc.op || c.Amount != tc.amount {
			t.Errorf("%s: key %q fp %q oref %q orig %q op %v amount %d\nwant key %q fp %q oref %q orig %q op %v amount %d", tc.r.MTI,
				c.Key, c.Fingerprint, c.OriginalRef, c.Original, c.Op, c.Amount, tc.key, tc.fp, tc.oref, tc.orig, tc.op, tc.amount)
		}
		if c.Ref.Acquirer != tc.r.Acquirer || c.Ref.Terminal != tc.r.Terminal || c.Ref.MTI != string(tc.r.MTI) || c.Partner != "demo-acquirer" ||
			c.PayerType != store.PayerBankCustomer || c.BusinessDay != "2026-11-21" {
			t.Errorf("%s: ref %+v partner %q payer %q day %q", tc.r.MTI, c.Ref, c.Partner, c.PayerType, c.BusinessDay)
		}
	}
}
