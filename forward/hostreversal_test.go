package forward_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchd/switchd/api"
	"github.com/switchd/switchd/config"
	"github.com/switchd/switchd/settle"
	"github.com/switchd/switchd/sim"
	"github.com/switchd/switchd/store"
)

// reversalRig is the biller rig with the biller's reversals sent to the
// real endpoint (api.BillerReversals over the rig's node) behind an
// httptest server; lose, while positive, makes the server process a call
// and then answer 500 (the answer lost), so the biller retries.
type reversalRig struct {
	*rig
	biller *sim.Biller
	url    string
	secret []byte
	lose   atomic.Int32
}

func newReversalRig(t *testing.T) *reversalRig {
	t.Helper()
	rr := &reversalRig{secret: []byte("0123456789abcdef0123456789abcdef")}
	var h atomic.Pointer[http.Handler]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hp := h.Load()
		if hp == nil {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		if rr.lose.Add(-1) >= 0 {
			(*hp).ServeHTTP(httptest.NewRecorder(), r)
			http.Error(w, "lost", http.StatusInternalServerError)
			return
		}
		(*hp).ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	rr.url = srv.URL + "/v1/billers/demo-biller/reversals"
	file := filepath.Join(t.TempDir(), "demo-biller.secret")
	if err := os.WriteFile(file, []byte("whsec_"+base64.StdEncoding.EncodeToString(rr.secret)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bcfg := sim.DefaultBillerConfig()
	bcfg.Listen, bcfg.ReversalURL, bcfg.WebhookSecret = "127.0.0.1:0", rr.url, rr.secret
	bcfg.RequestSigningSecret = billerSigningSecret
	signing := secretFile(t, billerWhsec)
	bcfg.BackoffMin, bcfg.BackoffMax = 20*time.Millisecond, 100*time.Millisecond
	b, err := sim.NewBiller(bcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	rr.biller = b
	rr.rig = newRig(t, sim.DefaultBehavior(), func(cfg *config.File) {
		for i := range cfg.Destinations {
			if cfg.Destinations[i].ID == "demo-biller" {
				x := *cfg.Destinations[i].HTTP
				x.URL, x.TimeoutMs, x.ReversalSecretFile, x.SigningSecretFile = "http://"+b.Addr()+"/payments", 300, file, signing
				cfg.Destinations[i].HTTP = &x
			}
		}
	})
	mux := http.NewServeMux()
	mux.Handle(api.BillerReversalPattern, api.NewBillerReversals(ledger{rr.st, rr.cn}, nil))
	var hh http.Handler = mux
	h.Store(&hh)
	return rr
}

// signed posts body as webhook id with a signature under secret, dated at.
func (rr *reversalRig) signed(id string, body []byte, secret []byte, at time.Time) (int, string) {
	rr.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, rr.url, bytes.NewReader(body))
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
	req.Header.Set("webhook-signature", sim.Sign(secret, id, at.Unix(), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		rr.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func reversalEvent(forward string) []byte {
	return []byte(fmt.Sprintf(`{"type":"bill_payment.reversed","timestamp":"2026-12-02T10:00:00Z","data":{"payment_id":"bp_00000001",`+
		`"idempotency_key":%q,"bill_type":"WATER","biller_reference":"x","amount":"25.00","currency":"USD"}}`, forward))
}

// subscribe makes the partner a webhook endpoint for payment.reversed.
func (rr *reversalRig) subscribe() {
	rr.t.Helper()
	res, err := rr.cn.Propose(context.Background(), store.Command{Op: store.OpPutWebhookEndpoint, Key: "test|endpoint", Partner: "demo-acquirer",
		Admin: &store.Admin{Actor: "test", Reason: "test", Webhook: &store.WebhookChange{Action: store.WebhookCreate, Endpoint: store.WebhookEndpoint{
			ID: "ep-rev", Partner: "demo-acquirer", URL: "http://127.0.0.1:9101/hook", EventTypes: []string{store.EventPaymentReversed},
			Secrets: []store.WebhookSecret{{Wrapped: "d3JhcHBlZC1zZWNyZXQtb25l", KEK: "abc123"}}}}}})
	if err != nil || res.Status != store.StatusOK {
		rr.t.Fatalf("endpoint: %+v %v", res, err)
	}
}

func (rr *reversalRig) reversals() []store.Transfer {
	ts, err := rr.st.Transfers(store.TransferFilter{Partner: "demo-acquirer", Op: store.OpReverse})
	if err != nil {
		rr.t.Fatal(err)
	}
	return ts
}

// A biller reverses yesterday's payment and the partner's webhook
// receiver gets exactly one event: WATER is paid through the rig, the
// business day closes, the biller reverses it and its first delivery's
// answer is lost, so it retries; then another event about the same
// payment arrives. One compensating transfer, on the new day (and in that
// day's settlement file), the original marked reversed, one outbox row.
func TestBillerReversesYesterdaysPayment(t *testing.T) {
	rr := newReversalRig(t)
	rr.subscribe()
	out, err := rr.payBill(10, 2500)
	if err != nil {
		t.Fatalf("bill: %v", err)
	}
	fw, _ := rr.st.Forward(billKey(10))
	day, err := rr.st.OpenDay()
	if err != nil {
		t.Fatal(err)
	}
	d, _ := time.Parse(time.DateOnly, day)
	next := d.AddDate(0, 0, 1).Format(time.DateOnly)
	if res, err := rr.cn.Propose(context.Background(), store.Command{Op: store.OpCloseDay, Time: time.Now().UnixNano(), BusinessDay: day, NextDay: next}); err != nil || res.Status != store.StatusOK {
		t.Fatalf("close %s: %+v %v", day, res, err)
	}

	rr.lose.Store(1)
	if _, err := rr.biller.Reverse(sim.ReversalRequest{PaymentID: "bp_00000001", Reason: "meter misread"}); err != nil {
		t.Fatal(err)
	}
	rr.waitFor("the reversal delivered", func() bool { return rr.biller.Stats().Reversals.Delivered == 1 })
	if s := rr.biller.Stats().Reversals; s.Attempts != 2 {
		t.Fatalf("biller attempts %+v, want 2 (the first answer lost)", s)
	}
	// Another event (another webhook id) about the same payment.
	if st, body := rr.signed("rev_again", reversalEvent(fw.ID), rr.secret, time.Now()); st != http.StatusOK || !strings.Contains(body, store.HostReversalAlready) {
		t.Fatalf("second event: %d %s", st, body)
	}

	revs := rr.reversals()
	if len(revs) != 1 || revs[0].Original != out.Result.TransferID || revs[0].BusinessDay != next || revs[0].Amount != 2500 ||
		revs[0].Debit != "demo-biller-settlement" || revs[0].Credit != "card-4111" {
		t.Fatalf("compensating transfers %+v (original %s, day %s)", revs, out.Result.TransferID, next)
	}
	if o, _ := rr.st.Transfer(out.Result.TransferID); o.Reversed != 2500 {
		t.Fatalf("original %+v", o)
	}
	// The partner API shows it reversed by its biller, not refunded.
	if by, err := rr.st.ReversedByHost(out.Result.TransferID); !by || err != nil {
		t.Fatalf("reversed by host: %v %v", by, err)
	}
	if by, err := rr.st.ReversedByHost(revs[0].ID); by || err != nil {
		t.Fatalf("the compensating transfer reads reversed by host: %v %v", by, err)
	}
	if a := rr.account("demo-biller-settlement"); a.DebitsPosted != 2500 || a.CreditsPosted != 2500 {
		t.Fatalf("biller position %+v", a)
	}
	ds, err := rr.st.WebhookDeliveries("ep-rev", "", 10)
	if err != nil || len(ds) != 1 || ds[0].Type != store.EventPaymentReversed || ds[0].Transfer != out.Result.TransferID ||
		!strings.Contains(ds[0].Body, `"status":"reversed"`) {
		t.Fatalf("outbox %+v %v", ds, err)
	}
	var csv, js bytes.Buffer
	if _, err := settle.WriteSettlement(context.Background(), rr.st, next, "demo-acquirer", &csv, &js); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(csv.String(), revs[0].ID) || !strings.Contains(csv.String(), "reversal") {
		t.Fatalf("the next day's settlement file lacks the reversal %s:\n%s", revs[0].ID, csv.String())
	}
}

// Refusals post nothing: a call signed with another secret (401), one
// dated outside the tolerance (401), a body over the limit (413); a
// validly signed reversal of no payment of ours is 404.
func TestBillerReversalRefusals(t *testing.T) {
	rr := newReversalRig(t)
	rr.subscribe()
	if _, err := rr.payBill(11, 900); err != nil {
		t.Fatal(err)
	}
	fw, _ := rr.st.Forward(billKey(11))
	ev := reversalEvent(fw.ID)
	if st, _ := rr.signed("rev_bad", ev, []byte("another-secret-another-secret-00"), time.Now()); st != http.StatusUnauthorized {
		t.Fatalf("bad signature: %d", st)
	}
	if st, _ := rr.signed("rev_old", ev, rr.secret, time.Now().Add(-time.Hour)); st != http.StatusUnauthorized {
		t.Fatalf("stale timestamp: %d", st)
	}
	big := append(bytes.Repeat([]byte(" "), api.BillerEventBytesMax), ev...)
	if st, _ := rr.signed("rev_big", big, rr.secret, time.Now()); st != http.StatusRequestEntityTooLarge {
		t.Fatalf("big body: %d", st)
	}
	if st, _ := rr.signed("rev_none", reversalEvent("F00000000000999"), rr.secret, time.Now()); st != http.StatusNotFound {
		t.Fatalf("unknown payment: %d", st)
	}
	if revs := rr.reversals(); len(revs) != 0 {
		t.Fatalf("a refused call posted %+v", revs)
	}
	if _, err := rr.st.HostReversal(fw.ID); err == nil {
		t.Fatal("a refused call left a reversal record")
	}
	if ds, _ := rr.st.WebhookDeliveries("ep-rev", "", 10); len(ds) != 0 {
		t.Fatalf("a refused call wrote outbox rows %+v", ds)
	}
}

// An issuer host takes back a purchase it approved with an 0420 naming
// our RRN: one compensating transfer, the host gets 0430 00, and a
// repeat gets 00 again with nothing new; an 0420 naming no forward of
// ours gets 25.
func TestIssuerHostReversal(t *testing.T) {
	r := newRig(t, sim.DefaultBehavior())
	out, err := r.buy(20, 4200)
	if err != nil {
		t.Fatal(err)
	}
	fw, _ := r.st.Forward("demo-acquirer|100001|000020")
	for i := 0; i < 2; i++ {
		if err := r.issuer.SendReversal(fw.RRN()); err != nil {
			t.Fatal(err)
		}
	}
	r.waitFor("two 0430 00", func() bool { return r.issuer.Stats().HostReversals["00"] == 2 })
	ts, err := r.st.Transfers(store.TransferFilter{Partner: "demo-acquirer", Op: store.OpReverse})
	if err != nil || len(ts) != 1 || ts[0].Original != out.Result.TransferID || ts[0].Amount != 4200 {
		t.Fatalf("compensating transfers %+v %v", ts, err)
	}
	if a := r.account("demo-issuer-settlement"); a.DebitsPosted != 4200 || a.CreditsPosted != 4200 {
		t.Fatalf("issuer position %+v", a)
	}
	if err := r.issuer.SendReversal("000000000999"); err != nil {
		t.Fatal(err)
	}
	r.waitFor("0430 25", func() bool { return r.issuer.Stats().HostReversals["25"] == 1 })
	if ts, _ := r.st.Transfers(store.TransferFilter{Partner: "demo-acquirer", Op: store.OpReverse}); len(ts) != 1 {
		t.Fatalf("an unknown original posted: %+v", ts)
	}
}
