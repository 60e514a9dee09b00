package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSimUsage(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"acquirer"},
		{"issuer", "--mode", "flaky"},
		{"issuer", "--decline-ratio", "2"},
		{"issuer", "--control", "0.0.0.0:9090"},
		{"issuer", "--dialect", "iso93"},
		{"issuer", "extra"},
		{"biller", "--reversal-url", "http://127.0.0.1:1/r"}, // no secret
		{"biller", "--webhook-secret-file", "/nonexistent/secret"},
		{"biller", "--latency", "soon"},
	} {
		var stderr bytes.Buffer
		if rc := runSim(context.Background(), args, &stderr); rc != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", args, rc, stderr.String())
		}
	}
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Each simulator starts, answers its control API, and stops cleanly when
// the context (the signal) ends.
func TestSimRunsAndStops(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600)
	for _, kind := range []string{"issuer", "biller"} {
		t.Run(kind, func(t *testing.T) {
			control := freePort(t)
			args := []string{kind, "--listen", freePort(t), "--control", control, "--mode", "decline"}
			if kind == "biller" {
				args = append(args, "--reversal-url", "http://127.0.0.1:1/r", "--webhook-secret-file", secret)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan int)
			var stderr bytes.Buffer
			go func() { done <- runSim(ctx, args, &stderr) }()
			var resp *http.Response
			for {
				var err error
				if resp, err = http.Get("http://" + control + "/mode"); err == nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			var b struct{ Mode string }
			json.NewDecoder(resp.Body).Decode(&b)
			resp.Body.Close()
			if b.Mode != "decline" {
				t.Fatalf("mode %q, want the --mode given", b.Mode)
			}
			cancel()
			if rc := <-done; rc != 0 {
				t.Fatalf("exit %d: %s", rc, stderr.String())
			}
			if strings.Contains(stderr.String(), "0123456789abcdef") {
				t.Fatal("the log shows the webhook secret")
			}
		})
	}
}
