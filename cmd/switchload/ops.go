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
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/switchd/switchd/oauth"
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
	base  string
	hc    *http.Client
	creds string // credentials file

	mu    sync.Mutex
	token string
}

func newOpsClient(base, creds string, conns int) *opsClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = conns
	if creds == "" {
		creds = os.Getenv("SWITCHCTL_CREDENTIALS")
	}
	if creds == "" {
		if _, err := os.Stat(defaultCredentials); err == nil {
			creds = defaultCredentials
		}
	}
	return &opsClient{base: strings.TrimRight(base, "/"), hc: &http.Client{Transport: tr, Timeout: opsTimeout}, creds: creds}
}

// defaultCredentials is what `make run` writes on first start.
const defaultCredentials = "data/ops-credentials.json"

// bearer is the access token to send, fetched once and again after a 401
// (tokens live 15 minutes; a load run may be longer). "" without
// credentials.
func (o *opsClient) bearer(ctx context.Context, stale string) (string, error) {
	if o.creds == "" {
		return "", nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.token != "" && o.token != stale {
		return o.token, nil
	}
	c, err := oauth.ReadCredentials(o.creds)
	if err != nil {
		return "", fmt.Errorf("ops API credentials: %w", err)
	}
	tok, err := oauth.FetchToken(ctx, o.hc, o.base+"/oauth/token", c, oauth.ScopeOpsRead+" "+oauth.ScopeOpsWrite)
	if err != nil {
		return "", err
	}
	o.token = tok
	return tok, nil
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
	code, err := o.do1(ctx, method, path, body, out, "")
	if code == http.StatusUnauthorized && o.creds != "" {
		o.mu.Lock()
		stale := o.token
		o.mu.Unlock()
		code, err = o.do1(ctx, method, path, body, out, stale) // the token expired: one more with a new one
	}
	return code, err
}

func (o *opsClient) do1(ctx context.Context, method, path string, body, out any, stale string) (int, error) {
	tok, err := o.bearer(ctx, stale)
	if err != nil {
		return 0, err
	}
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
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
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
