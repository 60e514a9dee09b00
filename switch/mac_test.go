package switching_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/mac"
	"github.com/switchd/switchd/store"
	switching "github.com/switchd/switchd/switch"
)

const testKEKHex = "8f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"

func testKEK(t testing.TB) *mac.KEK {
	k, err := mac.NewKEK(mustHex(t, testKEKHex))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// setMACKey proposes admin op 17 for partner at time at: material becomes
// its key, the one before stays valid for overlap.
func (h *harness) setMACKey(kek *mac.KEK, partner string, alg mac.Alg, pad mac.Padding, material string, at time.Time, overlap time.Duration) *mac.Key {
	h.t.Helper()
	w, kcv, err := kek.Wrap(partner, alg, pad, mustHex(h.t, material))
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := h.node.Propose(ctx, store.Command{Op: store.OpPutMACKey, Key: "mac|" + partner + "|" + kcv, Fingerprint: kcv,
		Time: at.UnixNano(), Admin: &store.Admin{Actor: "test", Reason: "key change", MACKey: &store.MACKeyChange{
			Partner: partner, Alg: string(alg), Padding: string(pad), KCV: kcv, KEK: kek.ID(), Wrapped: w, Overlap: overlap}}})
	if err != nil || res.Status != store.StatusOK {
		h.t.Fatalf("op 17: %v %+v", err, res)
	}
	k, err := mac.NewKey(alg, pad, mustHex(h.t, material))
	if err != nil {
		h.t.Fatal(err)
	}
	return k
}

// macClient is a partner that MACs its requests and checks the answers'
// MACs by packing with the codec itself (not with the lane's patching).
type macClient struct {
	t    testing.TB
	c    net.Conn
	br   *bufio.Reader
	cod  *codec.Codec
	fr   codec.Framer
	wire int // MAC field bytes on the wire
}

func (tl *testLane) macClient(dialect string) *macClient {
	cod, err := codec.Load(dialect)
	if err != nil {
		tl.h.t.Fatal(err)
	}
	cl := tl.dial("")
	wire := 16
	if dialect == "iso87binary" {
		wire = 8
	}
	return &macClient{t: tl.h.t, c: cl.c, br: cl.br, cod: cod, fr: tl.h.fr, wire: wire}
}

func secondary(m *codec.Message) bool {
	for id := 65; id <= 128; id++ {
		if m.Has(id) {
			return true
		}
	}
	return false
}

// exchange sends line MACed under key (nil: no MAC field; corrupt flips
// one bit of the MAC) and returns the answer and its raw bytes.
func (cl *macClient) exchange(line string, key *mac.Key, corrupt bool) (*codec.Message, []byte) {
	cl.t.Helper()
	m, err := parseMessage(line)
	if err != nil {
		cl.t.Fatal(err)
	}
	if key != nil {
		id := 64
		if secondary(m) {
			id = 128
		}
		m.Set(id, string(make([]byte, 8)))
		p, err := cl.cod.Pack(nil, m)
		if err != nil {
			cl.t.Fatal(err)
		}
		tag := key.Sum(p[:len(p)-cl.wire])
		if corrupt {
			tag[3] ^= 0x10
		}
		m.Set(id, string(tag[:]))
	}
	p, err := cl.cod.Pack(nil, m)
	if err != nil {
		cl.t.Fatal(err)
	}
	f, _ := cl.fr.AppendFrame(nil, p)
	if _, err := cl.c.Write(f); err != nil {
		cl.t.Fatal(err)
	}
	b, err := cl.fr.ReadFrame(cl.br, nil)
	if err != nil {
		cl.t.Fatal(err)
	}
	resp := new(codec.Message)
	if err := cl.cod.Unpack(b, resp); err != nil {
		cl.t.Fatal(err)
	}
	return resp, b
}

// answerMAC reports whether the answer carries a MAC in the right field
// that verifies under key.
func (cl *macClient) answerMAC(resp *codec.Message, raw []byte, key *mac.Key) bool {
	id, other := 64, 128
	if secondary(resp) {
		id, other = 128, 64
	}
	if !resp.Has(id) || (id == 128 && resp.Has(other)) {
		return false
	}
	return key.Verify(raw[:len(raw)-cl.wire], []byte(resp.Get(id)))
}

// securityCount is switchd_lane_security_violations_total{reason}.
func (tl *testLane) securityCount(reason string) float64 {
	mfs, err := tl.reg.Gather()
	if err != nil {
		tl.h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "switchd_lane_security_violations_total" {
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if lp.GetName() == "reason" && lp.GetValue() == reason {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	return 0
}

const (
	keyA = "7962D9ECE03D1ACD4C76089DCE131543"
	keyB = "0123456789ABCDEFFEDCBA9876543210"
	keyC = "2b7e151628aed2a6abf7158809cf4f3c"
)

// TestLaneMAC: a partner that requires a MAC is served with a good one and
// gets its answer MACed; a wrong or missing MAC is declined 63, counted,
// answered without a MAC, and nothing is posted. Both dialects (16 hex
// characters or 8 raw bytes on the wire), x919 and aes-cmac, field 64 and
// field 128 (a reversal has field 90: a secondary bitmap).
func TestLaneMAC(t *testing.T) {
	for _, tc := range []struct {
		dialect string
		alg     mac.Alg
		pad     mac.Padding
		key     string
	}{
		{"iso87ascii", mac.AlgX919, mac.PadMethod1, keyA},
		{"iso87binary", mac.AlgX919, mac.PadMethod2, keyB},
		{"iso87ascii", mac.AlgAESCMAC, "", keyC},
	} {
		t.Run(fmt.Sprintf("%s-%s%s", tc.dialect, tc.alg, tc.pad), func(t *testing.T) {
			h := newHarness(t, nil)
			kek := testKEK(t)
			h.pipe.UseKEK(kek)
			tl := newTestLane(h, func(lc *switching.LaneConfig) { lc.Name, lc.Dialect = "demo", tc.dialect })
			key := h.setMACKey(kek, "demo-acquirer", tc.alg, tc.pad, tc.key, time.Now(), 0)
			cl := tl.macClient(tc.dialect)

			resp, raw := cl.exchange(purchase(1, "4111111111111111", 1000), key, false)
			if resp.Get(39) != "00" || !cl.answerMAC(resp, raw, key) {
				t.Fatalf("good MAC: %s, answer MAC verifies %v", format(resp), cl.answerMAC(resp, raw, key))
			}
			card, sums := h.account("card-4111"), h.ledgerSums()
			for _, bad := range []struct {
				name    string
				key     *mac.Key
				corrupt bool
				reason  string
			}{
				{"wrong", key, true, "mac_invalid"},
				{"missing", nil, false, "mac_missing"},
			} {
				resp, _ := cl.exchange(purchase(2, "4111111111111111", 1000), bad.key, bad.corrupt)
				if resp.Get(39) != "63" || resp.Has(64) || resp.Has(128) {
					t.Errorf("%s MAC: %s, want 63 without a MAC", bad.name, format(resp))
				}
				if got := tl.securityCount(bad.reason); got != 1 {
					t.Errorf("%s MAC: security_violations{reason=%s} = %v", bad.name, bad.reason, got)
				}
			}
			if h.account("card-4111") != card || h.ledgerSums() != sums {
				t.Fatalf("a declined MAC moved money:\n%s\n%s", card, h.account("card-4111"))
			}
			// The same STAN with a good MAC is a new request, served: the
			// declines were not stored under its key either.
			if resp, raw := cl.exchange(purchase(2, "4111111111111111", 1000), key, false); resp.Get(39) != "00" || !cl.answerMAC(resp, raw, key) {
				t.Fatalf("after the declines: %s", format(resp))
			}
			// A reversal carries field 90: the MAC is in 128, both ways.
			rev := fmt.Sprintf("0400 2=4111111111111111 3=000000 4=%012d 7=1121120001 11=000003 32=100001 37=%012d 41=TERM0001 49=840 90=0200%06d11211200000000010000100000000000",
				1000, 3, 2)
			resp, raw = cl.exchange(rev, key, false)
			if resp.Get(39) != "00" || !resp.Has(128) || !cl.answerMAC(resp, raw, key) {
				t.Fatalf("reversal: %s", format(resp))
			}
			// Network management needs no MAC.
			if resp, _ := cl.exchange("0800 7=1121120000 11=000009 70=301", nil, false); resp.Get(39) != "00" || resp.Has(64) {
				t.Fatalf("echo: %s", format(resp))
			}
		})
	}
}

// TestLaneMACKeyChangeOverlap: after a key change with an overlap both the
// old and the new key verify (and each answer is MACed with the key its
// request used); once the overlap is over only the new one does.
func TestLaneMACKeyChangeOverlap(t *testing.T) {
	h := newHarness(t, nil)
	kek := testKEK(t)
	h.pipe.UseKEK(kek)
	tl := newTestLane(h, func(lc *switching.LaneConfig) { lc.Name = "demo" })
	cl := tl.macClient("iso87ascii")
	a := h.setMACKey(kek, "demo-acquirer", mac.AlgX919, mac.PadMethod1, keyA, time.Now(), 0)
	b := h.setMACKey(kek, "demo-acquirer", mac.AlgAESCMAC, "", keyC, time.Now(), time.Hour)
	for i, k := range []*mac.Key{a, b} {
		resp, raw := cl.exchange(purchase(10+i, "4111111111111111", 100), k, false)
		if resp.Get(39) != "00" || !cl.answerMAC(resp, raw, k) {
			t.Fatalf("during the overlap, %v: %s", k, format(resp))
		}
	}
	// A change proposed two hours ago with a one-hour overlap: the key it
	// replaced (b) is no longer accepted; a, two keys back, never is.
	c := h.setMACKey(kek, "demo-acquirer", mac.AlgX919, mac.PadMethod2, keyB, time.Now().Add(-2*time.Hour), time.Hour)
	card := h.account("card-4111")
	for i, k := range []*mac.Key{b, a} {
		if resp, _ := cl.exchange(purchase(20+i, "4111111111111111", 100), k, false); resp.Get(39) != "63" {
			t.Fatalf("after the overlap, %v: %s", k, format(resp))
		}
	}
	if h.account("card-4111") != card {
		t.Fatal("an expired key moved money")
	}
	if resp, raw := cl.exchange(purchase(22, "4111111111111111", 100), c, false); resp.Get(39) != "00" || !cl.answerMAC(resp, raw, c) {
		t.Fatalf("new key: %s", format(resp))
	}
	p, _ := h.st.Directory().Partner("demo-acquirer")
	if p.MAC.Current.KCV != c.KCV() || p.MAC.Previous == nil || p.MAC.Previous.KCV != b.KCV() {
		t.Fatalf("partner MAC: %+v", p.MAC)
	}
}

// TestLaneMACWithoutKEK: a node without the KEK cannot check a partner's
// MAC: it fails closed (96), posts nothing, and says why in its log
// without key material.
func TestLaneMACWithoutKEK(t *testing.T) {
	h := newHarness(t, nil)
	kek := testKEK(t)
	tl := newTestLane(h, func(lc *switching.LaneConfig) { lc.Name = "demo" })
	key := h.setMACKey(kek, "demo-acquirer", mac.AlgX919, mac.PadMethod1, keyA, time.Now(), 0)
	cl := tl.macClient("iso87ascii")
	card := h.account("card-4111")
	if resp, _ := cl.exchange(purchase(1, "4111111111111111", 100), key, false); resp.Get(39) != "96" || resp.Has(64) {
		t.Fatalf("without KEK: %s", format(resp))
	}
	// Another KEK than the one the key is wrapped under: the same.
	other, _ := mac.NewKEK(bytes.Repeat([]byte{9}, 32))
	h.pipe.UseKEK(other)
	if resp, _ := cl.exchange(purchase(2, "4111111111111111", 100), key, false); resp.Get(39) != "96" {
		t.Fatalf("other KEK: %s", format(resp))
	}
	if h.account("card-4111") != card {
		t.Fatal("money moved")
	}
	tl.mu.Lock()
	logs := tl.logs.String()
	tl.mu.Unlock()
	if !strings.Contains(logs, "no key-encryption key") || strings.Contains(strings.ToLower(logs), strings.ToLower(keyA[:10])) ||
		strings.Contains(logs, testKEKHex[:10]) {
		t.Fatalf("log:\n%s", logs)
	}
	// Partners without a MAC are not affected.
	if resp, _ := cl.exchange(strings.Replace(purchase(3, "4111111111111111", 100), "32=100001", "32=100002", 1)+" 41=AGENT001 3=500000 48=BT=GRID", nil, false); resp.Get(39) != "00" {
		t.Fatalf("MAC-less partner: %s", format(resp))
	}
}
