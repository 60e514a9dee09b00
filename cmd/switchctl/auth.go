package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchd/switchd/config"
	"github.com/switchd/switchd/oauth"
)

// The ops API wants an OAuth2 access token on every call but health,
// readiness and metrics. switchctl gets one from the API's own token
// endpoint with client credentials, found in this order:
//
//	--token / $SWITCHCTL_TOKEN                      an access token as is
//	$SWITCHCTL_CLIENT_ID and $SWITCHCTL_CLIENT_SECRET
//	--credentials FILE / $SWITCHCTL_CREDENTIALS     a credentials file (0600)
//	./data/ops-credentials.json                     what `make run` writes on first start
//
// With --cert/--key and no secret, the client authenticates with its TLS
// certificate (tls_client_auth) and the token is bound to it. Secrets are
// never read from the command line (ps shows argv).

// defaultCredentials is the demo's credentials file, relative to the
// directory `make run` runs in.
var defaultCredentials = "data/" + config.DefaultCredentialsFile

type authFlags struct {
	credentials string
	token       string
	clientID    string
	scope       string
	caFile      string
	certFile    string
	keyFile     string
	cached      string
	hc          *http.Client
}

func (a *authFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.credentials, "credentials", "", "client credentials `file` for the ops API (default $SWITCHCTL_CREDENTIALS, else "+defaultCredentials+")")
	fs.StringVar(&a.token, "token", "", "an access `token` to send as is (default $SWITCHCTL_TOKEN)")
	fs.StringVar(&a.clientID, "client-id", "", "client `id` for tls_client_auth with --cert/--key (no secret)")
	fs.StringVar(&a.scope, "scope", "", "ask for only these `scopes` (space-separated; default all of the client's)")
	fs.StringVar(&a.caFile, "ops-ca", "", "CA `file` that signs the ops API's certificate (https)")
	fs.StringVar(&a.certFile, "ops-cert", "", "client certificate `file` for the ops API (mutual TLS, tls_client_auth)")
	fs.StringVar(&a.keyFile, "ops-key", "", "client key `file` for --ops-cert")
}

// httpClient is the client for the ops API: no keep-alive (one command,
// a few requests), TLS as the flags say.
func (o *opsFlags) httpClient() *http.Client {
	if o.auth.hc != nil {
		return o.auth.hc
	}
	tr := &http.Transport{DisableKeepAlives: true}
	if tc, err := o.auth.tlsConfig(); err == nil && tc != nil {
		tr.TLSClientConfig = tc
	}
	o.auth.hc = &http.Client{Timeout: o.timeout, Transport: tr}
	return o.auth.hc
}

func (a *authFlags) tlsConfig() (*tls.Config, error) {
	if a.caFile == "" && a.certFile == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if a.caFile != "" {
		pem, err := os.ReadFile(a.caFile)
		if err != nil {
			return nil, usagef("--ops-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usagef("--ops-ca %s: no PEM certificate", a.caFile)
		}
		tc.RootCAs = pool
	}
	if a.certFile != "" || a.keyFile != "" {
		cert, err := tls.LoadX509KeyPair(a.certFile, a.keyFile)
		if err != nil {
			return nil, usagef("--ops-cert/--ops-key: %v", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// creds finds the client credentials (see the top of this file); ok is
// false when there are none.
func (a *authFlags) creds() (c oauth.Credentials, source string, ok bool, err error) {
	if id, secret := os.Getenv("SWITCHCTL_CLIENT_ID"), os.Getenv("SWITCHCTL_CLIENT_SECRET"); id != "" && secret != "" {
		return oauth.Credentials{ClientID: id, ClientSecret: secret}, "$SWITCHCTL_CLIENT_ID", true, nil
	}
	if a.clientID != "" {
		if a.certFile == "" {
			return c, "", false, usagef("--client-id without a secret authenticates with a certificate: give --ops-cert and --ops-key")
		}
		return oauth.Credentials{ClientID: a.clientID}, "--client-id", true, nil
	}
	path, explicit := a.credentials, true
	if path == "" {
		path = os.Getenv("SWITCHCTL_CREDENTIALS")
	}
	if path == "" {
		path, explicit = defaultCredentials, false
	}
	c, err = oauth.ReadCredentials(path)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return c, "", false, nil
	}
	if err != nil {
		return c, "", false, usagef("credentials: %v", err)
	}
	return c, path, true, nil
}

// accessToken is the token to send: --token, else one fetched once with
// the client credentials. "" when there are no credentials at all (the
// API then answers 401, which says so).
func (o *opsFlags) accessToken(ctx context.Context) (string, error) {
	a := &o.auth
	if a.cached != "" {
		return a.cached, nil
	}
	if a.token == "" {
		a.token = os.Getenv("SWITCHCTL_TOKEN")
	}
	if a.token != "" {
		a.cached = a.token
		return a.cached, nil
	}
	c, source, ok, err := a.creds()
	if err != nil || !ok {
		return "", err
	}
	if _, err := a.tlsConfig(); err != nil {
		return "", err
	}
	tok, err := oauth.FetchToken(ctx, o.httpClient(), strings.TrimRight(o.base, "/")+"/oauth/token", c, a.scope)
	if err != nil {
		return "", fmt.Errorf("getting an access token for client %q (from %s): %w", c.ClientID, source, err)
	}
	a.cached = tok
	return tok, nil
}

// authorize adds the bearer token to req.
func (o *opsFlags) authorize(ctx context.Context, req *http.Request) error {
	tok, err := o.accessToken(ctx)
	if err != nil {
		return err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return nil
}

// unauthenticatedHint is added to a 401 when switchctl had no credentials.
const unauthenticatedHint = "the ops API needs an access token: give --credentials FILE (switchd writes ops-credentials.json in its data dir on first start), $SWITCHCTL_CREDENTIALS, or $SWITCHCTL_CLIENT_ID and $SWITCHCTL_CLIENT_SECRET"

// tokenCmd prints an access token, for curl:
//
//	curl -H "Authorization: Bearer $(switchctl token)" http://127.0.0.1:8080/v1/accounts
func tokenCmd(ctx context.Context, args []string, stdout io.Writer) error {
	var o opsFlags
	fs := flag.NewFlagSet("switchctl token", flag.ContinueOnError)
	o.register(fs)
	client := fs.String("client", "", "a token for this `client`, from data/clients/CLIENT.json (what the demo writes for demo-acquirer)")
	if err := noArgs(fs, args, stdout); err != nil {
		return err
	}
	if *client != "" && o.auth.credentials == "" {
		if strings.ContainsAny(*client, "/\\") || strings.HasPrefix(*client, ".") {
			return usagef("--client %q: a client id", *client)
		}
		o.auth.credentials = filepath.Join(filepath.Dir(defaultCredentials), "clients", *client+".json")
	}
	if _, _, ok, err := o.auth.creds(); err != nil {
		return err
	} else if !ok && o.auth.token == "" && os.Getenv("SWITCHCTL_TOKEN") == "" {
		return usagef("%s", unauthenticatedHint)
	}
	tok, err := o.accessToken(ctx)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}

// clientsCmd manages the ops API's OAuth2 clients.
func clientsCmd(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("clients: want list, get, create, update, rotate-secret, disable or enable")
	}
	sub, args := args[0], args[1:]
	var o opsFlags
	fs := flag.NewFlagSet("switchctl clients "+sub, flag.ContinueOnError)
	o.register(fs)
	scopes := fs.String("scopes", "", "comma-separated `scopes` ("+strings.Join(oauth.Scopes, ",")+")")
	certs := fs.String("certs", "", "comma-separated x5t#S256 `thumbprints` of the client's TLS certificates")
	certFiles := fs.String("cert-files", "", "comma-separated PEM certificate `files` of the client (their thumbprints are sent)")
	noSecret := fs.Bool("no-secret", false, "create: a certificate-only client (tls_client_auth)")
	overlap := fs.Duration("overlap", 0, "rotate-secret, update: how long the old secret or certificates stay valid")
	reason := fs.String("reason", "", "why, for the audit chain")
	out := fs.String("out", "", "create, rotate-secret: write the credentials to this `file` (0600) instead of printing the secret")
	pos, err := parseCmd(fs, args, stdout)
	if err != nil {
		return err
	}
	id := ""
	if sub != "list" {
		if len(pos) != 1 {
			return usagef("clients %s: want one client id", sub)
		}
		id = pos[0]
	} else if len(pos) != 0 {
		return usagef("clients list: no arguments")
	}
	thumbs, err := thumbprints(*certs, *certFiles)
	if err != nil {
		return err
	}
	var body []byte
	switch sub {
	case "list":
		body, err = o.get(ctx, "/v1/clients", nil)
	case "get":
		body, err = o.get(ctx, "/v1/clients/"+url.PathEscape(id), nil)
	case "create":
		req := map[string]any{"id": id, "scopes": splitList(*scopes), "certs": thumbs, "reason": *reason}
		if *noSecret {
			req["secret"] = false
		}
		body, err = o.write(ctx, http.MethodPost, "/v1/clients", req, opsBodyBytesMax)
	case "update":
		body, err = o.write(ctx, http.MethodPut, "/v1/clients/"+url.PathEscape(id),
			map[string]any{"scopes": splitList(*scopes), "certs": thumbs, "overlap": durationOrEmpty(*overlap), "reason": *reason}, opsBodyBytesMax)
	case "rotate-secret", "disable", "enable":
		body, err = o.write(ctx, http.MethodPost, "/v1/clients/"+url.PathEscape(id)+"/"+sub,
			map[string]any{"overlap": durationOrEmpty(*overlap), "reason": *reason}, opsBodyBytesMax)
	default:
		return usagef("clients: unknown subcommand %q", sub)
	}
	if err != nil || o.json {
		return jsonOr(err, stdout, body)
	}
	return printClients(stdout, sub, body, *out)
}

func durationOrEmpty(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func thumbprints(list, files string) ([]string, error) {
	out := splitList(list)
	for _, f := range splitList(files) {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, usagef("--cert-files: %v", err)
		}
		// The leaf: the file's first certificate.
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != "CERTIFICATE" {
			return nil, usagef("--cert-files %s: no PEM certificate", f)
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, usagef("--cert-files %s: %v", f, err)
		}
		out = append(out, oauth.Thumbprint(cert))
	}
	return out, nil
}

type clientJSON struct {
	ID      string   `json:"id"`
	Scopes  []string `json:"scopes"`
	Secrets []struct {
		NotAfter int64 `json:"not_after"`
	} `json:"secrets"`
	Certs []struct {
		Thumbprint string `json:"x5t#S256"`
		NotAfter   int64  `json:"not_after"`
	} `json:"certs"`
	Disabled bool `json:"disabled"`
}

func printClients(w io.Writer, sub string, body []byte, out string) error {
	var list []clientJSON
	var secret string
	var replayed bool
	switch sub {
	case "list":
		var page struct{ Clients []clientJSON }
		if err := json.Unmarshal(body, &page); err != nil {
			return fmt.Errorf("decoding clients: %w", err)
		}
		list = page.Clients
	case "get":
		var c clientJSON
		if err := json.Unmarshal(body, &c); err != nil {
			return fmt.Errorf("decoding the client: %w", err)
		}
		list = []clientJSON{c}
	default:
		var v struct {
			Client       clientJSON `json:"client"`
			ClientSecret string     `json:"client_secret"`
			Replayed     bool       `json:"replayed"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			return fmt.Errorf("decoding the client: %w", err)
		}
		list, secret, replayed = []clientJSON{v.Client}, v.ClientSecret, v.Replayed
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT\tSCOPES\tSECRETS\tCERTS\tSTATE")
	for _, c := range list {
		state := "enabled"
		if c.Disabled {
			state = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.ID, strings.Join(c.Scopes, ","), validity(len(c.Secrets), func(i int) int64 { return c.Secrets[i].NotAfter }),
			validity(len(c.Certs), func(i int) int64 { return c.Certs[i].NotAfter }), state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if secret == "" {
		if replayed {
			fmt.Fprintln(w, "replayed: the secret was shown to the first request and is not shown again")
		}
		return nil
	}
	if out != "" {
		b := fmt.Sprintf("{\n  \"client_id\": %q,\n  \"client_secret\": %q\n}\n", list[0].ID, secret)
		if err := writeSecretFile(out, []byte(b)); err != nil {
			return err
		}
		_, err := fmt.Fprintf(w, "credentials written to %s (0600); the secret is not shown again\n", out)
		return err
	}
	_, err := fmt.Fprintf(w, "client_secret: %s\n(shown once: store it now)\n", secret)
	return err
}

// validity is "2" or "2 (1 until 2026-12-03T10:00:00Z)".
func validity(n int, notAfter func(int) int64) string {
	s := fmt.Sprint(n)
	for i := 0; i < n; i++ {
		if na := notAfter(i); na != 0 {
			s += " (1 until " + time.Unix(0, na).UTC().Format(time.RFC3339) + ")"
		}
	}
	return s
}

func writeSecretFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
