package switching

import (
	"bytes"
	"errors"
	"testing"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/mac"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/store"
)

// macFixture is a partner that requires alg, its key, a guard holding the
// KEK, and the ascii dialect's codec and MAC layout.
type macFixture struct {
	p   store.Partner
	key *mac.Key
	g   *macGuard
	c   *codec.Codec
	lay macLayout
}

func newMACFixture(t testing.TB, alg mac.Alg, pad mac.Padding, material []byte) *macFixture {
	kek, err := mac.NewKEK(bytes.Repeat([]byte{0x42}, 32))
	if err != nil {
		t.Fatal(err)
	}
	w, kcv, err := kek.Wrap("p1", alg, pad, material)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := mac.NewKey(alg, pad, material)
	p := store.Partner{ID: "p1", MAC: &store.PartnerMAC{Current: store.MACKeyInfo{Alg: string(alg), Padding: string(pad), KCV: kcv, KEK: kek.ID()}}}.
		WithMACKeys(&store.MACKeyMaterial{Current: w})
	g := newMACGuard()
	g.kek.Store(kek)
	c, err := codec.Load("iso87ascii")
	if err != nil {
		t.Fatal(err)
	}
	lay, err := macLayoutOf(c)
	if err != nil {
		t.Fatal(err)
	}
	return &macFixture{p: p, key: key, g: g, c: c, lay: lay}
}

// frame packs m with a MAC under f's key (the lane's own packAnswer).
func (f *macFixture) frame(t testing.TB, m *codec.Message) []byte {
	l := &Lane{codec: f.c, mac: f.lay}
	b, err := l.packAnswer(m, f.key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func typical0200() *codec.Message {
	m := &codec.Message{MTI: "0200"}
	for id, v := range map[int]string{2: "4111111111111111", 3: "000000", 4: "000000001234", 7: "1121120000", 11: "000001",
		12: "120000", 13: "1121", 32: "100001", 37: "000000000001", 41: "TERM0001", 42: "MERCHANT0000001", 49: "840"} {
		m.Set(id, v)
	}
	return m
}

func TestMACLayout(t *testing.T) {
	for dialect, want := range map[string]macLayout{"iso87ascii": {wire: 16, hex: true}, "iso87binary": {wire: 8}} {
		c, err := codec.Load(dialect)
		if err != nil {
			t.Fatal(err)
		}
		if lay, err := macLayoutOf(c); err != nil || lay != want {
			t.Errorf("%s: %+v %v, want %+v", dialect, lay, err, want)
		}
	}
}

// verify is the entry point from partner bytes: it takes a good MAC and
// refuses every one-bit change of the message or of the MAC.
func TestMACVerifyBitFlips(t *testing.T) {
	f := newMACFixture(t, mac.AlgX919, mac.PadMethod1, bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, 1))
	frame := f.frame(t, typical0200())
	var m codec.Message
	if err := f.c.Unpack(frame, &m); err != nil {
		t.Fatal(err)
	}
	if k, err := f.g.verify(&f.p, f.lay, frame, &m); k != f.key && (k == nil || k.KCV() != f.key.KCV()) || err != nil {
		t.Fatalf("good MAC: %v %v", k, err)
	}
	flips := 0
	for i := range frame {
		for bit := range 8 {
			bad := bytes.Clone(frame)
			bad[i] ^= 1 << bit
			var bm codec.Message
			if f.c.Unpack(bad, &bm) != nil {
				continue // the lane answers 30 before any MAC check
			}
			if i >= len(frame)-f.lay.wire && bm.Get(64) == m.Get(64) {
				continue // a hex digit's case: the same MAC value
			}
			flips++
			k, err := f.g.verify(&f.p, f.lay, bad, &bm)
			if k != nil || !(errors.Is(err, outcome.ErrMACInvalid) || errors.Is(err, outcome.ErrMACMissing)) {
				t.Fatalf("byte %d bit %d flipped: %v %v", i, bit, k, err)
			}
		}
	}
	if flips < len(frame) {
		t.Fatalf("only %d flips unpacked", flips)
	}
}

// FuzzMACVerify feeds partner bytes to the MAC check: it never panics, and
// it accepts a message only when the message's last field is the MAC
// field and holds the MAC of everything before that field's data.
func FuzzMACVerify(f *testing.F) {
	fx := newMACFixture(f, mac.AlgAESCMAC, "", bytes.Repeat([]byte{7}, 16))
	good := fx.frame(f, typical0200())
	f.Add(good)
	rev := typical0200()
	rev.MTI = "0400"
	rev.Set(90, "020000000111211200000000010000100000000000")
	f.Add(fx.frame(f, rev))
	f.Add(good[:len(good)-16])
	f.Fuzz(func(t *testing.T, frame []byte) {
		var m codec.Message
		if fx.c.Unpack(frame, &m) != nil {
			return
		}
		k, err := fx.g.verify(&fx.p, fx.lay, frame, &m)
		if k == nil {
			if !errors.Is(err, outcome.ErrMACInvalid) && !errors.Is(err, outcome.ErrMACMissing) {
				t.Fatalf("refused with %v", err)
			}
			return
		}
		id := macFieldOf(&m)
		ids := m.IDs()
		if ids[len(ids)-1] != id {
			t.Fatalf("accepted with the MAC in %d, last field %d", id, ids[len(ids)-1])
		}
		want := fx.key.Sum(frame[:len(frame)-fx.lay.wire])
		if m.Get(id) != string(want[:]) {
			t.Fatal("accepted a wrong MAC")
		}
	})
}

// BenchmarkMACVerify is the per-message cost of checking a typical 0200's
// MAC (the key already unwrapped) and MACing its answer.
func BenchmarkMACVerify(b *testing.B) {
	for _, tc := range []struct {
		name string
		alg  mac.Alg
		pad  mac.Padding
	}{{"x919", mac.AlgX919, mac.PadMethod1}, {"aes-cmac", mac.AlgAESCMAC, ""}} {
		b.Run(tc.name, func(b *testing.B) {
			fx := newMACFixture(b, tc.alg, tc.pad, []byte("0123456789abcdef"))
			frame := fx.frame(b, typical0200())
			var m codec.Message
			if err := fx.c.Unpack(frame, &m); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				k, err := fx.g.verify(&fx.p, fx.lay, frame, &m)
				if k == nil || err != nil {
					b.Fatal(err)
				}
				_ = k.Sum(frame[:len(frame)-fx.lay.wire])
			}
		})
	}
}
