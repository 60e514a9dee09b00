// Command switchload drives a switchd lane with a realistic ISO 8583 mix —
// purchases, authorizations with completions and reversals, repeats and
// balance inquiries — measures throughput and latency, and verifies
// afterwards that every load card's balances moved by exactly what the
// approved answers imply.
//
//	switchload --duration 30s                   # closed loop, 8 conns x 64 inflight
//	switchload --rate 5000 --duration 1m        # open loop at 5000 requests/s
//	switchload --mix purchase=90,repeat=10 --json run.json
//	switchload --addr 127.0.0.1:8583,127.0.0.1:8584,127.0.0.1:8585 --conns 9   # 3 conns per node
//	switchload webhook-receiver --listen 127.0.0.1:9101 --secret whsec_… --count 2   # a partner's webhook endpoint
//	switchload sim issuer --listen 127.0.0.1:9583 --control 127.0.0.1:9090  # issuer host simulator
//	switchload sim biller --listen 127.0.0.1:9480 --control 127.0.0.1:9091  # biller simulator
//
// Ctrl-C ends the load early; the run still drains, verifies and prints
// its summary. A second Ctrl-C stops at once.
//
// Exit status: 0 when the run found nothing wrong, 1 on a verification
// failure, a repeat mismatch or an error, 2 on a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain is main with its outputs and exit code made testable.
func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "webhook-receiver" {
		return runWebhookReceiver(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "sim" {
		// A simulator runs until the first signal, then stops in order.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runSim(ctx, args[1:], stderr)
	}
	cfg, err := parseFlags("switchload", args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	// The first signal ends the load phase; the run still drains, verifies
	// and prints its summary. Once it arrived, signals get their default
	// action again, so a second one stops the process at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop)
	sum, err := run(ctx, cfg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "switchload:", err)
		if errors.Is(err, ErrUsage) {
			return 2
		}
		return 1
	}
	sum.writeText(stdout)
	if err := writeSummary(cfg.JSONPath, sum, stdout); err != nil {
		fmt.Fprintln(stderr, "switchload:", err)
		return 1
	}
	if !sum.OK {
		return 1
	}
	return 0
}

// writeSummary writes the JSON summary to path ("-": stdout, "": nowhere).
func writeSummary(path string, sum *Summary, stdout io.Writer) error {
	switch path {
	case "":
		return nil
	case "-":
		return sum.writeJSON(stdout)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := sum.writeJSON(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
