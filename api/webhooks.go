package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/store"
	"github.com/switchd/switchd/webhook"
)

// Webhook endpoints (issue 12): a partner registers where payment status
// changes are sent and which event types it wants; the ledger writes one
// event per change into a replicated outbox and the leader delivers it
// (package webhook). An endpoint is replicated, audited state
// (store.OpPutWebhookEndpoint) proposed from here; its secret is made by
// this node, shown once in the answer, and replicated only wrapped under
// the webhook KEK.

// The webhook scopes (oauth.PartnerScopes).
const (
	ScopeWebhooksWrite = oauth.ScopeWebhooksWrite
	ScopeWebhooksRead  = oauth.ScopeWebhooksRead
)

const (
	// rotateOverlapDefault is how long the replaced secret still signs
	// after a rotation when the call does not say: a day to deploy the
	// new one.
	rotateOverlapDefault = 24 * time.Hour
	rotateOverlapMax     = 7 * 24 * time.Hour // store's webhookOverlapMax
	deliveriesLimitMax   = 200
	webhookURLBytesMax   = 2048 // store's limit
)

// Webhooks is what the webhook routes need (HandleWebhooks): the KEK
// that wraps new secrets, the URL rules, the cluster to propose through
// and the outbox to read.
type Webhooks struct {
	KEK     *webhook.KEK
	Guard   *webhook.Guard
	Propose func(ctx context.Context, cmd store.Command) (store.Result, error)
	Outbox  interface {
		WebhookDeliveries(endpoint, after string, limit int) ([]store.WebhookDelivery, error)
	}
	// Now is the proposer's clock (nil: time.Now).
	Now func() time.Time
}

// HandleWebhooks enables the webhook routes; without it they answer 404
// webhooks-not-enabled.
func (s *Server) HandleWebhooks(w *Webhooks) {
	if w.Now == nil {
		w.Now = time.Now
	}
	s.hooks = w
}

type endpointRequest struct {
	URL        string   `json:"url" minLength:"1" maxLength:"2048" doc:"https (or http to a host the switch allows); deliveries go only to addresses the switch allows"`
	EventTypes []string `json:"event_types" minItems:"1" maxItems:"16" doc:"payment.completed, payment.partly_refunded, payment.refunded, payment.reversed, payment.expired"`
}

type endpointPatch struct {
	EventTypes []string `json:"event_types,omitempty" maxItems:"16"`
	Enabled    *bool    `json:"enabled,omitempty" doc:"false disables the endpoint; true enables it again (also after a 410)"`
}

type rotateRequest struct {
	Overlap string `json:"overlap,omitempty" maxLength:"16" doc:"How long the old secret still signs (Go duration, e.g. 24h; default 24h, at most 168h; 0s ends it now)"`
}

// WebhookEndpoint is an endpoint as the API shows it.
type WebhookEndpoint struct {
	ID             string          `json:"id"`
	URL            string          `json:"url"`
	EventTypes     []string        `json:"event_types"`
	Enabled        bool            `json:"enabled"`
	DisabledReason string          `json:"disabled_reason,omitempty" enum:"gone,partner" doc:"gone: the endpoint answered 410; partner: disabled by PATCH"`
	Secret         string          `json:"secret,omitempty" doc:"whsec_…: only in the answer that made it (create, rotate-secret)"`
	Secrets        []SecretValidTo `json:"secrets" doc:"The secrets deliveries are signed with (two during a rotation's overlap)"`
	CreatedAt      string          `json:"created_at"`
}

// SecretValidTo says until when a secret signs (empty: no end).
type SecretValidTo struct {
	NotAfter string `json:"not_after,omitempty"`
}

// Delivery is one event of an endpoint with its attempts.
type Delivery struct {
	EventID       string            `json:"event_id" doc:"= webhook-id: the same across retries and leader changes; de-duplicate on it"`
	Type          string            `json:"type"`
	PaymentID     string            `json:"payment_id"`
	State         string            `json:"state" enum:"pending,delivered,failed"`
	CreatedAt     string            `json:"created_at"`
	NextAttemptAt string            `json:"next_attempt_at,omitempty"`
	Attempts      []DeliveryAttempt `json:"attempts"`
	Payload       json.RawMessage   `json:"payload" doc:"The body sent, byte for byte"`
}

// DeliveryAttempt is one attempt's result.
type DeliveryAttempt struct {
	Attempt    int    `json:"attempt"`
	At         string `json:"at,omitempty"`
	StatusCode int    `json:"status_code,omitempty"`
	Class      string `json:"class" doc:"ok, http_status, gone, timeout, connect, refused_address, tls, endpoint_disabled, secret, other"`
	Excerpt    string `json:"excerpt,omitempty" doc:"The first bytes of a failed answer's body"`
}

type endpointAnswer struct {
	Replayed string `header:"Idempotent-Replayed" doc:"true: the stored answer to an earlier request with this key (without the secret: it is shown once)"`
	Location string `header:"Location"`
	Status   int
	Body     WebhookEndpoint
}

type endpointsAnswer struct {
	Body struct {
		Endpoints []WebhookEndpoint `json:"endpoints"`
	}
}

type deliveriesAnswer struct {
	Body struct {
		Deliveries []Delivery `json:"deliveries"`
		Next       string     `json:"next,omitempty" doc:"after= for the next page"`
	}
}

func (s *Server) registerWebhooks() {
	write := []map[string][]string{{"oauth2": {ScopeWebhooksWrite}}}
	read := []map[string][]string{{"oauth2": {ScopeWebhooksRead}}}
	wmeta := map[string]any{"scope": ScopeWebhooksWrite}
	rmeta := map[string]any{"scope": ScopeWebhooksRead}
	problems := []int{400, 401, 403, 404, 409, 422, 503}
	tags := []string{"webhooks"}
	huma.Register(s.api, huma.Operation{
		OperationID: "create-webhook-endpoint", Method: http.MethodPost, Path: "/v1/webhook-endpoints", Summary: "Register a webhook endpoint",
		Description: "Payment status changes of the event types named are POSTed to url, signed the Standard Webhooks way " +
			"(webhook-id, webhook-timestamp, webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>) with the secret in the answer, shown this once.",
		DefaultStatus: http.StatusCreated, Errors: problems, MaxBodyBytes: bodyBytesMax, Tags: tags, Security: write, Metadata: wmeta,
	}, func(ctx context.Context, in *struct {
		IdempotencyKey string `header:"Idempotency-Key" maxLength:"64" doc:"The request's key: a retry with the same key and body gets the stored answer, another body with it a 409"`
		Body           endpointRequest
	}) (*endpointAnswer, error) {
		return s.createEndpoint(ctx, in.IdempotencyKey, in.Body)
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "list-webhook-endpoints", Method: http.MethodGet, Path: "/v1/webhook-endpoints", Summary: "List webhook endpoints",
		Errors: []int{401, 403, 404, 503}, Tags: tags, Security: read, Metadata: rmeta,
	}, func(ctx context.Context, _ *struct{}) (*endpointsAnswer, error) {
		if _, err := s.webhooks(ctx); err != nil {
			return nil, err
		}
		out := &endpointsAnswer{}
		out.Body.Endpoints = []WebhookEndpoint{}
		for _, e := range s.ledger.Directory().WebhookEndpoints(callerOf(ctx).partner.ID) {
			out.Body.Endpoints = append(out.Body.Endpoints, endpointOf(&e))
		}
		return out, nil
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "get-webhook-endpoint", Method: http.MethodGet, Path: "/v1/webhook-endpoints/{id}", Summary: "Read a webhook endpoint",
		Errors: []int{401, 403, 404, 503}, Tags: tags, Security: read, Metadata: rmeta,
	}, func(ctx context.Context, in *struct {
		ID string `path:"id" maxLength:"64"`
	}) (*endpointAnswer, error) {
		if _, err := s.webhooks(ctx); err != nil {
			return nil, err
		}
		e, err := s.ownEndpoint(ctx, in.ID)
		if err != nil {
			return nil, err
		}
		return &endpointAnswer{Status: http.StatusOK, Body: endpointOf(e)}, nil
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "update-webhook-endpoint", Method: http.MethodPatch, Path: "/v1/webhook-endpoints/{id}", Summary: "Change a webhook endpoint's event types or enable/disable it",
		Errors: problems, MaxBodyBytes: bodyBytesMax, Tags: tags, Security: write, Metadata: wmeta,
	}, func(ctx context.Context, in *struct {
		IdempotencyKey string `header:"Idempotency-Key" maxLength:"64" doc:"The request's key: a retry with the same key and body gets the stored answer, another body with it a 409"`
		ID             string `path:"id" maxLength:"64"`
		Body           endpointPatch
	}) (*endpointAnswer, error) {
		return s.changeEndpoint(ctx, in.IdempotencyKey, in.ID, store.WebhookUpdate, func(e *store.WebhookEndpoint) *Problem {
			if in.Body.EventTypes != nil {
				if p := checkEventTypes(in.Body.EventTypes); p != nil {
					return p
				}
				e.EventTypes = in.Body.EventTypes
			}
			if in.Body.Enabled != nil {
				e.Disabled = !*in.Body.Enabled
			}
			return nil
		}, []string{"update", fmt.Sprint(in.Body.EventTypes), fmt.Sprint(in.Body.Enabled != nil && *in.Body.Enabled, in.Body.Enabled == nil)})
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "delete-webhook-endpoint", Method: http.MethodDelete, Path: "/v1/webhook-endpoints/{id}", Summary: "Delete a webhook endpoint",
		Description:   "Its pending deliveries fail when they come due.",
		DefaultStatus: http.StatusNoContent, Errors: problems, Tags: tags, Security: write, Metadata: wmeta,
	}, func(ctx context.Context, in *struct {
		IdempotencyKey string `header:"Idempotency-Key" maxLength:"64" doc:"The request's key: a retry with the same key and body gets the stored answer, another body with it a 409"`
		ID             string `path:"id" maxLength:"64"`
	}) (*struct{}, error) {
		_, err := s.changeEndpoint(ctx, in.IdempotencyKey, in.ID, store.WebhookDelete, func(*store.WebhookEndpoint) *Problem { return nil }, []string{"delete"})
		if err != nil {
			return nil, err
		}
		return &struct{}{}, nil
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "rotate-webhook-secret", Method: http.MethodPost, Path: "/v1/webhook-endpoints/{id}/rotate-secret", Summary: "Rotate a webhook endpoint's secret",
		Description: "The answer holds the new secret (shown this once). During the overlap deliveries carry a signature with each secret.",
		Errors:      problems, MaxBodyBytes: bodyBytesMax, Tags: tags, Security: write, Metadata: wmeta,
	}, func(ctx context.Context, in *struct {
		IdempotencyKey string `header:"Idempotency-Key" maxLength:"64" doc:"The request's key: a retry with the same key and body gets the stored answer, another body with it a 409"`
		ID             string `path:"id" maxLength:"64"`
		Body           *rotateRequest
	}) (*endpointAnswer, error) {
		overlap := rotateOverlapDefault
		if in.Body != nil && in.Body.Overlap != "" {
			d, err := time.ParseDuration(in.Body.Overlap)
			if err != nil || d < 0 || d > rotateOverlapMax {
				return nil, validation("overlap", fmt.Sprintf("a duration from 0s to %s", rotateOverlapMax))
			}
			overlap = d
		}
		return s.rotateSecret(ctx, in.IdempotencyKey, in.ID, overlap)
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "list-webhook-deliveries", Method: http.MethodGet, Path: "/v1/webhook-endpoints/{id}/deliveries", Summary: "An endpoint's deliveries and their attempts",
		Errors: []int{400, 401, 403, 404, 503}, Tags: tags, Security: read, Metadata: rmeta,
	}, func(ctx context.Context, in *struct {
		ID    string `path:"id" maxLength:"64"`
		After string `query:"after" maxLength:"64" doc:"The last event_id of the previous page"`
		Limit int    `query:"limit" minimum:"0" maximum:"200" doc:"At most this many (default 50)"`
	}) (*deliveriesAnswer, error) {
		w, err := s.webhooks(ctx)
		if err != nil {
			return nil, err
		}
		e, err := s.ownEndpoint(ctx, in.ID)
		if err != nil {
			return nil, err
		}
		limit := min(in.Limit, deliveriesLimitMax)
		if limit == 0 {
			limit = 50
		}
		ds, err := w.Outbox.WebhookDeliveries(e.ID, in.After, limit)
		if err != nil {
			return nil, problemOf(err)
		}
		out := &deliveriesAnswer{}
		out.Body.Deliveries = []Delivery{}
		for _, d := range ds {
			out.Body.Deliveries = append(out.Body.Deliveries, deliveryOf(d))
		}
		if len(ds) == limit {
			out.Body.Next = ds[len(ds)-1].Event
		}
		return out, nil
	})
}

// webhooks is the routes' dependencies once the node serves webhooks,
// after a linearizable read (the answer sees every committed change).
func (s *Server) webhooks(ctx context.Context) (*Webhooks, error) {
	if s.hooks == nil {
		return nil, problemOf(webhook.ErrDisabled)
	}
	if err := s.ledger.ReadIndex(ctx); err != nil {
		return nil, problemOf(err)
	}
	return s.hooks, nil
}

func notFoundEndpoint(id string) *Problem {
	return &Problem{Type: problemBase + "not-found", Title: "Not found", Status: http.StatusNotFound, Detail: fmt.Sprintf("no webhook endpoint %q", id)}
}

// ownEndpoint is endpoint id when it is the caller's; another partner's
// looks like none at all.
func (s *Server) ownEndpoint(ctx context.Context, id string) (*store.WebhookEndpoint, error) {
	e, ok := s.ledger.Directory().WebhookEndpoint(id)
	if !ok || e.Partner != callerOf(ctx).partner.ID {
		return nil, notFoundEndpoint(id)
	}
	return e, nil
}

func checkEventTypes(types []string) *Problem {
	for i, t := range types {
		if !slices.Contains(store.EventTypes, t) || slices.Contains(types[:i], t) {
			return validation("event_types", fmt.Sprintf("%q: each once, of %s", t, strings.Join(store.EventTypes, ", ")))
		}
	}
	return nil
}

// endpointID is the id a create under key gets: derived from the
// partner and the key, so a repeat of the call names the same endpoint
// without the ledger having to answer with it.
func endpointID(partner, key string) string {
	sum := sha256.Sum256([]byte("switchd/webhook-endpoint\x00" + partner + "\x00" + key))
	return "we_" + hex.EncodeToString(sum[:12])
}

// fingerprint of a webhook call: its content (nothing secret in it).
func fingerprint(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:])
}

// proposeEndpoint proposes one change of the caller's under key and maps
// the ledger's answer to a problem.
func (s *Server) proposeEndpoint(ctx context.Context, w *Webhooks, key, fp string, ch *store.WebhookChange) (store.Result, error) {
	c := callerOf(ctx)
	admin := &store.Admin{Actor: "partner:" + c.principal.ClientID, Webhook: ch}
	if c.origin.Source.IsValid() {
		admin.Remote = c.origin.Source.String()
	}
	// Keys are scoped by partner, apart from the payment core's.
	res, err := w.Propose(ctx, store.Command{Op: store.OpPutWebhookEndpoint, Key: "rest-webhook|" + c.partner.ID + "|" + key,
		Fingerprint: fp, Time: w.Now().UnixNano(), Partner: c.partner.ID, Admin: admin})
	if err != nil {
		return res, problemOf(err)
	}
	if err := res.Status.Err(); err != nil {
		if res.Status == store.StatusNotFound {
			return res, notFoundEndpoint(ch.Endpoint.ID)
		}
		p := problemOf(err)
		if res.Detail != "" {
			p.Detail = res.Detail // the field at fault; never a secret
		}
		return res, p
	}
	if err := s.ledger.ReadIndex(ctx); err != nil {
		return res, problemOf(err)
	}
	return res, nil
}

func (s *Server) createEndpoint(ctx context.Context, key string, req endpointRequest) (*endpointAnswer, error) {
	if p := checkKey(key); p != nil {
		return nil, p
	}
	w, err := s.webhooks(ctx)
	if err != nil {
		return nil, err
	}
	if p := checkEventTypes(req.EventTypes); p != nil {
		return nil, p
	}
	if err := w.Guard.CheckURL(ctx, req.URL); err != nil {
		return nil, problemOf(err)
	}
	c := callerOf(ctx)
	id := endpointID(c.partner.ID, key)
	secret, err := webhook.NewSecret()
	if err != nil {
		return nil, problemOf(err)
	}
	wrapped, err := w.KEK.Wrap(id, secret)
	if err != nil {
		return nil, problemOf(err)
	}
	ch := &store.WebhookChange{Action: store.WebhookCreate, Endpoint: store.WebhookEndpoint{ID: id, Partner: c.partner.ID,
		URL: req.URL, EventTypes: req.EventTypes, Secrets: []store.WebhookSecret{wrapped}}}
	res, err := s.proposeEndpoint(ctx, w, key, fingerprint(append([]string{"create", req.URL}, req.EventTypes...)...), ch)
	if err != nil {
		return nil, err
	}
	e, ok := s.ledger.Directory().WebhookEndpoint(id)
	if !ok {
		return nil, notFoundEndpoint(id) // made and deleted since
	}
	ans := &endpointAnswer{Status: http.StatusCreated, Location: "/v1/webhook-endpoints/" + id, Body: endpointOf(e)}
	if res.Replayed {
		ans.Replayed = "true"
	} else {
		ans.Body.Secret = secret
	}
	return ans, nil
}

// changeEndpoint applies mod to the caller's endpoint id as it stands and
// proposes the result.
func (s *Server) changeEndpoint(ctx context.Context, key, id, action string, mod func(*store.WebhookEndpoint) *Problem, fp []string) (*endpointAnswer, error) {
	if p := checkKey(key); p != nil {
		return nil, p
	}
	w, err := s.webhooks(ctx)
	if err != nil {
		return nil, err
	}
	cur, err := s.ownEndpoint(ctx, id)
	if err != nil {
		return nil, err
	}
	next := *cur
	next.EventTypes = slices.Clone(cur.EventTypes)
	if p := mod(&next); p != nil {
		return nil, p
	}
	res, err := s.proposeEndpoint(ctx, w, key, fingerprint(append([]string{id}, fp...)...), &store.WebhookChange{Action: action, Endpoint: next})
	if err != nil {
		return nil, err
	}
	ans := &endpointAnswer{Status: http.StatusOK}
	if res.Replayed {
		ans.Replayed = "true"
	}
	if e, ok := s.ledger.Directory().WebhookEndpoint(id); ok {
		ans.Body = endpointOf(e)
	}
	return ans, nil
}

func (s *Server) rotateSecret(ctx context.Context, key, id string, overlap time.Duration) (*endpointAnswer, error) {
	if p := checkKey(key); p != nil {
		return nil, p
	}
	w, err := s.webhooks(ctx)
	if err != nil {
		return nil, err
	}
	cur, err := s.ownEndpoint(ctx, id)
	if err != nil {
		return nil, err
	}
	secret, err := webhook.NewSecret()
	if err != nil {
		return nil, problemOf(err)
	}
	wrapped, err := w.KEK.Wrap(id, secret)
	if err != nil {
		return nil, problemOf(err)
	}
	next := *cur
	next.Secrets = []store.WebhookSecret{wrapped}
	res, err := s.proposeEndpoint(ctx, w, key, fingerprint(id, "rotate", overlap.String()),
		&store.WebhookChange{Action: store.WebhookRotateSecret, Endpoint: next, Overlap: int64(overlap)})
	if err != nil {
		return nil, err
	}
	e, ok := s.ledger.Directory().WebhookEndpoint(id)
	if !ok {
		return nil, notFoundEndpoint(id)
	}
	ans := &endpointAnswer{Status: http.StatusOK, Body: endpointOf(e)}
	if res.Replayed {
		ans.Replayed = "true"
	} else {
		ans.Body.Secret = secret
	}
	return ans, nil
}

func endpointOf(e *store.WebhookEndpoint) WebhookEndpoint {
	out := WebhookEndpoint{ID: e.ID, URL: e.URL, EventTypes: slices.Clone(e.EventTypes), Enabled: !e.Disabled,
		DisabledReason: e.DisabledReason, CreatedAt: rfc3339(e.Created), Secrets: []SecretValidTo{}}
	for _, sec := range e.Secrets {
		v := SecretValidTo{}
		if sec.NotAfter != 0 {
			v.NotAfter = rfc3339(sec.NotAfter)
		}
		out.Secrets = append(out.Secrets, v)
	}
	return out
}

func deliveryOf(d store.WebhookDelivery) Delivery {
	out := Delivery{EventID: d.Event, Type: d.Type, PaymentID: d.Transfer, State: d.State, CreatedAt: rfc3339(d.Created),
		Attempts: []DeliveryAttempt{}, Payload: json.RawMessage(d.Body)}
	if d.State == store.DeliveryPending {
		out.NextAttemptAt = rfc3339(d.NextAt)
	}
	for _, a := range d.Attempts {
		da := DeliveryAttempt{Attempt: a.Attempt, StatusCode: a.StatusCode, Class: a.Class, Excerpt: a.Excerpt}
		if a.Time != 0 {
			da.At = rfc3339(a.Time)
		}
		out.Attempts = append(out.Attempts, da)
	}
	return out
}
