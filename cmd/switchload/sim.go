package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/sim"
	"github.com/switchd/switchd/specs"
	"github.com/switchd/switchd/webhook"
)

const simUsage = `usage: switchload sim issuer [flags]   ISO 8583 issuer host simulator
       switchload sim biller [flags]   HTTP biller simulator
Both serve a control API: POST /mode {"mode":"timeout"}, GET /mode, GET /stats, POST /reset
(the biller also POST /reversals {"payment_id":…}). -h after the kind lists its flags.`

// runSim is `switchload sim …`: it starts one simulator and its control
// API and runs until ctx ends (SIGINT/SIGTERM), then stops the control API
// first (no mode change during shutdown) and the simulator second.
func runSim(ctx context.Context, args []string, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "issuer" && args[0] != "biller") {
		fmt.Fprintln(stderr, simUsage)
		return 2
	}
	kind, args := args[0], args[1:]
	fs := flag.NewFlagSet("switchload sim "+kind, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		ctl     sim.ControlConfig
		bh      *sim.Behavior
		seed    *uint64
		decline *string
		tlsF    sim.TLSFiles
		debug   bool
	)
	var icfg sim.IssuerConfig
	var bcfg sim.BillerConfig
	var secretFile, reqSecretFile, reqTokenFile string
	switch kind {
	case "issuer":
		icfg, ctl = sim.DefaultIssuerConfig(), sim.DefaultControlConfig()
		bh, seed, decline = &icfg.Behavior, &icfg.Seed, &icfg.DeclineCode
		fs.StringVar(&icfg.Listen, "listen", icfg.Listen, "ISO 8583 `host:port`")
		fs.StringVar(&icfg.Dialect, "dialect", icfg.Dialect, "ISO 8583 dialect ("+strings.Join(specs.Names(), ", ")+")")
		fs.Func("header", "length header (binary2, ascii4, bcd2; default binary2)", func(s string) error {
			icfg.Header = codec.Header(s)
			return nil
		})
		fs.StringVar(&icfg.AdviceRefusedCode, "advice-refused-code", icfg.AdviceRefusedCode, "field 39 of a declined advice (0220, 0420, 0421)")
		fs.BoolVar(&icfg.RequireSignOn, "require-sign-on", false, "answer financial messages 91 until the connection signed on")
		fs.IntVar(&icfg.ConnsMax, "conns-max", icfg.ConnsMax, "open connections at most")
		fs.DurationVar(&icfg.IdleTimeout, "idle-timeout", 0, "close a connection silent this long (0: never)")
	case "biller":
		bcfg, ctl = sim.DefaultBillerConfig(), sim.DefaultBillerControlConfig()
		bh, seed, decline = &bcfg.Behavior, &bcfg.Seed, &bcfg.DeclineCode
		fs.StringVar(&bcfg.Listen, "listen", bcfg.Listen, "HTTP `host:port` of POST /payments")
		fs.StringVar(&bcfg.ReversalURL, "reversal-url", "", "`URL` biller-side reversals are sent to (switchd's endpoint)")
		fs.StringVar(&secretFile, "webhook-secret-file", "", "`file` holding the reversal signing secret (raw, or Standard Webhooks whsec_<base64>)")
		fs.IntVar(&bcfg.AttemptsMax, "attempts", bcfg.AttemptsMax, "delivery attempts of one reversal at most")
		fs.DurationVar(&bcfg.BackoffMin, "backoff-min", bcfg.BackoffMin, "first retry delay of a reversal (doubles)")
		fs.DurationVar(&bcfg.BackoffMax, "backoff-max", bcfg.BackoffMax, "longest retry delay of a reversal")
		fs.StringVar(&reqSecretFile, "request-signing-secret-file", "", "`file` holding the secret the switch signs POST /payments with (its destination's signing_secret_env; raw or whsec_<base64>): unsigned or badly signed calls get 401")
		fs.StringVar(&reqTokenFile, "request-token-file", "", "`file` holding the bearer token POST /payments must carry (the destination's token_env): others get 401")
	}
	fs.StringVar(&ctl.Listen, "control", ctl.Listen, "control API `host:port` (loopback unless --control-remote)")
	fs.BoolVar(&ctl.AllowRemote, "control-remote", false, "let the unauthenticated control API listen on a non-loopback address")
	fs.Func("mode", "starting mode: approve, decline, timeout, down, late (default approve)", func(s string) error {
		bh.Mode = sim.Mode(s)
		return nil
	})
	fs.Func("latency", "delay of every answer, e.g. 20ms", durationFlag(&bh.Latency))
	fs.Func("late-delay", "how long mode late waits (default 35s)", durationFlag(&bh.LateDelay))
	fs.Float64Var(&bh.DeclineRatio, "decline-ratio", 0, "share of requests declined (0..1)")
	fs.Float64Var(&bh.TimeoutRatio, "timeout-ratio", 0, "share of requests never answered (0..1)")
	fs.Float64Var(&bh.DisconnectRatio, "disconnect-ratio", 0, "share of requests answered by closing the connection (0..1)")
	fs.Uint64Var(seed, "seed", *seed, "seed of the ratio draws")
	fs.StringVar(decline, "decline-code", *decline, "response code of a decline")
	fs.StringVar(&tlsF.CertFile, "tls-cert", "", "serve TLS with this certificate `file` (PEM)")
	fs.StringVar(&tlsF.KeyFile, "tls-key", "", "the certificate's key `file` (PEM)")
	fs.StringVar(&tlsF.ClientCAFile, "tls-client-ca", "", "CA `file` client certificates must chain to (mutual TLS: a client without one is refused)")
	fs.BoolVar(&debug, "debug", false, "log every answer (card numbers masked)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "switchload sim %s: unexpected argument %q\n", kind, fs.Arg(0))
		return 2
	}
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	var tlsFiles *sim.TLSFiles
	if tlsF != (sim.TLSFiles{}) {
		tlsFiles = &tlsF
	}
	// Config errors are usage errors (exit 2); they are checked before
	// anything listens.
	if err := ctl.Validate(); err != nil {
		fmt.Fprintln(stderr, "switchload sim:", err)
		return 2
	}
	var (
		simulator io.Closer
		control   *sim.Control
		err       error
	)
	switch kind {
	case "issuer":
		icfg.TLS = tlsFiles
		if err = icfg.Validate(); err != nil {
			fmt.Fprintln(stderr, "switchload sim:", err)
			return 2
		}
		var s *sim.Issuer
		if s, err = sim.NewIssuer(icfg, log); err == nil {
			simulator = s
			if control, err = sim.StartIssuerControl(ctl, s, log); err != nil {
				s.Close()
			}
		}
	case "biller":
		bcfg.TLS = tlsFiles
		if secretFile != "" {
			if bcfg.WebhookSecret, err = webhook.ReadSecretFile(secretFile); err != nil {
				fmt.Fprintln(stderr, "switchload sim:", err)
				return 2
			}
		}
		if reqSecretFile != "" {
			if bcfg.RequestSigningSecret, err = webhook.ReadSecretFile(reqSecretFile); err != nil {
				fmt.Fprintln(stderr, "switchload sim:", err)
				return 2
			}
		}
		if reqTokenFile != "" {
			tok, err := os.ReadFile(reqTokenFile)
			if err != nil {
				fmt.Fprintln(stderr, "switchload sim: request token:", err)
				return 2
			}
			if bcfg.RequestToken = strings.TrimSpace(string(tok)); bcfg.RequestToken == "" {
				fmt.Fprintf(stderr, "switchload sim: request token file %s is empty\n", reqTokenFile)
				return 2
			}
		}
		if err = bcfg.Validate(); err != nil {
			fmt.Fprintln(stderr, "switchload sim:", err)
			return 2
		}
		var b *sim.Biller
		if b, err = sim.NewBiller(bcfg, log); err == nil {
			simulator = b
			if control, err = sim.StartBillerControl(ctl, b, log); err != nil {
				b.Close()
			}
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "switchload sim:", err)
		return 1
	}
	<-ctx.Done()
	log.Info("simulator stopping")
	control.Close()
	simulator.Close()
	return 0
}

func durationFlag(d *sim.Duration) func(string) error {
	return func(s string) error {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = sim.Duration(v)
		return nil
	}
}
