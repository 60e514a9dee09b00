// Package config is switchd's configuration file: the components' Configs
// under one YAML document, with the demo configuration embedded so that a
// fresh checkout runs with nothing else.
package config

import (
	"bytes"
	"crypto/subtle"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/switchd/switchd/api"
	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/disk"
	"github.com/switchd/switchd/forward"
	"github.com/switchd/switchd/keyfile"
	"github.com/switchd/switchd/mac"
	"github.com/switchd/switchd/ops"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/settle"
	"github.com/switchd/switchd/store"
	switching "github.com/switchd/switchd/switch"
	"github.com/switchd/switchd/webhook"
)

//go:embed demo.yaml
var demoYAML []byte

// fileBytesMax bounds a config file: a config is not a data file.
const fileBytesMax = 4 << 20

// gcPercentDefault, gcPercentMin and gcPercentMax bound File.GCPercent:
// below 25 the collector runs nearly all the time, above 1000 the heap may
// grow to ten times its live size between collections.
const (
	gcPercentDefault = 200
	gcPercentMin     = 25
	gcPercentMax     = 1000
)

// ErrConfig is wrapped by every error of this package.
var ErrConfig = errors.New("config: invalid config")

// File is the whole configuration.
type File struct {
	// Path is the file Load read ("" for the embedded demo): SIGHUP
	// reloads lanes from it.
	Path string `yaml:"-"`
	// DataDir holds the raft log and snapshots (raft/) and the ledger (ledger/).
	DataDir  string `yaml:"data_dir"`
	LogLevel string `yaml:"log_level"`
	// GCPercent is the Go collector's GOGC. The heap is small (pebble
	// keeps its cache and memtables outside it), so collecting at 3× the
	// live heap instead of 2× costs little memory and saves CPU that a
	// 3-node cluster on few cores needs for requests (docs/BENCHMARKS.md).
	// GOGC in the environment wins.
	GCPercent int            `yaml:"gc_percent"`
	Cluster   cluster.Config `yaml:"cluster"`
	// Store sizes the ledger's memory: the process's resident set levels
	// off near cache_bytes (which includes the memtables) plus the Go heap
	// and the account cache (~300 bytes an account).
	Store  store.Config     `yaml:"store"`
	Ops    ops.Config       `yaml:"ops"`
	Switch switching.Config `yaml:"switch"`
	// Accounts are made sure of by the bootstrapping node on every start.
	Accounts []payment.AccountSeed `yaml:"accounts"`
	// Agents are OTC agents (cash limits) that seed a new cluster, like
	// switch.partners and switch.routes: ignored once the cluster has a
	// directory.
	Agents []payment.AgentSeed `yaml:"agents"`
	// Destinations are the ISO 8583 hosts (and HTTP billers) routes and
	// card BINs may send requests to; like partners and routes they seed a
	// new cluster only, then ops owns them (switchctl destinations).
	Destinations []store.Destination `yaml:"destinations"`
	// Settle is the business-day cutover and the settlement file jobs.
	Settle settle.Config `yaml:"settle"`

	// demo: this is the embedded demo configuration itself, not a file
	// over it. Only the demo may run on the demo card key.
	demo bool

	// Disk is the free-space guard over the ledger and raft volumes
	// (issue 9 item 2: a full disk fails closed).
	Disk disk.Config `yaml:"disk"`
	// MAC is where the node's key-encryption key comes from: partners' MAC
	// keys (ISO 8583 fields 64/128) are replicated wrapped under it, so
	// every node of a cluster needs the same one. None (the demo): partners
	// that require a MAC are declined 96 on this node.
	MAC mac.Config `yaml:"mac"`
	// API is the partner REST front door (package api); the demo serves
	// it on https://127.0.0.1:8443, a config file only with an api:
	// section.
	API api.Config `yaml:"api"`
	// Forward tunes requests forwarded to ISO 8583 hosts (issue 13): the
	// deadline after which a pending one is timed out and reversed, and
	// how long reversal advices are retried. Card numbers of forwarded
	// requests are sealed under the MAC KEK: a node without one forwards
	// nothing (91).
	Forward forward.Config `yaml:"forward"`
	// Webhooks are the partner API's webhook endpoints and the leader's
	// delivery of the outbox (package webhook). The demo enables them
	// with http to loopback allowed and a KEK made under data_dir; a
	// config file only with a webhooks: section of its own (every node
	// needs the same KEK, which a per-node default cannot give).
	Webhooks webhook.Config `yaml:"webhooks"`
}

// Demo is the embedded demo configuration over the components' defaults.
func Demo() File {
	f := File{
		GCPercent: gcPercentDefault,
		Cluster:   cluster.DefaultConfig(),
		Store:     store.DefaultConfig(),
		Ops:       ops.DefaultConfig(),
		API:       api.DefaultConfig(),
		Switch:    switching.DefaultConfig(),
		Settle:    settle.DefaultConfig(),
		Disk:      disk.DefaultConfig(),
		MAC:       mac.DefaultConfig(),
		Forward:   forward.DefaultConfig(),
		Webhooks:  webhook.DefaultConfig(),
	}
	if err := decode(bytes.NewReader(demoYAML), &f); err != nil {
		panic(fmt.Sprintf("config: embedded demo config is broken: %v", err)) // a build defect
	}
	f.demo = true
	f.Switch.Destinations = f.Destinations // routes may name them
	return f
}

// Load reads path over the demo configuration: keys the file sets replace
// the demo's; lists are replaced whole. The demo's card key is not
// inherited: it is public (it ships in this repository), and a masked PAN
// plus its keyed hash under a known key gives the full PAN back in about
// 10⁵ HMACs. A file must set switch.card_key itself (Validate).
func Load(path string) (File, error) {
	f := Demo()
	f.demo = false
	f.Switch.CardKey = ""
	// What only the demo has: a file enables the partner API with an api:
	// section of its own (several nodes on one machine would all take
	// the demo's port), and makes its own partner clients.
	f.API = api.Config{Lane: api.DefaultConfig().Lane, SCA: api.DefaultConfig().SCA}
	f.Ops.Auth.BootstrapPartnerClients = nil
	// Nor does a file make its own KEK: a cluster's nodes share one.
	f.MAC.Generate = false
	f.Webhooks = webhook.DefaultConfig()
	fh, err := os.Open(path)
	if err != nil {
		return f, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	defer fh.Close()
	if err := decode(io.LimitReader(fh, fileBytesMax), &f); err != nil {
		return f, fmt.Errorf("%w: %s: %w", ErrConfig, path, err)
	}
	if err := f.readCardKeyFile(); err != nil {
		return f, err
	}
	f.Switch.Destinations = f.Destinations
	f.Path = path
	return f, nil
}

// cardKeyFileBytesMax bounds a card key file: 32 bytes of hex and a newline,
// with room for a longer key.
const cardKeyFileBytesMax = 1 << 10

// readCardKeyFile loads switch.card_key from switch.card_key_file. The
// file must be readable by its owner only, like an ssh key: a secret that
// every local user can read is no secret.
func (f *File) readCardKeyFile() error {
	name := f.Switch.CardKeyFile
	if name == "" {
		return nil
	}
	if f.Switch.CardKey != "" {
		return fmt.Errorf("%w: switch.card_key and switch.card_key_file are both set; keep one", ErrConfig)
	}
	b, err := keyfile.Read(name, "switch.card_key_file", cardKeyFileBytesMax)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	f.Switch.CardKey = payment.Secret(string(b))
	return nil
}

func decode(r io.Reader, f *File) error {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true) // a typo in a key is an error, not a silent default
	if err := dec.Decode(f); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	for i := range f.Switch.Lanes {
		f.Switch.Lanes[i] = withLaneDefaults(f.Switch.Lanes[i])
	}
	return nil
}

// withLaneDefaults fills the keys a lane entry left out.
func withLaneDefaults(l switching.LaneConfig) switching.LaneConfig {
	d := switching.DefaultLane()
	if l.Kind == "" {
		l.Kind = d.Kind
	}
	if l.Allow == nil {
		l.Allow = d.Allow
	}
	if l.Dialect == "" {
		l.Dialect = d.Dialect
	}
	if l.Header == "" {
		l.Header = d.Header
	}
	if l.FrameBytesMax == 0 {
		l.FrameBytesMax = d.FrameBytesMax
	}
	if l.ConnsMax == 0 {
		l.ConnsMax = d.ConnsMax
	}
	if l.ConnsPerSourceMax == 0 {
		l.ConnsPerSourceMax = d.ConnsPerSourceMax
	}
	if l.InflightMax == 0 {
		l.InflightMax = d.InflightMax
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = d.IdleTimeout
	}
	if l.WriteTimeout == 0 {
		l.WriteTimeout = d.WriteTimeout
	}
	if l.FirstFrameTimeout == 0 {
		l.FirstFrameTimeout = min(d.FirstFrameTimeout, l.IdleTimeout)
	}
	return l
}

// Files in the data dir unless the config names others.
const (
	// DefaultSigningKeyFile is the ops API's token signing key, made on
	// first start.
	DefaultSigningKeyFile = "ops-signing-key.pem"
	// DefaultCredentialsFile is where a new cluster's first node writes
	// its admin client's credentials (switchctl reads it).
	DefaultCredentialsFile = "ops-credentials.json"
	// DefaultWebhookKEKFile is the webhook secrets' KEK when webhooks are
	// enabled without kek_file or kek_env (the demo), made on first start.
	DefaultWebhookKEKFile = "webhooks.kek"
)

// Finish derives the component directories and files from DataDir.
func (f *File) Finish() {
	f.Cluster.Dir = filepath.Join(f.DataDir, "raft")
	f.Store.Dir = filepath.Join(f.DataDir, "ledger")
	f.Settle.Dir = filepath.Join(f.DataDir, "settle")
	// The ops API's token signing key and the first admin client's
	// credentials live in the data dir unless the config names files.
	if len(f.Ops.Auth.SigningKeys) == 0 {
		f.Ops.Auth.SigningKeys = []string{filepath.Join(f.DataDir, DefaultSigningKeyFile)}
	}
	if f.Ops.Auth.BootstrapCredentials == "" {
		f.Ops.Auth.BootstrapCredentials = filepath.Join(f.DataDir, DefaultCredentialsFile)
	}
	if f.Cluster.JoinCredentials == "" {
		f.Cluster.JoinCredentials = filepath.Join(f.DataDir, DefaultCredentialsFile)
	}
	if f.Webhooks.Enabled && f.Webhooks.KEKFile == "" && f.Webhooks.KEKEnv == "" {
		f.Webhooks.KEKFile = filepath.Join(f.DataDir, DefaultWebhookKEKFile)
	}
	if f.Settle.Zone == "" {
		f.Settle.Zone = f.Switch.BusinessDayZone
	}
	if f.MAC.Generate && f.MAC.KEKFile == "" && f.MAC.KEKEnv == "" {
		f.MAC.KEKFile = filepath.Join(f.DataDir, DefaultKEKFile)
	}
}

// DemoSecretFiles are the biller secret files the demo's destinations
// name, for its reversals and for signing our calls (made on first
// start, like the demo's KEK); none for a --config file, whose secrets
// are the operator's to provision.
func (f File) DemoSecretFiles() []string {
	if !f.demo {
		return nil
	}
	var out []string
	for _, x := range f.Destinations {
		if x.HTTP == nil {
			continue
		}
		for _, p := range []string{x.HTTP.ReversalSecretFile, x.HTTP.SigningSecretFile} {
			if p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// DefaultKEKFile is where the demo makes its KEK (mac.generate).
const DefaultKEKFile = "mac.kek"

// Validate checks every component.
func (f File) Validate() error {
	if f.DataDir == "" {
		return fmt.Errorf("%w: data_dir is empty", ErrConfig)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.LogLevel)); err != nil {
		return fmt.Errorf("%w: log_level %q", ErrConfig, f.LogLevel)
	}
	if f.GCPercent < gcPercentMin || f.GCPercent > gcPercentMax {
		return fmt.Errorf("%w: gc_percent %d not in [%d, %d]", ErrConfig, f.GCPercent, gcPercentMin, gcPercentMax)
	}
	if err := f.validateCardKey(); err != nil {
		return err
	}
	f.Switch.Destinations = f.Destinations // routes may name them
	for _, err := range []error{f.Cluster.Validate(), f.Store.Validate(), f.Ops.Validate(), f.API.Validate(), f.Switch.Validate(), f.Settle.Validate(), f.MAC.Validate(), f.Forward.Validate(), f.Webhooks.Validate()} {
		if err != nil {
			return err
		}
	}
	if err := f.validateDisk(); err != nil {
		return err
	}
	ids := map[string]bool{}
	for _, a := range f.Accounts {
		if a.ID == "" || ids[a.ID] {
			return fmt.Errorf("%w: account id %q empty or duplicate", ErrConfig, a.ID)
		}
		ids[a.ID] = true
	}
	for _, a := range f.Accounts {
		if a.Opening != "" && a.Opening != "0" && !ids[a.FundedBy] {
			return fmt.Errorf("%w: account %q funded_by unknown account %q", ErrConfig, a.ID, a.FundedBy)
		}
	}
	return f.validateAgents()
}

// validateAgents checks each agent against its partner: the FSM takes an
// agent only for a partner whose messages may be otc_agent.
func (f File) validateAgents() error {
	partners, _ := f.Switch.DirectorySeeds()
	seen := map[string]bool{}
	for i, as := range f.Agents {
		a, err := as.Agent()
		if err != nil {
			return fmt.Errorf("%w: agents[%d]: %w", ErrConfig, i, err)
		}
		id := store.AgentID(a.Partner, a.Terminal)
		if a.Terminal == "" || seen[id] {
			return fmt.Errorf("%w: agents[%d]: terminal %q of partner %q empty or duplicate", ErrConfig, i, a.Terminal, a.Partner)
		}
		seen[id] = true
		j := slices.IndexFunc(partners, func(p store.Partner) bool { return p.ID == a.Partner })
		if j < 0 || !partners[j].MayRefineTo(store.PayerOTCAgent) {
			return fmt.Errorf("%w: agents[%d]: partner %q is not a switch.partners entry with payer type %s",
				ErrConfig, i, a.Partner, store.PayerOTCAgent)
		}
	}
	for _, id := range f.API.Partners {
		if !slices.ContainsFunc(f.Switch.Partners, func(p switching.Partner) bool { return p.ID == id }) {
			return fmt.Errorf("%w: api.partners names unknown partner %q", ErrConfig, id)
		}
	}
	return nil
}

// Seeds is what the bootstrapping node seeds: accounts on every start;
// partners, agents and routes on a brand-new cluster only.
func (f File) Seeds() payment.Seeds {
	partners, routes := f.Switch.DirectorySeeds()
	// The partner API is a lane too: the partners its partners: list
	// names may use it, as a lane's list does.
	if f.API.Listen != "" {
		for i := range partners {
			if slices.Contains(f.API.Partners, partners[i].ID) && !slices.Contains(partners[i].Lanes, f.API.Lane) {
				partners[i].Lanes = append(partners[i].Lanes, f.API.Lane)
			}
		}
	}
	return payment.Seeds{Accounts: f.Accounts, Partners: partners, Routes: routes, Agents: f.Agents, Destinations: f.Destinations}
}

// validateCardKey refuses a config file without its own card key, and one
// that sets the public demo key; the embedded demo config alone uses it.
func (f File) validateCardKey() error {
	if f.demo {
		return nil
	}
	if f.Switch.CardKey == "" {
		return fmt.Errorf("%w: switch.card_key is not set: a config file must bring its own secret "+
			"(32 random bytes as hex, e.g. `openssl rand -hex 32`; every node of a cluster needs the same one); "+
			"only the embedded demo config (switchd without --config) runs on the public demo key", ErrConfig)
	}
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(string(f.Switch.CardKey))), []byte(demoCardKey())) == 1 {
		return fmt.Errorf("%w: switch.card_key is the public demo key from config/demo.yaml: "+
			"set a secret of your own (e.g. `openssl rand -hex 32`)", ErrConfig)
	}
	return nil
}

// validateDisk checks the disk guard (issue 9 item 2) against the raft
// log: raft-wal preallocates a whole segment at each rotation, so a
// reserve smaller than a segment lets a rotation fail on a volume the
// guard still calls fine.
func (f File) validateDisk() error {
	if err := f.Disk.Validate(); err != nil {
		return err
	}
	if f.Cluster.LogStore != cluster.LogStoreBolt && f.Disk.ReserveBytes < uint64(f.Cluster.WALSegmentBytes) {
		return fmt.Errorf("%w: disk.reserve_bytes %d below cluster.wal_segment_bytes %d (raft-wal preallocates a segment at each rotation)",
			ErrConfig, f.Disk.ReserveBytes, f.Cluster.WALSegmentBytes)
	}
	return nil
}

// demoCardKey is the card key of the embedded demo config, lower case.
func demoCardKey() string { return strings.ToLower(string(Demo().Switch.CardKey)) }

// Level is the parsed log level.
func (f File) Level() slog.Level {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(f.LogLevel))
	return lvl
}
