package oauth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/switchd/switchd/store"
)

// Credentials is what a client credentials file holds (the bootstrap
// admin's, and what switchctl reads).
type Credentials struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

// ReadCredentials reads a credentials file. It refuses a file others may
// read: a secret in a world-readable file is a leaked secret.
func ReadCredentials(path string) (Credentials, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Credentials{}, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return Credentials{}, fmt.Errorf("oauth: credentials %s: mode %s lets others read it; chmod 600", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Credentials{}, err
	}
	var c Credentials
	if err := json.Unmarshal(b, &c); err != nil || c.ClientID == "" || c.ClientSecret == "" {
		return Credentials{}, fmt.Errorf("oauth: credentials %s: want {\"client_id\":…,\"client_secret\":…}", path)
	}
	return c, nil
}

// Proposer submits a command through the cluster.
type Proposer func(ctx context.Context, cmd store.Command) (store.Result, error)

// BootstrapClientID is the first admin client's id.
const BootstrapClientID = "admin"

// bootstrapRetry is how often a node retries while the cluster cannot
// take the proposal yet (no leader, still catching up).
const bootstrapRetry = 500 * time.Millisecond

// Bootstrap creates the first admin client of a new cluster, with every
// scope, and writes its credentials to path (0600), unless the cluster
// has a client already. The secret is written to a temporary file next to
// path before it is proposed, and the file renamed into place once the
// client is committed: a crash in between leaves the secret on disk
// rather than a client nobody can use, and a node that loses the race to
// another one (StatusExists) removes its own file. It returns when done,
// when the cluster already had clients, or when ctx ends.
func Bootstrap(ctx context.Context, path string, dir Directory, propose Proposer, log *slog.Logger) error {
	if len(dir().Clients()) > 0 {
		log.Info("oauth: the cluster has clients; no bootstrap", "credentials", path)
		return nil
	}
	return makeClient(ctx, path, store.ClientBootstrap, BootstrapClientID, Scopes, "the first admin client of a new cluster", propose, log)
}

// BootstrapPartner makes a client for partner id with every partner API
// scope, its credentials in path (0600), unless the client exists. The
// demo makes one for demo-acquirer so that the README's calls work as
// they are; a partner in production gets its client from an admin
// (switchctl clients create).
func BootstrapPartner(ctx context.Context, path, id string, dir Directory, propose Proposer, log *slog.Logger) error {
	if _, ok := dir().Client(id); ok {
		return nil
	}
	return makeClient(ctx, path, store.ClientCreate, id, PartnerScopes, "a partner client of the demo", propose, log)
}

// makeClient proposes a new client with a fresh secret and writes the
// credentials to path once it is committed. The secret is written to a
// temporary file next to path before it is proposed, and renamed into
// place after: a crash in between leaves the secret on disk rather than a
// client nobody can use, and a node that loses the race to another one
// (StatusExists) removes its own file.
func makeClient(ctx context.Context, path, action, id string, scopes []string, reason string, propose Proposer, log *slog.Logger) error {
	secret, err := NewSecret()
	if err != nil {
		return err
	}
	hash, err := HashSecret(secret)
	if err != nil {
		return err
	}
	b, _ := json.MarshalIndent(Credentials{ClientID: id, ClientSecret: secret}, "", "  ")
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return err
	}
	// One key for every retry of this node's attempt: a retry after an
	// answer was lost gets the FSM's recorded answer, and another node's
	// attempt (its own key) finds the client there (StatusExists).
	key := "client|" + action + "|" + hex.EncodeToString(nonce[:])
	tmp := path + ".pending-" + hex.EncodeToString(nonce[:])
	if err := writeFileAtomic(tmp, append(b, '\n')); err != nil {
		return fmt.Errorf("oauth: client credentials: %w", err)
	}
	cmd := store.Command{Op: store.OpPutClient, Key: key, Fingerprint: key,
		Admin: &store.Admin{Actor: "system:bootstrap", Reason: reason,
			ClientChange: &store.ClientChange{Action: action,
				Client: store.Client{ID: id, Scopes: scopes, Secrets: []store.ClientSecret{{Hash: hash}}}}}}
	for {
		cmd.Time = time.Now().UnixNano()
		res, err := propose(ctx, cmd)
		if err == nil {
			switch res.Status {
			case store.StatusOK:
				if err := os.Rename(tmp, path); err != nil {
					return fmt.Errorf("oauth: client %s exists; its credentials are in %s: %w", id, tmp, err)
				}
				abs, _ := filepath.Abs(path)
				log.Info("oauth: created a client; its credentials (client id and secret) are in this 0600 file", "client", id, "credentials", abs)
				return nil
			case store.StatusExists:
				os.Remove(tmp)
				log.Info("oauth: the client exists; not made again", "client", id, "credentials", path)
				return nil
			default:
				os.Remove(tmp)
				return fmt.Errorf("oauth: client %s refused: %s %s", id, res.Status, res.Detail)
			}
		}
		// Not taken, or taken with the answer lost: keep the file and
		// retry the same command.
		log.Debug("oauth: client not taken yet; retrying", "client", id, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(bootstrapRetry):
		}
	}
}

// tokenAnswerBytesMax bounds a token endpoint's answer.
const tokenAnswerBytesMax = 16 << 10

// FetchToken gets an access token from tokenURL with the client
// credentials grant, authenticating with creds' secret (client_secret_basic)
// or, with an empty secret, with hc's TLS client certificate
// (tls_client_auth). scope may be empty (all of the client's).
func FetchToken(ctx context.Context, hc *http.Client, tokenURL string, creds Credentials, scope string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	if creds.ClientSecret == "" {
		form.Set("client_id", creds.ClientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if creds.ClientSecret != "" {
		req.SetBasicAuth(url.QueryEscape(creds.ClientID), url.QueryEscape(creds.ClientSecret))
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("oauth: token: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, tokenAnswerBytesMax))
	var ans struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(b, &ans)
	if resp.StatusCode != http.StatusOK {
		if ans.Error != "" {
			return "", &TokenError{Status: resp.StatusCode, Code: ans.Error, Description: ans.Description}
		}
		return "", &TokenError{Status: resp.StatusCode, Code: "http_" + strconv.Itoa(resp.StatusCode), Description: strings.TrimSpace(string(b))}
	}
	if ans.AccessToken == "" || !strings.EqualFold(ans.TokenType, "Bearer") {
		return "", fmt.Errorf("oauth: token: the answer holds no bearer token")
	}
	return ans.AccessToken, nil
}

// TokenError is a token endpoint's refusal (RFC 6749 §5.2).
type TokenError struct {
	Status      int
	Code        string
	Description string
}

func (e *TokenError) Error() string {
	return fmt.Sprintf("oauth: token refused (%d %s): %s", e.Status, e.Code, e.Description)
}
