// Command switchd runs one switch node: ISO 8583 lanes, the raft-replicated
// ledger and the ops HTTP API.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/switchd/switchd/api"
	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/config"
	"github.com/switchd/switchd/forward"
	"github.com/switchd/switchd/mac"
	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/ops"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/settle"
	"github.com/switchd/switchd/store"
	switching "github.com/switchd/switchd/switch"
	"github.com/switchd/switchd/webhook"
)

// joinTimeout bounds a fresh node's request to be added to the cluster.
// shutdownTimeout is the shutdown budget: lanes finish requests in flight,
// then ops, then raft.
const (
	joinTimeout     = 60 * time.Second
	shutdownTimeout = 15 * time.Second
)

// readyNode is the node as ops reports it: ready once the node is and,
// on the bootstrapping node, the seeds (accounts; on a new cluster the
// partners, agents and routes) exist.
type readyNode struct {
	*cluster.Node
	ready func() bool
}

func (r readyNode) Ready() bool { return r.ready() }

func main() {
	configPath := flag.String("config", "", "YAML config `file` over the embedded demo config")
	dataDir := flag.String("data-dir", "", "data `dir` (default from config: ./data)")
	nodeID := flag.String("node-id", "", "raft node `id` (config cluster.node_id)")
	raftAddr := flag.String("raft-addr", "", "raft and node-to-node `host:port` (config cluster.raft_addr)")
	join := flag.String("join", "", "join the cluster through a member's ops `host:port` (config cluster.join)")
	bootstrap := flag.Bool("bootstrap", false, "start a new cluster with this node as its first voter (config cluster.bootstrap)")
	opsListen := flag.String("ops-listen", "", "ops HTTP `host:port` (config ops.listen)")
	flag.Parse()

	cfg := config.Demo()
	if *configPath != "" {
		var err error
		if cfg, err = config.Load(*configPath); err != nil {
			fmt.Fprintln(os.Stderr, "switchd:", err)
			os.Exit(2)
		}
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if *nodeID != "" {
		cfg.Cluster.NodeID = *nodeID
	}
	if *raftAddr != "" {
		cfg.Cluster.RaftAddr = *raftAddr
	}
	if *opsListen != "" {
		cfg.Ops.Listen = *opsListen
	}
	if *join != "" {
		cfg.Cluster.Join, cfg.Cluster.Bootstrap = *join, false
	}
	if *bootstrap {
		cfg.Cluster.Bootstrap, cfg.Cluster.Join = true, ""
	}
	cfg.Finish()
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "switchd:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.Level()}))
	tuneRuntime(cfg, log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("switchd failed", "err", err)
		os.Exit(1)
	}
}

// partnerCredentials is where the demo writes partner id's client
// credentials: clients/<id>.json beside the admin's.
func partnerCredentials(cfg config.File, id string) string {
	return filepath.Join(filepath.Dir(cfg.Ops.Auth.BootstrapCredentials), "clients", id+".json")
}

// apiLedger is what the partner API reads: the store, and the node's
// ReadIndex for linearizable reads.
type apiLedger struct {
	*store.Store
	node *cluster.Node
}

func (l apiLedger) ReadIndex(ctx context.Context) error { return l.node.ReadIndex(ctx) }
func (l apiLedger) Propose(ctx context.Context, cmd store.Command) (store.Result, error) {
	return l.node.Propose(ctx, cmd)
}
func (l apiLedger) Leading() bool { return l.node.Leading() }

// forwardLedger is the forwarder's view: reads from the store, proposals
// and read barriers through the cluster.
type forwardLedger struct {
	*store.Store
	node *cluster.Node
}

func (l forwardLedger) ReadIndex(ctx context.Context) error { return l.node.ReadIndex(ctx) }

func (l forwardLedger) Propose(ctx context.Context, c store.Command) (store.Result, error) {
	return l.node.Propose(ctx, c)
}

// closed reports whether ch is closed.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// newAuth loads the ops API's token signing keys (making the default one
// in the data dir on first start) and builds the authorization server.
func newAuth(cfg config.File, st *store.Store, reg prometheus.Registerer, log *slog.Logger) (*oauth.Server, error) {
	keys := cfg.Ops.Auth.SigningKeys
	if len(keys) == 1 && keys[0] == filepath.Join(cfg.DataDir, config.DefaultSigningKeyFile) {
		made, err := oauth.GenerateKeyFile(keys[0])
		if err != nil {
			return nil, err
		}
		if made {
			log.Info("oauth: made a token signing key", "file", keys[0])
		}
	}
	ks, err := oauth.LoadKeys(keys)
	if err != nil {
		return nil, err
	}
	return oauth.NewServer(cfg.Ops.Auth, ks, st.Directory, log, reg)
}

// webhooks is the running sender and what the API's routes need.
type webhooks struct {
	sender *webhook.Sender
	api    *api.Webhooks
}

// startWebhooks loads the webhook KEK (making the demo's under the data
// dir on first start) and starts the sender; nil when webhooks are off.
func startWebhooks(cfg config.File, st *store.Store, node *cluster.Node, reg prometheus.Registerer, log *slog.Logger) (*webhooks, error) {
	wc := cfg.Webhooks
	if !wc.Enabled {
		log.Info("webhooks off (webhooks.enabled)")
		return nil, nil
	}
	if wc.KEKFile == filepath.Join(cfg.DataDir, config.DefaultWebhookKEKFile) {
		made, err := webhook.GenerateKEKFile(wc.KEKFile)
		if err != nil {
			return nil, err
		}
		if made {
			log.Info("made a webhook key-encryption key", "file", wc.KEKFile)
		}
	}
	kek, err := webhook.LoadKEK(wc)
	if err != nil {
		return nil, err
	}
	if kek == nil {
		return nil, webhook.ErrNoKEK
	}
	s, err := webhook.New(wc, kek, st, node.Propose, node.Leading, log, reg)
	if err != nil {
		return nil, err
	}
	s.Start()
	log.Info("webhooks on", "kek", kek.ID(), "sender", s.String(), "allow_http_hosts", wc.AllowHTTPHosts, "allow_networks", wc.AllowNetworks)
	return &webhooks{sender: s, api: &api.Webhooks{KEK: kek, Guard: webhook.NewGuard(wc), Propose: node.Propose, Outbox: st}}, nil
}

// reloadLanes re-reads the config file and gives each running lane its
// new allowlist and TLS files (certificate rotation without a restart;
// established connections stay): on SIGHUP and POST /v1/lanes/reload. A
// lane whose new settings do not load keeps its old ones; the error says
// which, and is logged.
func reloadLanes(path string, lanes []*switching.Lane, log *slog.Logger) ([]switching.LaneReload, error) {
	if path == "" {
		err := fmt.Errorf("%w: switchd runs on the embedded demo config (no --config file to reload)", outcome.ErrLaneReload)
		log.Warn("lanes not reloaded", "err", err)
		return nil, err
	}
	f, err := config.Load(path)
	if err == nil {
		// The rules of a start: a file switchd would not start on is not
		// half taken.
		err = f.Switch.Validate()
	}
	if err != nil {
		err = fmt.Errorf("%w: %v", outcome.ErrLaneReload, err)
		log.Error("lanes not reloaded: config does not load", "err", err)
		return nil, err
	}
	res, err := switching.ReloadLanes(lanes, f.Switch.Lanes)
	if err != nil {
		log.Error("lanes reloaded, some kept their old settings", "err", err)
	}
	return res, err
}

// tuneRuntime sets the collector's GOGC from gc_percent, and gives the Go
// scheduler one more P than it would take when pebble's background threads
// run at a lowered priority
// (store.background_nice): such a thread keeps its P while the kernel
// prefers other threads, and without a spare P the request path would be
// one P short for the length of every flush and compaction. Measured on
// the 2-core machine: 3-node p99 at 5,000/s 21–27 ms with the nice value
// alone, 16–21 ms with the extra P (docs/BENCHMARKS.md). An explicit
// GOGC and GOMAXPROCS in the environment win.
func tuneRuntime(cfg config.File, log *slog.Logger) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(cfg.GCPercent)
	}
	if cfg.Store.BackgroundNice == 0 || os.Getenv("GOMAXPROCS") != "" {
		return
	}
	n := runtime.GOMAXPROCS(0) + 1
	runtime.GOMAXPROCS(n)
	log.Info("GOMAXPROCS raised by one for pebble's low-priority background threads", "gomaxprocs", n,
		"background_nice", cfg.Store.BackgroundNice)
}

// run starts the components in dependency order, waits for ctx, and stops
// them in reverse: ops → lanes (answer what is in flight) → housekeeping →
// raft → pebble.
func run(ctx context.Context, cfg config.File, log *slog.Logger) error {
	log.Info("starting switchd", "data_dir", cfg.DataDir, "node_id", cfg.Cluster.NodeID,
		"cluster", fmt.Sprintf("%+v", cfg.Cluster), "switch_timing", fmt.Sprintf("hold_expiry=%s retention=%s zone=%s",
			cfg.Switch.HoldExpiry, cfg.Switch.IdempotencyRetention, cfg.Switch.BusinessDayZone))
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Disk guard (issue 9 item 2): watches free space from before the
	// store opens; the pipeline refuses state changes through it.
	guard, err := startDiskGuard(cfg, log, reg)
	if err != nil {
		return err
	}
	defer guard.Close()

	scfg := cfg.Store
	scfg.Logger = log // the store names itself
	st, err := store.Open(scfg)
	if err != nil {
		return err
	}
	defer st.Close()
	reg.MustRegister(st.Collector())

	node, err := cluster.New(cfg.Cluster, st, log.With("component", "cluster"), reg)
	if err != nil {
		return err
	}
	defer node.Close()

	// A fresh node asks a member to add it; that needs a leader, and a
	// node that cannot join has nothing to serve, so it is bounded here.
	// Nothing else at start waits for a leader or proposes: a restarted
	// member serves (96 until it has a leader, /readyz 503 until it is
	// ready) instead of exiting when its peers are still down.
	if cfg.Cluster.Join != "" && !node.HadState() {
		joinCtx, cancel := context.WithTimeout(ctx, joinTimeout)
		log.Info("joining the cluster", "via", cfg.Cluster.Join)
		err := ops.RequestJoin(joinCtx, cfg.Cluster.Join, cfg.Cluster.NodeID, cfg.Cluster.RaftAddr, cfg.Cluster.JoinCredentials)
		cancel()
		if err != nil {
			return err
		}
	}
	// Business days: the leader closes the open day at the cutover.
	cal, err := settle.NewCalendar(cfg.Settle.Zone, cfg.Settle.Cutover)
	if err != nil {
		return err
	}
	days := settle.NewDays(cal, st, node, log.With("component", "settle"), nil)
	days.OnlyWhen(node.Leading)
	core, err := payment.NewCore(cfg.Switch.Config, node, st, st.Directory, log.With("component", "payment"), nil)
	if err != nil {
		return err
	}
	core.GuardDisk(guard, st) // a full disk fails closed
	defer handOverWhenShort(guard, node, log.With("component", "disk"))()
	pipe := switching.NewPipeline(core, log.With("component", "switch"))
	// The KEK unwraps partners' MAC keys on the lanes and wraps new ones
	// in ops; without one, MAC partners are declined 96 here.
	kek, err := mac.LoadKEK(cfg.MAC)
	if err != nil {
		return err
	}
	if kek != nil {
		log.Info("MAC key-encryption key loaded", "kek", kek.ID())
		pipe.UseKEK(kek)
	} else {
		log.Info("no MAC key-encryption key (mac.kek_file, mac.kek_env): partners that require a MAC are declined 96 on this node")
	}
	// Requests routed off-us (a destination's BIN or route) go to their
	// ISO 8583 hosts; closed after the lanes that use it (defers run in
	// reverse).
	fwd, err := forward.New(cfg.Forward, forwardLedger{st, node}, kek, forward.Options{
		Logger: log.With("component", "forward"), Leading: node.Leading})
	if err != nil {
		return err
	}
	defer fwd.Close()
	reg.MustRegister(forward.NewCollector(fwd, st))
	core.UseForwarder(fwd)
	// Seeding belongs to the node that bootstraps: in the background,
	// retried until a leader takes it, and a no-op once the seeds exist
	// (partners, agents and routes only ever seed a brand-new cluster).
	// On a fresh ledger the calendar's day opens before the opening
	// balances are posted (else the first posting's clock date would,
	// cutover or not). Every other node only compares its config's
	// partners and routes with the replicated ones, once caught up.
	ready := func() bool { return node.Ready() }
	seeds := cfg.Seeds()
	if cfg.Cluster.Bootstrap && cfg.Cluster.Join == "" {
		seeder := core.StartSeeder(seeds, st, func(ctx context.Context) error {
			_, err := days.Tick(ctx)
			return err
		}, log.With("component", "seed"))
		defer seeder.Close()
		// The first admin client, made once for a new cluster (a no-op
		// when it has clients); stopped with ctx, waited for before the
		// node closes. /readyz waits for it, so that the credentials file
		// exists once the node says it is ready.
		bctx, bcancel := context.WithCancel(ctx)
		bdone := make(chan struct{})
		go func() {
			defer close(bdone)
			olog := log.With("component", "oauth")
			if err := oauth.Bootstrap(bctx, cfg.Ops.Auth.BootstrapCredentials, st.Directory, node.Propose, olog); err != nil && bctx.Err() == nil {
				log.Error("oauth: bootstrap failed", "err", err)
			}
			for _, id := range cfg.Ops.Auth.BootstrapPartnerClients {
				if err := oauth.BootstrapPartner(bctx, partnerCredentials(cfg, id), id, st.Directory, node.Propose, olog); err != nil && bctx.Err() == nil {
					log.Error("oauth: partner client not made", "client", id, "err", err)
				}
			}
		}()
		defer func() { bcancel(); <-bdone }()
		ready = func() bool { return node.Ready() && seeder.Done() && closed(bdone) }
	} else {
		check := core.StartDirectoryCheck(seeds, st, log.With("component", "seed"))
		defer check.Close()
	}
	hk := switching.NewHousekeeper(cfg.Switch, node, log.With("component", "housekeeping"), nil)
	defer hk.Close()

	// File jobs (settlements, statements, reconciliations) run one at a
	// time in the background.
	cutover := settle.StartCutover(days, cfg.Settle.CheckInterval)
	defer cutover.Close()
	settlement, err := settle.New(cfg.Settle, st, days, log.With("component", "settle"))
	if err != nil {
		return err
	}
	defer settlement.Close()

	metrics := switching.NewMetrics(reg)
	// Lane refusals reach the audit chain through the cluster; closed
	// after the lanes (defers run in reverse), before raft.
	refusals, err := switching.NewRefusalAudit(cfg.Switch.RefusalAudit, node, log.With("component", "refusal-audit"), metrics)
	if err != nil {
		return err
	}
	defer refusals.Close()
	var lanes []*switching.Lane
	defer func() {
		for _, l := range lanes {
			l.Close()
		}
	}()
	for _, lc := range cfg.Switch.Lanes {
		l, err := switching.NewLane(lc, pipe, cfg.Switch.RequestTimeout, log.With("component", "lane"), metrics)
		if err != nil {
			return err
		}
		l.AuditRefusals(refusals)
		if err := l.Start(); err != nil {
			return err
		}
		lanes = append(lanes, l)
	}

	// Ops starts last so that /readyz answering means the lanes listen too.
	auth, err := newAuth(cfg, st, reg, log.With("component", "oauth"))
	if err != nil {
		return err
	}
	srv, err := ops.New(cfg.Ops, st, core, readyNode{node, ready}, auth, reg, log.With("component", "ops"))
	if err != nil {
		return err
	}
	srv.HandleLanes(func() any {
		out := make([]switching.LaneStatus, 0, len(lanes))
		for _, l := range lanes {
			out = append(out, l.Status())
		}
		return out
	})
	srv.HandleLaneReload(cfg.Cluster.NodeID, func() (any, error) {
		res, err := reloadLanes(cfg.Path, lanes, log)
		if res == nil {
			return nil, err // no lane was tried
		}
		return res, err
	})
	srv.HandleMACKeys(kek)
	srv.HandleForwarding(st, func() any { return fwd.Stats() })
	// Billers take back payments they approved through a signed call
	// (api/billers.go), and the demo's biller checks the signature of
	// ours: the demo makes both secrets on first start.
	for _, p := range cfg.DemoSecretFiles() {
		made, err := api.GenerateWebhookSecretFile(p)
		if err != nil {
			return err
		}
		if made {
			log.Info("made a demo biller signing secret", "file", p)
		}
	}
	srv.HandleBillerReversals(api.BillerReversalPattern, api.NewBillerReversals(forwardLedger{st, node}, log.With("component", "billers")))
	srv.HandleSettlement(settlement)
	srv.HandleRecon(settlement)
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() {
		sctx, c := context.WithTimeout(context.Background(), shutdownTimeout)
		defer c()
		srv.Close(sctx)
	}()
	// Webhooks: the leader delivers the replicated outbox; closed before
	// raft (defers run in reverse), after the API that proposes endpoints.
	hooks, err := startWebhooks(cfg, st, node, reg, log.With("component", "webhook"))
	if err != nil {
		return err
	}
	if hooks != nil {
		defer hooks.sender.Close()
	}
	// The partner API: the same core as the lanes, over HTTPS.
	var apiSrv *api.Server
	var apiCA string
	if cfg.API.Listen != "" {
		acfg := cfg.API
		if acfg.TLS == nil {
			t, ca, err := api.DevTLS(filepath.Join(cfg.DataDir, "api"))
			if err != nil {
				return err
			}
			acfg.TLS, apiCA = &t, ca
		}
		if apiSrv, err = api.New(acfg, core, apiLedger{st, node}, auth, log.With("component", "api")); err != nil {
			return err
		}
		apiSrv.HandleStatements(settlement)
		if hooks != nil {
			apiSrv.HandleWebhooks(hooks.api)
		}
		if err := apiSrv.Start(); err != nil {
			return err
		}
		defer func() {
			sctx, c := context.WithTimeout(context.Background(), shutdownTimeout)
			defer c()
			apiSrv.Close(sctx)
		}()
	}

	fmt.Fprintf(os.Stderr, "\nswitchd %s is up (data in %s)\n", cfg.Cluster.NodeID, cfg.DataDir)
	for _, l := range lanes {
		fmt.Fprintf(os.Stderr, "  ISO 8583 lane %-8s %s\n", l.Name(), l.Addr())
	}
	fmt.Fprintf(os.Stderr, "  ops HTTP           http://%s  (/healthz /readyz /metrics /v1/accounts /v1/transfers)\n", srv.Addr())
	fmt.Fprintf(os.Stderr, "  ops credentials    %s  (the first admin client's, 0600; switchctl reads it)\n", cfg.Ops.Auth.BootstrapCredentials)
	if apiSrv != nil {
		fmt.Fprintf(os.Stderr, "  partner API        https://%s  (/v1/openapi.json, /v1/docs)\n", apiSrv.Addr())
		if apiCA != "" {
			fmt.Fprintf(os.Stderr, "  partner API CA     %s  (development CA: curl --cacert)\n", apiCA)
		}
		for _, id := range cfg.Ops.Auth.BootstrapPartnerClients {
			fmt.Fprintf(os.Stderr, "  partner client     %s  %s  (switchctl token --client %s)\n", id, partnerCredentials(cfg, id), id)
		}
	}
	fmt.Fprintf(os.Stderr, "  raft               %s\n", cfg.Cluster.RaftAddr)
	if len(lanes) > 0 {
		// No PAN here: this lands in log files (README "Demo data" has the cards).
		fmt.Fprintf(os.Stderr, "\nTry: go run ./cmd/switchctl iso send --addr %s --mti 0200 --pan <a demo card, README \"Demo data\"> --amount 12.34\n\n", lanes[0].Addr())
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
		case <-st.Failed():
			// Issue 9 item 2: the ledger could not write (e.g. the disk is
			// full) and applies nothing more. Stop in order so that what is
			// in flight is answered (96), and exit non-zero: a restart, once
			// there is space, replays the raft log and loses nothing.
			log.Error("ledger write failed: shutting down; restart once there is space", "err", st.Err())
			return st.Err()
		case <-hup:
			reloadLanes(cfg.Path, lanes, log) // logged there; nobody to answer
			continue
		}
		break
	}
	log.Info("shutting down")
	return nil
}
