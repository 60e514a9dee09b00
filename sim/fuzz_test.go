package sim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/switchd/switchd/currency"
)

// FuzzPayment feeds POST /payments arbitrary bodies and keys. Whatever
// comes in, the answer is 201, 400, 409, 413 or 422; an accepted payment's
// amount is exactly the one sent (it reformats to the same string); and
// the same request again is answered byte for byte the same.
func FuzzPayment(f *testing.F) {
	f.Add("k1", billBody)
	f.Add("k2", `{"bill_type":"water","biller_reference":"W-9","amount":"1000","currency":"JPY"}`)
	f.Add("k3", `{"bill_type":"e","biller_reference":"r","amount":"1.000","currency":"BHD"}`)
	f.Add("", `{}`)
	f.Add("k4", `{"amount":1e309}`)
	f.Add("k5", `[`)
	cfg := DefaultBillerConfig()
	cfg.Listen = "127.0.0.1:0"
	b, err := NewBiller(cfg, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Close() })
	do := func(key, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/payments", strings.NewReader(body))
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		w := httptest.NewRecorder()
		b.pay(w, req)
		return w
	}
	f.Fuzz(func(t *testing.T, key, body string) {
		w := do(key, body)
		switch w.Code {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusConflict:
			return
		case http.StatusCreated, http.StatusUnprocessableEntity:
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		var sent PaymentRequest
		if err := json.Unmarshal([]byte(body), &sent); err != nil {
			t.Fatalf("accepted a body that does not parse: %v", err)
		}
		var got Payment
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		cur, err := currency.ByCode(got.Currency)
		if err != nil {
			t.Fatalf("accepted currency %q: %v", got.Currency, err)
		}
		minor, err := currency.ParseMinor(got.Amount, cur, '.')
		if err != nil || minor <= 0 || currency.FormatMinor(minor, cur, '.') != sent.Amount {
			t.Fatalf("amount %q (sent %q) does not round-trip: %v", got.Amount, sent.Amount, err)
		}
		again := do(key, body)
		if again.Code != w.Code || !bytes.Equal(again.Body.Bytes(), w.Body.Bytes()) {
			t.Fatalf("retry answered %d %s, first %d %s", again.Code, again.Body, w.Code, w.Body)
		}
	})
}
