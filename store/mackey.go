package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/switchd/switchd/mac"
)

// Partner MAC keys (ISO 8583 fields 64 and 128). A partner requires a MAC
// once it has a key; OpPutMACKey sets a new one and keeps the one it
// replaces valid for an overlap, so the partner can switch on its side
// while both verify. Keys are replicated wrapped under the nodes' KEK
// (package mac): the FSM never sees one in clear and never needs to, it
// checks only the shape of what it stores. The partner record carries what
// may be shown (algorithm, padding, KCVs, times); the wrapped bytes live in
// their own record beside it, so that neither partner views, audit records
// nor settlement files ever hold them.

// OpPutMACKey sets Admin.MACKey on a partner. Admin op 17.
const OpPutMACKey Op = 17

const (
	pfxMACKeys = 'k' // k<partner id> → the partner's wrapped MAC keys (JSON)
	// macOverlapMax bounds how long a replaced key stays valid: a key
	// change is a planned event, not a way to run on two keys for good.
	macOverlapMax = 30 * 24 * time.Hour
	// kcvDigits is a KCV as stored: mac.KCVBytes in upper-case hex.
	kcvDigits = 2 * mac.KCVBytes
)

// MACAlgNone, as MACKeyChange.Alg, removes the partner's MAC requirement
// (at once: there is no key left to overlap with).
const MACAlgNone = "none"

// MACKeyChange is what OpPutMACKey carries: the new key wrapped under the
// KEK named by KEK, its KCV, and how long the current key stays valid.
type MACKeyChange struct {
	Partner string `json:"partner"`
	// Alg is mac.AlgX919, mac.AlgAESCMAC or MACAlgNone; Padding is x919's
	// (m1 or m2).
	Alg     string `json:"alg"`
	Padding string `json:"padding,omitempty"`
	// KCV is the new key's check value; KEK the check value of the KEK it
	// is wrapped under (mac.KEK.ID).
	KCV     string `json:"kcv,omitempty"`
	KEK     string `json:"kek,omitempty"`
	Wrapped []byte `json:"wrapped,omitempty"`
	// Overlap is how long the replaced key is still accepted after the
	// command's time; 0 replaces it at once.
	Overlap time.Duration `json:"overlap,omitempty"`
}

// MACKeyInfo is one MAC key as it may be shown: never its bytes.
type MACKeyInfo struct {
	Alg     string `json:"alg"`
	Padding string `json:"padding,omitempty"`
	KCV     string `json:"kcv"`
	KEK     string `json:"kek"`
	// Since is when the key was set (command time, unix nanoseconds).
	Since int64 `json:"since"`
	// Until, on a replaced key, is when it stops being accepted (unix
	// nanoseconds): the change's time plus its overlap.
	Until int64 `json:"until,omitempty"`
}

// PartnerMAC is the MAC a partner requires: its current key and, during an
// overlap, the key that one replaced.
type PartnerMAC struct {
	Current  MACKeyInfo  `json:"current"`
	Previous *MACKeyInfo `json:"previous,omitempty"`
}

// PreviousValid reports whether the previous key is still accepted at now
// (unix nanoseconds).
func (m *PartnerMAC) PreviousValid(now int64) bool {
	return m.Previous != nil && now < m.Previous.Until
}

// MACKeyMaterial is a partner's wrapped keys, matching PartnerMAC's.
type MACKeyMaterial struct {
	Current  []byte `json:"current"`
	Previous []byte `json:"previous,omitempty"`
}

// MACKeys returns p's wrapped MAC keys (nil when p requires no MAC).
func (p *Partner) MACKeys() *MACKeyMaterial { return p.macKeys }

// WithMACKeys returns p with km as its wrapped keys, as the store attaches
// its records: for tests and tools that build a directory with
// NewDirectory. The FSM sets keys only through OpPutMACKey.
func (p Partner) WithMACKeys(km *MACKeyMaterial) Partner {
	p.macKeys = km
	return p
}

func validKCV(s string) bool {
	if len(s) != kcvDigits {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// checkMACKeyChange reports what is wrong with m, in the form of the ops
// API's problems (the same check runs there before proposing).
func checkMACKeyChange(m *MACKeyChange) error {
	if m == nil {
		return changeError("mac_key", "required")
	}
	if !validToken(m.Partner, idBytesMax) {
		return changeError("mac_key.partner", "%q is not a partner id", m.Partner)
	}
	if m.Alg == MACAlgNone {
		if m.Padding != "" || m.KCV != "" || m.KEK != "" || len(m.Wrapped) != 0 || m.Overlap != 0 {
			return changeError("mac_key.alg", "none removes the key: no padding, kcv, kek, wrapped key or overlap")
		}
		return nil
	}
	if err := mac.CheckAlg(mac.Alg(m.Alg), mac.Padding(m.Padding)); err != nil {
		return changeError("mac_key.alg", "%s/%s: x919 with padding m1 or m2, aes-cmac without, or none", m.Alg, m.Padding)
	}
	if !validKCV(m.KCV) {
		return changeError("mac_key.kcv", "want %d upper-case hex digits", kcvDigits)
	}
	if !validKCV(m.KEK) {
		return changeError("mac_key.kek", "want the KEK's check value, %d upper-case hex digits", kcvDigits)
	}
	if len(m.Wrapped) < mac.WrappedBytesMin || len(m.Wrapped) > mac.WrappedBytesMax {
		return changeError("mac_key.wrapped", "%d bytes, want %d to %d", len(m.Wrapped), mac.WrappedBytesMin, mac.WrappedBytesMax)
	}
	if m.Overlap < 0 || m.Overlap > macOverlapMax {
		return changeError("mac_key.overlap", "%s not in [0, %s]", m.Overlap, macOverlapMax)
	}
	return nil
}

// CheckMACKeyChange reports whether m may be applied to d (see CheckRoute):
// its shape, that the partner exists, and that the key is not the one
// already current.
func (d *Directory) CheckMACKeyChange(m *MACKeyChange) error {
	if err := checkMACKeyChange(m); err != nil {
		return err
	}
	p, ok := d.Partner(m.Partner)
	if !ok {
		return changeError("mac_key.partner", "no partner %q", m.Partner)
	}
	switch {
	case m.Alg == MACAlgNone && p.MAC == nil:
		return changeError("mac_key.alg", "partner %q requires no MAC", p.ID)
	case m.Alg != MACAlgNone && p.MAC != nil && p.MAC.Current.KCV == m.KCV && p.MAC.Current.Alg == m.Alg:
		// Replacing a key by itself would throw away the overlap of the
		// one before it for nothing.
		return changeError("mac_key.kcv", "%s is already partner %q's current key", m.KCV, p.ID)
	}
	return nil
}

// putMACKey applies OpPutMACKey: the new key becomes current, the current
// one (if any) is kept until the command's time plus the overlap, and any
// older one is dropped. The audit record shows KCVs, never key bytes.
func (t *txn) putMACKey(c *Command) Result {
	m := c.Admin.MACKey
	d := t.directory()
	if m != nil && validToken(m.Partner, idBytesMax) {
		if _, ok := d.Partner(m.Partner); !ok {
			return Result{Status: StatusNotFound, Detail: fmt.Sprintf("mac_key.partner: no partner %q", m.Partner)}
		}
	}
	if err := d.CheckMACKeyChange(m); err != nil {
		return resultOf(err)
	}
	before, _ := d.Partner(m.Partner)
	p := *before // records are replaced, never changed in place
	var beforeMAC json.RawMessage
	if before.MAC != nil {
		beforeMAC = mustJSON(before.MAC)
	}
	if m.Alg == MACAlgNone {
		p.MAC, p.macKeys = nil, nil
		t.del(skey1(pfxMACKeys, p.ID))
	} else {
		pm := &PartnerMAC{Current: MACKeyInfo{
			Alg: strings.Clone(m.Alg), Padding: strings.Clone(m.Padding), KCV: strings.Clone(m.KCV),
			KEK: strings.Clone(m.KEK), Since: c.Time,
		}}
		km := &MACKeyMaterial{Current: append([]byte(nil), m.Wrapped...)}
		if before.MAC != nil && m.Overlap > 0 {
			prev := before.MAC.Current
			prev.Until = c.Time + int64(m.Overlap)
			pm.Previous = &prev
			km.Previous = before.macKeys.Current
		}
		p.MAC, p.macKeys = pm, km
		t.set(skey1(pfxMACKeys, p.ID), mustJSON(km))
	}
	nd := t.dirForChange()
	nd.putPartner(&p)
	t.set(skey1(pfxPartner, p.ID), mustJSON(&p))
	var after json.RawMessage
	if p.MAC != nil {
		after = mustJSON(p.MAC)
	}
	t.appendAudit(c, "partner.mac_key", "partner/"+p.ID, beforeMAC, after)
	return Result{Status: StatusOK}
}

// loadMACKeys attaches the wrapped keys to their partners (at open and
// restore, before the directory is shared).
func loadMACKeys(r pebble.Reader, d *Directory) error {
	lo := []byte{pfxMACKeys}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		id := string(it.Key()[1:])
		km := new(MACKeyMaterial)
		if err := json.Unmarshal(it.Value(), km); err != nil {
			return fmt.Errorf("%w: mac keys of %q: %v", ErrCorrupt, id, err)
		}
		p, ok := d.partners[id]
		if !ok || p.MAC == nil {
			return fmt.Errorf("%w: mac keys of %q without a partner that requires a MAC", ErrCorrupt, id)
		}
		p.macKeys = km
	}
	return it.Error()
}
