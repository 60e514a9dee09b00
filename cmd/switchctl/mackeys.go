package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/keyfile"
	"github.com/switchd/switchd/mac"
)

// Partner MAC keys and MACed messages:
//
//	switchctl partners mac-key set --partner P --alg x919|aes-cmac|none [--padding m1|m2]
//	    --key-file F|- [--kcv KCV] [--overlap 24h] --reason TEXT
//	switchctl iso send … --mac-key-file F --mac-alg x919|aes-cmac [--mac-padding m1|m2]
//
// Key material comes from a file (readable by its owner only) or stdin,
// never from the command line, where ps and shell history would keep it;
// what switchctl prints is the key's check value.

// keyFileBytesMax bounds a key file: 64 hex digits and a newline, with room.
const keyFileBytesMax = 1 << 10

// macKeyView is one MAC key as the ops API shows it (store.MACKeyInfo).
type macKeyView struct {
	Alg     string `json:"alg"`
	Padding string `json:"padding"`
	KCV     string `json:"kcv"`
	KEK     string `json:"kek"`
	Since   int64  `json:"since"`
	Until   int64  `json:"until"`
}

// partnerMAC is a partner's MAC (store.PartnerMAC).
type partnerMAC struct {
	Current  macKeyView  `json:"current"`
	Previous *macKeyView `json:"previous"`
}

// readKeyFile reads hex key material from name ("-": stdin).
func readKeyFile(name string, stdin io.Reader) ([]byte, error) {
	var b []byte
	if name == "-" {
		var err error
		b, err = io.ReadAll(io.LimitReader(stdin, keyFileBytesMax+1))
		if err != nil || len(b) > keyFileBytesMax {
			return nil, usagef("key file %s: not a key file", name)
		}
	} else {
		var err error
		if b, err = keyfile.Read(name, "key file", keyFileBytesMax); err != nil {
			return nil, usagef("%v", err)
		}
	}
	key, err := hex.DecodeString(string(bytes.TrimSpace(b)))
	clear(b)
	if err != nil || len(key) == 0 {
		return nil, usagef("key file %s: want the key as hex digits", name)
	}
	return key, nil
}

// partnersMACKey is `partners mac-key set`.
func partnersMACKey(ctx context.Context, o *opsFlags, fs *flag.FlagSet, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "set" {
		return usagef("partners mac-key: want set")
	}
	id := fs.String("partner", "", "partner id")
	alg := fs.String("alg", "", "x919 (ANSI X9.19, double-length DES key), aes-cmac (AES-128/192/256), or none to drop the MAC")
	padding := fs.String("padding", "", "x919 padding: m1 (ISO 9797-1 method 1, zeros; default) or m2 (0x80 then zeros)")
	keyFile := fs.String("key-file", "", "file holding the new key as hex, readable by its owner only; - reads stdin")
	kcv := fs.String("kcv", "", "the key's check value from the key ceremony: refused if the key does not match")
	overlap := fs.Duration("overlap", 0, "how long the current key stays valid after the change, e.g. 24h")
	reason := fs.String("reason", "", "why (required: the audit chain records it)")
	pos, err := parseCmd(fs, args[1:], stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 || *id == "" || *alg == "" || *reason == "" {
		return usagef("partners mac-key set: want --partner, --alg, --key-file and --reason")
	}
	req := map[string]any{"alg": *alg, "reason": *reason}
	if *alg != "none" {
		if *keyFile == "" {
			return usagef("partners mac-key set: --key-file (or - for stdin): key material never goes on the command line")
		}
		p := *padding
		if p == "" && *alg == string(mac.AlgX919) {
			p = string(mac.PadMethod1)
		}
		key, err := readKeyFile(*keyFile, stdin)
		if err != nil {
			return err
		}
		k, err := mac.NewKey(mac.Alg(*alg), mac.Padding(p), key)
		if err != nil {
			clear(key)
			return usagef("partners mac-key set: %v", err)
		}
		if *kcv != "" && !strings.EqualFold(*kcv, k.KCV()) {
			clear(key)
			return usagef("partners mac-key set: the key's check value is %s, not %s", k.KCV(), *kcv)
		}
		req["padding"], req["key"], req["kcv"] = p, strings.ToUpper(hex.EncodeToString(key)), k.KCV()
		clear(key)
		if *overlap != 0 {
			req["overlap"] = overlap.String()
		}
	}
	body, err := o.write(ctx, http.MethodPost, "/v1/partners/"+url.PathEscape(*id)+"/mac-key", req, opsBodyBytesMax)
	delete(req, "key")
	if err != nil || o.json {
		return jsonOr(err, stdout, body)
	}
	return printPartner(ctx, o, stdout, body, "MAC key changed")
}

// printMAC adds a partner's MAC lines to a partner's printout.
func printMAC(w io.Writer, m *partnerMAC) {
	if m == nil {
		fmt.Fprintf(w, "mac\tnone required\n")
		return
	}
	fmt.Fprintf(w, "mac\t%s, key KCV %s (KEK %s), since %s\n", algText(m.Current), m.Current.KCV, m.Current.KEK, unixNanoText(m.Current.Since))
	if p := m.Previous; p != nil {
		state := "accepted until"
		if time.Now().UnixNano() >= p.Until {
			state = "expired"
		}
		fmt.Fprintf(w, "previous mac key\t%s, KCV %s, %s %s\n", algText(*p), p.KCV, state, unixNanoText(p.Until))
	}
}

func algText(k macKeyView) string {
	if k.Padding != "" {
		return k.Alg + " padding " + k.Padding
	}
	return k.Alg
}

func unixNanoText(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339) }

// isoMAC is iso send's MAC: the key, and where the dialect puts the MAC.
type isoMAC struct {
	key  *mac.Key
	wire int // bytes of the MAC field on the wire
}

// loadISOMAC reads --mac-key-file (nil when not given).
func loadISOMAC(f *isoSendFlags, c *codec.Codec) (*isoMAC, error) {
	if f.macKeyFile == "" {
		if f.macAlg != "" {
			return nil, usagef("--mac-alg needs --mac-key-file")
		}
		return nil, nil
	}
	alg, pad := f.macAlg, f.macPadding
	if alg == "" {
		alg = string(mac.AlgX919)
	}
	if pad == "" && alg == string(mac.AlgX919) {
		pad = string(mac.PadMethod1)
	}
	material, err := readKeyFile(f.macKeyFile, os.Stdin)
	if err != nil {
		return nil, err
	}
	defer clear(material)
	k, err := mac.NewKey(mac.Alg(alg), mac.Padding(pad), material)
	if err != nil {
		return nil, usagef("--mac-key-file: %v", err)
	}
	// Where the codec puts field 64: its wire size is what packing it adds.
	probe := codec.Message{MTI: "0800"}
	p0, err := c.Pack(nil, &probe)
	if err != nil {
		return nil, err
	}
	probe.Set(64, string(make([]byte, mac.TagBytes)))
	p1, err := c.Pack(nil, &probe)
	if err != nil {
		return nil, err
	}
	return &isoMAC{key: k, wire: len(p1) - len(p0)}, nil
}

// macField is the field that carries m's MAC: 128 with a secondary
// bitmap, else 64 (the switch's rule, switch/mac.go).
func macField(m *codec.Message) int {
	for id := 65; id <= 128; id++ {
		if m.Has(id) {
			return 128
		}
	}
	return 64
}

// sign sets req's MAC field: the MAC of the packed message up to the
// field's data.
func (im *isoMAC) sign(req *codec.Message, c *codec.Codec) error {
	id := macField(req)
	req.Set(id, string(make([]byte, mac.TagBytes)))
	p, err := c.Pack(nil, req)
	if err != nil {
		return usagef("the message does not pack: %v", err)
	}
	tag := im.key.Sum(p[:len(p)-im.wire])
	req.Set(id, string(tag[:]))
	return nil
}

// check verifies the answer's MAC over the bytes as they arrived.
func (im *isoMAC) check(resp *codec.Message, raw []byte, stdout io.Writer) error {
	id := macField(resp)
	if !resp.Has(id) {
		if resp.Get(39) == "00" {
			return fmt.Errorf("the approved answer carries no MAC (field %d)", id)
		}
		fmt.Fprintf(stdout, "MAC: the answer carries none (a request that fails the MAC check is answered without one)\n")
		return nil
	}
	if len(raw) < im.wire || !im.key.Verify(raw[:len(raw)-im.wire], []byte(resp.Get(id))) {
		return fmt.Errorf("the answer's MAC (field %d) does not verify under %s", id, im.key)
	}
	fmt.Fprintf(stdout, "MAC: the answer's field %d verifies under %s\n", id, im.key)
	return nil
}
