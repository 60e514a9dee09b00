package switching

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/mac"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
)

// MACs on ISO 8583 lanes (fields 64 and 128).
//
// A partner whose record has a MAC key (store.PartnerMAC, set by admin op
// 17) must send every financial message (every class but 08xx network
// management) with a MAC, and gets its answers with one. What the MAC
// covers: the message bytes exactly as received or sent, from the first
// byte of the MTI up to, not including, the first byte of the MAC field's
// data; the length header is not covered (it is framing, not message).
// The MAC field is the message's last field: 128 when the message has a
// secondary bitmap (any field 65–128), 64 otherwise. Its data is 8 bytes,
// on the wire as the dialect encodes binary fields: 16 hex characters in
// iso87ascii, 8 raw bytes in iso87binary.
//
// A request whose MAC is missing or does not verify is declined 63 with
// nothing proposed, counted in switchd_lane_security_violations_total
// (reason mac_missing or mac_invalid), and answered without a MAC: the
// switch never MACs what it has not authenticated, so it cannot be used as
// an oracle. During a key change's overlap a request verifies under the
// current key or the previous one (until its end, by this node's clock),
// and its answer is MACed with the key it verified under: a partner that
// has not switched yet can still check our answers.
//
// Keys are unwrapped with the node's KEK when first used and kept in
// memory, never logged. A node without the KEK, or whose KEK is not the one
// a key is wrapped under, declines that partner's messages with 96 (fail
// closed) and says why in its log.

// Labels of switchd_lane_security_violations_total for MAC failures.
const (
	securityMACMissing = "mac_missing"
	securityMACInvalid = "mac_invalid"
)

// macKeyCacheMax bounds the unwrapped keys kept: two per partner that
// requires a MAC (current and previous). Past it the cache starts over.
const macKeyCacheMax = 4096

// macLayout is where a dialect puts the MAC field's data: the last wire
// bytes of a message, hex-encoded or raw.
type macLayout struct {
	wire int  // bytes on the wire: 16 (hex) or 8 (binary)
	hex  bool // upper-case hex characters (ASCII dialects)
}

// macLayoutOf finds the layout from the codec itself: it packs a probe in
// field 64 and in field 128 and reads where and how it landed, so the
// MAC code and the packer cannot disagree.
func macLayoutOf(c *codec.Codec) (macLayout, error) {
	probe := string([]byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF})
	var empty, m64, m128 codec.Message
	empty.MTI, m64.MTI, m128.MTI = "0800", "0800", "0800"
	m64.Set(64, probe)
	m128.Set(128, probe)
	p0, err0 := c.Pack(nil, &empty)
	p64, err64 := c.Pack(nil, &m64)
	p128, err128 := c.Pack(nil, &m128)
	if err := errors.Join(err0, err64, err128); err != nil {
		return macLayout{}, fmt.Errorf("MAC fields 64/128 do not pack in dialect %s: %w", c.Dialect(), err)
	}
	lay := macLayout{wire: len(p64) - len(p0)}
	var want []byte
	switch lay.wire {
	case mac.TagBytes:
		want = []byte(probe)
	case 2 * mac.TagBytes:
		lay.hex, want = true, []byte("0123456789ABCDEF")
	default:
		return macLayout{}, fmt.Errorf("dialect %s: field 64 takes %d bytes on the wire, want 8 or 16", c.Dialect(), lay.wire)
	}
	if !bytes.HasSuffix(p64, want) || !bytes.HasSuffix(p128, want) {
		return macLayout{}, fmt.Errorf("dialect %s: fields 64 and 128 are not 8 binary bytes at the end of the message", c.Dialect())
	}
	return lay, nil
}

// put writes tag's wire form into dst (the message's last wire bytes).
func (lay macLayout) put(dst []byte, tag [mac.TagBytes]byte) {
	if lay.hex {
		hex.Encode(dst, tag[:])
		for i, c := range dst {
			if c >= 'a' {
				dst[i] = c - 'a' + 'A' // the codec writes upper case
			}
		}
		return
	}
	copy(dst, tag[:])
}

// macFieldOf is the field that carries m's MAC: 128 when m has a secondary
// bitmap, 64 otherwise.
func macFieldOf(m *codec.Message) int {
	for id := 65; id <= 128; id++ {
		if m.Has(id) {
			return 128
		}
	}
	return 64
}

// macGuard holds the KEK and the keys unwrapped with it. It is safe for
// concurrent use.
type macGuard struct {
	kek atomic.Pointer[mac.KEK] // nil: no KEK on this node
	now func() time.Time        // the overlap's clock

	mu   sync.Mutex // protects keys
	keys map[macCacheKey]*mac.Key
}

// macCacheKey names one wrapped key: a partner's key records are replaced,
// never changed, so the record's identity and the slot name the key, and a
// lookup allocates nothing.
type macCacheKey struct {
	m        *store.MACKeyMaterial
	previous bool
}

func newMACGuard() *macGuard {
	return &macGuard{now: time.Now, keys: map[macCacheKey]*mac.Key{}}
}

// UseKEK gives the front door the node's KEK (mac.LoadKEK), with which it
// unwraps partners' MAC keys; without one a partner that requires a MAC is
// declined 96 on this node.
func (p *Pipeline) UseKEK(k *mac.KEK) { p.macs.kek.Store(k) }

// key is the unwrapped key in slot previous of p's records.
func (g *macGuard) key(p *store.Partner, info *store.MACKeyInfo, previous bool) (*mac.Key, error) {
	km := p.MACKeys()
	ck := macCacheKey{m: km, previous: previous}
	g.mu.Lock()
	k := g.keys[ck]
	g.mu.Unlock()
	if k != nil {
		return k, nil
	}
	if km == nil {
		return nil, fmt.Errorf("%w: partner %s has no key record for KCV %s", mac.ErrUnwrap, p.ID, info.KCV)
	}
	wrapped := km.Current
	if previous {
		wrapped = km.Previous
	}
	kek := g.kek.Load()
	if kek == nil {
		return nil, fmt.Errorf("%w: partner %s requires a MAC (key KCV %s)", mac.ErrNoKEK, p.ID, info.KCV)
	}
	if info.KEK != kek.ID() {
		return nil, fmt.Errorf("%w: partner %s's key KCV %s is wrapped under KEK %s, this node has KEK %s",
			mac.ErrUnwrap, p.ID, info.KCV, info.KEK, kek.ID())
	}
	k, err := kek.Unwrap(p.ID, mac.Alg(info.Alg), mac.Padding(info.Padding), wrapped)
	if err != nil {
		return nil, err
	}
	if k.KCV() != info.KCV {
		return nil, fmt.Errorf("%w: partner %s's key unwraps to KCV %s, its record says %s", mac.ErrUnwrap, p.ID, k.KCV(), info.KCV)
	}
	g.mu.Lock()
	if len(g.keys) >= macKeyCacheMax {
		clear(g.keys)
	}
	g.keys[ck] = k
	g.mu.Unlock()
	return k, nil
}

// verify checks the MAC of req, which arrived as frame (no length header),
// for partner p. It returns the key that verified it (nil when p requires
// no MAC), an error wrapping outcome.ErrMACMissing or ErrMACInvalid when
// the MAC is absent or wrong, or the key error (mac.ErrNoKEK, ErrUnwrap:
// our fault, answered 96).
func (g *macGuard) verify(p *store.Partner, lay macLayout, frame []byte, req *codec.Message) (*mac.Key, error) {
	pm := p.MAC
	if pm == nil {
		return nil, nil
	}
	id := macFieldOf(req)
	tag := req.Get(id)
	if !req.Has(id) || len(tag) != mac.TagBytes || len(frame) < lay.wire {
		return nil, fmt.Errorf("%w: partner %s, field %d", outcome.ErrMACMissing, p.ID, id)
	}
	// The codec refuses trailing bytes, and the MAC field is the last one:
	// its data is the frame's tail.
	data := frame[:len(frame)-lay.wire]
	cur, err := g.key(p, &pm.Current, false)
	if err != nil {
		return nil, err
	}
	if cur.Verify(data, []byte(tag)) {
		return cur, nil
	}
	if pm.PreviousValid(g.now().UnixNano()) {
		prev, err := g.key(p, pm.Previous, true)
		if err != nil {
			return nil, err
		}
		if prev.Verify(data, []byte(tag)) {
			return prev, nil
		}
		return nil, fmt.Errorf("%w: partner %s, field %d, neither key KCV %s nor the previous KCV %s",
			outcome.ErrMACInvalid, p.ID, id, pm.Current.KCV, pm.Previous.KCV)
	}
	return nil, fmt.Errorf("%w: partner %s, field %d, key KCV %s", outcome.ErrMACInvalid, p.ID, id, pm.Current.KCV)
}

// processMAC is Process for a lane, with the MAC check in front: a
// financial request of an admitted partner that requires a MAC goes on
// only when its MAC verifies; otherwise it is declined (63, or 96 for a
// key this node cannot open) and nothing is proposed. Requests of unknown,
// refused or MAC-less partners go to Process as they are, so they get the
// same answers as before. The key returned signs the answer (nil: none).
func (p *Pipeline) processMAC(ctx context.Context, o payment.Origin, lay macLayout, frame []byte, req, resp *codec.Message) (*mac.Key, error) {
	if codec.MTI(req.MTI).Class() == "080" {
		return nil, p.Process(ctx, o, req, resp)
	}
	partner, aerr := p.core.Admit(ctx, o, req.Get(32))
	if aerr != nil || partner.MAC == nil {
		return nil, p.Process(ctx, o, req, resp)
	}
	key, err := p.macs.verify(partner, lay, frame, req)
	if err != nil {
		respond(req, resp, err, "", nil)
		return nil, err
	}
	return key, p.Process(ctx, o, req, resp)
}

// macReason labels a MAC security violation ("" for other errors).
func macReason(err error) string {
	switch {
	case errors.Is(err, outcome.ErrMACMissing):
		return securityMACMissing
	case errors.Is(err, outcome.ErrMACInvalid):
		return securityMACInvalid
	}
	return ""
}

// zeroTag holds the MAC field's place while the answer is packed.
var zeroTag = string(make([]byte, mac.TagBytes))

// packAnswer packs resp; with a key, the answer carries a MAC: the field
// is set (so the bitmap announces it) to a placeholder, the message
// packed, and the MAC over the bytes before the field's data written into
// its place.
func (l *Lane) packAnswer(resp *codec.Message, key *mac.Key) ([]byte, error) {
	if key == nil {
		return l.codec.Pack(nil, resp)
	}
	resp.Set(macFieldOf(resp), zeroTag)
	packed, err := l.codec.Pack(nil, resp)
	if err != nil {
		return packed, err
	}
	tail := len(packed) - l.mac.wire
	l.mac.put(packed[tail:], key.Sum(packed[:tail]))
	return packed, nil
}
