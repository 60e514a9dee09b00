package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchd/switchd/currency"
)

// Partners and OTC agents:
//
//	switchctl partners list | get ID | show ID
//	switchctl partners mac-key set --partner ID … (mackeys.go)
//	switchctl partners set ID [--acquirer-ids A,B] [--lanes L,M] [--settlement-account A]
//	    [--withdrawal-max 500.00 [--currency USD]] [--payer-type T] [--payer-types T,U] [--allow CIDR,…]
//	    [--cert-pins SHA256@NOT-AFTER,… | --add-cert CERT.pem [--not-after RFC3339] | --remove-cert-pin SHA256] --reason TEXT
//	switchctl partners suspend ID --reason TEXT | resume ID --reason TEXT
//	switchctl agents list | get PARTNER:TERMINAL
//	switchctl agents set PARTNER:TERMINAL [--currency USD] [--cash-limit 500.00] [--reason TEXT]
//	switchctl agents settle PARTNER:TERMINAL --amount 12.34 [--currency USD] --reference SLIP
//
// set changes only the flags given (the rest is read from the switch
// first), or creates the partner or agent. Amounts are decimals in the
// currency's own exponent (12.34 USD, 1234 JPY), turned into minor units
// by the currency package: no float anywhere.

type partner struct {
	ID                string    `json:"id"`
	AcquirerIDs       []string  `json:"acquirer_ids"`
	Lanes             []string  `json:"lanes"`
	SettlementAccount string    `json:"settlement_account"`
	WithdrawalMax     int64     `json:"withdrawal_max"`
	PayerType         string    `json:"payer_type"`
	PayerTypes        []string  `json:"payer_types"`
	Allow             []string  `json:"allow"`
	CertPins          []certPin `json:"cert_pins"`
	Suspended         bool      `json:"suspended"`
	// MAC is read-only here: partners mac-key set changes it.
	MAC *partnerMAC `json:"mac"`
}

// certPin is store.CertPin as the API writes it.
type certPin struct {
	SHA256   string    `json:"sha256"`
	NotAfter time.Time `json:"not_after"`
}

type agent struct {
	ID        string `json:"id"`
	Partner   string `json:"partner"`
	Terminal  string `json:"terminal"`
	Currency  string `json:"currency"`
	CashLimit int64  `json:"cash_limit"`
	CashHeld  int64  `json:"cash_held"`
	Settled   int64  `json:"settled"`
	Replayed  bool   `json:"replayed"`
}

// list splits a comma-separated flag value ("" is an empty list).
func list(s string) []string {
	if s == "" {
		return []string{}
	}
	out := strings.Split(s, ",")
	for i := range out {
		out[i] = strings.TrimSpace(out[i])
	}
	return out
}

// amountFlag reads --flagName, a decimal amount in code's exponent, into
// minor units (parseAmount: "12" is 12.00, no float, no negative).
func amountFlag(flagName, s, code string) (int64, error) {
	c, err := currency.ByCode(code)
	if err != nil {
		return 0, usagef("--currency %q: not an ISO 4217 code", code)
	}
	v, err := parseAmount(s, c)
	if err != nil {
		return 0, usagef("--%s: %v", flagName, err)
	}
	return v, nil
}

// accountCurrency is an account's currency ("" when it cannot be read).
func accountCurrency(ctx context.Context, o *opsFlags, id string) string {
	if id == "" {
		return ""
	}
	body, err := o.get(ctx, "/v1/accounts/"+url.PathEscape(id), nil)
	var a account
	if err != nil || json.Unmarshal(body, &a) != nil {
		return ""
	}
	return a.Currency
}

func partnersCmd(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("partners: want list, get, show, set, mac-key, suspend or resume")
	}
	var o opsFlags
	fs := flag.NewFlagSet("switchctl partners "+args[0], flag.ContinueOnError)
	o.register(fs)
	switch args[0] {
	case "list":
		if err := noArgs(fs, args, stdout); err != nil {
			return err
		}
		body, err := o.get(ctx, "/v1/partners", nil)
		if err != nil || o.json {
			return jsonOr(err, stdout, body)
		}
		var page struct {
			Partners []partner `json:"partners"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return fmt.Errorf("decoding partners: %w", err)
		}
		ccys := map[string]string{}
		t := newTable("ID", "STATE", "ACQUIRERS", "LANES", "PAYER TYPE", "ALSO", "SETTLEMENT ACCOUNT", "WITHDRAWAL MAX").alignRight("WITHDRAWAL MAX")
		for _, p := range page.Partners {
			if _, ok := ccys[p.SettlementAccount]; !ok {
				ccys[p.SettlementAccount] = accountCurrency(ctx, &o, p.SettlementAccount)
			}
			t.add(p.ID, partnerState(p), strings.Join(p.AcquirerIDs, ","), orDash(strings.Join(p.Lanes, ",")), p.PayerType,
				orDash(strings.Join(p.PayerTypes, ",")), orDash(p.SettlementAccount), withdrawalMax(p, ccys[p.SettlementAccount]))
		}
		return t.write(stdout)
	case "get", "show":
		id, err := oneID(fs, args[1:], stdout, "partner id")
		if err != nil {
			return err
		}
		body, err := o.get(ctx, "/v1/partners/"+url.PathEscape(id), nil)
		if err != nil || o.json {
			return jsonOr(err, stdout, body)
		}
		return printPartner(ctx, &o, stdout, body, "")
	case "set":
		return partnerSet(ctx, &o, fs, args[1:], stdout)
	case "mac-key":
		return partnersMACKey(ctx, &o, fs, args[1:], os.Stdin, stdout) // mackeys.go
	case "suspend", "resume":
		reason := reasonFlag(fs)
		id, err := oneWithReason(fs, args[1:], stdout, "partner id", reason)
		if err != nil {
			return err
		}
		body, err := o.write(ctx, http.MethodPost, "/v1/partners/"+url.PathEscape(id)+"/"+args[0], map[string]string{"reason": *reason}, opsBodyBytesMax)
		if err != nil || o.json {
			return jsonOr(err, stdout, body)
		}
		var p struct {
			partner
			Unchanged bool `json:"unchanged"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			return fmt.Errorf("decoding the partner: %w", err)
		}
		if p.Unchanged {
			fmt.Fprintf(stdout, "partner %s is already %s: nothing changed\n", p.ID, partnerState(p.partner))
			return nil
		}
		fmt.Fprintf(stdout, "partner %s is now %s\n", p.ID, partnerState(p.partner))
		return nil
	}
	return usagef("partners: unknown command %q (want list, get, show, set, mac-key, suspend or resume)", args[0])
}

func partnerState(p partner) string {
	if p.Suspended {
		return "suspended"
	}
	return "active"
}

func withdrawalMax(p partner, ccy string) string {
	if p.WithdrawalMax == 0 {
		return "no cap"
	}
	if ccy == "" {
		return strconv.FormatInt(p.WithdrawalMax, 10) + " (minor units)"
	}
	return money(p.WithdrawalMax, ccy) + " " + ccy
}

func partnerSet(ctx context.Context, o *opsFlags, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	acq := fs.String("acquirer-ids", "", "ISO 8583 field 32 values the partner sends, comma-separated")
	lanes := fs.String("lanes", "", "lanes the partner may use, comma-separated")
	acct := fs.String("settlement-account", "", "account credited for its purchases and withdrawals")
	wmax := fs.String("withdrawal-max", "", "cap on one cash withdrawal, e.g. 500.00 (0: no cap)")
	ccy := fs.String("currency", "", "currency of --withdrawal-max (default: the settlement account's)")
	ptype := fs.String("payer-type", "", "payer type of its messages, e.g. bank_customer")
	ptypes := fs.String("payer-types", "", "other payer types its messages may name, comma-separated (e.g. otc_agent)")
	allow := fs.String("allow", "", "source networks its messages may come from, comma-separated CIDRs (empty: what its lanes allow)")
	pins := fs.String("cert-pins", "", "its client certificates on TLS lanes, replacing the list: SHA-256 of each public key (hex) @ until when it names the partner (RFC 3339), comma-separated; two live while rotating")
	addCert := fs.String("add-cert", "", "add the client certificate in this PEM `file`: its public-key pin, until its own expiry (or --not-after)")
	notAfter := fs.String("not-after", "", "with --add-cert: until when (RFC 3339) the pin names the partner, instead of the certificate's expiry")
	removePin := fs.String("remove-cert-pin", "", "remove this pin (SHA-256 hex), e.g. the old certificate's once the partner has moved off it")
	reason := fs.String("reason", "", "why (required: the audit chain records it)")
	pos, err := parseCmd(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *reason == "" {
		return usagef("partners set: want one partner id and --reason")
	}
	id := pos[0]
	cur := partner{ID: id, AcquirerIDs: []string{}, Lanes: []string{}, PayerTypes: []string{}, Allow: []string{}, CertPins: []certPin{}}
	code, body, err := o.call(ctx, http.MethodGet, "/v1/partners/"+url.PathEscape(id), nil, opsBodyBytesMax, http.StatusNotFound)
	if err != nil {
		return err
	}
	if code != http.StatusNotFound {
		if err := json.Unmarshal(body, &cur); err != nil {
			return fmt.Errorf("decoding partner %s: %w", id, err)
		}
	}
	for _, l := range []struct {
		name string
		val  *string
		into *[]string
	}{{"acquirer-ids", acq, &cur.AcquirerIDs}, {"lanes", lanes, &cur.Lanes}, {"payer-types", ptypes, &cur.PayerTypes}, {"allow", allow, &cur.Allow}} {
		if isSet(fs, l.name) {
			*l.into = list(*l.val)
		}
	}
	if cur.CertPins, err = changePins(cur.CertPins, fs, *pins, *addCert, *notAfter, *removePin); err != nil {
		return err
	}
	if isSet(fs, "settlement-account") {
		cur.SettlementAccount = *acct
	}
	if isSet(fs, "payer-type") {
		cur.PayerType = *ptype
	}
	if isSet(fs, "withdrawal-max") {
		switch {
		case *wmax == "0":
			cur.WithdrawalMax = 0
		default:
			wccy := *ccy
			if wccy == "" {
				if wccy = accountCurrency(ctx, o, cur.SettlementAccount); wccy == "" {
					return usagef("partners set: --withdrawal-max needs --currency (the settlement account's is unknown)")
				}
			}
			if cur.WithdrawalMax, err = amountFlag("withdrawal-max", *wmax, wccy); err != nil {
				return err
			}
		}
	}
	req := map[string]any{"acquirer_ids": cur.AcquirerIDs, "lanes": cur.Lanes, "settlement_account": cur.SettlementAccount,
		"withdrawal_max": cur.WithdrawalMax, "payer_type": cur.PayerType, "payer_types": cur.PayerTypes,
		"allow": cur.Allow, "cert_pins": cur.CertPins, "suspended": cur.Suspended, "reason": *reason}
	body, err = o.write(ctx, http.MethodPut, "/v1/partners/"+url.PathEscape(id), req, opsBodyBytesMax)
	if err != nil || o.json {
		return jsonOr(err, stdout, body)
	}
	verb := "changed"
	if code == http.StatusNotFound {
		verb = "created"
	}
	return printPartner(ctx, o, stdout, body, verb)
}

// changePins applies the pin flags to pins: --cert-pins replaces the list,
// --remove-cert-pin drops one, --add-cert adds the certificate's pin (or
// moves its not-after). The switch checks the result (at most two live).
func changePins(pins []certPin, fs *flag.FlagSet, replace, addCert, notAfter, remove string) ([]certPin, error) {
	if isSet(fs, "cert-pins") {
		if addCert != "" || remove != "" {
			return nil, usagef("partners set: --cert-pins replaces the list; use it without --add-cert and --remove-cert-pin")
		}
		pins = []certPin{}
		for _, item := range list(replace) {
			sum, at, ok := strings.Cut(item, "@")
			t, err := time.Parse(time.RFC3339, at)
			if !ok || err != nil {
				return nil, usagef("partners set: --cert-pins %q: want SHA256@NOT-AFTER, NOT-AFTER in RFC 3339 (2027-01-31T00:00:00Z)", item)
			}
			pins = append(pins, certPin{SHA256: sum, NotAfter: t})
		}
	}
	if remove != "" {
		n := len(pins)
		pins = slices.DeleteFunc(pins, func(c certPin) bool { return c.SHA256 == remove })
		if len(pins) == n {
			return nil, usagef("partners set: --remove-cert-pin %s: the partner has no such pin", remove)
		}
	}
	if notAfter != "" && addCert == "" {
		return nil, usagef("partners set: --not-after goes with --add-cert")
	}
	if addCert != "" {
		leaf, err := readCert(addCert)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
		c := certPin{SHA256: hex.EncodeToString(sum[:]), NotAfter: leaf.NotAfter.UTC()}
		if notAfter != "" {
			if c.NotAfter, err = time.Parse(time.RFC3339, notAfter); err != nil {
				return nil, usagef("partners set: --not-after %q: want RFC 3339 (2027-01-31T00:00:00Z)", notAfter)
			}
		}
		pins = slices.DeleteFunc(pins, func(o certPin) bool { return o.SHA256 == c.SHA256 }) // same key renewed: a new not-after
		pins = append(pins, c)
	}
	return pins, nil
}

// readCert reads the first certificate of a PEM file.
func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}

func printPartner(ctx context.Context, o *opsFlags, stdout io.Writer, body []byte, verb string) error {
	var p partner
	if err := json.Unmarshal(body, &p); err != nil {
		return fmt.Errorf("decoding the partner: %w", err)
	}
	if verb != "" {
		fmt.Fprintf(stdout, "partner %s %s\n", p.ID, verb)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "id\t%s\nstate\t%s\nacquirer ids\t%s\nlanes\t%s\n", p.ID, partnerState(p), strings.Join(p.AcquirerIDs, ","), orDash(strings.Join(p.Lanes, ",")))
	fmt.Fprintf(tw, "payer type\t%s\nalso\t%s\nsettlement account\t%s\nwithdrawal max\t%s\n", p.PayerType, orDash(strings.Join(p.PayerTypes, ",")),
		orDash(p.SettlementAccount), withdrawalMax(p, accountCurrency(ctx, o, p.SettlementAccount)))
	fmt.Fprintf(tw, "allow\t%s\n", orDash(strings.Join(p.Allow, ",")))
	now := time.Now()
	for i, pin := range p.CertPins {
		state := "live"
		if !now.Before(pin.NotAfter) {
			state = "expired: names nobody"
		}
		fmt.Fprintf(tw, "cert pin %d\t%s until %s (%s)\n", i+1, pin.SHA256, pin.NotAfter.UTC().Format(time.RFC3339), state)
	}
	printMAC(tw, p.MAC)
	return tw.Flush()
}

func agentsCmd(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("agents: want list, get, set or settle")
	}
	var o opsFlags
	fs := flag.NewFlagSet("switchctl agents "+args[0], flag.ContinueOnError)
	o.register(fs)
	switch args[0] {
	case "list":
		pg := pageFlags(fs, "list agents after this id (paging)", "agents per page (API default 100, at most 1000)")
		if err := noArgs(fs, args, stdout); err != nil {
			return err
		}
		q := url.Values{}
		pg.set(q)
		body, err := o.get(ctx, "/v1/agents", q)
		if err != nil || o.json {
			return jsonOr(err, stdout, body)
		}
		var page struct {
			Agents []agent `json:"agents"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return fmt.Errorf("decoding agents: %w", err)
		}
		t := newTable("ID", "PARTNER", "TERMINAL", "CCY", "CASH LIMIT", "CASH HELD", "USED", "SETTLED").
			alignRight("CASH LIMIT", "CASH HELD", "USED", "SETTLED")
		for _, a := range page.Agents {
			t.add(a.ID, a.Partner, a.Terminal, a.Currency, money(a.CashLimit, a.Currency), money(a.CashHeld, a.Currency),
				usedPercent(a), money(a.Settled, a.Currency))
		}
		if err := t.write(stdout); err != nil {
			return err
		}
		if n := len(page.Agents); n > 0 && n == pageSize(*pg.limit) {
			fmt.Fprintf(stdout, "(more: --after %s)\n", page.Agents[n-1].ID)
		}
		return nil
	case "get", "show":
		id, err := oneID(fs, args[1:], stdout, "agent id (partner:terminal)")
		if err != nil {
			return err
		}
		body, err := o.get(ctx, "/v1/agents/"+url.PathEscape(id), nil)
		if err != nil || o.json {
			return jsonOr(err, stdout, body)
		}
		return printAgent(stdout, body, "")
	case "set":
		ccy := fs.String("currency", "", "currency of the agent's cash (required for a new agent)")
		limit := fs.String("cash-limit", "", "most cash the agent may hold before it settles, e.g. 500.00")
		reason := fs.String("reason", "", "why, for the audit chain")
		id, err := oneID(fs, args[1:], stdout, "agent id (partner:terminal)")
		if err != nil {
			return err
		}
		code, body, err := o.call(ctx, http.MethodGet, "/v1/agents/"+url.PathEscape(id), nil, opsBodyBytesMax, http.StatusNotFound)
		if err != nil {
			return err
		}
		var cur agent
		if code != http.StatusNotFound {
			if err := json.Unmarshal(body, &cur); err != nil {
				return fmt.Errorf("decoding agent %s: %w", id, err)
			}
		}
		if *ccy != "" {
			cur.Currency = *ccy
		}
		if cur.Currency == "" {
			return usagef("agents set: a new agent needs --currency and --cash-limit")
		}
		if *limit != "" {
			if cur.CashLimit, err = amountFlag("cash-limit", *limit, cur.Currency); err != nil {
				return err
			}
		} else if code == http.StatusNotFound {
			return usagef("agents set: a new agent needs --currency and --cash-limit")
		}
		req := map[string]any{"currency": cur.Currency, "cash_limit": cur.CashLimit, "reason": *reason}
		body, err = o.write(ctx, http.MethodPut, "/v1/agents/"+url.PathEscape(id), req, opsBodyBytesMax)
		if err != nil || o.json {
			return jsonOr(err, stdout, body)
		}
		verb := "changed"
		if code == http.StatusNotFound {
			verb = "created"
		}
		return printAgent(stdout, body, verb)
	case "settle":
		amount := fs.String("amount", "", "cash handed in, e.g. 12.34")
		ccy := fs.String("currency", "", "its currency (default: the agent's)")
		ref := fs.String("reference", "", "the slip or receipt number: the same reference again is the same settlement")
		pos, err := parseCmd(fs, args[1:], stdout)
		if err != nil {
			return err
		}
		if len(pos) != 1 || *amount == "" || *ref == "" {
			return usagef("agents settle: want one agent id, --amount and --reference")
		}
		code := *ccy
		if code == "" {
			body, err := o.get(ctx, "/v1/agents/"+url.PathEscape(pos[0]), nil)
			if err != nil {
				return err
			}
			var a agent
			if err := json.Unmarshal(body, &a); err != nil {
				return fmt.Errorf("decoding agent %s: %w", pos[0], err)
			}
			code = a.Currency
		}
		minor, err := amountFlag("amount", *amount, code)
		if err != nil {
			return err
		}
		req := map[string]any{"amount": minor, "currency": code, "reference": *ref}
		body, err := o.write(ctx, http.MethodPost, "/v1/agents/"+url.PathEscape(pos[0])+"/settlements", req, opsBodyBytesMax)
		if err != nil || o.json {
			return jsonOr(err, stdout, body)
		}
		var a agent
		if err := json.Unmarshal(body, &a); err != nil {
			return fmt.Errorf("decoding the agent: %w", err)
		}
		again := ""
		if a.Replayed {
			again = " (already recorded under this reference: nothing settled twice)"
		}
		fmt.Fprintf(stdout, "agent %s settled %s %s, reference %s%s; holds %s of %s\n", a.ID, money(minor, code), code, *ref, again,
			money(a.CashHeld, a.Currency), money(a.CashLimit, a.Currency))
		return nil
	}
	return usagef("agents: unknown command %q (want list, get, set or settle)", args[0])
}

// usedPercent is how much of its limit an agent holds, to a tenth of a
// percent, in integers (big: held × 1000 may not fit in an int64).
func usedPercent(a agent) string {
	if a.CashLimit <= 0 {
		if a.CashHeld > 0 {
			return "over"
		}
		return "-"
	}
	pm := new(big.Int).Mul(big.NewInt(a.CashHeld), big.NewInt(1000))
	permille := pm.Quo(pm, big.NewInt(a.CashLimit)).Int64()
	return fmt.Sprintf("%d.%d%%", permille/10, permille%10)
}

func printAgent(stdout io.Writer, body []byte, verb string) error {
	var a agent
	if err := json.Unmarshal(body, &a); err != nil {
		return fmt.Errorf("decoding the agent: %w", err)
	}
	if verb != "" {
		fmt.Fprintf(stdout, "agent %s %s\n", a.ID, verb)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "id\t%s\npartner\t%s\nterminal\t%s\ncurrency\t%s\n", a.ID, a.Partner, a.Terminal, a.Currency)
	fmt.Fprintf(tw, "cash limit\t%s\ncash held\t%s (%s)\nsettled\t%s\n", money(a.CashLimit, a.Currency), money(a.CashHeld, a.Currency),
		usedPercent(a), money(a.Settled, a.Currency))
	return tw.Flush()
}
