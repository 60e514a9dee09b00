package switching_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchd/switchd/config"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
	switching "github.com/switchd/switchd/switch"
)

var partnerPuts atomic.Int64

// putPins replaces partner id's pins through the cluster, as ops does,
// with the clock's time in the command (which pins are live is judged
// at it).
func (h *harness) putPins(id string, pins ...store.CertPin) {
	h.t.Helper()
	cur, ok := h.st.Directory().Partner(id)
	if !ok {
		h.t.Fatalf("no partner %s", id)
	}
	p := *cur
	p.CertPins = pins
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := partnerPuts.Add(1)
	res, err := h.node.Propose(ctx, store.Command{Op: store.OpPutPartner, Key: fmt.Sprintf("test|pins|%s|%d", id, n),
		Fingerprint: fmt.Sprintf("fp-%d", n), Time: time.Now().UnixNano(),
		Admin: &store.Admin{Actor: "test", Reason: "certificate rotation", Partner: &p}})
	if err == nil {
		err = res.Status.Err()
	}
	if err != nil {
		h.t.Fatalf("put pins of %s: %v %s", id, err, res.Detail)
	}
}

// A pin names its partner for connections whose handshake came before
// its not-after: an established connection keeps being served when the
// instant passes, a new one is declined 63. Adding a pin serves new
// connections with it and leaves established ones alone; removing a pin
// reaches established connections too (at their next message).
func TestPinNotAfterAtHandshake(t *testing.T) {
	pki := newTestPKI(t)
	now := time.Now()
	certFile, keyFile := pki.laneFiles("lane")
	certA, leafA := pki.issue("demo-acquirer", false, now.Add(-time.Hour), now.Add(time.Hour))
	certB, leafB := pki.issue("demo-acquirer next", false, now.Add(-time.Hour), now.Add(2*time.Hour))
	h := newHarness(t, func(f *config.File) {
		for i := range f.Switch.Partners {
			if f.Switch.Partners[i].ID == "demo-acquirer" {
				f.Switch.Partners[i].CertPins = []store.CertPin{pinOf(leafA)}
			}
		}
	})
	tl := newTestLane(h, func(lc *switching.LaneConfig) {
		lc.Name, lc.Kind = "demo", switching.LanePublic
		lc.TLS = &switching.LaneTLS{CertFile: certFile, KeyFile: keyFile, ClientCAFile: filepath.Join(pki.dir, "ca.pem")}
	})
	roots := x509.NewCertPool()
	roots.AddCert(pki.ca)
	dial := func(cert tls.Certificate) *client {
		c, err := tls.Dial("tcp", tl.Addr().String(), &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(30 * time.Second))
		return &client{t: t, c: c, br: bufio.NewReader(c), h: h}
	}
	stan := 0
	buy := func(cl *client) string {
		t.Helper()
		stan++
		cl.write(purchase(stan, "4111111111111111", 1))
		m, err := cl.read()
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		return m.Get(39)
	}
	held := dial(certA)
	if rc := buy(held); rc != "00" {
		t.Fatalf("pinned certificate: %s", rc)
	}
	// Another key: not a pin yet.
	if rc := buy(dial(certB)); rc != "63" {
		t.Fatalf("a certificate before its pin is added: %s, want 63", rc)
	}
	// The pin's not-after set to now: after the held connection's
	// handshake, before any new one's.
	h.putPins("demo-acquirer", store.CertPin{SHA256: switching.CertPin(leafA), NotAfter: time.Now()})
	if rc := buy(held); rc != "00" {
		t.Fatalf("established connection after its pin's not-after passed: %s, want 00", rc)
	}
	if rc := buy(dial(certA)); rc != "63" {
		t.Fatalf("new connection with a pin past its not-after: %s, want 63", rc)
	}
	// Rotation: the next certificate's pin added, the old one kept.
	h.putPins("demo-acquirer", pinOf(leafA), pinOf(leafB))
	next := dial(certB)
	if rc := buy(next); rc != "00" {
		t.Fatalf("new certificate once pinned: %s", rc)
	}
	if rc := buy(held); rc != "00" {
		t.Fatalf("established connection after a pin was added: %s", rc)
	}
	// The old pin removed: revoked, also for the connection that holds it.
	h.putPins("demo-acquirer", pinOf(leafB))
	if rc := buy(held); rc != "63" {
		t.Fatalf("established connection after its pin was removed: %s, want 63", rc)
	}
	if rc := buy(next); rc != "00" {
		t.Fatalf("the new certificate after the old pin went: %s", rc)
	}
	if st := tl.Status(); len(st.Partners) == 0 || st.Partners[len(st.Partners)-1].Partner != "demo-acquirer" {
		t.Errorf("lane status by partner: %+v", st.Partners)
	}
}

// dialInNetnsFrom is dialInNetns from local address from.
func dialInNetnsFrom(t testing.TB, ns, from, addr string) net.Conn {
	t.Helper()
	c, err := inNetns(ns, func() (net.Conn, error) {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		return d.Dial("tcp", addr)
	})
	if err != nil {
		t.Fatalf("dial %s from %s in %s: %v", addr, from, ns, err)
	}
	return c
}

// netnsPair makes network namespace ns and a veth pair to it: the host
// side has hostIP, the namespace side peerIPs (all in prefix/29). Root
// and iproute2 are needed: skipped without (failed under
// SWITCHD_REQUIRE_NETNS, as in CI).
func netnsPair(t *testing.T, tag string, second int) (ns, hostIP string, peerIPs []string) {
	t.Helper()
	skip := t.Skip
	if os.Getenv("SWITCHD_REQUIRE_NETNS") != "" {
		skip = t.Fatal
	}
	if os.Geteuid() != 0 {
		skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skip("needs iproute2 (ip)")
	}
	pid := os.Getpid()
	ns = fmt.Sprintf("swd-%s-%d", tag, pid)
	host, peer := fmt.Sprintf("swr%sh%d", tag[:1], pid%10000), fmt.Sprintf("swr%sp%d", tag[:1], pid%10000)
	base := fmt.Sprintf("10.%d.%d.", second, pid%250)
	hostIP = base + "1"
	peerIPs = []string{base + "2", base + "3", base + "4"}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run("link", "add", host, "type", "veth", "peer", "name", peer)
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
	run("link", "set", peer, "netns", ns)
	run("addr", "add", hostIP+"/29", "dev", host)
	run("link", "set", host, "up")
	for _, ip := range peerIPs {
		run("-n", ns, "addr", "add", ip+"/29", "dev", peer)
	}
	run("-n", ns, "link", "set", peer, "up")
	run("-n", ns, "link", "set", "lo", "up")
	return ns, hostIP, peerIPs
}

// serverFiles issues a lane certificate for ip from p and writes it as
// name.pem and name.key.
func (p *testPKI) serverFiles(name, ip string) (certFile, keyFile string) {
	key, _ := ecdsa.GenerateKey(p.caKey.Curve, rand.Reader)
	p.serial++
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: "lane " + name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.ParseIP(ip)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		p.t.Fatal(err)
	}
	k, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.write(name+".pem", "CERTIFICATE", der), p.write(name+".key", "EC PRIVATE KEY", k)
}

// TestTrustAtTheEdge is the issue's "Done means", in a network namespace
// over a veth pair (only addresses inside it): a partner connecting over
// mutual TLS with its certificate is served; from an address outside the
// allowlist, with an expired certificate, with another partner's
// certificate, or claiming another partner's acquirer id, it is refused,
// and each refusal is counted (metrics) and audited (read back from the
// audit chain). Then a certificate is rotated with overlap under load
// with zero failed requests: steady purchases over several mTLS
// connections while the new pin is added, the lane's own certificate and
// CA bundle are rotated by reload, the clients move to their new
// certificate, and the old pin is removed. Every request is counted;
// none fails and no established connection is dropped. Steps follow the
// load's progress (answers counted), not the clock.
func TestTrustAtTheEdge(t *testing.T) {
	ns, hostIP, peers := netnsPair(t, "edge", 233)
	partnerIP, strangerIP, otherIP := peers[0], peers[1], peers[2]

	ca1, ca2 := newTestPKI(t), newTestPKI(t)
	now := time.Now()
	cert1, key1 := ca1.serverFiles("lane1", hostIP)
	cert2, key2 := ca2.serverFiles("lane2", hostIP)
	oldA, leafOldA := ca1.issue("demo-acquirer", false, now.Add(-time.Hour), now.Add(time.Hour))
	newA, leafNewA := ca2.issue("demo-acquirer 2027", false, now.Add(-time.Minute), now.Add(2*time.Hour))
	expiredA, _ := ca1.issue("demo-acquirer 2025", false, now.Add(-48*time.Hour), now.Add(-time.Hour))
	certB, leafB := ca1.issue("bank-b", false, now.Add(-time.Hour), now.Add(time.Hour))

	h := newHarness(t, func(f *config.File) {
		for i := range f.Switch.Partners {
			if f.Switch.Partners[i].ID == "demo-acquirer" {
				f.Switch.Partners[i].CertPins = []store.CertPin{pinOf(leafOldA)}
				f.Switch.Partners[i].Lanes = []string{"edge"}
			}
		}
		f.Switch.Partners = append(f.Switch.Partners, switching.Partner{ID: "bank-b", AcquirerIDs: []string{"200001"},
			Lanes: []string{"edge"}, SettlementAccount: "demo-acquirer-settlement", CertPins: []store.CertPin{pinOf(leafB)}})
		f.Accounts = append(f.Accounts, payment.AccountSeed{ID: "card-edge", Kind: store.KindCardholder, Currency: "USD",
			PAN: "4242424242424242", Opening: "100000000.00", FundedBy: "bank-funding-usd"})
	})
	reg := prometheus.NewRegistry()
	m := switching.NewMetrics(reg)
	audit, err := switching.NewRefusalAudit(switching.DefaultRefusalAuditConfig(), h.node, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	var lcfg switching.LaneConfig
	tl := newAuditedLane(h, reg, m, audit, func(lc *switching.LaneConfig) {
		lc.Name, lc.Kind, lc.Listen = "edge", switching.LanePublic, hostIP+":0"
		lc.Allow = []string{partnerIP + "/32", otherIP + "/32"}
		lc.TLS = &switching.LaneTLS{CertFile: cert1, KeyFile: key1, ClientCAFile: filepath.Join(ca1.dir, "ca.pem")}
		lcfg = *lc
	})
	closeAudit := sync.OnceFunc(func() { tl.Close(); audit.Close() })
	t.Cleanup(closeAudit)
	roots := x509.NewCertPool() // the partner trusts both lane CAs while they rotate
	roots.AddCert(ca1.ca)
	roots.AddCert(ca2.ca)
	dial := func(from string, cert *tls.Certificate) (*client, error) {
		raw := dialInNetnsFrom(t, ns, from, tl.Addr().String())
		t.Cleanup(func() { raw.Close() })
		cfg := &tls.Config{RootCAs: roots, ServerName: hostIP, MinVersion: tls.VersionTLS12}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		tc := tls.Client(raw, cfg)
		tc.SetDeadline(time.Now().Add(30 * time.Second))
		if err := tc.Handshake(); err != nil {
			return nil, err
		}
		return &client{t: t, c: tc, br: bufio.NewReader(tc), h: h}, nil
	}
	var stan atomic.Int64
	buy := func(cl *client, acquirer string) (string, error) {
		line := purchase(int(stan.Add(1)), "4242424242424242", 1)
		if acquirer != "100001" {
			line = replaceField(line, 32, acquirer)
		}
		cl.write(line)
		m, err := cl.read()
		if err != nil {
			return "", err
		}
		return m.Get(39), nil
	}
	mustBuy := func(cl *client, acquirer, want string) {
		t.Helper()
		if rc, err := buy(cl, acquirer); err != nil || rc != want {
			t.Fatalf("purchase as %s: %q %v, want %s", acquirer, rc, err, want)
		}
	}

	// Served: the partner, its certificate, its address.
	a, err := dial(partnerIP, &oldA)
	if err != nil {
		t.Fatalf("the partner's handshake: %v", err)
	}
	mustBuy(a, "100001", "00")
	before := h.ledgerSums()

	// Refused, each counted and audited.
	stranger := clientOf(h, dialInNetnsFrom(t, ns, strangerIP, tl.Addr().String()))
	stranger.closedByPeer(5 * time.Second)
	if cl, err := dial(partnerIP, &expiredA); err == nil {
		// TLS 1.3: the client learns of the refusal on its first read.
		if _, err := buy(cl, "100001"); err == nil {
			t.Fatal("expired certificate: served")
		}
	}
	b, err := dial(otherIP, &certB)
	if err != nil {
		t.Fatalf("bank-b's handshake: %v", err)
	}
	mustBuy(b, "100001", "63") // another partner's certificate claiming demo-acquirer
	mustBuy(a, "200001", "63") // demo-acquirer's certificate claiming bank-b's acquirer id
	waitFor(t, func() bool { return tl.rejected("tls_handshake") == 1 })
	if tl.rejected("not_allowed") != 1 || tl.metric("switchd_lane_security_violations_total") != 2 {
		t.Errorf("counted: not_allowed %v, security violations %v; want 1 and 2",
			tl.rejected("not_allowed"), tl.metric("switchd_lane_security_violations_total"))
	}
	if after := h.ledgerSums(); after != before {
		t.Fatal("refusals changed the ledger")
	}
	recs := refusalRecords(t, h, "edge", 4, 10*time.Second)
	want := map[string]string{ // reason source → cause
		"not_allowed " + strangerIP:  "",
		"tls_handshake " + partnerIP: "expired",
		"certificate " + otherIP:     "acquirer 100001",
		"certificate " + partnerIP:   "acquirer 200001",
	}
	for _, ev := range recs {
		k := ev.Reason + " " + ev.Source
		cause, ok := want[k]
		if !ok || ev.Count != 1 || cause != "" && ev.Causes[cause] != 1 {
			t.Errorf("audit record %+v, want one of %v", ev, want)
		}
		delete(want, k)
	}
	if len(want) > 0 {
		t.Errorf("refusals not audited: %v", want)
	}
	a.c.Close()
	b.c.Close()

	// Rotation under load.
	const workers = 4
	type workerState struct {
		cl       *client
		cert     *tls.Certificate
		afterOld atomic.Int64 // answered on the old connection after the lane's reload
	}
	var (
		answered, failed atomic.Int64
		reloaded         atomic.Bool
		moved            atomic.Int64
		target           atomic.Pointer[tls.Certificate]
		stop             atomic.Bool
		failMu           sync.Mutex
		failures         []string
		wg               sync.WaitGroup
	)
	fail := func(format string, args ...any) {
		failed.Add(1)
		failMu.Lock()
		if len(failures) < 10 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
		failMu.Unlock()
	}
	target.Store(&oldA)
	states := make([]*workerState, workers)
	for i := range states {
		cl, err := dial(partnerIP, &oldA)
		if err != nil {
			t.Fatal(err)
		}
		states[i] = &workerState{cl: cl, cert: &oldA}
	}
	for i := range states {
		wg.Add(1)
		go func(w *workerState) {
			defer wg.Done()
			for !stop.Load() {
				if next := target.Load(); next != w.cert {
					// Move: a new connection with the new certificate,
					// then the old one closed by the client, idle.
					cl, err := dial(partnerIP, next)
					if err != nil {
						fail("handshake with the new certificate: %v", err)
						return
					}
					w.cl.c.Close()
					w.cl, w.cert = cl, next
					moved.Add(1)
				}
				rc, err := buy(w.cl, "100001")
				switch {
				case err != nil:
					fail("request on a connection with %s: %v", w.cert.Leaf.Subject.CommonName, err)
					return
				case rc != "00":
					fail("request with %s answered %s", w.cert.Leaf.Subject.CommonName, rc)
				}
				answered.Add(1)
				if w.cert == &oldA && reloaded.Load() {
					w.afterOld.Add(1)
				}
			}
		}(states[i])
	}
	t.Cleanup(func() { stop.Store(true); wg.Wait() }) // a failed step leaves no worker behind
	progress := func(n int64, what string) {
		t.Helper()
		goal := answered.Load() + n
		deadline := time.Now().Add(15 * time.Second)
		for answered.Load() < goal && failed.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d answers, want %d", what, answered.Load(), goal)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	until := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() && failed.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 15s", what)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	progress(100, "steady load")
	h.putPins("demo-acquirer", pinOf(leafOldA), pinOf(leafNewA)) // 1. the new pin, beside the old
	progress(100, "after the new pin")
	bundle := filepath.Join(t.TempDir(), "bundle.pem")
	b1, _ := os.ReadFile(filepath.Join(ca1.dir, "ca.pem"))
	b2, _ := os.ReadFile(filepath.Join(ca2.dir, "ca.pem"))
	if err := os.WriteFile(bundle, append(b1, b2...), 0o600); err != nil {
		t.Fatal(err)
	}
	lcfg.TLS = &switching.LaneTLS{CertFile: cert2, KeyFile: key2, ClientCAFile: bundle}
	if res, err := switching.ReloadLanes([]*switching.Lane{tl.Lane}, []switching.LaneConfig{lcfg}); err != nil || !res[0].Reloaded {
		t.Fatalf("2. reload with the new lane certificate and both CAs: %+v %v", res, err)
	}
	reloaded.Store(true)
	progress(100, "after the reload")
	until("every old connection served after the reload", func() bool {
		for _, w := range states {
			if w.afterOld.Load() == 0 {
				return false
			}
		}
		return true
	})
	target.Store(&newA) // 3. clients move to the new certificate
	until("every client moved", func() bool { return moved.Load() == workers })
	progress(100, "after the move")
	h.putPins("demo-acquirer", pinOf(leafNewA)) // 4. the old pin goes
	progress(100, "after the old pin's removal")
	stop.Store(true)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during the rotation: %v", failed.Load(), answered.Load()+failed.Load(), failures)
	}
	t.Logf("rotation under load: %d requests, 0 failed, %d connections moved", answered.Load(), moved.Load())

	// The old certificate, unpinned: declined on a new connection; after
	// the old CA leaves the bundle, refused at the handshake.
	old, err := dial(partnerIP, &oldA)
	if err != nil {
		t.Fatalf("old certificate while its CA is still trusted: %v", err)
	}
	mustBuy(old, "100001", "63")
	lcfg.TLS = &switching.LaneTLS{CertFile: cert2, KeyFile: key2, ClientCAFile: filepath.Join(ca2.dir, "ca.pem")}
	if _, err := switching.ReloadLanes([]*switching.Lane{tl.Lane}, []switching.LaneConfig{lcfg}); err != nil {
		t.Fatal(err)
	}
	if cl, err := dial(partnerIP, &oldA); err == nil {
		if _, err := buy(cl, "100001"); err == nil {
			t.Fatal("old CA's certificate served after the bundle dropped it")
		}
	}
	waitFor(t, func() bool { return tl.rejected("tls_handshake") == 2 })
	for _, w := range states {
		mustBuy(w.cl, "100001", "00") // the moved connections outlived that reload too
	}
	closeAudit()
	c := countBy(refusalRecords(t, h, "edge", 5, 0))
	if c["tls_handshake "+partnerIP] != 2 || c["certificate "+partnerIP] != 2 {
		t.Errorf("refusals after the rotation not audited: %v", c)
	}
}

// A config file's partner pins: [{sha256, not_after}] with RFC 3339 times;
// a pin without not_after is refused at start like the FSM would.
func TestConfigCertPins(t *testing.T) {
	pin := strings.Repeat("ab", 32)
	load := func(pins string) (config.File, error) {
		path := filepath.Join(t.TempDir(), "switchd.yaml")
		body := "switch:\n  card_key: 00112233445566778899aabbccddeeff00112233445566778899aabbccddee01\n  partners:\n" +
			"    - {id: demo-acquirer, acquirer_ids: [\"100001\"], settlement_account: demo-acquirer-settlement, cert_pins: " + pins + "}\n"
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := config.Load(path)
		if err != nil {
			return f, err
		}
		f.Finish()
		return f, f.Switch.Validate()
	}
	f, err := load("[{sha256: " + pin + ", not_after: 2099-01-31T00:00:00Z}]")
	if err != nil {
		t.Fatal(err)
	}
	ps, _ := f.Switch.DirectorySeeds()
	if len(ps) != 1 || len(ps[0].CertPins) != 1 || ps[0].CertPins[0].SHA256 != pin ||
		!ps[0].CertPins[0].NotAfter.Equal(time.Date(2099, 1, 31, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("seeded pins: %+v", ps)
	}
	if _, err := load("[{sha256: " + pin + "}]"); err == nil || !strings.Contains(err.Error(), "not_after is required") {
		t.Fatalf("a pin without not_after: %v", err)
	}
}
