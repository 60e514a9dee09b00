package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Ops API client limits.
const (
	opsTimeout = 30 * time.Second
	// opsBodyBytesMax bounds one JSON answer; metricsBytesMax the /metrics
	// page (a Go process exposes a few hundred lines).
	opsBodyBytesMax = 1 << 20
	metricsBytesMax = 8 << 20
)

// errOpsStatus is wrapped by errors for answers that are not 2xx.
var errOpsStatus = errors.New("ops API error")

// opsClient talks to switchd's ops HTTP API: the only way switchload
// creates and reads accounts (it shares no state with the switch).
type opsClient struct {
	base string
	hc   *http.Client
}

func newOpsClient(base string, conns int) *opsClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = conns
	return &opsClient{base: strings.TrimRight(base, "/"), hc: &http.Client{Transport: tr, Timeout: opsTimeout}}
}

// close drops idle keep-alive connections (and their goroutines).
func (o *opsClient) close() { o.hc.CloseIdleConnections() }

// accountView is the ops API's account (GET /v1/accounts/{id}).
type accountView struct {
	ID        string `json:"id"`
	Kind      string `json:"kind"`
	Currency  string `json:"currency"`
	MaskedPAN string `json:"masked_pan"`
	Posted    int64  `json:"posted"`
	Pending   int64  `json:"pending"`
	Available int64  `json:"available"`
}

// accountRequest is the body of POST /v1/accounts.
type accountRequest struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	Currency string `json:"currency"`
	PAN      string `json:"pan,omitempty"`
	Opening  string `json:"opening,omitempty"`
	FundedBy string `json:"funded_by,omitempty"`
}

// problem is an RFC 9457 problem document.
type problem struct {
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// do sends one request and decodes a 2xx JSON answer into out. It returns
// the HTTP status; errors name what was tried and never contain the body
// sent (it can carry a PAN).
func (o *opsClient) do(ctx context.Context, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, o.base+path, rd)
	if err != nil {
		return 0, fmt.Errorf("ops API %s %s: %w", method, o.base+path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if method != http.MethodGet {
		// Every ops write names who makes it (the audit chain records it).
		req.Header.Set("X-Actor", "switchload")
	}
	resp, err := o.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return 0, fmt.Errorf("ops API %s %s: connection refused (is switchd running? see --ops)", method, o.base+path)
		}
		return 0, fmt.Errorf("ops API %s %s: %w", method, o.base+path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, opsBodyBytesMax))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("ops API %s %s: reading answer: %w", method, o.base+path, err)
	}
	if resp.StatusCode/100 != 2 {
		var p problem
		msg := http.StatusText(resp.StatusCode)
		if json.Unmarshal(raw, &p) == nil && p.Title != "" {
			msg = p.Title
			if p.Detail != "" {
				msg += ": " + p.Detail
			}
		}
		return resp.StatusCode, fmt.Errorf("%w: %s %s: %d %s", errOpsStatus, method, path, resp.StatusCode, msg)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("ops API %s %s: decoding answer: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

func (o *opsClient) account(ctx context.Context, id string) (accountView, error) {
	var v accountView
	_, err := o.do(ctx, http.MethodGet, "/v1/accounts/"+id, nil, &v)
	return v, err
}

func (o *opsClient) createAccount(ctx context.Context, req accountRequest) (int, accountView, error) {
	var v accountView
	st, err := o.do(ctx, http.MethodPost, "/v1/accounts", req, &v)
	return st, v, err
}

// rss reads process_resident_memory_bytes from /metrics; ok is false when
// the switch does not expose it.
func (o *opsClient) rss(ctx context.Context) (int64, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.base+"/metrics", nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := o.hc.Do(req)
	if err != nil {
		return 0, false, fmt.Errorf("ops API GET %s/metrics: %w", o.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, false, fmt.Errorf("%w: GET /metrics: %d", errOpsStatus, resp.StatusCode)
	}
	return parseRSS(io.LimitReader(resp.Body, metricsBytesMax))
}

// parseRSS finds the process_resident_memory_bytes sample in a Prometheus
// text page. The value may be written in exponent form (1.2345e+07) and
// be followed by a timestamp.
func parseRSS(r io.Reader) (int64, bool, error) {
	const name = "process_resident_memory_bytes"
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if strings.HasPrefix(rest, "{") {
			i := strings.LastIndexByte(rest, '}')
			if i < 0 {
				continue
			}
			rest = rest[i+1:]
		}
		// "value [timestamp]": the value comes first.
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return 0, false, fmt.Errorf("metrics: %s: %w", name, err)
		}
		return int64(v), true, nil
	}
	return 0, false, sc.Err()
}
