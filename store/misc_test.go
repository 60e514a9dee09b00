package store

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// TestNoPANAtRest runs a card flow the way the switch will (the PAN reaches
// the store only as a keyed hash and a masked form) and then searches every
// key and value in pebble, and every file in the directory, for the PAN's
// digits and for its middle digits.
func TestNoPANAtRest(t *testing.T) {
	const pan = "4761739001010119"
	mac := hmac.New(sha256.New, []byte("test-card-key"))
	mac.Write([]byte(pan))
	hash := hex.EncodeToString(mac.Sum(nil))
	masked := pan[:6] + "******" + pan[12:]

	s := openTest(t)
	card := acct("cardholder-1", KindCardholder, "USD")
	card.CardHash, card.MaskedPAN = hash, masked
	fund := acct("fund", KindFunding, "USD")
	fund.Unlimited = true
	mustOK(t, s, createCmd(card), createCmd(fund), createCmd(acct("merch", KindBiller, "USD")))
	mustOK(t, s, postCmd("fund", "fund", "cardholder-1", 100_000))
	fp := func(parts ...string) string { // keyed fingerprint, as the caller computes it
		m := hmac.New(sha256.New, []byte("test-fp-key"))
		m.Write([]byte(strings.Join(parts, "|")))
		return hex.EncodeToString(m.Sum(nil))
	}
	a := authCmd("auth-1", hash, "merch", 5000, "ref-1")
	a.Fingerprint = fp(pan, "5000")
	a.Ref = Ref{MTI: "0100", STAN: "000123", RRN: "000000000123", Terminal: "T1", Merchant: "M1"}
	c := completeCmd("comp-1", "ref-1", 4000, true, "ref-2")
	c.Card = hash
	p := postCardCmd("post-1", hash, "merch", 700, "ref-3")
	r := refundCmd("refund-1", "merch", hash, 300)
	v := reverseCmd("rev-1", "ref-3", 700)
	mustOK(t, s, a, c, p, r, v)
	if snap := snapshotBytes(t, s); bytes.Contains(snap, []byte(pan)) {
		t.Fatal("PAN in the snapshot stream")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	needles := [][]byte{[]byte(pan), []byte(pan[6:12] + pan[12:])}
	db, err := pebble.Open(s.cfg.Dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pairs := 0
	err = scanAll(t.Context(), db, func(k, v []byte) error {
		pairs++
		for _, n := range needles {
			if bytes.Contains(k, n) || bytes.Contains(v, n) {
				t.Errorf("PAN digits in key %q", k)
			}
		}
		return nil
	})
	if err != nil || pairs < 20 {
		t.Fatalf("scanned %d pairs: %v", pairs, err)
	}
	// Masked PAN is there (display), the hash is there (lookup).
	if a, err := s2Account(t, db, "cardholder-1"); err != nil || a.MaskedPAN != masked {
		t.Errorf("masked pan lost: %+v %v", a, err)
	}
}

func s2Account(t *testing.T, db *pebble.DB, id string) (Account, error) {
	return getRecord(db, key1(pfxAccount, id), decodeAccountRecord)
}

func TestBatchEncodingRoundTrip(t *testing.T) {
	full := Command{Op: OpAuthorize, Key: "k", Fingerprint: "f", Time: -5, BusinessDay: "2026-03-02", Partner: "p",
		Card: "h", CreditCard: true, Debit: "d", Credit: "c", Amount: 1 << 60, Currency: "USD", HoldExpiry: 9,
		Original: "o", Final: true, OriginalRef: "r", RetainAfter: -1,
		Ref:     Ref{MTI: "0100", ProcCode: "00", STAN: "1", RRN: "2", Acquirer: "3", Terminal: "4", Merchant: "5", TransmissionTime: "6"},
		Account: &Account{ID: "a", Kind: KindBiller, Currency: "EUR", Partner: "p", CardHash: "h", MaskedPAN: "m", Floor: -7, Unlimited: true, DebitsPending: 1, DebitsPosted: 2, CreditsPending: 3, CreditsPosted: 4}}
	cmds := []Command{full, {Op: OpExpire, Time: 1}, {}}
	data, err := EncodeBatch(cmds)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeBatch(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, cmds) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, cmds)
	}
	// Every truncation fails cleanly.
	for i := 0; i < len(data); i++ {
		if _, err := DecodeBatch(data[:i]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated at %d: %v", i, err)
		}
	}
	if _, err := EncodeBatch(nil); !errors.Is(err, ErrInvalidCommand) {
		t.Errorf("empty batch: %v", err)
	}
	if _, err := EncodeBatch([]Command{{Key: strings.Repeat("x", stringBytesMax+1)}}); !errors.Is(err, ErrInvalidCommand) {
		t.Errorf("long key: %v", err)
	}
	long := Command{Ref: Ref{RRN: strings.Repeat("x", stringBytesMax+1)}}
	if err := long.CheckEncodable(); !errors.Is(err, ErrInvalidCommand) {
		t.Errorf("CheckEncodable of a long field: %v", err)
	}
	if err := full.CheckEncodable(); err != nil {
		t.Errorf("CheckEncodable of a good command: %v", err)
	}
	if _, err := DecodeBatch(append([]byte{batchVersion + 1}, data[1:]...)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("unknown version: %v", err)
	}
}

func TestRecordEncodingRoundTrip(t *testing.T) {
	tr := benchTransfer()
	tr.Status, tr.Original, tr.Captured, tr.Reversed = TransferCompleted, "T1", 5, 6
	gotT, err := decodeTransferRecord(appendTransferRecord(nil, &tr))
	if err != nil || gotT != tr {
		t.Errorf("transfer: %+v %v", gotT, err)
	}
	a := benchAccount()
	a.Floor, a.Unlimited = -100, true
	gotA, err := decodeAccountRecord(appendAccountRecord(nil, &a))
	if err != nil || gotA != a {
		t.Errorf("account: %+v %v", gotA, err)
	}
	rec := idemRecord{Fingerprint: "fp", Time: 77, Result: Result{Status: StatusExceedsOriginal, TransferID: "T1",
		AuthCode: "ABC123", Posted: -5, Available: 9, Currency: "USD", Expired: 3, Pruned: 4}}
	gotR, err := decodeIdemRecord(appendIdemRecord(nil, &rec))
	if err != nil || gotR != rec {
		t.Errorf("idempotency record: %+v %v", gotR, err)
	}
	if _, err := decodeTransferRecord(appendTransferRecord(nil, &tr)[:10]); !errors.Is(err, ErrCorrupt) {
		t.Errorf("truncated transfer: %v", err)
	}
}

// FuzzDecodeBatch: DecodeBatch never panics, and whatever it accepts
// encodes back to the same bytes (one encoding per batch).
func FuzzDecodeBatch(f *testing.F) {
	seed, _ := EncodeBatch([]Command{authCmd("k", "h1", "merch", 5, "r"), createCmd(acct("a", KindBiller, "USD")),
		expireCmd(1, 2)})
	f.Add(seed)
	admin, _ := EncodeBatch([]Command{putRouteCmd("r1", Route{ID: "elec", BillType: "ELEC", Destination: DestinationLedger}),
		putPartnerCmd("p1", Partner{ID: "p1", AcquirerIDs: []string{"1"}, PayerType: PayerOTCAgent})})
	f.Add(admin)
	sca, _ := EncodeBatch([]Command{scaCreate("c", "sca-1", t0), scaRedirect("r", "sca-1", "tok", t0+1), scaComplete("k", "sca-1", "tok", true, t0+2)})
	f.Add(sca)
	hook, _ := EncodeBatch([]Command{endpointCmd("we1", WebhookCreate, testEndpoint("ep1"), 0),
		attemptCmd("ep1", "evt_0000000000000001", 1, 503, t0+2*hour)})
	f.Add(hook)
	machine, _ := EncodeBatch([]Command{batchCmd("k1", "p1", "B1", batchItems(3)),
		batchDoneCmd("p1", "B1", 1, 2, BatchRefusal{Type: "t", Status: 422, Items: []int{0, 2}}),
		stmtCmd("s1", "p1", StatementJob{ID: "j", Account: "a", Day: "2026-01-02", Format: "mt940", Request: "s1", State: StatementQueued})})
	f.Add(machine)
	fwd, _ := EncodeBatch([]Command{fwdCmd("k1", 10), fwdResult("k1", OutcomeTimeout, "", "", t0+1), safUpdateCmd()})
	f.Add(fwd)
	f.Add([]byte{batchVersion, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		cmds, legacy, err := decodeBatch(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		again, err := EncodeBatch(cmds)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if legacy {
			// Written in a layout no longer written: the same commands
			// in today's.
			if back, err := DecodeBatch(again); err != nil || !reflect.DeepEqual(back, cmds) {
				t.Fatalf("legacy layout re-encoded: %v\n%+v\n%+v", err, back, cmds)
			}
			return
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("decode/encode not the identity:\n%x\n%x", data, again)
		}
	})
}

// FuzzApply: any decodable batch applies without panicking and keeps the
// ledger balanced.
func FuzzApply(f *testing.F) {
	seed, _ := EncodeBatch([]Command{authCmd("k", "h1", "merch", 5, "r"), completeCmd("c", "r", 5, false, ""),
		reverseCmd("v", "r", 5), expireCmd(t0+hour, t0+hour)})
	f.Add(seed)
	pay := postCardCmd("ap", "h1", "merch", 5, "")
	pay.PayerType, pay.Agent = PayerOTCAgent, AgentID("ag", "T1")
	admin, _ := EncodeBatch([]Command{
		putPartnerCmd("p1", Partner{ID: "ag", AcquirerIDs: []string{"1"}, PayerType: PayerOTCAgent}),
		adminCmd(OpPutAgent, "a1", &Admin{Agent: &Agent{Partner: "ag", Terminal: "T1", Currency: "USD", CashLimit: 7}}),
		pay, putRouteCmd("r1", Route{ID: "elec", BillType: "ELEC", Destination: DestinationLedger, SettlementAccount: "merch"}),
		adminCmd(OpReplaceRoutes, "rr", &Admin{BaseVersion: 1, Routes: []Route{{ID: "x", Destination: DestinationLedger}}}),
	})
	f.Add(admin)
	scaSeed, _ := EncodeBatch([]Command{scaCreate("c", "sca-1", t0), scaRedirect("r", "sca-1", "tok", t0+1),
		scaComplete("k", "sca-1", "bad", true, t0+2), scaComplete("k2", "sca-1", "tok", true, t0+3)})
	f.Add(scaSeed)
	hook, _ := EncodeBatch([]Command{endpointCmd("we1", WebhookCreate, testEndpoint("ep1"), 0),
		postCardCmd("wp", "h1", "merch", 5, "WP"), attemptCmd("ep1", "evt_0000000000000001", 1, 410, 0)})
	f.Add(hook)
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := DecodeBatch(data); err != nil {
			return
		}
		s := fixture(t)
		out := s.Apply(raftLog{Index: s.AppliedIndex() + 1, Data: data}.log())
		if _, ok := out.([]Result); !ok {
			t.Fatalf("apply: %v", out)
		}
		checkInvariants(t, s)
	})
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Dir = "/x"
	if err := ok.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	cases := map[string]func(*Config){
		"no dir":             func(c *Config) { c.Dir = "" },
		"expire max zero":    func(c *Config) { c.ExpireBatchMax = 0 },
		"expire max huge":    func(c *Config) { c.ExpireBatchMax = expireBatchMaxLimit + 1 },
		"cache tiny":         func(c *Config) { c.CacheBytes = 1 << 20 },
		"cache huge":         func(c *Config) { c.CacheBytes = cacheBytesMax + 1 },
		"memtable tiny":      func(c *Config) { c.MemTableBytes = 1 << 10 },
		"memtable huge":      func(c *Config) { c.MemTableBytes = memTableBytesMax + 1 },
		"cache < memtables":  func(c *Config) { c.MemTableBytes = 256 << 20; c.CacheBytes = 512 << 20 },
		"account cache neg":  func(c *Config) { c.AccountCacheMax = -1 },
		"account cache huge": func(c *Config) { c.AccountCacheMax = accountCacheMaxLimit + 1 },
	}
	for name, mutate := range cases {
		c := ok
		mutate(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := Open(c); err == nil {
			t.Errorf("%s: Open accepted it", name)
		}
	}
}

func TestTransfersQueries(t *testing.T) {
	s := fixture(t) // T…001: fund → card1, day 2026-03-02, partner p1
	day := func(c Command, d, p string) Command { c.BusinessDay, c.Partner = d, p; return c }
	mustOK(t, s,
		day(postCardCmd("q1", "h1", "merch", 1, ""), "2026-03-02", "p2"), // T2
		day(postCmd("q3", "fund", "card2", 3), "2026-03-02", "p1"),       // T3
		day(postCardCmd("q4", "h2", "merch", 1, ""), "2026-03-02", "p2"), // T4
		closeDayCmd("2026-03-02", "2026-03-03"),
		// The FSM stamps its open day; the command's own day is ignored.
		day(authCmd("q2", "h1", "merch", 2, ""), "2026-03-02", "p1"), // T5 pending, 2026-03-03
	)
	ids := func(ts []Transfer) string {
		var out []string
		for _, t := range ts {
			out = append(out, strings.TrimLeft(t.ID[1:], "0"))
		}
		return strings.Join(out, ",")
	}
	cases := []struct {
		f    TransferFilter
		want string
	}{
		{TransferFilter{}, "1,2,3,4,5"},
		{TransferFilter{Limit: 2}, "1,2"},
		{TransferFilter{Limit: 2, After: "T00000000000002"}, "3,4"},
		{TransferFilter{Account: "card1"}, "1,2,5"},
		{TransferFilter{Account: "merch"}, "2,4,5"},
		{TransferFilter{Account: "merch", After: "T00000000000003"}, "4,5"},
		{TransferFilter{Account: "card1", Status: TransferPending}, "5"},
		{TransferFilter{Account: "card1", BusinessDay: "2026-03-02"}, "1,2"},
		{TransferFilter{BusinessDay: "2026-03-02"}, "1,2,3,4"},
		{TransferFilter{BusinessDay: "2026-03-03"}, "5"},
		{TransferFilter{BusinessDay: "2026-03-02", Partner: "p2"}, "2,4"},
		{TransferFilter{BusinessDay: "2026-03-02", Partner: "p2", After: "T00000000000002"}, "4"},
		{TransferFilter{Partner: "p1"}, "1,3,5"},
		{TransferFilter{Status: TransferPosted, Limit: 3}, "1,2,3"},
		{TransferFilter{Account: "nobody"}, ""},
		{TransferFilter{BusinessDay: "2026-03-02", Partner: "p"}, ""}, // a prefix of p1/p2 is not p1
		{TransferFilter{Account: "card"}, ""},                         // nor of card1/card2
	}
	for _, tc := range cases {
		got, err := s.Transfers(tc.f)
		if err != nil {
			t.Fatal(err)
		}
		if ids(got) != tc.want {
			t.Errorf("%+v: got %s, want %s", tc.f, ids(got), tc.want)
		}
	}
	accts, err := s.Accounts("card2", 2)
	if err != nil || len(accts) != 2 || accts[0].ID != "eur1" || accts[1].ID != "fund" {
		t.Errorf("accounts page: %+v %v", accts, err)
	}
}

// TestTransfersDayManyPartners: past dayPartnersMax partners a day query
// falls back to a scan and still answers in id order.
func TestTransfersDayManyPartners(t *testing.T) {
	s := fixture(t)
	mustOK(t, s, closeDayCmd("2026-03-02", "2026-03-09"))
	var cmds []Command
	for i := 0; i < dayPartnersMax+5; i++ {
		c := postCmd(keyN("many", i), "fund", "merch", 1)
		c.BusinessDay, c.Partner = "2026-03-09", keyN("partner", (i*7919)%(dayPartnersMax+5))
		cmds = append(cmds, c)
	}
	mustOK(t, s, cmds...)
	got, err := s.Transfers(TransferFilter{BusinessDay: "2026-03-09", Limit: 3, After: "T00000000000010"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].ID != "T00000000000011" || got[2].ID != "T00000000000013" {
		t.Errorf("got %+v", got)
	}
	snap := s.db.NewSnapshot()
	defer snap.Close()
	if _, tooMany, err := dayPartnerPrefixes(snap, "2026-03-09"); err != nil || !tooMany {
		t.Errorf("expected the scan fallback: %v %v", tooMany, err)
	}
}

func TestMetrics(t *testing.T) {
	s := fixture(t) // two entries: six creates, one post
	s.Apply(raftLog{Index: 3, Data: []byte{0xff}}.log())
	m := s.Metrics()
	if m.AppliedIndex != 3 || m.Entries != 3 || m.Commands != 7 || m.CorruptEntries != 1 {
		t.Errorf("metrics = %+v", m)
	}
	if m.DiskBytes == 0 {
		t.Errorf("no disk usage reported: %+v", m)
	}
}

// A memtable flush is logged at info with its duration (each flush is a
// burst of CPU that shows in tail latency); pebble's other chatter is not.
func TestFlushIsLoggedAtInfo(t *testing.T) {
	var buf bytes.Buffer
	cfg := testConfig(t)
	cfg.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := openCfg(t, cfg)
	fund := acct("fund", KindFunding, "USD")
	fund.Unlimited = true
	mustOK(t, s, createCmd(fund), createCmd(acct("shop", KindSettlement, "USD")))
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	var flushed bool
	for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var rec struct{ Level, Msg, Source string }
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if rec.Source == "pebble" && strings.Contains(rec.Msg, "flushed") {
			flushed = rec.Level == "INFO"
		}
		if rec.Source == "pebble" && strings.Contains(rec.Msg, "WAL created") {
			t.Errorf("pebble chatter at %s: %s", rec.Level, rec.Msg)
		}
	}
	if !flushed {
		t.Fatalf("no flush at info in:\n%s", buf.String())
	}
}

// lockChildEnv names the directory a child test process holds open.
const lockChildEnv = "SWITCHD_STORE_LOCK_CHILD"

// TestOpenWaitsForALockedDirectory: a directory whose LOCK another
// process still holds (a killed node's threads tearing down) is opened
// once that process lets go, within lockWaitMax.
func TestOpenWaitsForALockedDirectory(t *testing.T) {
	if dir := os.Getenv(lockChildEnv); dir != "" {
		// The child: hold the directory, say so, let go after 500 ms.
		db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{slog.New(slog.DiscardHandler)}})
		if err != nil {
			fmt.Println("child:", err)
			os.Exit(2)
		}
		fmt.Println("locked")
		time.Sleep(500 * time.Millisecond)
		db.Close()
		os.Exit(0)
	}
	cfg := testConfig(t)
	s := openCfg(t, cfg)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOpenWaitsForALockedDirectory$", "-test.count=1")
	cmd.Env = append(os.Environ(), lockChildEnv+"="+cfg.Dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "locked\n" {
		t.Fatalf("child: %q", line)
	}
	start := time.Now()
	s2, err := Open(cfg)
	if err != nil {
		t.Fatalf("open while another process holds the directory: %v", err)
	}
	defer s2.Close()
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("opened after %s although the child held the lock for 500 ms", d)
	}
}
