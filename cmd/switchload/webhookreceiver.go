package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/switchd/switchd/webhook"
)

// receiverBodyBytesMax bounds a delivery's body (switchd's are < 1 KiB).
const receiverBodyBytesMax = 1 << 20

// runWebhookReceiver is `switchload webhook-receiver`: a partner's
// webhook endpoint for the demo. It verifies every delivery's Standard
// Webhooks signature with --secret (timestamp tolerance included),
// answers 204 to a verified one and 400 to another, de-duplicates on
// webhook-id, and prints one JSON line per delivery. With --count it
// exits 0 once that many distinct ids verified, or 1 after --timeout.
func runWebhookReceiver(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("switchload webhook-receiver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9101", "`host:port` to listen on")
	secret := fs.String("secret", "", "the endpoint's `whsec_…` secret (from the create or rotate-secret answer)")
	count := fs.Int("count", 0, "exit 0 after this many distinct verified webhook-ids (0: run until killed)")
	timeout := fs.Duration("timeout", 0, "exit 1 when --count is not reached by then (0: no limit)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *secret == "" {
		fmt.Fprintln(stderr, "switchload webhook-receiver: --secret is required")
		return 2
	}
	if err := webhook.CheckSecret(*secret); err != nil {
		fmt.Fprintln(stderr, "switchload webhook-receiver:", err)
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(stderr, "switchload webhook-receiver:", err)
		return 1
	}
	var mu sync.Mutex // protects seen and out
	seen := map[string]bool{}
	enough := make(chan struct{})
	out := json.NewEncoder(stdout)
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, receiverBodyBytesMax))
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		id := r.Header.Get(webhook.HeaderID)
		verr := webhook.Verify(*secret, body, r.Header)
		var ev struct {
			Type string `json:"type"`
			Data struct {
				PaymentID string `json:"payment_id"`
				Status    string `json:"status"`
			} `json:"data"`
		}
		_ = json.Unmarshal(body, &ev)
		mu.Lock()
		defer mu.Unlock()
		line := map[string]any{"webhook_id": id, "type": ev.Type, "payment_id": ev.Data.PaymentID, "status": ev.Data.Status, "verified": verr == nil}
		if verr != nil {
			line["error"] = verr.Error()
			_ = out.Encode(line)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		line["duplicate"] = seen[id]
		seen[id] = true
		_ = out.Encode(line)
		w.WriteHeader(http.StatusNoContent)
		if *count > 0 && len(seen) == *count {
			close(enough)
		}
	})}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	var deadline <-chan time.Time
	if *timeout > 0 {
		t := time.NewTimer(*timeout)
		defer t.Stop()
		deadline = t.C
	}
	code := 0
	select {
	case <-enough:
	case <-deadline:
		fmt.Fprintf(stderr, "switchload webhook-receiver: %d of %d deliveries verified by the timeout\n", len(seen), *count)
		code = 1
	case err := <-done:
		fmt.Fprintln(stderr, "switchload webhook-receiver:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	<-done
	return code
}
