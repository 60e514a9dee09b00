// Command switchctl is the operators' command line for switchd: it reads
// accounts, transfers and cluster state through the ops HTTP API, changes
// routes, partners and OTC agents, reads and verifies the audit chain, and
// sends one-off ISO 8583 messages to a lane.
//
//	switchctl iso send --mti 0200 --pan 4111111111111111 --amount 12.34
//	switchctl iso send --mti 0800 --network 301
//	switchctl accounts
//	switchctl accounts card-4111
//	switchctl transfers --account card-4111 --status pending
//	switchctl cluster status --json
//	switchctl routes set r-water --bill-type WATER --settlement-account biller-water --reason "new biller"
//	switchctl routes explain --bill-type WATER --payer-type bank_customer --partner demo-acquirer
//	switchctl routes export --out routes.json && switchctl routes import routes.json --reason "quarterly review"
//	switchctl partners suspend demo-acquirer --reason "fraud alert"
//	switchctl agents settle demo-acquirer:TERM0001 --amount 120.00 --reference SLIP-0042
//	switchctl audit list --object route/r-water
//	switchctl audit verify
//
// Every ops call carries an OAuth2 access token that switchctl gets from
// the API's token endpoint (auth.go says where it finds the client's
// credentials); the audit chain records the token's client as the actor.
//
// Exit status: 0 success, 1 failure (unreachable switch, API error, a
// broken audit chain), 2 usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// errUsage marks errors in how switchctl was called; they exit 2.
var errUsage = errors.New("usage")

func usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

const usageText = `switchctl: operate a switchd node

  switchctl iso send [flags]          send one ISO 8583 message and print the answer
      --addr 127.0.0.1:8583 --mti 0200 --pan PAN --amount 12.34 [--currency USD]
      [--pc 000000] [--stan N] [--rrn X] [--acquirer 100001] [--terminal TERM0001]
      [--original-stan N --original-time MMDDhhmmss --original-mti 0100] [--actual 6.00]
      [--field 48=BT=ELEC ...] [--network 301] [--dialect iso87ascii] [--header binary2]
      [--expect 00]                   exit 1 unless field 39 of the answer is that code
      [--tls-ca CA.pem [--cert C.pem --key K.pem]] [--sign-on]   a TLS lane (mutual TLS), signed on first
  switchctl accounts [ID] [--after ID --limit N]
  switchctl accounts create ID --kind K [--currency USD] [--partner P] [--pan PAN]
      [--opening 10.00 --funded-by A] [--floor -50.00 | --unlimited]
  switchctl transfers [--account A] [--partner P] [--day YYYY-MM-DD] [--status S] [--payer-type T]
  switchctl cluster status                                   every member: role, term, indexes, lag, state hash
  switchctl cluster join --id ID --raft-addr HOST:PORT       add a running node: a non-voter, a voter once caught up
  switchctl cluster remove ID
  switchctl cluster transfer-leadership [--to ID]
  switchctl cluster snapshot
  switchctl day status | close [--day YYYY-MM-DD]
  switchctl settlement pull --day D --partner P [--out DIR] [--format csv|json|all]
  switchctl statement pull --day D --account A [--out DIR] [--format mt940|camt053|all]
  switchctl recon run --day D --partner P --partner-file F --biller-file F [--biller DEST|ACCOUNT]
  switchctl recon status ID | breaks ID [--code B2] [--csv]
  switchctl recon assign ID BREAK --to WHO | resolve ID BREAK --note TEXT
  switchctl routes list | get ID | export [--out FILE]
  switchctl routes set ID [--bill-type B] [--payer-type P] [--partner P] [--destination ledger]
      [--settlement-account A] --reason TEXT         only the flags given change; a new route is created
  switchctl routes delete ID --reason TEXT
  switchctl routes import FILE --reason TEXT [--base-version N]   replace the table with an export file
  switchctl routes explain [--bill-type B] [--payer-type P] [--partner P]   which rule routes such a request, and why
  switchctl partners list | get ID | suspend ID --reason TEXT | resume ID --reason TEXT
  switchctl partners set ID [--acquirer-ids A,B] [--lanes L] [--settlement-account A]
      [--withdrawal-max 500.00 [--currency USD]] [--payer-type T] [--payer-types T,U] [--allow CIDR,...]
      [--cert-pins SHA256@NOT-AFTER,... | --add-cert CERT.pem [--not-after T] | --remove-cert-pin SHA256] --reason TEXT
  switchctl agents list | get PARTNER:TERMINAL
  switchctl agents set PARTNER:TERMINAL [--currency USD] [--cash-limit 500.00] [--reason TEXT]
  switchctl agents settle PARTNER:TERMINAL --amount 12.34 [--currency USD] --reference SLIP
  switchctl lanes status                                     this node's lanes: transport, allowlist, connections by partner, signed on, certificates and expiry
  switchctl lanes reload                                     this node re-reads its config: lane allowlists and TLS files (as SIGHUP), no restart
  switchctl audit list [--object route/ID] [--from T] [--to T] [--after SEQ] | verify
  switchctl token                                            print an access token (for curl -H "Authorization: Bearer ...")
  switchctl clients list | get ID | disable ID | enable ID
  switchctl clients create ID --scopes S,T [--certs X5T,... | --cert-files PEM,...] [--no-secret] [--out FILE]
  switchctl clients rotate-secret ID [--overlap 24h] [--out FILE]
  switchctl clients update ID --scopes S,T [--certs ... | --cert-files ...] [--overlap 24h]
  switchctl destinations list | get ID                        ops-managed destinations (get prints the JSON put reads back)
  switchctl destinations put ID --file F --reason TEXT       create or replace one from JSON or YAML (audited)
  switchctl destinations disable|enable ID --reason TEXT     disabled: its requests are answered 91 at once, nothing sent
  switchctl destinations delete ID --reason TEXT             refused while a route names it
  switchctl destinations status                              this node's host connections: ready, circuit, requests, timeouts, latency
  switchctl saf list [--state queued|delivered|expired|dropped] [--dest D] [--after ID]   the store-and-forward queue
  switchctl saf retry ID --reason TEXT | drop ID --reason TEXT   an advice back in the queue, or given up (audited)
  switchctl forwards show ID                                 a forwarded request (F…) and what became of it

  ops commands take --ops http://127.0.0.1:8080 and --json (raw JSON), and authenticate with
  --credentials FILE (default $SWITCHCTL_CREDENTIALS, else data/ops-credentials.json, which
  switchd writes on first start), or $SWITCHCTL_CLIENT_ID + $SWITCHCTL_CLIENT_SECRET, or --token.
  https: --ops-ca CA.pem [--ops-cert C.pem --ops-key K.pem [--client-id ID]].
  Run "switchctl <command> -h" for every flag of a command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return 2
	}
	var err error
	switch args[0] {
	case "iso":
		if len(args) < 2 || args[1] != "send" {
			err = usagef("want \"iso send\"")
			break
		}
		err = isoSend(args[2:], stdout)
	case "accounts":
		err = accountsCmd(ctx, args[1:], stdout)
	case "transfers":
		err = transfersCmd(ctx, args[1:], stdout)
	case "cluster":
		err = clusterCmd(ctx, args[1:], stdout)
	case "day":
		err = dayCmd(ctx, args[1:], stdout)
	case "settlement", "statement":
		err = pullCmd(ctx, args[0], args[1:], stdout)
	case "recon":
		err = reconCmd(ctx, args[1:], stdout)
	case "routes":
		err = routesCmd(ctx, args[1:], stdout)
	case "partners":
		err = partnersCmd(ctx, args[1:], stdout)
	case "agents":
		err = agentsCmd(ctx, args[1:], stdout)
	case "lanes":
		err = lanesCmd(ctx, args[1:], stdout)
	case "audit":
		err = auditCmd(ctx, args[1:], stdout)
	case "token":
		err = tokenCmd(ctx, args, stdout)
	case "clients":
		err = clientsCmd(ctx, args[1:], stdout)
	case "destinations":
		err = destinationsCmd(ctx, args[1:], stdout)
	case "saf":
		err = safCmd(ctx, args[1:], stdout)
	case "forwards":
		err = forwardsCmd(ctx, args[1:], stdout)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usageText)
		return 0
	default:
		err = usagef("unknown command %q", args[0])
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "switchctl:", err)
		fmt.Fprintln(stderr, `run "switchctl help" for the commands, "switchctl <command> -h" for their flags`)
		return 2
	default:
		fmt.Fprintln(stderr, "switchctl:", err)
		return 1
	}
}

// reasonFlag registers --reason, which every audited change requires.
func reasonFlag(fs *flag.FlagSet) *string {
	return fs.String("reason", "", "why (required: the audit chain records it)")
}

// oneID parses a command about one object: one positional id (of an
// object, for the usage error).
func oneID(fs *flag.FlagSet, args []string, stdout io.Writer, object string) (string, error) {
	pos, err := parseCmd(fs, args, stdout)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", usagef("%s: want one %s", strings.TrimPrefix(fs.Name(), "switchctl "), object)
	}
	return pos[0], nil
}

// oneWithReason is oneID for a change, which needs a --reason
// (reasonFlag) too.
func oneWithReason(fs *flag.FlagSet, args []string, stdout io.Writer, object string, reason *string) (string, error) {
	id, err := oneID(fs, args, stdout, object+" and --reason")
	if err == nil && *reason == "" {
		err = usagef("%s: want one %s and --reason", strings.TrimPrefix(fs.Name(), "switchctl "), object)
	}
	return id, err
}

// parseCmd parses a command's flags. On -h it prints them to stdout and
// returns flag.ErrHelp (run exits 0); other flag errors are usage errors.
func parseCmd(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, error) {
	fs.SetOutput(io.Discard) // errors are reported once, by run
	pos, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fmt.Fprintf(stdout, "flags of %s:\n", fs.Name())
		fs.PrintDefaults()
		return nil, err
	}
	if err != nil {
		return nil, usagef("%s: %v", fs.Name(), err)
	}
	return pos, nil
}

// parseArgs parses flags that may come before or after positional
// arguments ("accounts card-4111 --json") and returns the positionals.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
