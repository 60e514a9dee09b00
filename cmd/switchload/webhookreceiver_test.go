package main

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchd/switchd/internal/switchdtest"
	"github.com/switchd/switchd/webhook"
)

// syncBuffer is a bytes.Buffer safe for the receiver's handler and the test.
type syncBuffer struct {
	mu sync.Mutex // protects b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// The receiver refuses a bad signature (400), accepts a good one (204),
// marks a repeat of its webhook-id as a duplicate and exits 0 once
// --count distinct ids verified.
func TestWebhookReceiver(t *testing.T) {
	addr := switchdtest.FreePort(t)
	secret, _ := webhook.NewSecret()
	var out, errs syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- runWebhookReceiver([]string{"--listen", addr, "--secret", secret, "--count", "2", "--timeout", "30s"}, &out, &errs)
	}()
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	post := func(id, body string, secrets ...[]byte) int {
		t.Helper()
		now := time.Now()
		sig, _ := webhook.Sign(secrets, id, now, []byte(body))
		req, _ := http.NewRequest("POST", "http://"+addr+"/hook", strings.NewReader(body))
		webhook.SetHeaders(req.Header, id, now, sig)
		var resp *http.Response
		var err error
		for range 200 { // the listener may not be up yet
			if resp, err = http.DefaultClient.Do(req.Clone(req.Context())); err == nil {
				break
			}
			req.Body.Close()
			req, _ = http.NewRequest("POST", "http://"+addr+"/hook", strings.NewReader(body))
			webhook.SetHeaders(req.Header, id, now, sig)
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	other, _ := webhook.NewSecret()
	otherRaw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(other, "whsec_"))
	if c := post("evt_1", `{"type":"payment.completed"}`, otherRaw); c != 400 {
		t.Fatalf("bad signature: %d", c)
	}
	if c := post("evt_1", `{"type":"payment.completed"}`, otherRaw, raw); c != 204 {
		t.Fatalf("good signature among two: %d", c)
	}
	if c := post("evt_1", `{"type":"payment.completed"}`, raw); c != 204 {
		t.Fatalf("repeat: %d", c)
	}
	post("evt_2", `{"type":"payment.refunded"}`, raw)
	if c := <-code; c != 0 {
		t.Fatalf("exit %d: %s", c, errs.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], `"verified":false`) || !strings.Contains(lines[2], `"duplicate":true`) ||
		!strings.Contains(lines[3], `"type":"payment.refunded"`) {
		t.Fatalf("output:\n%s", out.String())
	}
}
