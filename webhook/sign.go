package webhook

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Sign is the webhook-signature header for one message: "v1,<base64
// HMAC-SHA256(secret, id.timestamp.body)>" for every secret, space
// separated (several during a rotation's overlap, as the spec says; a
// receiver accepts the message when any one verifies).
func Sign(secrets [][]byte, id string, at time.Time, body []byte) (string, error) {
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		wh, err := standardwebhooks.NewWebhookRaw(s)
		if err != nil {
			return "", fmt.Errorf("webhook: sign: %w", err)
		}
		sig, err := wh.Sign(id, at, body)
		if err != nil {
			return "", fmt.Errorf("webhook: sign: %w", err)
		}
		sigs = append(sigs, sig)
	}
	return strings.Join(sigs, " "), nil
}

// SetHeaders sets the Standard Webhooks headers of a delivery.
func SetHeaders(h http.Header, id string, at time.Time, signature string) {
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(at.Unix(), 10))
	h.Set(HeaderSignature, signature)
	h.Set("Content-Type", "application/json")
}

// Verify checks a delivery with secret (whsec_ form) the way a receiver
// does, timestamp tolerance included (the receiver in cmd/switchload, and
// tests).
func Verify(secret string, body []byte, h http.Header) error {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return err
	}
	return wh.Verify(body, h)
}
