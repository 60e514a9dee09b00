package store

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	fastjson "github.com/goccy/go-json"
)

func safUpdateCmd() Command {
	return Command{Op: OpSAFUpdate, Key: "saf|claim|1", Time: t0, Forward: &ForwardCommand{SAF: &SAFUpdate{
		Action: SAFActionClaim, IDs: []string{"S00000000000001", "S00000000000002"}, Claim: "n1-7", NextAt: t0 + 5e9, Counts: true}}}
}

// TestForwardCommandEncoding: each kind of forwarding payload survives
// a batch's encoding, and a command written before it was binary (the
// JSON extension's "forward" member) still decodes to the same command.
func TestForwardCommandEncoding(t *testing.T) {
	http := fwdCmd("h1", 700)
	http.Forward.Request.MTI, http.Forward.Request.Fields, http.Forward.Request.PAN = "", nil, nil
	http.Forward.Request.Body = `{"bill_type":"WATER","biller_reference":"W-1","amount":"7.00","currency":"USD"}`
	offline := fwdCmd("o1", 300)
	offline.Offline = true // the JSON extension beside the binary payload
	cmds := []Command{fwdCmd("k1", 1000), fwdResult("k1", OutcomeApproved, "00", "A1B2C3", t0+1), safUpdateCmd(), http, offline}
	data, err := EncodeBatch(cmds)
	if err != nil {
		t.Fatal(err)
	}
	got, legacy, err := decodeBatch(data)
	if err != nil || legacy {
		t.Fatalf("decode: legacy %v, %v", legacy, err)
	}
	if !reflect.DeepEqual(got, cmds) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, cmds)
	}
	if bytes.Contains(data, []byte(`"fields"`)) || bytes.Contains(data, []byte(`"forward"`)) {
		t.Fatal("forwarding payload still JSON")
	}

	// The layout of commands proposed before: the payload in the JSON
	// extension. Read as the same command, flagged legacy; re-encoded
	// it is binary.
	for _, c := range cmds {
		e := enc{}
		e.byte(batchVersion)
		e.uvar(1)
		x := c.ext()
		if x == nil {
			x = &cmdExt{}
		}
		x.Forward = c.Forward
		e.commandExt(&c, x, nil)
		old, legacy, err := decodeBatch(e.b)
		if err != nil || !legacy {
			t.Fatalf("legacy %s: legacy %v, %v", c.Key, legacy, err)
		}
		if !reflect.DeepEqual(old[0], c) {
			t.Fatalf("legacy %s:\n got %+v\nwant %+v", c.Key, old[0], c)
		}
	}

	// Both layouts at once is one value encoded twice: refused.
	c := fwdCmd("k2", 5)
	e := enc{}
	e.byte(batchVersion)
	e.uvar(1)
	e.commandExt(&c, &cmdExt{Forward: c.Forward}, c.Forward)
	if _, err := DecodeBatch(e.b); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("both layouts: %v", err)
	}
}

// TestForwardCommandLimits: what the decoder would refuse is refused
// by CheckEncodable first, so one bad command fails alone.
func TestForwardCommandLimits(t *testing.T) {
	for name, mut := range map[string]func(*ForwardCommand){
		"too many fields": func(f *ForwardCommand) {
			for i := range forwardFieldsMax + 1 {
				f.Request.Fields[100+i] = "x"
			}
		},
		"field id":     func(f *ForwardCommand) { f.Request.Fields[1000] = "x" },
		"long field":   func(f *ForwardCommand) { f.Request.Fields[48] = string(make([]byte, stringBytesMax+1)) },
		"card number":  func(f *ForwardCommand) { f.Request.PAN = make([]byte, wrappedPANBytesMax+1) },
		"body":         func(f *ForwardCommand) { f.Request.Body = string(make([]byte, ForwardBodyBytesMax+1)) },
		"claim":        func(f *ForwardCommand) { f.SAF = &SAFUpdate{IDs: make([]string, SAFBatchMax+1)} },
		"result field": func(f *ForwardCommand) { f.Result = &ForwardResult{Key: string(make([]byte, stringBytesMax+1))} },
	} {
		c := fwdCmd("k", 1)
		mut(c.Forward)
		if err := c.CheckEncodable(); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("%s: %v", name, err)
		}
	}
	c := fwdCmd("k", 1)
	c.Forward.Request.Body = string(make([]byte, ForwardBodyBytesMax))
	if err := c.CheckEncodable(); err != nil {
		t.Fatalf("a body at the limit: %v", err)
	}
	data, err := EncodeBatch([]Command{c})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeBatch(data); err != nil {
		t.Fatalf("a body at the limit decodes: %v", err)
	}
}

func testForward() *Forward {
	return &Forward{ID: "F00000000000042", Key: "p1|k", Partner: "p1", Destination: "iss", Route: "r", Debit: "issuer", Credit: "settle",
		Amount: 1234, Currency: "USD", BusinessDay: "2026-12-02", Time: t0, TimeoutAt: t0 + 5e9, PayerType: PayerBankCustomer,
		Ref: Ref{MTI: "0200", STAN: "000123", RRN: "000000000123", Terminal: "T1"}, OriginalRef: "p1|ref", MTI: "0200",
		Fields: map[int]string{3: "000000", 4: "000000001234", 49: "840"}, PAN: []byte{1, 2, 3}, MaskedPAN: "400000******0002",
		State: ForwardTimedOut, RC: "", Reason: "timeout", DecidedAt: t0 + 6e9, SAF: "S00000000000007",
		Late:       &LateAnswer{Outcome: OutcomeApproved, RC: "00", AuthCode: "A1", At: t0 + 7e9},
		HoldExpiry: t0 + 7*24*3600e9, CardHash: "c0ffee"}
}

// TestForwardRecordEncoding: a record reads back as written, binary or
// (written before) JSON, and a damaged one is an error, never a guess.
func TestForwardRecordEncoding(t *testing.T) {
	for _, f := range []*Forward{testForward(), {ID: "F1", Key: "k", State: ForwardPending, Body: "{}"}} {
		b := encodeForward(f)
		var got Forward
		if err := decodeForward(b, &got); err != nil || !reflect.DeepEqual(&got, f) {
			t.Fatalf("binary: %v\n got %+v\nwant %+v", err, got, *f)
		}
		old, err := fastjson.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		var legacy Forward
		if err := decodeForward(old, &legacy); err != nil || !reflect.DeepEqual(&legacy, f) {
			t.Fatalf("JSON: %v\n got %+v\nwant %+v", err, legacy, *f)
		}
	}
	// A version 1 record (written before authorizations were forwarded)
	// is version 2 without the hold expiry and card hash at its end.
	plain := &Forward{ID: "F2", Key: "k", State: ForwardApproved, MTI: "0200", TransferID: "T1"}
	v2 := encodeForward(plain)
	v1 := append([]byte{forwardRecordVersionV1}, v2[1:len(v2)-2]...)
	var got Forward
	if err := decodeForward(v1, &got); err != nil || !reflect.DeepEqual(&got, plain) {
		t.Fatalf("version 1: %v\n got %+v\nwant %+v", err, got, *plain)
	}
	b := encodeForward(testForward())
	for name, bad := range map[string][]byte{
		"empty": {}, "version": append([]byte{3}, b[1:]...), "v1 with v2 fields": append([]byte{forwardRecordVersionV1}, b[1:]...), "truncated": b[:len(b)-1], "trailing": append(b[:len(b):len(b)], 0),
	} {
		var f Forward
		if err := decodeForward(bad, &f); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzDecodeForward: any record that decodes re-encodes to its bytes.
func FuzzDecodeForward(f *testing.F) {
	f.Add(encodeForward(testForward()))
	f.Add(encodeForward(&Forward{ID: "F1"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 0 && data[0] == '{' {
			return // the JSON of records written before: encoding/json's business
		}
		var fw Forward
		if err := decodeForward(data, &fw); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		if data[0] == forwardRecordVersionV1 {
			// Written before: it reads as the version 2 record of the
			// same forward, which is what it re-encodes to.
			data = append(append([]byte{forwardRecordVersion}, data[1:]...), 0, 0)
		}
		if again := encodeForward(&fw); !bytes.Equal(again, data) {
			t.Fatalf("decode/encode not the identity:\n%x\n%x", data, again)
		}
	})
}
