package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	if f.Switch.IdempotencyRetention != 840*time.Hour || len(f.Switch.Partners) != 1 {
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
			f, err := Load(write(t, body))
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
