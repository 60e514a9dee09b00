package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/switchd/switchd/store"
)

// Destinations as ops manage them (ops/destinations.go): replicated,
// audited, changed like routes and partners.
//
//	switchctl destinations list | get ID
//	switchctl destinations put ID --file F --reason R     create or replace (JSON or YAML, as `get --json` prints)
//	switchctl destinations disable|enable ID --reason R   a disabled destination is answered 91 at once, nothing sent
//	switchctl destinations delete ID --reason R           refused while a route names it
//	switchctl destinations status                         this node's host connections (forwarding.go)

// destinationFileBytesMax bounds a destination file: a host's settings
// are a few hundred bytes.
const destinationFileBytesMax = 64 << 10

func destinationsCmd(ctx context.Context, args []string, stdout io.Writer) error {
	const want = "want list, get, put, enable, disable, delete or status"
	if len(args) == 0 {
		return usagef("destinations: %s", want)
	}
	var o opsFlags
	fs := flag.NewFlagSet("switchctl destinations "+args[0], flag.ContinueOnError)
	o.register(fs)
	switch args[0] {
	case "status":
		return destinationsStatus(ctx, &o, fs, args, stdout) // forwarding.go
	case "list":
		if err := noArgs(fs, args, stdout); err != nil {
			return err
		}
		body, err := o.get(ctx, "/v1/destinations", nil)
		if err != nil || o.json {
			return jsonOr(err, stdout, body)
		}
		var page struct {
			Destinations []store.Destination `json:"destinations"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return fmt.Errorf("decoding destinations: %w", err)
		}
		t := newTable("ID", "KIND", "STATE", "SETTLEMENT ACCOUNT", "BINS", "TARGET")
		for _, x := range page.Destinations {
			t.add(x.ID, x.Kind, destinationState(x), x.SettlementAccount, orDash(strings.Join(x.BINs, ",")), destinationTarget(x))
		}
		return t.write(stdout)
	case "get":
		id, err := oneID(fs, args[1:], stdout, "destination id")
		if err != nil {
			return err
		}
		body, err := o.get(ctx, "/v1/destinations/"+url.PathEscape(id), nil)
		if err != nil {
			return err
		}
		return printJSON(stdout, body) // the form put reads back
	case "put":
		file := fs.String("file", "", "the destination as JSON or YAML (`FILE`, - for standard input): kind, settlement_account, bins, disabled, iso8583 | http")
		reason := reasonFlag(fs)
		id, err := oneWithReason(fs, args[1:], stdout, "destination id", reason)
		if err != nil {
			return err
		}
		if *file == "" {
			return usagef("destinations put: want --file")
		}
		x, err := readDestination(*file, os.Stdin)
		if err != nil {
			return err
		}
		if x.ID != "" && x.ID != id {
			return usagef("destinations put: the file is destination %q, not %q", x.ID, id)
		}
		return putDestination(ctx, &o, id, x, *reason, stdout)
	case "enable", "disable":
		reason := reasonFlag(fs)
		id, err := oneWithReason(fs, args[1:], stdout, "destination id", reason)
		if err != nil {
			return err
		}
		body, err := o.get(ctx, "/v1/destinations/"+url.PathEscape(id), nil)
		if err != nil {
			return err
		}
		var x store.Destination
		if err := json.Unmarshal(body, &x); err != nil {
			return fmt.Errorf("decoding the destination: %w", err)
		}
		if disable := args[0] == "disable"; x.Disabled == disable {
			if o.json {
				return printJSON(stdout, body)
			}
			fmt.Fprintf(stdout, "destination %s is already %s: nothing changed\n", x.ID, destinationState(x))
			return nil
		}
		x.Disabled = !x.Disabled
		return putDestination(ctx, &o, id, x, *reason, stdout)
	case "delete":
		reason := reasonFlag(fs)
		id, err := oneWithReason(fs, args[1:], stdout, "destination id", reason)
		if err != nil {
			return err
		}
		body, err := o.write(ctx, http.MethodDelete, "/v1/destinations/"+url.PathEscape(id), map[string]string{"reason": *reason}, opsBodyBytesMax)
		if err != nil || o.json {
			return jsonOr(err, stdout, body)
		}
		fmt.Fprintf(stdout, "destination %s deleted\n", id)
		return nil
	}
	return usagef("destinations: unknown command %q (%s)", args[0], want)
}

// readDestination reads a destination file: JSON (as `get --json` prints
// it) or YAML (as in a config file's destinations list), unknown keys
// refused so a misspelt setting is not silently dropped.
func readDestination(name string, stdin io.Reader) (store.Destination, error) {
	var x store.Destination
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return x, usagef("--file: %v", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, destinationFileBytesMax+1))
	if err != nil || len(b) > destinationFileBytesMax {
		return x, usagef("--file %s: unreadable or over %d bytes", name, destinationFileBytesMax)
	}
	// JSON is YAML: one decoder for both, keyed by the yaml tags, which
	// are the JSON names.
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&x); err != nil && !errors.Is(err, io.EOF) {
		return x, usagef("--file %s: %v", name, err)
	}
	return x, nil
}

// putDestination sends x as destination id and says what happened.
func putDestination(ctx context.Context, o *opsFlags, id string, x store.Destination, reason string, stdout io.Writer) error {
	req := map[string]any{"kind": x.Kind, "settlement_account": x.SettlementAccount, "bins": x.BINs, "disabled": x.Disabled,
		"iso8583": x.ISO8583, "http": x.HTTP, "reason": reason}
	code, body, err := o.call(ctx, http.MethodPut, "/v1/destinations/"+url.PathEscape(id), req, opsBodyBytesMax)
	if err != nil || o.json {
		return jsonOr(err, stdout, body)
	}
	var stored store.Destination
	if err := json.Unmarshal(body, &stored); err != nil {
		return fmt.Errorf("decoding the destination: %w", err)
	}
	verb := "replaced"
	if code == http.StatusCreated {
		verb = "created"
	}
	fmt.Fprintf(stdout, "destination %s %s: %s %s, %s\n", stored.ID, verb, stored.Kind, destinationState(stored), destinationTarget(stored))
	return nil
}

func destinationState(x store.Destination) string {
	if x.Disabled {
		return "disabled"
	}
	return "enabled"
}

// destinationTarget is where a destination's requests go.
func destinationTarget(x store.Destination) string {
	switch {
	case x.ISO8583 != nil:
		return strings.Join(x.ISO8583.Addrs, ",")
	case x.HTTP != nil:
		return x.HTTP.URL
	}
	return "-"
}
