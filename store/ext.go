package store

import (
	"bytes"
	fastjson "github.com/goccy/go-json"
)

// The command flag byte is full; flagExt says a second one follows
// (encoding.go), and its flagExtJSON says this JSON object follows with
// the payloads of the machine-state ops added since (SCA and the webhook
// outbox, issue 12; offline advices and host reversals, issue 13; the
// forwarding payloads were here too, and are binary now: flagExtForward,
// forwardcodec.go). One
// extension object keeps the binary layout stable while ops are added: a
// new payload is a new member, and batches written before it still
// decode (the member is absent). JSON like Admin: these commands are a few
// per payment at most, far from the hot path of on-us traffic. (A payment
// batch's items are binary instead: 10,000 of them go in one command.)

// extBytesMax bounds the extension object of one command.
const extBytesMax = 4 << 20

// cmdExt is the extension object: every member optional, at least one set.
type cmdExt struct {
	// Forward is read from commands written before the ForwardCommand
	// got its binary encoding (flagExtForward, forwardcodec.go); it is
	// never written.
	Forward *ForwardCommand `json:"forward,omitempty"`
	// Authorization: OpPutAuthorization's change (sca.go).
	Authorization *AuthorizationChange `json:"authorization,omitempty"`
	// Webhook: OpWebhookAttempt's result (webhooks.go).
	Webhook *WebhookAttempt `json:"webhook,omitempty"`
	// Offline: an agent's posting reported by offline advice (advice.go).
	Offline bool `json:"offline,omitempty"`
	// HostReversal: OpHostReversal's request (hostreversal.go).
	HostReversal *HostReversal `json:"host_reversal,omitempty"`
}

// ext is c's extension object, nil when c has none.
func (c *Command) ext() *cmdExt {
	if c.Authorization == nil && c.Webhook == nil && !c.Offline && c.HostReversal == nil {
		return nil
	}
	return &cmdExt{Authorization: c.Authorization, Webhook: c.Webhook, Offline: c.Offline, HostReversal: c.HostReversal}
}

func (x *cmdExt) apply(c *Command) {
	c.Forward, c.Authorization, c.Webhook, c.Offline, c.HostReversal = x.Forward, x.Authorization, x.Webhook, x.Offline, x.HostReversal
}

func extJSON(x *cmdExt) []byte {
	b, err := fastjson.Marshal(x)
	if err != nil {
		panic(err) // plain structs: cannot fail
	}
	return b
}

func decodeExt(d *dec) *cmdExt {
	n := d.uvar()
	if d.err != nil {
		return nil
	}
	if n > extBytesMax || n > uint64(len(d.b)-d.off) {
		d.fail("extension length")
		return nil
	}
	raw := d.b[d.off : d.off+int(n)]
	x := new(cmdExt)
	dj := fastjson.NewDecoder(bytes.NewReader(raw))
	dj.DisallowUnknownFields()
	if err := dj.Decode(x); err != nil || dj.More() {
		d.fail("extension")
		return nil
	}
	// One encoding per value, as for Admin; and an empty object is no
	// extension at all (the flag would be unset).
	if !bytes.Equal(extJSON(x), raw) || bytes.Equal(raw, []byte("{}")) {
		d.fail("extension encoding")
		return nil
	}
	d.off += int(n)
	if x.Forward != nil {
		d.legacy = true
	}
	return x
}
