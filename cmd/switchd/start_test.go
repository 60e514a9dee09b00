package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchd/switchd/config"
	"github.com/switchd/switchd/internal/switchdtest"
)

// A config file that does not set its own card key must not start on the
// demo's (it is public: a masked PAN and its hash under it give the PAN
// back), and neither may one that sets the demo key. The refusal is a
// clear message and exit status 2, before anything is opened.
func TestConfigFileWithoutCardKeyRefusesToStart(t *testing.T) {
	bin := switchdtest.Build(t)
	demoKey := string(config.Demo().Switch.CardKey)
	for name, sw := range map[string]string{
		"no card key": "",
		"demo key":    "  card_key: " + demoKey + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "switchd.yaml")
			body := "ops: {listen: \"" + switchdtest.FreePort(t) + "\"}\ncluster: {raft_addr: \"" + switchdtest.FreePort(t) +
				"\"}\nswitch:\n" + sw + "  lanes:\n    - {name: t, listen: \"" + switchdtest.FreePort(t) + "\", partners: [demo-acquirer]}\n"
			if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			data := filepath.Join(dir, "data")
			out, err := exec.CommandContext(ctx, bin, "--config", cfg, "--data-dir", data).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit: %v, want status 2; output:\n%s", err, out)
			}
			if !bytes.Contains(out, []byte("card_key")) || bytes.Contains(out, []byte(demoKey)) {
				t.Fatalf("want a card_key refusal that does not print the key, got:\n%s", out)
			}
			if _, err := os.Stat(data); !os.IsNotExist(err) {
				t.Fatalf("data dir created before the refusal: %v", err)
			}
		})
	}
}

// The start banner lands in log files: it must not carry a demo PAN.
func TestStartBannerHasNoPAN(t *testing.T) {
	n := switchdtest.Start(t, switchdtest.Build(t))
	log := n.Log()
	if !bytes.Contains(log, []byte("is up")) {
		t.Fatalf("no start banner in the log:\n%s", log)
	}
	for _, pan := range []string{"4111111111111111", "5500000000000004"} {
		if strings.Contains(string(log), pan) {
			t.Fatalf("the start log shows PAN %s…", pan[:6])
		}
	}
}
