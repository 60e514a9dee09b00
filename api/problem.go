package api

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/danielgtaylor/huma/v2"

	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/outcome"
)

// Problem is an RFC 9457 problem document, the only error body the API
// answers. Types come from outcome's one table (the same names the ops
// API and the ISO 8583 codes are derived from), plus "validation" for a
// request that does not parse or fails its schema.
type Problem struct {
	Type   string `json:"type" doc:"Problem type URI; its last segment is stable (e.g. insufficient-funds)"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Field names the request field at fault (validation).
	Field  string              `json:"field,omitempty"`
	Errors []*huma.ErrorDetail `json:"errors,omitempty"`
	header http.Header
	err    error
}

const problemBase = "https://switchd.dev/problems/"

func (p *Problem) Error() string  { return p.Title + ": " + p.Detail }
func (p *Problem) GetStatus() int { return p.Status }
func (p *Problem) Unwrap() error  { return p.err }
func (p *Problem) GetHeaders() http.Header {
	if p.header == nil {
		p.header = http.Header{}
	}
	return p.header
}

// ContentType makes huma send problems as application/problem+json.
func (p *Problem) ContentType(string) string { return "application/problem+json" }

// problemOf is err's problem as outcome's table says: status, type and
// title; the detail only where the table says the error's text is safe
// to show (it never holds request data).
func problemOf(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	o := outcome.Of(err)
	p = &Problem{Type: problemBase + o.Problem, Title: o.Title, Status: o.HTTPStatus, err: err}
	if o.Detail {
		p.Detail = err.Error()
	}
	if o.RetryAfter > 0 {
		p.GetHeaders().Set("Retry-After", strconv.Itoa(int(o.RetryAfter.Seconds())))
	}
	if p.Status == http.StatusUnauthorized || p.Status == http.StatusForbidden {
		p.GetHeaders().Set("WWW-Authenticate", challenge(err))
	}
	return p
}

// challenge is the RFC 6750 §3 WWW-Authenticate of a refused bearer.
func challenge(err error) string {
	switch {
	case errors.Is(err, oauth.ErrNoToken):
		return `Bearer realm="switchd"`
	case errors.Is(err, oauth.ErrInsufficientScope):
		return `Bearer realm="switchd", error="insufficient_scope"`
	}
	return `Bearer realm="switchd", error="invalid_token"`
}

// validation is a 400 naming the field at fault.
func validation(field, detail string) *Problem {
	return &Problem{Type: problemBase + "validation", Title: "Validation failed", Status: http.StatusBadRequest, Field: field, Detail: detail}
}

var hookOnce sync.Once

// installErrors makes huma build our problems: its own refusals (a body
// that does not parse, a schema violation: 422 in huma) become 400
// "validation" naming the first field at fault, so every error the API
// sends is one of the documented problem types. huma's hook is global:
// switchd runs one huma API.
func installErrors() {
	hookOnce.Do(func() {
		huma.NewError = func(status int, msg string, errs ...error) huma.StatusError {
			var details []*huma.ErrorDetail
			for _, e := range errs {
				if e == nil {
					continue
				}
				var d huma.ErrorDetailer
				if errors.As(e, &d) {
					// The location and the rule, not the value: a problem
					// never echoes what was sent.
					ed := *d.ErrorDetail()
					ed.Value = nil
					details = append(details, &ed)
				} else {
					details = append(details, &huma.ErrorDetail{Message: e.Error()})
				}
			}
			switch {
			case status == http.StatusUnprocessableEntity || status == http.StatusBadRequest:
				p := validation("", msg)
				if len(details) > 0 {
					p.Field = strings.TrimPrefix(strings.TrimPrefix(strings.TrimPrefix(details[0].Location, "body."), "headers."), "query.")
					p.Detail = details[0].Message
					// huma locates a missing property at its parent; the
					// field at fault is the property.
					if name, ok := strings.CutPrefix(p.Detail, "expected required property "); ok && strings.HasSuffix(name, " to be present") {
						name = strings.TrimSuffix(name, " to be present")
						if p.Field == "body" {
							p.Field = name
						} else {
							p.Field += "." + name
						}
					}
				}
				p.Errors = details
				return p
			case status == http.StatusRequestEntityTooLarge:
				return &Problem{Type: problemBase + "too-large", Title: "Body too large", Status: status, Detail: msg}
			case status == http.StatusUnsupportedMediaType:
				return &Problem{Type: problemBase + "unsupported-media-type", Title: "Unsupported media type", Status: status, Detail: msg}
			case status == http.StatusNotFound:
				return &Problem{Type: problemBase + "not-found", Title: "Not found", Status: status}
			}
			return &Problem{Type: problemBase + "internal", Title: http.StatusText(status), Status: status}
		}
	})
}
