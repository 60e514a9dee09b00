package main

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/currency"
)

// Limits of iso send.
const (
	// answersSkippedMax bounds how many unrelated frames (answers to
	// someone else's requests cannot arrive on our own connection, but a
	// confused peer can send anything) are read before giving up.
	answersSkippedMax = 16
	frameBytesMax     = codec.FrameBytesMaxLimit
)

// fieldList collects repeated --field id=value flags.
type fieldList []string

func (f *fieldList) String() string     { return strings.Join(*f, " ") }
func (f *fieldList) Set(v string) error { *f = append(*f, v); return nil }

// isoSendFlags are iso send's options.
type isoSendFlags struct {
	addr, dialect, header                   string
	mti, pan, amount, ccy, pc, stan, rrn    string
	acquirer, terminal, merchant, network   string
	originalSTAN, originalTime, originalMTI string
	actual                                  string
	expect                                  string
	tlsCA, tlsCert, tlsKey                  string
	macKeyFile, macAlg, macPadding          string
	signOn                                  bool
	fields                                  fieldList
	timeout                                 time.Duration
}

func isoSendFlagSet(f *isoSendFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("switchctl iso send", flag.ContinueOnError)
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8583", "switch ISO 8583 lane `host:port`")
	fs.StringVar(&f.dialect, "dialect", "iso87ascii", "ISO 8583 dialect")
	fs.StringVar(&f.header, "header", string(codec.HeaderBinary2), "length header (binary2, ascii4, bcd2)")
	fs.StringVar(&f.mti, "mti", "0200", "message type: 0100 0101 0200 0201 0220 0221 0400 0401 0420 0421 0800")
	fs.StringVar(&f.pan, "pan", "", "card number (field 2); printed masked only")
	fs.StringVar(&f.amount, "amount", "", "amount as a decimal, e.g. 12.34 (field 4)")
	fs.StringVar(&f.ccy, "currency", "USD", "ISO 4217 currency (field 49)")
	fs.StringVar(&f.pc, "pc", "000000", "processing code (field 3): 000000 purchase, 310000 balance inquiry …")
	fs.StringVar(&f.stan, "stan", "", "STAN (field 11; default: random)")
	fs.StringVar(&f.rrn, "rrn", "", "retrieval reference number (field 37; default: from the date and STAN)")
	fs.StringVar(&f.acquirer, "acquirer", "100001", "acquiring institution id (field 32)")
	fs.StringVar(&f.terminal, "terminal", "TERM0001", "terminal id (field 41; empty: none)")
	fs.StringVar(&f.merchant, "merchant", "", "card acceptor id (field 42; empty: none)")
	fs.StringVar(&f.network, "network", "301", "network management code for 08xx (field 70): 001 sign-on, 002 sign-off, 301 echo")
	fs.StringVar(&f.originalSTAN, "original-stan", "", "STAN of the original (field 90) for completions and reversals")
	fs.StringVar(&f.originalTime, "original-time", "", "field 7 of the original, MMDDhhmmss (field 90)")
	fs.StringVar(&f.originalMTI, "original-mti", "", "MTI of the original (field 90; default 0100 for 022x, 0200 for 04xx)")
	fs.StringVar(&f.actual, "actual", "", "amount that stands after a partial reversal, decimal (field 95)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "TLS lane: CA bundle (PEM) the lane's certificate must chain to; set, the message goes over TLS")
	fs.StringVar(&f.tlsCert, "cert", "", "TLS lane: client certificate (PEM), the partner's identity")
	fs.StringVar(&f.tlsKey, "key", "", "TLS lane: the client certificate's private key (PEM)")
	fs.BoolVar(&f.signOn, "sign-on", false, "sign on (0800, field 70 = 001) on the connection first, for lanes with require_sign_on")
	fs.StringVar(&f.expect, "expect", "", "exit 1 unless the answer's response code (field 39) is `CODE`, e.g. 00 or 62")
	fs.Var(&f.fields, "field", "extra or overriding field, `id=value` (repeatable), e.g. 48=BT=ELEC")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to wait for the answer")
	fs.StringVar(&f.macKeyFile, "mac-key-file", "", "MAC the request (field 64/128) with the key in this `file` (hex; - reads stdin) and check the answer's MAC")
	fs.StringVar(&f.macAlg, "mac-alg", "", "MAC algorithm: x919 (default) or aes-cmac")
	fs.StringVar(&f.macPadding, "mac-padding", "", "x919 padding: m1 (default) or m2")
	return fs
}

// isoSend sends one message and prints request and answer.
func isoSend(args []string, stdout io.Writer) error {
	var f isoSendFlags
	fs := isoSendFlagSet(&f)
	pos, err := parseCmd(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("iso send: unexpected argument %q", pos[0])
	}
	c, err := codec.Load(f.dialect)
	if err != nil {
		return usagef("--dialect: %v", err)
	}
	framer := codec.Framer{Header: codec.Header(f.header), FrameBytesMax: frameBytesMax}
	if err := framer.Validate(); err != nil {
		return usagef("--header: %v", err)
	}
	fields, err := dialectFields(f.dialect)
	if err != nil {
		return err
	}
	req, err := buildMessage(&f, time.Now().UTC())
	if err != nil {
		return err
	}
	im, err := loadISOMAC(&f, c)
	if err != nil {
		return err
	}
	if im != nil {
		if err := im.sign(req, c); err != nil {
			return err
		}
	}
	payload, err := c.Pack(nil, req)
	if err != nil {
		// Codec errors name the field, never its value.
		return usagef("the message does not pack: %v", err)
	}
	frame, err := framer.AppendFrame(nil, payload)
	if err != nil {
		return usagef("the message does not frame: %v", err)
	}

	fmt.Fprintf(stdout, "→ %s to %s (%s, %s)\n", req.MTI, f.addr, f.dialect, f.header)
	writeMessage(stdout, req, fields)
	start := time.Now()
	tcfg, err := f.tlsConfig()
	if err != nil {
		return err
	}
	var so *signOn
	if f.signOn {
		sf := f
		sf.mti, sf.network, sf.stan, sf.fields = "0800", codec.NetworkSignOn, "", nil
		sreq, err := buildMessage(&sf, time.Now().UTC())
		if err != nil {
			return err
		}
		sp, err := c.Pack(nil, sreq)
		if err != nil {
			return usagef("the sign-on does not pack: %v", err)
		}
		sframe, err := framer.AppendFrame(nil, sp)
		if err != nil {
			return err
		}
		so = &signOn{frame: sframe, req: sreq}
	}
	resp, raw, err := exchange(f.addr, tcfg, so, frame, req, c, framer, f.timeout)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "← %s in %.1f ms\n", resp.MTI, float64(time.Since(start).Microseconds())/1000)
	writeMessage(stdout, resp, fields)
	if im != nil {
		if err := im.check(resp, raw, stdout); err != nil {
			return err
		}
	}
	if f.expect != "" && resp.Get(39) != f.expect {
		return fmt.Errorf("response code %q, expected %q", resp.Get(39), f.expect)
	}
	return nil
}

// buildMessage turns the flags into a request. Defaults: a random STAN, an
// RRN from the date and STAN, field 7 now (UTC).
func buildMessage(f *isoSendFlags, now time.Time) (*codec.Message, error) {
	if len(f.mti) != 4 || strings.Trim(f.mti, "0123456789") != "" {
		return nil, usagef("--mti %q: want 4 digits", f.mti)
	}
	m := &codec.Message{MTI: f.mti}
	stan := f.stan
	if stan == "" {
		n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
		if err != nil {
			return nil, err
		}
		stan = fmt.Sprintf("%06d", n.Int64())
	}
	if len(stan) > 6 || strings.Trim(stan, "0123456789") != "" {
		return nil, usagef("--stan %q: want up to 6 digits", stan)
	}
	stan = fmt.Sprintf("%06s", stan)
	m.Set(7, now.Format("0102150405"))
	m.Set(11, stan)
	if strings.HasPrefix(f.mti, "08") {
		m.Set(70, f.network)
		return m, applyFields(m, f.fields)
	}

	if f.pan == "" {
		return nil, usagef("--pan is required for %s", f.mti)
	}
	// Digits only, no Luhn check: sending a bad card number on purpose is
	// how an operator sees the switch answer 14.
	if len(f.pan) < 1 || len(f.pan) > 19 || strings.Trim(f.pan, "0123456789") != "" {
		return nil, usagef("--pan: want up to 19 digits")
	}
	ccy, err := currency.ByCode(f.ccy)
	if err != nil {
		return nil, usagef("--currency %q: %v", f.ccy, err)
	}
	amountText := f.amount
	if amountText == "" {
		if !strings.HasPrefix(f.pc, "31") {
			return nil, usagef("--amount is required (only a balance inquiry, --pc 31xxxx, goes without)")
		}
		amountText = "0"
	}
	amount, err := parseAmount(amountText, ccy)
	if err != nil {
		return nil, usagef("--amount: %v", err)
	}
	rrn := f.rrn
	if rrn == "" {
		// The common convention: last digit of the year, day of year,
		// hour, then the STAN.
		rrn = fmt.Sprintf("%d%03d%02d%s", now.Year()%10, now.YearDay(), now.Hour(), stan)
	}
	m.Set(2, f.pan)
	m.Set(3, f.pc)
	m.Set(4, fmt.Sprintf("%012d", amount))
	m.Set(12, now.Format("150405"))
	m.Set(13, now.Format("0102"))
	m.Set(32, f.acquirer)
	m.Set(37, rrn)
	if f.terminal != "" {
		m.Set(41, f.terminal)
	}
	if f.merchant != "" {
		m.Set(42, f.merchant)
	}
	m.Set(49, ccy.Numeric)
	if f.originalSTAN != "" || f.originalTime != "" {
		v, err := field90(f)
		if err != nil {
			return nil, err
		}
		m.Set(90, v)
	}
	if f.actual != "" {
		actual, err := parseAmount(f.actual, ccy)
		if err != nil {
			return nil, usagef("--actual: %v", err)
		}
		m.Set(95, fmt.Sprintf("%012d%s", actual, "000000000000C00000000C00000000"))
	}
	return m, applyFields(m, f.fields)
}

// field90 builds the original data elements from --original-*: MTI, STAN,
// field 7, acquirer zero-filled to 11 digits, no forwarding institution.
func field90(f *isoSendFlags) (string, error) {
	if f.originalSTAN == "" || f.originalTime == "" {
		return "", usagef("--original-stan and --original-time go together")
	}
	mti := f.originalMTI
	if mti == "" {
		mti = "0200"
		if strings.HasPrefix(f.mti, "022") {
			mti = "0100"
		}
	}
	stan := f.originalSTAN
	switch {
	case len(mti) != 4 || strings.Trim(mti, "0123456789") != "":
		return "", usagef("--original-mti %q: want 4 digits", mti)
	case len(stan) > 6 || strings.Trim(stan, "0123456789") != "":
		return "", usagef("--original-stan %q: want up to 6 digits", stan)
	case len(f.originalTime) != 10 || strings.Trim(f.originalTime, "0123456789") != "":
		return "", usagef("--original-time %q: want MMDDhhmmss", f.originalTime)
	case len(f.acquirer) > 11:
		return "", usagef("--acquirer %q: at most 11 digits", f.acquirer)
	}
	return fmt.Sprintf("%s%06s%s%011s%011d", mti, stan, f.originalTime, f.acquirer, 0), nil
}

// parseAmount reads a decimal amount; a whole number ("12") is accepted as
// "12.00" since it cannot mean anything else.
func parseAmount(s string, c currency.Currency) (int64, error) {
	if c.Exponent > 0 && !strings.Contains(s, ".") {
		s += "." + strings.Repeat("0", c.Exponent)
	}
	v, err := currency.ParseMinor(s, c, '.')
	if err != nil {
		return 0, fmt.Errorf("%q is not an amount in %s with %d decimals", s, c.Code, c.Exponent)
	}
	if v < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return v, nil
}

// applyFields sets --field id=value overrides.
func applyFields(m *codec.Message, fields fieldList) error {
	for _, kv := range fields {
		k, v, ok := strings.Cut(kv, "=")
		id, err := strconv.Atoi(k)
		if !ok || err != nil || id < 2 || id > 128 || id == 65 {
			return usagef("--field %q: want id=value with id 2..128 (not 65)", k)
		}
		m.Set(id, v)
	}
	return nil
}

// exchange sends frame and waits for the answer to req (same STAN and
// field 7).
// tlsConfig is the client side of a TLS lane (nil: plain TCP).
func (f *isoSendFlags) tlsConfig() (*tls.Config, error) {
	if f.tlsCA == "" {
		if f.tlsCert != "" || f.tlsKey != "" {
			return nil, usagef("--cert and --key need --tls-ca")
		}
		return nil, nil
	}
	pem, err := os.ReadFile(f.tlsCA)
	if err != nil {
		return nil, usagef("--tls-ca: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, usagef("--tls-ca %s: no PEM certificate in it", f.tlsCA)
	}
	host, _, err := net.SplitHostPort(f.addr)
	if err != nil {
		return nil, usagef("--addr %q: %v", f.addr, err)
	}
	cfg := &tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12}
	if f.tlsCert != "" || f.tlsKey != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return nil, usagef("--cert/--key: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// signOn, when set, is an 0800/001 frame (and its message) sent and
// answered on the connection before the request: lanes with
// require_sign_on refuse financial messages on a connection that has not.
type signOn struct {
	frame []byte
	req   *codec.Message
}

func exchange(addr string, tcfg *tls.Config, so *signOn, frame []byte, req *codec.Message, c *codec.Codec, framer codec.Framer, timeout time.Duration) (*codec.Message, []byte, error) {
	var nc net.Conn
	var err error
	if tcfg != nil {
		nc, err = tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", addr, tcfg)
	} else {
		nc, err = net.DialTimeout("tcp", addr, timeout)
	}
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, nil, fmt.Errorf("cannot connect to the switch at %s (--addr): connection refused; is switchd running?", addr)
		}
		return nil, nil, fmt.Errorf("cannot connect to the switch at %s (--addr): %w", addr, err)
	}
	defer nc.Close()
	if err := nc.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, nil, err
	}
	br := bufio.NewReader(nc)
	if so != nil {
		resp, _, err := roundTrip(nc, br, addr, so.frame, so.req, c, framer, timeout)
		if err != nil {
			return nil, nil, fmt.Errorf("sign-on: %w", err)
		}
		if rc := resp.Get(39); rc != "00" {
			return nil, nil, fmt.Errorf("sign-on answered %s", rc)
		}
	}
	return roundTrip(nc, br, addr, frame, req, c, framer, timeout)
}

// roundTrip sends one frame and reads until the answer to req; it returns
// the answer and its bytes as they arrived (no length header).
func roundTrip(nc net.Conn, br *bufio.Reader, addr string, frame []byte, req *codec.Message, c *codec.Codec, framer codec.Framer, timeout time.Duration) (*codec.Message, []byte, error) {
	if _, err := nc.Write(frame); err != nil {
		return nil, nil, fmt.Errorf("sending to %s: %w", addr, err)
	}
	for range answersSkippedMax {
		b, err := framer.ReadFrame(br, nil)
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			return nil, nil, fmt.Errorf("no answer from %s within %s", addr, timeout)
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil, nil, fmt.Errorf("%s closed the connection without answering (the switch closes on unreadable messages)", addr)
		case err != nil:
			return nil, nil, fmt.Errorf("reading the answer from %s: %w", addr, err)
		}
		resp := &codec.Message{}
		if err := c.Unpack(b, resp); err != nil {
			return nil, nil, fmt.Errorf("the answer does not unpack: %w", err)
		}
		if resp.Get(11) == req.Get(11) && (resp.Get(7) == req.Get(7) || !resp.Has(7)) {
			return resp, b, nil
		}
	}
	return nil, nil, fmt.Errorf("%s sent %d frames, none answering STAN %s", addr, answersSkippedMax, req.Get(11))
}
