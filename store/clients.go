package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// OAuth2 clients of the ops API (package oauth issues their tokens). A
// client is replicated state like a partner, so every node can check a
// client's secret or certificate and every change is in the audit chain.
// Secrets are never in a command or in pebble: the ops API hashes a new
// secret (a slow, salted hash) before it proposes, and only the hash is
// replicated. The audit chain records a client without even the hashes.

// OpPutClient creates, changes, rotates the secret of, disables or enables
// the client named by Admin.Client (see ClientChange).
const OpPutClient Op = 18

// Limits on a client.
const (
	// clientSecretsMax: the current secret and the one being rotated out.
	clientSecretsMax = 2
	// clientCertsMax: the same overlap for certificate thumbprints.
	clientCertsMax  = 2
	clientScopesMax = 32
	scopeBytesMax   = 64
	// secretHashBytesMax bounds a PHC string ($argon2id$v=19$m=…$salt$hash).
	secretHashBytesMax = 256
	// thumbprintBytes is the length of a base64url (unpadded) SHA-256.
	thumbprintBytes = 43
	// clientOverlapMax bounds how long an old secret or certificate stays
	// valid after a rotation.
	clientOverlapMax = int64(30 * 24 * 3600 * 1e9)
)

// Client is an OAuth2 client of the ops API.
type Client struct {
	ID string `json:"id"`
	// Scopes are the most its tokens may carry.
	Scopes []string `json:"scopes"`
	// Secrets are the hashes of the client secrets that authenticate it
	// (client_secret_basic); two while one is rotated out.
	Secrets []ClientSecret `json:"secrets,omitempty"`
	// Certs are the SHA-256 thumbprints (x5t#S256: base64url of the
	// certificate's DER) of the TLS client certificates that authenticate
	// it (RFC 8705 tls_client_auth); two while one is rotated out.
	Certs []ClientCert `json:"certs,omitempty"`
	// Disabled clients get no token and their tokens are refused.
	Disabled bool `json:"disabled,omitempty"`
}

// ClientSecret is one secret's hash and, once it is being rotated out,
// the time after which it no longer authenticates (unix ns; 0: none).
type ClientSecret struct {
	Hash     string `json:"hash"`
	NotAfter int64  `json:"not_after,omitempty"`
}

// ClientCert is one certificate thumbprint and its end of validity.
type ClientCert struct {
	Thumbprint string `json:"x5t#S256"`
	NotAfter   int64  `json:"not_after,omitempty"`
}

// ClientChange is what an OpPutClient does.
type ClientChange struct {
	// Action: "create", "bootstrap" (create, and only while there is no
	// client at all: the first admin of a new cluster), "update" (scopes
	// and certificates), "rotate_secret", "disable" or "enable".
	Action string `json:"action"`
	Client Client `json:"client"`
	// Overlap is how long the replaced secret or certificates stay valid
	// after a rotate_secret or update (ns).
	Overlap int64 `json:"overlap,omitempty"`
}

// Client actions.
const (
	ClientCreate       = "create"
	ClientBootstrap    = "bootstrap"
	ClientUpdate       = "update"
	ClientRotateSecret = "rotate_secret"
	ClientDisable      = "disable"
	ClientEnable       = "enable"
)

// StatusExists: the change creates something that exists already.
const StatusExists Status = 18

// ErrExists is StatusExists's error.
var ErrExists = errors.New("store: exists already")

const pfxClient = 'C' // C<client id> → client (JSON)

// Valid reports whether s still authenticates at now (unix ns).
func (s ClientSecret) Valid(now int64) bool { return s.NotAfter == 0 || now < s.NotAfter }

// Valid reports whether c still authenticates at now (unix ns).
func (c ClientCert) Valid(now int64) bool { return c.NotAfter == 0 || now < c.NotAfter }

// HasScope reports whether c may be given scope.
func (c *Client) HasScope(scope string) bool { return slices.Contains(c.Scopes, scope) }

// HasCert reports whether thumbprint authenticates c at now.
func (c *Client) HasCert(thumbprint string, now int64) bool {
	for _, x := range c.Certs {
		if x.Thumbprint == thumbprint && x.Valid(now) {
			return true
		}
	}
	return false
}

// Redacted is c without its secret hashes (how many, and until when, is
// kept): what the audit chain and the API show.
func (c Client) Redacted() Client {
	out := c
	out.Secrets = make([]ClientSecret, len(c.Secrets))
	for i, s := range c.Secrets {
		out.Secrets[i] = ClientSecret{Hash: "redacted", NotAfter: s.NotAfter}
	}
	if len(out.Secrets) == 0 {
		out.Secrets = nil
	}
	return out
}

// NewDirectoryWithClients is a directory of only clients (tests and
// tools).
func NewDirectoryWithClients(clients []Client) *Directory {
	d := newDirectory()
	for i := range clients {
		c := clients[i]
		d.clients[c.ID] = &c
	}
	return d
}

// Client returns the client with id.
func (d *Directory) Client(id string) (*Client, bool) {
	c, ok := d.clients[id]
	return c, ok
}

// Clients returns every client, by id.
func (d *Directory) Clients() []Client {
	out := make([]Client, 0, len(d.clients))
	for _, c := range d.clients {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b Client) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// CheckClient reports whether c is a client the FSM would store.
func CheckClient(c *Client) error {
	if !validToken(c.ID, idBytesMax) {
		return changeError("client.id", "%q: letters, digits, '_', '-', '.', at most %d", c.ID, idBytesMax)
	}
	if len(c.Scopes) == 0 || len(c.Scopes) > clientScopesMax {
		return changeError("client.scopes", "1 to %d scopes", clientScopesMax)
	}
	for _, s := range c.Scopes {
		if !validScope(s) {
			return changeError("client.scopes", "%q is not a scope (letters, digits, ':', '_', '-', '.')", s)
		}
	}
	if len(c.Secrets) > clientSecretsMax {
		return changeError("client.secrets", "at most %d", clientSecretsMax)
	}
	for _, s := range c.Secrets {
		if !strings.HasPrefix(s.Hash, "$") || len(s.Hash) > secretHashBytesMax {
			return changeError("client.secrets", "a secret is stored as its hash (PHC string), never in clear")
		}
	}
	if len(c.Certs) > clientCertsMax {
		return changeError("client.certs", "at most %d", clientCertsMax)
	}
	for _, x := range c.Certs {
		if !validThumbprint(x.Thumbprint) {
			return changeError("client.certs", "%q is not a base64url SHA-256 thumbprint", x.Thumbprint)
		}
	}
	if len(c.Secrets) == 0 && len(c.Certs) == 0 {
		return changeError("client", "needs a secret or a certificate to authenticate with")
	}
	return nil
}

func validScope(s string) bool {
	if s == "" || len(s) > scopeBytesMax {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func validThumbprint(s string) bool {
	if len(s) != thumbprintBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func cloneClient(in *Client) *Client {
	c := &Client{ID: strings.Clone(in.ID), Disabled: in.Disabled}
	for _, s := range in.Scopes {
		c.Scopes = append(c.Scopes, strings.Clone(s))
	}
	for _, s := range in.Secrets {
		c.Secrets = append(c.Secrets, ClientSecret{Hash: strings.Clone(s.Hash), NotAfter: s.NotAfter})
	}
	for _, x := range in.Certs {
		c.Certs = append(c.Certs, ClientCert{Thumbprint: strings.Clone(x.Thumbprint), NotAfter: x.NotAfter})
	}
	return c
}

// putClient applies an OpPutClient.
func (t *txn) putClient(c *Command) Result {
	ch := c.Admin.ClientChange
	if ch == nil {
		return changeErr("client_change", "required")
	}
	if ch.Overlap < 0 || ch.Overlap > clientOverlapMax {
		return changeErr("overlap", "0 to %d days", clientOverlapMax/(24*3600*1e9))
	}
	d := t.directory()
	in := cloneClient(&ch.Client)
	cur, exists := d.Client(in.ID)
	var next *Client
	switch ch.Action {
	case ClientCreate, ClientBootstrap:
		if ch.Action == ClientBootstrap && len(d.clients) > 0 {
			return Result{Status: StatusExists, Detail: "client: the cluster has clients; bootstrap is for a new one"}
		}
		if exists {
			return Result{Status: StatusExists, Detail: fmt.Sprintf("client.id: client %q exists", in.ID)}
		}
		in.Disabled = false
		next = in
	case ClientUpdate, ClientRotateSecret, ClientDisable, ClientEnable:
		if !exists {
			return Result{Status: StatusNotFound, Detail: fmt.Sprintf("client.id: no client %q", in.ID)}
		}
		next = cloneClient(cur)
		switch ch.Action {
		case ClientUpdate:
			next.Scopes = in.Scopes
			next.Certs = rotate(cur.Certs, in.Certs, c.Time, ch.Overlap,
				func(x ClientCert) string { return x.Thumbprint },
				func(x ClientCert) int64 { return x.NotAfter },
				func(x ClientCert, na int64) ClientCert { x.NotAfter = na; return x })
		case ClientRotateSecret:
			if len(in.Secrets) != 1 {
				return changeErr("client.secrets", "a rotation carries exactly one new secret hash")
			}
			next.Secrets = rotate(cur.Secrets, in.Secrets, c.Time, ch.Overlap,
				func(s ClientSecret) string { return s.Hash },
				func(s ClientSecret) int64 { return s.NotAfter },
				func(s ClientSecret, na int64) ClientSecret { s.NotAfter = na; return s })
		case ClientDisable:
			next.Disabled = true
		case ClientEnable:
			next.Disabled = false
		}
	default:
		return changeErr("client_change.action", "%q: create, bootstrap, update, rotate_secret, disable or enable", ch.Action)
	}
	if err := CheckClient(next); err != nil {
		return resultOf(err)
	}
	nd := t.dirForChange()
	if nd.clients == nil {
		nd.clients = map[string]*Client{}
	}
	nd.clients[next.ID] = next
	t.set(skey1(pfxClient, next.ID), mustJSON(next))
	var before json.RawMessage
	if exists {
		before = mustJSON(cur.Redacted())
	}
	t.appendAudit(c, "client."+ch.Action, "client/"+next.ID, before, mustJSON(next.Redacted()))
	return Result{Status: StatusOK}
}

// rotate is a credential list after a rotation: the new entries, and
// those of the old ones still valid that the new list does not repeat,
// ending overlap after now (at once with no overlap). Oldest entries go
// first when that is more than the list may hold.
func rotate[T any](old, add []T, now, overlap int64, id func(T) string, notAfter func(T) int64, until func(T, int64) T) []T {
	var out []T
	if overlap > 0 {
		for _, o := range old {
			na := notAfter(o)
			if na != 0 && na <= now || slices.ContainsFunc(add, func(a T) bool { return id(a) == id(o) }) {
				continue // expired already, or kept as a new entry
			}
			if na == 0 || na > now+overlap {
				na = now + overlap
			}
			out = append(out, until(o, na))
		}
	}
	out = append(out, add...)
	if len(out) > clientSecretsMax {
		out = out[len(out)-clientSecretsMax:]
	}
	return out
}
