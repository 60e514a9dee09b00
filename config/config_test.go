package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchd/switchd/mac"
)

func TestDemoIsValid(t *testing.T) {
	f := Demo()
	f.Finish()
	if err := f.Validate(); err != nil {
		t.Fatalf("embedded demo config: %v", err)
	}
	if len(f.Switch.Lanes) != 1 || f.Switch.Lanes[0].Listen != "127.0.0.1:8583" {
		t.Fatalf("demo lane: %+v", f.Switch.Lanes)
	}
	if f.Ops.Listen != "127.0.0.1:8080" || f.DataDir != "./data" {
		t.Fatalf("demo ops/data: %q %q", f.Ops.Listen, f.DataDir)
	}
}

// testCardKey is a card key for config files in tests (not the demo's).
const testCardKey = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

// withKey adds switch.card_key to a config body, so that a test of some
// other refusal is not refused for the missing key instead.
func withKey(body string) string {
	if strings.Contains(body, "card_key:") {
		return body
	}
	if strings.Contains(body, "switch:\n") {
		return strings.Replace(body, "switch:\n", "switch:\n  card_key: "+testCardKey+"\n", 1)
	}
	return body + "\nswitch:\n  card_key: " + testCardKey + "\n"
}

func write(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadOverridesOnlyWhatItSets(t *testing.T) {
	f, err := Load(write(t, `
data_dir: /var/lib/switchd
switch:
  card_key: `+testCardKey+`
  hold_expiry: 48h
  lanes:
    - name: bank-a
      listen: 10.0.0.1:9000
      header: ascii4
      partners: [demo-acquirer]
`))
	if err != nil {
		t.Fatal(err)
	}
	f.Finish()
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	if f.DataDir != "/var/lib/switchd" || f.Switch.HoldExpiry != 48*time.Hour {
		t.Fatalf("overrides not applied: %q %s", f.DataDir, f.Switch.HoldExpiry)
	}
	if f.Switch.IdempotencyRetention != 840*time.Hour || len(f.Switch.Partners) != len(Demo().Switch.Partners) {
		t.Fatal("keys the file does not set must keep the demo values")
	}
	l := f.Switch.Lanes[0]
	if len(f.Switch.Lanes) != 1 || l.Name != "bank-a" || l.Dialect != "iso87ascii" || l.FrameBytesMax == 0 || l.InflightMax == 0 {
		t.Fatalf("lane defaults not filled: %+v", l)
	}
	if f.Cluster.Dir != filepath.Join("/var/lib/switchd", "raft") || f.Store.Dir != filepath.Join("/var/lib/switchd", "ledger") {
		t.Fatal("directories not derived from data_dir")
	}
}

func TestLoadRejects(t *testing.T) {
	for name, body := range map[string]string{
		"unknown key":        "switch:\n  hold_expiry_typo: 1h\n",
		"bad duration":       "switch:\n  hold_expiry: soon\n",
		"bad yaml":           "switch: [\n",
		"short card key":     "switch:\n  card_key: abcd\n",
		"unknown dialect":    "switch:\n  lanes:\n    - {name: x, listen: '127.0.0.1:1', dialect: iso93, partners: [demo-acquirer]}\n",
		"unknown partner":    "switch:\n  lanes:\n    - {name: x, listen: '127.0.0.1:1', partners: [nobody]}\n",
		"frame too big":      "switch:\n  lanes:\n    - {name: x, listen: '127.0.0.1:1', frame_bytes_max: 10000000}\n",
		"duplicate acct":     "accounts:\n  - {id: a, kind: funding, currency: USD}\n  - {id: a, kind: funding, currency: USD}\n",
		"unfunded opening":   "accounts:\n  - {id: a, kind: cardholder, currency: USD, opening: '1.00', funded_by: nope}\n",
		"bad log level":      "log_level: chatty\n",
		"hold expiry 1 year": "switch:\n  hold_expiry: 8760h\n",
		"tiny cache":         "store:\n  cache_bytes: 1000\n",
		"gc_percent 5":       "gc_percent: 5\n",
		"background nice 40": "store:\n  background_nice: 40\n",
		"log store leveldb":  "cluster:\n  log_store: leveldb\n",
	} {
		t.Run(name, func(t *testing.T) {
			f, err := Load(write(t, withKey(body)))
			if err == nil {
				f.Finish()
				err = f.Validate()
			}
			if err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// A config file without its own card key must not start on the demo's:
// that key is public, and a masked PAN plus its hash under it gives the
// PAN back. The demo itself (no --config) keeps it.
func TestLoadRequiresOwnCardKey(t *testing.T) {
	for name, body := range map[string]string{
		"no card key":       "data_dir: /tmp/x\n",
		"empty card key":    "switch:\n  card_key: ''\n",
		"demo key":          "switch:\n  card_key: " + string(Demo().Switch.CardKey) + "\n",
		"demo key in upper": "switch:\n  card_key: " + strings.ToUpper(string(Demo().Switch.CardKey)) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			f, err := Load(write(t, body))
			if err != nil {
				t.Fatal(err)
			}
			f.Finish()
			err = f.Validate()
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "card_key") {
				t.Fatalf("got %v, want a card_key refusal", err)
			}
			if strings.Contains(err.Error(), string(Demo().Switch.CardKey)) {
				t.Fatal("the refusal prints the key")
			}
		})
	}
	f, err := Load(write(t, withKey("data_dir: /tmp/x\n")))
	if err != nil {
		t.Fatal(err)
	}
	f.Finish()
	if err := f.Validate(); err != nil {
		t.Fatalf("own key refused: %v", err)
	}
	if string(f.Switch.CardKey) != testCardKey {
		t.Fatal("own key not used")
	}
}

// card_key_file keeps the secret out of the config; a file others can
// read is refused, and so is setting both.
func TestCardKeyFile(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "card.key")
	if err := os.WriteFile(keyFile, []byte(testCardKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Load(write(t, "switch:\n  card_key_file: "+keyFile+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	f.Finish()
	if err := f.Validate(); err != nil || string(f.Switch.CardKey) != testCardKey {
		t.Fatalf("key from file: %v", err)
	}
	if _, err := Load(write(t, "switch:\n  card_key_file: "+keyFile+"\n  card_key: "+testCardKey+"\n")); !errors.Is(err, ErrConfig) {
		t.Fatalf("both set: %v", err)
	}
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(write(t, "switch:\n  card_key_file: "+keyFile+"\n"))
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "readable by others") || strings.Contains(err.Error(), testCardKey) {
		t.Fatalf("world-readable key file: %v", err)
	}
	if _, err := Load(write(t, "switch:\n  card_key_file: "+filepath.Join(dir, "none")+"\n")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing key file: %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.yaml"))
	if !errors.Is(err, ErrConfig) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v", err)
	}
}

// The card key is a secret: printing the config must not show it.
func TestCardKeyNeverPrints(t *testing.T) {
	f := Demo()
	key := string(f.Switch.CardKey)
	for _, s := range []string{fmt.Sprint(f.Switch), fmt.Sprintf("%+v", f), fmt.Sprintf("%v", f.Switch.CardKey)} {
		if strings.Contains(s, key) {
			t.Fatal("card key printed")
		}
	}
}

// mac: names where the KEK comes from (a file or an environment variable,
// not both); the demo has none.
func TestMACConfig(t *testing.T) {
	if d := Demo(); d.MAC.KEKFile != "" || d.MAC.KEKEnv != "" {
		t.Fatalf("demo has a KEK source: %+v", d.MAC)
	}
	f, err := Load(write(t, withKey("mac:\n  kek_file: /etc/switchd/mac.kek\n")))
	f.Finish()
	if err != nil || f.MAC.KEKFile != "/etc/switchd/mac.kek" || f.Validate() != nil {
		t.Fatalf("kek_file: %+v %v %v", f.MAC, err, f.Validate())
	}
	f, err = Load(write(t, withKey("mac:\n  kek_file: /etc/switchd/mac.kek\n  kek_env: SWITCHD_KEK\n")))
	if err != nil {
		t.Fatal(err)
	}
	f.Finish()
	if err := f.Validate(); !errors.Is(err, mac.ErrConfig) {
		t.Fatalf("both sources: %v", err)
	}
}
