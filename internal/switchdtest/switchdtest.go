// Package switchdtest runs the switchd binary built from this checkout on
// free loopback ports, for the end-to-end tests of switchd, switchctl and
// switchload (package main tests cannot share code any other way).
package switchdtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchd/switchd/internal/loopback"
	"github.com/switchd/switchd/oauth"
)

const (
	// readyTimeout bounds a start: election, seeding and opening listeners
	// take ~1 s; 60 s leaves room for a loaded CI machine.
	readyTimeout = 60 * time.Second
	// stopTimeout is how long a SIGINT may take before the process is killed.
	stopTimeout = 20 * time.Second
)

// FreePort is a loopback address to give switchd (loopback.FreeAddr:
// never one this test binary handed out before).
func FreePort(t testing.TB) string {
	t.Helper()
	addr, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// Build compiles cmd/switchd into a temporary directory and returns the
// binary's path. It skips the test under -short or without a go tool.
func Build(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and starts switchd")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build switchd")
	}
	bin := filepath.Join(t.TempDir(), "switchd")
	if out, err := exec.Command(goBin, "build", "-o", bin, "github.com/switchd/switchd/cmd/switchd").CombinedOutput(); err != nil {
		t.Fatalf("building switchd: %v\n%s", err, out)
	}
	return bin
}

// Node is one switchd process with the demo accounts, its lane, ops and
// raft listeners on free ports and its data in a temporary directory.
type Node struct {
	LaneAddr string
	OpsAddr  string
	OpsURL   string
	RaftAddr string
	DataDir  string
	// Credentials is the admin client's credentials file, which the node
	// writes on first start (before /readyz answers 200).
	Credentials string

	t       testing.TB
	bin     string
	cfgPath string
	logPath string
	cmd     *exec.Cmd
	logf    *os.File
}

// CardKey is the card key of the configs tests write: a config file must
// bring its own (only the embedded demo runs on the demo key).
const CardKey = "7465737420636172642068617368206b65792c206e6f7420666f72207573652e"

// Start writes a config over the demo one that moves every listener to a
// free port (fast raft timeouts, log level warn), starts bin, waits until
// /readyz answers 200, and stops the process at cleanup.
func Start(t testing.TB, bin string) *Node {
	t.Helper()
	return StartWith(t, bin, Options{})
}

// Options change what Start writes.
type Options struct {
	// DataDir replaces the temporary data directory (e.g. one on a small
	// file system the test mounted).
	DataDir string
	// Cluster is extra "key: value" lines for the cluster section.
	Cluster []string
	// Extra is YAML appended at the top level (sections Start does not
	// write: store, disk, settle…).
	Extra string
}

// StartWith is Start with opts.
func StartWith(t testing.TB, bin string, opts Options) *Node {
	t.Helper()
	dir := t.TempDir()
	n := &Node{
		LaneAddr: FreePort(t), OpsAddr: FreePort(t), RaftAddr: FreePort(t),
		DataDir: filepath.Join(dir, "data"), t: t, bin: bin,
		cfgPath: filepath.Join(dir, "switchd.yaml"), logPath: filepath.Join(dir, "switchd.log"),
	}
	if opts.DataDir != "" {
		n.DataDir = opts.DataDir
	}
	n.Credentials = filepath.Join(n.DataDir, "ops-credentials.json")
	Register(n.OpsAddr, n.Credentials)
	var clusterExtra string
	for _, l := range opts.Cluster {
		clusterExtra += "  " + l + "\n"
	}
	n.OpsURL = "http://" + n.OpsAddr
	// Lanes are replaced as a whole list; the rest keeps the demo config.
	cfg := fmt.Sprintf(`log_level: warn
cluster:
  raft_addr: %s
  heartbeat_timeout: 100ms
  election_timeout: 100ms
  leader_lease_timeout: 100ms
%sops:
  listen: %s
switch:
  card_key: %s
  lanes:
    - name: test
      listen: %s
      partners: [demo-acquirer]
%s`, n.RaftAddr, clusterExtra, n.OpsAddr, CardKey, n.LaneAddr, opts.Extra)
	if err := os.WriteFile(n.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(n.logPath)
			t.Logf("switchd log:\n%s", b)
		}
	})
	n.Restart()
	return n
}

// Token is an access token of the admin client, from the node's token
// endpoint.
func (n *Node) Token(t testing.TB) string {
	t.Helper()
	c, err := oauth.ReadCredentials(n.Credentials)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	tok, err := oauth.FetchToken(ctx, &http.Client{Timeout: readyTimeout}, n.OpsURL+"/oauth/token", c, "")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Restart starts the process again on the same data and ports (after Kill9
// or Stop) and waits until it is ready.
func (n *Node) Restart() {
	n.t.Helper()
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		n.t.Fatal(err)
	}
	cmd := exec.Command(n.bin, "--config", n.cfgPath, "--data-dir", n.DataDir)
	cmd.Stdout, cmd.Stderr = logf, logf // files, not pipes: exec starts no copying goroutines
	if err := cmd.Start(); err != nil {
		logf.Close()
		n.t.Fatal(err)
	}
	n.cmd, n.logf = cmd, logf
	WaitReady(n.t, n.OpsURL)
}

// ConfigPath is the config file the process runs on (a test may rewrite
// it, then reload or restart).
func (n *Node) ConfigPath() string { return n.cfgPath }

// Log is what the process wrote to its log so far.
func (n *Node) Log() []byte {
	b, _ := os.ReadFile(n.logPath)
	return b
}

// Kill9 kills the process without warning and waits for it to be gone.
func (n *Node) Kill9() {
	if n.cmd == nil {
		return
	}
	n.cmd.Process.Kill()
	n.cmd.Wait()
	n.logf.Close()
	n.cmd = nil
}

// Stop interrupts the process (an orderly shutdown), killing it if it has
// not exited within stopTimeout.
func (n *Node) Stop() {
	if n.cmd == nil {
		return
	}
	n.cmd.Process.Signal(os.Interrupt)
	exited := make(chan struct{})
	go func() { n.cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		n.cmd.Process.Kill()
		<-exited
	}
	n.logf.Close()
	n.cmd = nil
}

// WaitReady polls opsURL/readyz until it answers 200, failing the test
// after readyTimeout.
func WaitReady(t testing.TB, opsURL string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	for deadline := time.Now().Add(readyTimeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := hc.Get(opsURL + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	t.Fatalf("switchd not ready at %s after %s", opsURL, readyTimeout)
}

// The ops API wants a bearer token on every call but health and metrics.
// Tests that call it by address register the credentials file that
// authenticates at that address (Start does it for its node); Do and Get
// then add a token from that address's own token endpoint (each node
// signs with its own key unless configured otherwise).
var (
	credsMu   sync.Mutex
	credsByOp = map[string]string{} // ops host:port → credentials file
	tokenByOp = map[string]string{}
)

// Register says which credentials file authenticates at opsAddr.
func Register(opsAddr, credentials string) {
	credsMu.Lock()
	defer credsMu.Unlock()
	credsByOp[opsAddr] = credentials
	delete(tokenByOp, opsAddr)
}

// Do sends req with a token for its host; a 401 (the token expired, or the
// node restarted with a new key) gets one more try with a new token.
func Do(req *http.Request) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		tok, err := tokenFor(req.URL.Host, attempt > 0)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusUnauthorized || attempt > 0 || req.GetBody == nil && req.Body != nil {
			return resp, err
		}
		resp.Body.Close()
		if req.GetBody != nil {
			if req.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
	}
}

// PartnerClient makes the partner API client id with scopes through the
// ops API at opsURL (as an admin does: a config file makes none) and
// returns its client secret.
func PartnerClient(t testing.TB, opsURL, id string, scopes []string, reason string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"id": id, "scopes": scopes, "reason": reason})
	req, _ := http.NewRequest(http.MethodPost, opsURL+"/v1/clients", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var made struct {
		ClientSecret string `json:"client_secret"`
	}
	json.NewDecoder(resp.Body).Decode(&made)
	if resp.StatusCode != http.StatusCreated || made.ClientSecret == "" {
		t.Fatalf("partner client %s: %d", id, resp.StatusCode)
	}
	return made.ClientSecret
}

// API is a partner's client of a node's REST API: it trusts the node's
// development CA (dataDir/api/ca.pem) and signs in with clientID and its
// secret.
type API struct {
	t                testing.TB
	HC               *http.Client
	Base             string // https://addr
	clientID, secret string
}

// NewAPI is a client of the REST API at addr of the node whose data
// directory is dataDir.
func NewAPI(t testing.TB, dataDir, addr, clientID, secret string) *API {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(dataDir, "api", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, MaxIdleConnsPerHost: 8}}
	t.Cleanup(hc.CloseIdleConnections)
	return &API{t: t, HC: hc, Base: "https://" + addr, clientID: clientID, secret: secret}
}

// Token is a new access token of the client.
func (a *API) Token() string {
	a.t.Helper()
	tok, err := oauth.FetchToken(context.Background(), a.HC, a.Base+"/oauth/token", oauth.Credentials{ClientID: a.clientID, ClientSecret: a.secret}, "")
	if err != nil {
		a.t.Fatal(err)
	}
	return tok
}

// Call sends a JSON request with token tok (and Idempotency-Key key when
// set) and returns the status and body.
func (a *API) Call(tok, method, path, key, body string) (int, []byte) {
	a.t.Helper()
	req, _ := http.NewRequest(method, a.Base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := a.HC.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// Get is http.Get with a token.
func Get(url string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return Do(req)
}

func tokenFor(opsAddr string, fresh bool) (string, error) {
	credsMu.Lock()
	path, ok := credsByOp[opsAddr]
	tok := tokenByOp[opsAddr]
	credsMu.Unlock()
	if !ok {
		return "", fmt.Errorf("switchdtest: no credentials registered for %s", opsAddr)
	}
	if tok != "" && !fresh {
		return tok, nil
	}
	c, err := oauth.ReadCredentials(path)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	tok, err = oauth.FetchToken(ctx, &http.Client{Timeout: readyTimeout}, "http://"+opsAddr+"/oauth/token", c, "")
	if err != nil {
		return "", err
	}
	credsMu.Lock()
	tokenByOp[opsAddr] = tok
	credsMu.Unlock()
	return tok, nil
}
