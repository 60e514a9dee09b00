package forward_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchd/switchd/card"
	"github.com/switchd/switchd/config"
	"github.com/switchd/switchd/host"
	"github.com/switchd/switchd/internal/testpki"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/sim"
	"github.com/switchd/switchd/store"
)

const billPAN = "4111111111111111" // the demo's on-us card pays an off-us biller

// newBillerRig is the rig with demo-biller pointed at a simulated biller
// (300 ms timeout); mut changes the biller's config.
func newBillerRig(t *testing.T, behavior sim.Behavior, mut func(*sim.BillerConfig)) (*rig, *sim.Biller) {
	return billerRig(t, behavior, mut, nil)
}

// billerRig is newBillerRig; dest also changes demo-biller's destination.
func billerRig(t *testing.T, behavior sim.Behavior, mut func(*sim.BillerConfig), dest func(*store.HTTPDestination), more ...func(*config.File)) (*rig, *sim.Biller) {
	t.Helper()
	bcfg := sim.DefaultBillerConfig()
	bcfg.Listen, bcfg.Behavior = "127.0.0.1:0", behavior
	// As in the demo, switchd signs its calls with the secret in a file
	// and the biller verifies them.
	bcfg.RequestSigningSecret = billerSigningSecret
	signing := secretFile(t, billerWhsec)
	if mut != nil {
		mut(&bcfg)
	}
	b, err := sim.NewBiller(bcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	r := newRig(t, sim.DefaultBehavior(), append([]func(*config.File){func(cfg *config.File) {
		for i := range cfg.Destinations {
			if cfg.Destinations[i].ID == "demo-biller" {
				h := *cfg.Destinations[i].HTTP
				h.URL, h.TimeoutMs, h.SigningSecretFile = "http://"+b.Addr()+"/payments", 300, signing
				if dest != nil {
					dest(&h)
				}
				cfg.Destinations[i].HTTP = &h
			}
		}
	}}, more...)...)
	return r, b
}

func (r *rig) billIntent(stan int, amount int64) payment.Intent {
	pan, err := card.ParsePAN(billPAN)
	if err != nil {
		r.t.Fatal(err)
	}
	key := fmt.Sprintf("bill|%06d", stan)
	return payment.Intent{Kind: payment.KindBillPayment, Origin: payment.Origin{Lane: "demo"}, Acquirer: "100001", PAN: pan,
		Terminal: "TERM0001", Amount: amount, Currency: "USD", BillType: "WATER",
		Ref:            store.Ref{MTI: "0200", STAN: fmt.Sprintf("%06d", stan), RRN: fmt.Sprintf("%012d", stan)},
		IdempotencyKey: key, OriginalRef: key, Fingerprint: []string{"bill", fmt.Sprint(amount), payment.FingerprintPAN}}
}

func (r *rig) payBill(stan int, amount int64) (payment.Outcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return r.core.Submit(ctx, r.billIntent(stan, amount))
}

func billKey(stan int) string { return fmt.Sprintf("demo-acquirer|bill|%06d", stan) }

// A WATER bill goes to the biller and is approved (201): the partner gets
// an approval code, the ledger posts the payer's account → the biller's
// settlement account (what we owe it), the record holds the body sent
// (decimal amount, no card number), and a repeat is answered from the
// record without a second payment at the biller.
func TestBillApproved(t *testing.T) {
	r, b := newBillerRig(t, sim.DefaultBehavior(), nil)
	out, err := r.payBill(1, 1234)
	if err != nil {
		t.Fatalf("bill: %v", err)
	}
	if len(out.AuthCode) != 6 || out.Result.TransferID == "" || out.Route != "water" {
		t.Fatalf("outcome %+v", out)
	}
	if a := r.account("demo-biller-settlement"); a.CreditsPosted != 1234 || a.DebitsPosted != 0 {
		t.Fatalf("biller position %+v", a)
	}
	if a := r.account("card-4111"); a.DebitsPosted != 1234 {
		t.Fatalf("the payer paid %+v", a)
	}
	fw, err := r.st.Forward(billKey(1))
	if err != nil || fw.State != store.ForwardApproved || fw.Destination != "demo-biller" {
		t.Fatalf("forward %+v %v", fw, err)
	}
	if !strings.Contains(fw.Body, `"amount":"12.34"`) || !strings.Contains(fw.Body, `"bill_type":"WATER"`) ||
		strings.Contains(fw.Body, billPAN) || len(fw.PAN) != 0 || fw.MTI != "" {
		t.Fatalf("recorded body %q pan %d mti %q", fw.Body, len(fw.PAN), fw.MTI)
	}
	again, err := r.payBill(1, 1234)
	if err != nil || again.AuthCode != out.AuthCode || !again.Result.Replayed {
		t.Fatalf("repeat: %+v %v", again, err)
	}
	if s := b.Stats(); s.Payments["approved"] != 1 || s.Replays != 0 {
		t.Fatalf("biller saw %+v", s)
	}
	if a := r.account("demo-biller-settlement"); a.CreditsPosted != 1234 {
		t.Fatalf("the repeat posted again: %+v", a)
	}
}

// A payer without the funds is declined 51 before the biller is asked:
// nothing reaches the biller, nothing is posted or queued.
func TestBillPayerWithoutFunds(t *testing.T) {
	r, b := newBillerRig(t, sim.DefaultBehavior(), nil)
	in := r.billIntent(9, 1_000_01) // card-4111 opens with 1,000.00
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := r.core.Submit(ctx, in); outcome.Code(err) != "51" {
		t.Fatalf("over the balance: %v (%s)", err, outcome.Code(err))
	}
	if s := b.Stats(); len(s.Payments) != 0 {
		t.Fatalf("the biller was asked: %+v", s)
	}
	if a := r.account("card-4111"); a.DebitsPosted != 0 || a.DebitsPending != 0 {
		t.Fatalf("the payer %+v", a)
	}
	if _, err := r.st.Forward(billKey(9)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("recorded: %v", err)
	}
}

// A 422 reaches the partner with the biller's code through outcome's
// table; nothing is posted, nothing queued.
func TestBillDeclined(t *testing.T) {
	r, _ := newBillerRig(t, sim.Behavior{Mode: sim.ModeDecline, LateDelay: sim.Duration(time.Second)}, func(c *sim.BillerConfig) { c.DeclineCode = "51" })
	_, err := r.payBill(2, 500)
	var hd *outcome.HostDecline
	if !errors.As(err, &hd) || outcome.Code(err) != "51" {
		t.Fatalf("decline: %v (%s)", err, outcome.Code(err))
	}
	if a := r.account("demo-biller-settlement"); a.CreditsPosted != 0 {
		t.Fatalf("a decline posted: %+v", a)
	}
	if q, _ := r.st.SAFQueue("demo-biller", 10); len(q) != 0 {
		t.Fatalf("queued: %+v", q)
	}
}

// The biller approves but answers after our timeout: the partner gets 91,
// nothing is posted, and a follow-up is queued in the same command. The
// SAF sender asks again under the same Idempotency-Key, learns of the
// approval (kept on the record as late, never posted) and cancels it at
// the biller, once.
func TestBillTimeoutFollowUpCancels(t *testing.T) {
	r, b := newBillerRig(t, sim.Behavior{Mode: sim.ModeLate, LateDelay: sim.Duration(600 * time.Millisecond)}, nil)
	if _, err := r.payBill(3, 700); outcome.Code(err) != "91" {
		t.Fatalf("timeout: %v (%s)", err, outcome.Code(err))
	}
	fw, _ := r.st.Forward(billKey(3))
	if fw.State != store.ForwardTimedOut || fw.SAF == "" {
		t.Fatalf("forward %+v", fw)
	}
	r.waitFor("the follow-up delivered", func() bool { e, _ := r.st.SAFEntry(fw.SAF); return e.State == store.SAFDelivered })
	if s := b.Stats(); s.Cancels != 1 || s.Payments["approved"] != 1 {
		t.Fatalf("biller %+v", s)
	}
	fw, _ = r.st.Forward(billKey(3))
	if fw.State != store.ForwardTimedOut || fw.Late == nil || fw.Late.Outcome != store.OutcomeApproved || fw.TransferID != "" {
		t.Fatalf("forward after the follow-up %+v", fw)
	}
	if a := r.account("demo-biller-settlement"); a.CreditsPosted != 0 {
		t.Fatalf("a timed-out bill posted: %+v", a)
	}
}

// A biller that is down (connection refused): 91 at once, the record
// says never sent, nothing posted, nothing queued.
func TestBillBillerDown(t *testing.T) {
	r, _ := newBillerRig(t, sim.Behavior{Mode: sim.ModeDown, LateDelay: sim.Duration(time.Second)}, nil)
	if _, err := r.payBill(4, 100); outcome.Code(err) != "91" {
		t.Fatalf("down: %v", err)
	}
	fw, err := r.st.Forward(billKey(4))
	if err != nil || fw.State != store.ForwardDeclined || fw.Reason != "not_sent" {
		t.Fatalf("forward %+v %v", fw, err)
	}
	if q, _ := r.st.SAFQueue("demo-biller", 10); len(q) != 0 {
		t.Fatalf("queued: %+v", q)
	}
}

// newSigningBillerRig is the biller rig with demo-biller signing its calls
// (signing_secret_env) and sending a bearer token (token_env), both from
// the environment, to a biller that verifies both under billerSecret and
// billerToken.
func newSigningBillerRig(t *testing.T, envSecret, envToken string, billerSecret []byte, billerToken string) (*rig, *sim.Biller) {
	t.Helper()
	t.Setenv("TEST_BILLER_SIGNING_SECRET", envSecret)
	t.Setenv("TEST_BILLER_TOKEN", envToken)
	return billerRig(t, sim.DefaultBehavior(), func(c *sim.BillerConfig) { c.RequestSigningSecret, c.RequestToken = billerSecret, billerToken },
		func(h *store.HTTPDestination) {
			h.SigningSecretEnv, h.TokenEnv, h.SigningSecretFile = "TEST_BILLER_SIGNING_SECRET", "TEST_BILLER_TOKEN", ""
		})
}

var (
	billerSigningSecret = []byte("0123456789abcdef0123456789abcdef")
	billerWhsec         = "whsec_" + base64.StdEncoding.EncodeToString(billerSigningSecret)
)

// secretFile is a file in the test's temporary directory holding s.
func secretFile(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "signing.secret")
	if err := os.WriteFile(p, []byte(s+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A biller that verifies switchd's request signature and bearer token
// (sim RequestSigningSecret, RequestToken) pays what switchd signs with
// the same secret: the forwarder's Standard Webhooks signature (webhook-id
// = the Idempotency-Key) verifies at an independent implementation.
func TestBillSignedRequestVerified(t *testing.T) {
	r, b := newSigningBillerRig(t, billerWhsec, "tok-1", billerSigningSecret, "tok-1")
	out, err := r.payBill(5, 1500)
	if err != nil || out.Result.TransferID == "" {
		t.Fatalf("signed bill: %+v %v", out, err)
	}
	if s := b.Stats(); s.Payments["approved"] != 1 || s.Payments["unauthorized"] != 0 {
		t.Fatalf("biller saw %+v", s)
	}
	if a := r.account("demo-biller-settlement"); a.CreditsPosted != 1500 {
		t.Fatalf("biller position %+v", a)
	}
}

// switchd signs with another secret than the biller's (or sends the wrong
// token): the biller answers 401, which switchd takes as a refusal of the
// request itself, the partner gets a decline (96), and nothing is posted
// or queued for a follow-up.
func TestBillWrongSignatureDeclined(t *testing.T) {
	for name, c := range map[string]struct{ secret, token string }{
		"signature": {"whsec_" + base64.StdEncoding.EncodeToString([]byte("another-secret-another-secret-00")), "tok-1"},
		"token":     {billerWhsec, "tok-2"},
	} {
		t.Run(name, func(t *testing.T) {
			r, b := newSigningBillerRig(t, c.secret, c.token, billerSigningSecret, "tok-1")
			_, err := r.payBill(6, 800)
			if outcome.Code(err) != outcome.SystemMalfunction {
				t.Fatalf("wrong %s: %v (%s), want a decline %s", name, err, outcome.Code(err), outcome.SystemMalfunction)
			}
			if s := b.Stats(); s.Payments["unauthorized"] != 1 || s.Stored != 0 {
				t.Fatalf("biller saw %+v, want one 401 and nothing recorded", s)
			}
			fw, err := r.st.Forward(billKey(6))
			if err != nil || fw.State != store.ForwardDeclined || fw.Reason != "http_401" || fw.TransferID != "" {
				t.Fatalf("forward %+v %v", fw, err)
			}
			if a := r.account("demo-biller-settlement"); a.DebitsPosted != 0 || a.CreditsPosted != 0 {
				t.Fatalf("a refused bill posted: %+v", a)
			}
			if ts, _ := r.st.Transfers(store.TransferFilter{Partner: "demo-acquirer"}); len(ts) != 0 {
				t.Fatalf("transfers %+v", ts)
			}
			if q, _ := r.st.SAFQueue("demo-biller", 10); len(q) != 0 {
				t.Fatalf("queued: %+v", q)
			}
		})
	}
}

// signing_secret_file: switchd signs with the file's secret, read at each
// call. The biller's secret in the file pays (every bill rig does);
// another secret there is refused by the biller (401 → 96); a file that
// is missing or holds no secret fails the call before it is sent (91,
// not_sent) and the biller sees nothing. Nothing is posted or queued for
// a refused call, and the error names the file, never a secret.
func TestBillSigningSecretFile(t *testing.T) {
	other := "whsec_" + base64.StdEncoding.EncodeToString([]byte("another-secret-another-secret-00"))
	for name, c := range map[string]struct {
		file     func(t *testing.T) string
		code     string
		reason   string
		refusals int64
	}{
		"other secret": {func(t *testing.T) string { return secretFile(t, other) }, outcome.SystemMalfunction, "http_401", 1},
		"missing":      {func(t *testing.T) string { return filepath.Join(t.TempDir(), "absent.secret") }, outcome.IssuerUnavailable, "not_sent", 0},
		"short":        {func(t *testing.T) string { return secretFile(t, "short") }, outcome.IssuerUnavailable, "not_sent", 0},
	} {
		t.Run(name, func(t *testing.T) {
			file := c.file(t)
			r, b := billerRig(t, sim.DefaultBehavior(), nil, func(h *store.HTTPDestination) { h.SigningSecretFile = file })
			_, err := r.payBill(7, 900)
			if outcome.Code(err) != c.code {
				t.Fatalf("%s: %v (%s), want %s", name, err, outcome.Code(err), c.code)
			}
			if strings.Contains(fmt.Sprint(err), "another-secret") || strings.Contains(fmt.Sprint(err), other) {
				t.Fatalf("a secret in the error: %v", err)
			}
			if s := b.Stats(); s.Payments["unauthorized"] != c.refusals || s.Payments["approved"] != 0 || s.Stored != 0 {
				t.Fatalf("biller saw %+v", s)
			}
			fw, err := r.st.Forward(billKey(7))
			if err != nil || fw.State != store.ForwardDeclined || fw.Reason != c.reason || fw.TransferID != "" {
				t.Fatalf("forward %+v %v", fw, err)
			}
			if a := r.account("demo-biller-settlement"); a.DebitsPosted != 0 || a.CreditsPosted != 0 {
				t.Fatalf("a refused bill posted: %+v", a)
			}
			if q, _ := r.st.SAFQueue("demo-biller", 10); len(q) != 0 {
				t.Fatalf("queued: %+v", q)
			}
		})
	}
}

// A biller over mutual TLS (tls: its CA and our client certificate, an
// https URL): the payment is approved. Each way the link can fail
// before the biller takes the request — no client certificate (the
// biller's TLS refuses it), the biller's certificate not trusted (the
// system roots, not its CA), a key file missing — declines the partner
// with 91 at once, records the forward as not sent (so no follow-up is
// queued), posts nothing, and the biller saw no payment.
func TestBillOverMutualTLS(t *testing.T) {
	pki := testpki.New(t, "biller-ca")
	srvCert, srvKey := pki.Issue(t, "biller", true)
	cliCert, cliKey := pki.Issue(t, "switchd", false)
	billerTLS := func(c *sim.BillerConfig) {
		c.TLS = &sim.TLSFiles{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: pki.CAFile}
	}
	https := func(tc *store.HostTLS) func(*store.HTTPDestination) {
		return func(h *store.HTTPDestination) {
			// A new TLS connection's handshake under -race on a busy
			// machine can take longer than the rig's 300 ms.
			h.URL, h.TLS, h.TimeoutMs = strings.Replace(h.URL, "http://", "https://", 1), tc, 5000
		}
	}

	r, b := billerRig(t, sim.DefaultBehavior(), billerTLS, https(&store.HostTLS{CAFile: pki.CAFile, CertFile: cliCert, KeyFile: cliKey}))
	out, err := r.payBill(8, 1200)
	if err != nil || out.Result.TransferID == "" {
		t.Fatalf("bill over mutual TLS: %+v %v", out, err)
	}
	if s := b.Stats(); s.Payments["approved"] != 1 {
		t.Fatalf("biller saw %+v", s)
	}

	for name, c := range map[string]struct {
		tls *store.HostTLS
		// refusedLate: with TLS 1.3 the biller refuses a missing client
		// certificate after our side finished its handshake and wrote
		// the request. Its alert says so (not sent), unless its close
		// resets the connection first: then the call reads as sent and
		// unanswered, and a follow-up (a cancel) is queued. Either way
		// the partner gets 91 and nothing is posted.
		refusedLate bool
	}{
		"no client certificate": {&store.HostTLS{CAFile: pki.CAFile}, true},
		"biller not trusted":    {&store.HostTLS{CertFile: cliCert, KeyFile: cliKey}, false},
		"key file missing":      {&store.HostTLS{CAFile: pki.CAFile, CertFile: cliCert, KeyFile: cliKey + ".absent"}, false},
	} {
		t.Run(name, func(t *testing.T) {
			r, b := billerRig(t, sim.DefaultBehavior(), billerTLS, https(c.tls))
			_, err := r.payBill(9, 700)
			if outcome.Code(err) != outcome.IssuerUnavailable {
				t.Fatalf("%s: %v (%s), want %s", name, err, outcome.Code(err), outcome.IssuerUnavailable)
			}
			if s := b.Stats(); s.Stored != 0 || len(s.Payments) != 0 {
				t.Fatalf("biller saw %+v", s)
			}
			fw, err := r.st.Forward(billKey(9))
			notSent := fw.State == store.ForwardDeclined && fw.Reason == "not_sent"
			unanswered := c.refusedLate && fw.State == store.ForwardTimedOut
			if err != nil || !(notSent || unanswered) || fw.TransferID != "" {
				t.Fatalf("forward %+v %v", fw, err)
			}
			if a := r.account("demo-biller-settlement"); a.DebitsPosted != 0 || a.CreditsPosted != 0 {
				t.Fatalf("posted: %+v", a)
			}
			if q, _ := r.st.SAFQueue("demo-biller", 10); notSent && len(q) != 0 || unanswered && len(q) != 1 {
				t.Fatalf("queued: %+v (forward %s)", q, fw.State)
			}
		})
	}
}

// billerStats is demo-biller's line of the forwarder's Stats.
func (r *rig) billerStats() host.Stats {
	for _, s := range r.fwd.Stats() {
		if s.Name == "demo-biller" {
			return s
		}
	}
	r.t.Fatalf("no demo-biller in %+v", r.fwd.Stats())
	return host.Stats{}
}

// An http biller has a meter and a circuit like an ISO 8583 host: down,
// each payment is 91 and counted; after biller_breaker_failures of them
// its circuit opens and the next is declined at once without a call;
// after the cooldown one probe goes through, its answer closes the
// circuit, and the stats (metrics, destinations status) say so.
func TestBillerCircuit(t *testing.T) {
	r, b := billerRig(t, sim.DefaultBehavior(), nil, nil, func(cfg *config.File) {
		cfg.Forward.BillerBreakerFailures, cfg.Forward.BillerBreakerCooldown = 3, time.Second
	})
	mode := func(m sim.Mode) {
		bh := b.Behavior()
		bh.Mode = m
		if err := b.SetBehavior(bh); err != nil {
			t.Fatal(err)
		}
	}
	mode(sim.ModeDown) // after its listener took a port: it reopens on the same one
	for i := range 4 {
		if _, err := r.payBill(20+i, 100); outcome.Code(err) != outcome.IssuerUnavailable {
			t.Fatalf("payment %d to a biller that is down: %v", i, err)
		}
	}
	s := r.billerStats()
	if s.Kind != "http" || !s.CircuitOpen || s.Ready || s.CircuitOpens != 1 || s.Sent != 3 || s.DialFailures != 3 || s.Unavailable != 4 || s.Answered != 0 {
		t.Fatalf("stats after 4 payments to a dead biller: %+v", s)
	}
	if fw, _ := r.st.Forward(billKey(23)); fw.State != store.ForwardDeclined || fw.Reason != "not_sent" {
		t.Fatalf("the payment the open circuit declined: %+v", fw)
	}

	mode(sim.ModeApprove)
	if _, err := r.payBill(30, 100); outcome.Code(err) != outcome.IssuerUnavailable {
		t.Fatalf("within the cooldown: %v", err)
	}
	if got := b.Stats().Payments["approved"]; got != 0 {
		t.Fatalf("the open circuit let %d payments through", got)
	}
	// Real time: the rig's clock offset would also age the probe's own
	// forward past its deadline for the sweeper.
	time.Sleep(1100 * time.Millisecond) // past the cooldown
	if out, err := r.payBill(31, 100); err != nil || out.Result.TransferID == "" {
		t.Fatalf("the probe: %+v %v", out, err)
	}
	s = r.billerStats()
	if s.CircuitOpen || !s.Ready || s.Answered != 1 || s.LatencySumSeconds <= 0 {
		t.Fatalf("stats after the probe: %+v", s)
	}
}

// A biller's client certificate is rotated in place: the files are looked
// at again after forward.biller_tls_check, and the new ones are used. Files
// that do not load keep the client in use (a rotation half done breaks
// nothing); a certificate the biller does not trust is refused (91, not
// sent) until good files come back.
func TestBillerTLSRotation(t *testing.T) {
	trusted := testpki.New(t, "biller-ca")
	other := testpki.New(t, "another-ca")
	srvCert, srvKey := trusted.Issue(t, "biller", true)
	goodCert, goodKey := trusted.Issue(t, "switchd", false)
	badCert, badKey := other.Issue(t, "switchd", false)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	install := func(c, k string) { testpki.Install(t, c, k, cert, key) }
	install(goodCert, goodKey)
	const checkEvery = 100 * time.Millisecond
	r, b := billerRig(t, sim.DefaultBehavior(), func(c *sim.BillerConfig) {
		c.TLS = &sim.TLSFiles{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: trusted.CAFile}
	}, func(h *store.HTTPDestination) {
		h.URL, h.TLS = strings.Replace(h.URL, "http://", "https://", 1), &store.HostTLS{CAFile: trusted.CAFile, CertFile: cert, KeyFile: key}
		h.TimeoutMs = 5000 // a new TLS connection under -race on a busy machine: not the rig's 300 ms
	}, func(cfg *config.File) { cfg.Forward.BillerTLSCheck = checkEvery })
	stan := 40
	pay := func(step, want string) {
		t.Helper()
		stan++
		_, err := r.payBill(stan, 100)
		if got := outcome.Code(err); got != want {
			fw, _ := r.st.Forward(billKey(stan))
			t.Fatalf("%s: %v (%s), want %s; forward %s %s", step, err, got, want, fw.State, fw.Reason)
		}
	}
	later := func() { time.Sleep(checkEvery + 20*time.Millisecond) }

	pay("first", outcome.Approved)
	os.WriteFile(key, []byte("not a key"), 0o600) // half done
	later()
	pay("a rotation half done", outcome.Approved)
	install(badCert, badKey)
	later()
	pay("a certificate the biller does not trust", outcome.IssuerUnavailable)
	install(goodCert, goodKey)
	later()
	pay("good files back", outcome.Approved)
	// Three payments posted. (The biller's late TLS 1.3 refusal of the
	// untrusted certificate may read as unanswered: its follow-up then asks
	// again once good files are back, and cancels what that approves.)
	if a := r.account("demo-biller-settlement"); a.CreditsPosted != 300 {
		t.Fatalf("biller position %+v, want 3.00 posted", a)
	}
	if got := b.Stats().Payments["approved"]; got < 3 {
		t.Fatalf("biller approved %d, want at least 3", got)
	}
}

// Close returns while a biller's follow-ups are being sent. A SAF
// sender's call takes the http clients' lock (httpMu), never the one
// Close and the destination sync hold while they wait for a sender to
// stop; with mu there, a sender starting a call in that window would
// wait for ever (a narrow window: this test passes either way more often
// than not, the lock order is what rules it out).
func TestCloseWhileBillerFollowUpsSend(t *testing.T) {
	r, b := newBillerRig(t, sim.DefaultBehavior(), nil)
	bh := b.Behavior()
	bh.Mode = sim.ModeTimeout // holds every call past our 300 ms
	if err := b.SetBehavior(bh); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := r.payBill(50+i, 100); outcome.Code(err) != outcome.IssuerUnavailable {
			t.Fatalf("payment %d: %v", i, err)
		}
	}
	r.waitFor("follow-ups being sent", func() bool {
		q, _ := r.st.SAFQueue("demo-biller", 10)
		for _, e := range q {
			if e.Sends > 0 {
				return true
			}
		}
		return false
	})
	closed := make(chan struct{})
	go func() { r.fwd.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return while follow-ups were being sent")
	}
}
