package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/specs"
)

// Limits on what a run may ask for. Each bounds memory or sockets on the
// load generator, or keeps a typo from becoming a denial of service.
const (
	// connsMax matches a lane's default conns_max: more is refused by the
	// switch anyway.
	connsMax = 1024
	// inflightMax matches the switch's inflight_max limit per connection;
	// past the lane's own setting the switch stops reading (backpressure).
	inflightMax = 4096
	// cardsMax bounds setup time and the verification sweep (one GET each).
	cardsMax = 100_000
	// rateMax bounds the open-loop scheduler (requests per second).
	rateMax     = 1_000_000
	durationMax = 24 * time.Hour
	timeoutMax  = 5 * time.Minute
	// sendsMax is how often one request goes on the wire at most: the
	// original and up to four repeats after a timeout, a lost connection or
	// a 96. After that its outcome stays unknown and is reported.
	sendsMax = 5
)

// ErrUsage is wrapped by every configuration error; main exits 2 on it.
var ErrUsage = errors.New("switchload: usage")

// kind is one kind of request in the mix.
type kind uint8

const (
	kindPurchase kind = iota
	kindAuth
	kindCompletion
	kindReversal
	kindRepeat
	kindBalance
	kindCount
)

// String is the kind's name in --mix and in the summary.
func (k kind) String() string {
	switch k {
	case kindPurchase:
		return "purchase"
	case kindAuth:
		return "auth"
	case kindCompletion:
		return "completion"
	case kindReversal:
		return "reversal"
	case kindRepeat:
		return "repeat"
	case kindBalance:
		return "balance"
	}
	return "unknown"
}

// kindList is every kind's name, for messages.
func kindList() string {
	names := make([]string, 0, kindCount)
	for k := range kindCount {
		names = append(names, k.String())
	}
	return strings.Join(names, ", ")
}

// mix holds the relative weight of each kind; the weights need not add up
// to 100.
type mix [kindCount]int

// parseMix reads "purchase=60,auth=10,…". Kinds left out get weight 0; an
// unknown kind, a negative or non-numeric weight, a repeated kind or an
// all-zero mix is an error.
func parseMix(s string) (mix, error) {
	var m mix
	seen := [kindCount]bool{}
	total := 0
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, w, ok := strings.Cut(part, "=")
		if !ok {
			return m, fmt.Errorf("%w: mix entry %q: want kind=weight", ErrUsage, part)
		}
		k := kindCount
		for i := range kindCount {
			if strings.TrimSpace(name) == i.String() {
				k = i
			}
		}
		if k == kindCount {
			return m, fmt.Errorf("%w: mix entry %q: unknown kind (want one of %s)", ErrUsage, part, kindList())
		}
		if seen[k] {
			return m, fmt.Errorf("%w: mix names %q twice", ErrUsage, k)
		}
		seen[k] = true
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || n < 0 || n > 1_000_000 {
			return m, fmt.Errorf("%w: mix entry %q: weight must be 0..1000000", ErrUsage, part)
		}
		m[k] = n
		total += n
	}
	if total == 0 {
		return m, fmt.Errorf("%w: mix %q has no positive weight", ErrUsage, s)
	}
	return m, nil
}

// String writes the mix the way parseMix reads it, kinds in a fixed order.
func (m mix) String() string {
	var parts []string
	for k, w := range m {
		if w > 0 {
			parts = append(parts, kind(k).String()+"="+strconv.Itoa(w))
		}
	}
	return strings.Join(parts, ",")
}

// pick draws a kind with probability proportional to its weight; n is a
// uniform draw in [0, total).
func (m mix) pick(n int) kind {
	for k, w := range m {
		if n < w {
			return kind(k)
		}
		n -= w
	}
	return kindPurchase // unreachable for n < total
}

func (m mix) total() int {
	t := 0
	for _, w := range m {
		t += w
	}
	return t
}

// Config is one run's configuration, from flags.
type Config struct {
	// Addr is one lane address, host:port, or a comma-separated list of
	// them to spread the connections over several nodes: connection i
	// dials entry i mod the count, and redials the same entry.
	Addr string
	Ops  string
	// Credentials is the ops API client's credentials file ("" : none;
	// the ops API then refuses with 401).
	Credentials string
	Conns       int
	Inflight    int
	Duration    time.Duration
	// Rate is the offered load in requests per second (open loop); 0 runs
	// closed loop: every connection keeps Inflight requests outstanding.
	Rate     int
	Mix      mix
	Cards    int
	BIN      string
	Opening  string
	Funding  string
	Dialect  string
	Header   codec.Header
	Acquirer string
	Currency string
	JSONPath string
	Verify   bool
	// Seed drives the mix and the amounts; 0 picks one from the clock (the
	// summary reports the seed used).
	Seed    int64
	Timeout time.Duration
	Quiet   bool
}

// DefaultConfig is the demo switch on loopback, closed loop.
func DefaultConfig() Config {
	m, _ := parseMix(defaultMix)
	return Config{
		Addr:     "127.0.0.1:8583",
		Ops:      "http://127.0.0.1:8080",
		Conns:    8,
		Inflight: 64,
		Duration: 30 * time.Second,
		Mix:      m,
		Cards:    200,
		BIN:      "999999",
		Opening:  "10000000.00",
		Funding:  "bank-funding-usd",
		Dialect:  "iso87ascii",
		Header:   codec.HeaderBinary2,
		Acquirer: "100001",
		Currency: "USD",
		Verify:   true,
		Timeout:  10 * time.Second,
	}
}

const defaultMix = "purchase=60,auth=10,completion=8,reversal=7,repeat=10,balance=5"

// Validate enforces the limits above and checks every value the run would
// otherwise only trip over halfway through.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
	}
	addrs, err := parseAddrs(c.Addr)
	if err != nil {
		return err
	}
	if u, err := url.Parse(c.Ops); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return bad("--ops %q: want http://host:port", c.Ops)
	}
	if c.Conns < 1 || c.Conns > connsMax {
		return bad("--conns %d not in [1, %d]", c.Conns, connsMax)
	}
	if len(addrs) > c.Conns {
		return bad("--addr lists %d lanes but --conns is %d: every lane needs a connection", len(addrs), c.Conns)
	}
	if c.Inflight < 1 || c.Inflight > inflightMax {
		return bad("--inflight %d not in [1, %d]", c.Inflight, inflightMax)
	}
	if c.Duration <= 0 || c.Duration > durationMax {
		return bad("--duration %s not in (0, %s]", c.Duration, durationMax)
	}
	if c.Rate < 0 || c.Rate > rateMax {
		return bad("--rate %d not in [0, %d]", c.Rate, rateMax)
	}
	if c.Mix.total() == 0 {
		return bad("--mix has no positive weight")
	}
	if c.Cards < 1 || c.Cards > cardsMax {
		return bad("--cards %d not in [1, %d]", c.Cards, cardsMax)
	}
	if len(c.BIN) != binDigits || strings.Trim(c.BIN, "0123456789") != "" {
		return bad("--bin %q: want %d digits", c.BIN, binDigits)
	}
	ccy, err := currency.ByCode(c.Currency)
	if err != nil {
		return bad("--currency %q: %v", c.Currency, err)
	}
	if v, err := currency.ParseMinor(c.Opening, ccy, '.'); err != nil || v < 0 {
		return bad("--opening %q: want a non-negative amount in %s with %d decimals", c.Opening, ccy.Code, ccy.Exponent)
	}
	if c.Funding == "" {
		return bad("--funding is empty")
	}
	known := false
	for _, n := range specs.Names() {
		known = known || n == c.Dialect
	}
	if !known {
		return bad("--dialect %q: want one of %s", c.Dialect, strings.Join(specs.Names(), ", "))
	}
	if err := (codec.Framer{Header: c.Header, FrameBytesMax: codec.FrameBytesMaxLimit}).Validate(); err != nil {
		return bad("--header: %v", err)
	}
	if len(c.Acquirer) < 1 || len(c.Acquirer) > 11 || strings.Trim(c.Acquirer, "0123456789") != "" {
		return bad("--acquirer %q: want 1..11 digits", c.Acquirer)
	}
	if c.Timeout <= 0 || c.Timeout > timeoutMax {
		return bad("--timeout %s not in (0, %s]", c.Timeout, timeoutMax)
	}
	return nil
}

// parseAddrs splits --addr into its lane addresses, in order, with the
// spaces around each trimmed. Every entry must be host:port with a port;
// an empty entry or an address listed twice is an error (twice would load
// that lane double). Their number is bounded by --conns (see Validate).
func parseAddrs(s string) ([]string, error) {
	parts := strings.Split(s, ",")
	addrs := make([]string, 0, len(parts))
	for i, a := range parts {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, fmt.Errorf("%w: --addr %q: entry %d of %d is empty", ErrUsage, s, i+1, len(parts))
		}
		_, port, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("%w: --addr %q: %v", ErrUsage, a, err)
		}
		if port == "" {
			return nil, fmt.Errorf("%w: --addr %q: no port", ErrUsage, a)
		}
		if slices.Contains(addrs, a) {
			return nil, fmt.Errorf("%w: --addr lists %q twice", ErrUsage, a)
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}

// laneAddr is the lane address of connection conn: the connections go
// round the list, so the lanes' connection counts differ by at most one.
func laneAddr(addrs []string, conn int) string {
	return addrs[conn%len(addrs)]
}

// parseFlags reads the command line into a Config over DefaultConfig.
func parseFlags(name string, args []string) (Config, error) {
	c := DefaultConfig()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&c.Addr, "addr", c.Addr, "switch ISO 8583 lane `host:port`; a comma-separated list spreads the connections over several lanes (connection i uses entry i mod the count)")
	fs.StringVar(&c.Ops, "ops", c.Ops, "switch ops API `URL`")
	fs.StringVar(&c.Credentials, "credentials", c.Credentials, "ops API client credentials `file` (default $SWITCHCTL_CREDENTIALS, else data/ops-credentials.json when it exists)")
	fs.IntVar(&c.Conns, "conns", c.Conns, "TCP connections, in total over the --addr lanes")
	fs.IntVar(&c.Inflight, "inflight", c.Inflight, "requests outstanding per connection (pipelined)")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "how long to offer load")
	fs.IntVar(&c.Rate, "rate", c.Rate, "offered requests/s, open loop (0: closed loop)")
	mixText := fs.String("mix", defaultMix, "request mix, `kind=weight,…` ("+kindList()+")")
	fs.IntVar(&c.Cards, "cards", c.Cards, "load-test card accounts to create and use")
	fs.StringVar(&c.BIN, "bin", c.BIN, "6-digit test BIN of the generated card numbers")
	fs.StringVar(&c.Opening, "opening", c.Opening, "opening balance of each card account (decimal)")
	fs.StringVar(&c.Funding, "funding", c.Funding, "account that funds the opening balances")
	fs.StringVar(&c.Dialect, "dialect", c.Dialect, "ISO 8583 dialect ("+strings.Join(specs.Names(), ", ")+")")
	header := fs.String("header", string(c.Header), "length header (binary2, ascii4, bcd2)")
	fs.StringVar(&c.Acquirer, "acquirer", c.Acquirer, "field 32 acquiring institution id")
	fs.StringVar(&c.Currency, "currency", c.Currency, "ISO 4217 currency of the cards and amounts")
	fs.StringVar(&c.JSONPath, "json", "", "also write the summary as JSON to `file` (- for stdout)")
	fs.BoolVar(&c.Verify, "verify", c.Verify, "check every card's balance change against the approvals")
	fs.Int64Var(&c.Seed, "seed", 0, "random seed for the mix and amounts (0: from the clock)")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "answer timeout per request; then it is repeated")
	fs.BoolVar(&c.Quiet, "quiet", false, "no per-second progress on stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(0))
	}
	m, err := parseMix(*mixText)
	if err != nil {
		return c, err
	}
	c.Mix = m
	c.Header = codec.Header(*header)
	return c, c.Validate()
}

// configView is the configuration as the summary reports it.
type configView struct {
	// Addr is the lane addresses joined with commas, as --addr takes them.
	Addr     string `json:"addr"`
	Ops      string `json:"ops"`
	Conns    int    `json:"conns"`
	Inflight int    `json:"inflight"`
	Duration string `json:"duration"`
	Rate     int    `json:"rate"`
	Mode     string `json:"mode"`
	Mix      string `json:"mix"`
	Cards    int    `json:"cards"`
	BIN      string `json:"bin"`
	Opening  string `json:"opening"`
	Dialect  string `json:"dialect"`
	Header   string `json:"header"`
	Acquirer string `json:"acquirer"`
	Currency string `json:"currency"`
	Verify   bool   `json:"verify"`
	Seed     int64  `json:"seed"`
	Timeout  string `json:"timeout"`
}

func (c Config) view() configView {
	addr := c.Addr
	if addrs, err := parseAddrs(c.Addr); err == nil {
		addr = strings.Join(addrs, ",")
	}
	mode := "closed-loop"
	if c.Rate > 0 {
		mode = "open-loop"
	}
	return configView{
		Addr: addr, Ops: c.Ops, Conns: c.Conns, Inflight: c.Inflight, Duration: c.Duration.String(),
		Rate: c.Rate, Mode: mode, Mix: c.Mix.String(), Cards: c.Cards, BIN: c.BIN, Opening: c.Opening,
		Dialect: c.Dialect, Header: string(c.Header), Acquirer: c.Acquirer, Currency: c.Currency,
		Verify: c.Verify, Seed: c.Seed, Timeout: c.Timeout.String(),
	}
}
