package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/switchd/switchd/host"
)

// Forwarding (issue 13): the host connections of the node asked, the
// replicated store-and-forward queue, and forwarded requests.
//
//	switchctl destinations status (the others: destinations.go)
//	switchctl saf list [--state S] [--dest D] [--after ID] [--limit N]
//	switchctl saf retry|drop ID --reason R
//	switchctl forwards show ID

// destStatus is a destination's line of GET /v1/destinations/status:
// the host client's own counters.
type destStatus = host.Stats

type safEntry struct {
	ID          string         `json:"id"`
	Destination string         `json:"dest"`
	Partner     string         `json:"partner"`
	MTI         string         `json:"mti"`
	Fields      map[int]string `json:"fields"`
	MaskedPAN   string         `json:"masked_pan"`
	Amount      int64          `json:"amount"`
	Currency    string         `json:"currency"`
	State       string         `json:"state"`
	Attempts    int            `json:"attempts"`
	Sends       int            `json:"sends"`
	LastRC      string         `json:"last_rc"`
	LastError   string         `json:"last_error"`
	CreatedAt   int64          `json:"created_at"`
	ExpiresAt   int64          `json:"expires_at"`
}

// quantile is the upper bound of the bucket holding quantile q of a
// destination's answers ("-" before any).
func quantile(s destStatus, q float64) string {
	var total uint64
	for _, n := range s.LatencyBuckets {
		total += n
	}
	if total == 0 {
		return "-"
	}
	want, cum := uint64(q*float64(total)+0.5), uint64(0)
	for i, n := range s.LatencyBuckets {
		cum += n
		if cum >= want && cum > 0 {
			if i >= len(s.LatencyBoundsSeconds) {
				return ">" + time.Duration(s.LatencyBoundsSeconds[len(s.LatencyBoundsSeconds)-1]*float64(time.Second)).String()
			}
			return "≤" + time.Duration(s.LatencyBoundsSeconds[i]*float64(time.Second)).String()
		}
	}
	return "-"
}

// destinationsStatus is `destinations status`.
func destinationsStatus(ctx context.Context, o *opsFlags, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	if err := noArgs(fs, args, stdout); err != nil {
		return err
	}
	body, err := o.get(ctx, "/v1/destinations/status", nil)
	if err != nil || o.json {
		return jsonOr(err, stdout, body)
	}
	var page struct {
		Destinations []destStatus `json:"destinations"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return fmt.Errorf("decoding destination status: %w", err)
	}
	t := newTable("DESTINATION", "KIND", "READY", "CONNS", "CIRCUIT", "SENT", "ANSWERED", "TIMEOUTS", "LOST", "UNAVAILABLE", "LATE", "P50", "P99").
		alignRight("CONNS", "SENT", "ANSWERED", "TIMEOUTS", "LOST", "UNAVAILABLE", "LATE")
	for _, s := range page.Destinations {
		circuit := "closed"
		if s.CircuitOpen {
			circuit = "open"
		}
		conns := fmt.Sprintf("%d/%d", s.ConnectionsUp, s.PoolSize)
		if s.PoolSize == 0 {
			conns = "-" // an http biller: a connection per call, no pool
		}
		t.add(s.Name, orDash(s.Kind), strconv.FormatBool(s.Ready), conns, circuit,
			strconv.FormatUint(s.Sent, 10), strconv.FormatUint(s.Answered, 10), strconv.FormatUint(s.Timeouts, 10),
			strconv.FormatUint(s.Lost, 10), strconv.FormatUint(s.Unavailable, 10), strconv.FormatUint(s.Late, 10),
			quantile(s, 0.5), quantile(s, 0.99))
	}
	return t.write(stdout)
}

func safCmd(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("saf: want list, retry or drop")
	}
	var o opsFlags
	fs := flag.NewFlagSet("switchctl saf "+args[0], flag.ContinueOnError)
	o.register(fs)
	switch args[0] {
	case "list":
		state := fs.String("state", "", "only entries in this state (queued, delivered, expired, dropped)")
		dest := fs.String("dest", "", "only entries of this destination")
		pg := pageFlags(fs, "list entries after this id (paging)", "entries per page read (API default 100, at most 1000)")
		if err := noArgs(fs, args, stdout); err != nil {
			return err
		}
		q := url.Values{}
		pg.set(q)
		body, err := o.get(ctx, "/v1/saf", q)
		if err != nil || o.json {
			return jsonOr(err, stdout, body)
		}
		var page struct {
			Entries []safEntry `json:"entries"`
			Next    string     `json:"next"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return fmt.Errorf("decoding the SAF queue: %w", err)
		}
		t := newTable("ID", "DEST", "PARTNER", "MTI", "CARD", "AMOUNT", "CCY", "STATE", "SENDS", "ATTEMPTS", "LAST", "ORIGINAL", "EXPIRES").
			alignRight("AMOUNT", "SENDS", "ATTEMPTS")
		for _, e := range page.Entries {
			if (*state != "" && e.State != *state) || (*dest != "" && e.Destination != *dest) {
				continue
			}
			last := orDash(e.LastRC)
			if e.LastError != "" {
				last = e.LastError
			}
			orig := "-"
			if f90 := e.Fields[90]; len(f90) >= 10 {
				orig = f90[:4] + " stan " + f90[4:10]
			}
			t.add(e.ID, e.Destination, e.Partner, e.MTI, orDash(e.MaskedPAN), money(e.Amount, e.Currency), e.Currency, e.State,
				strconv.Itoa(e.Sends), strconv.Itoa(e.Attempts), last, orig, time.Unix(0, e.ExpiresAt).UTC().Format(time.RFC3339))
		}
		if err := t.write(stdout); err != nil {
			return err
		}
		if page.Next != "" {
			fmt.Fprintf(stdout, "(more: --after %s)\n", page.Next)
		}
		return nil
	case "retry", "drop":
		reason := reasonFlag(fs)
		id, err := oneWithReason(fs, args[1:], stdout, "SAF entry id", reason)
		if err != nil {
			return err
		}
		body, err := o.write(ctx, http.MethodPost, "/v1/saf/"+url.PathEscape(id)+"/"+args[0], map[string]string{"reason": *reason}, opsBodyBytesMax)
		if err != nil || o.json {
			return jsonOr(err, stdout, body)
		}
		var ans struct {
			Entry safEntry `json:"entry"`
		}
		if err := json.Unmarshal(body, &ans); err != nil {
			return fmt.Errorf("decoding SAF entry: %w", err)
		}
		e := ans.Entry
		verb := map[string]string{"retry": "back in the queue", "drop": "dropped"}[args[0]]
		fmt.Fprintf(stdout, "SAF entry %s %s (state %s, %d sends)\n", e.ID, verb, e.State, e.Sends)
		return nil
	}
	return usagef("saf: want list, retry or drop, not %q", args[0])
}

func forwardsCmd(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "show" && args[0] != "get") {
		return usagef("forwards: want show ID")
	}
	var o opsFlags
	fs := flag.NewFlagSet("switchctl forwards show", flag.ContinueOnError)
	o.register(fs)
	id, err := oneID(fs, args[1:], stdout, "forward id (F…)")
	if err != nil {
		return err
	}
	body, err := o.get(ctx, "/v1/forwards/"+url.PathEscape(id), nil)
	if err != nil {
		return err
	}
	return printJSON(stdout, body)
}
