package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// switchctl lanes status: one node's lanes (lanes are per node), their
// connections, signed-on sessions and the certificates in use with their
// expiry, from GET /v1/lanes.
func lanesCmd(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "status" {
		return usagef("lanes: want status")
	}
	var o opsFlags
	fs := flag.NewFlagSet("switchctl lanes status", flag.ContinueOnError)
	o.register(fs)
	if err := noArgs(fs, args, stdout); err != nil {
		return err
	}
	body, err := o.get(ctx, "/v1/lanes", nil)
	if err != nil || o.json {
		return jsonOr(err, stdout, body)
	}
	var page struct {
		Lanes []struct {
			Name          string     `json:"name"`
			Kind          string     `json:"kind"`
			Listen        string     `json:"listen"`
			TLS           bool       `json:"tls"`
			Allow         []string   `json:"allow"`
			RequireSignOn bool       `json:"require_sign_on"`
			Connections   int        `json:"connections"`
			SignedOn      int        `json:"signed_on"`
			CertNotAfter  *time.Time `json:"cert_not_after"`
			Clients       []struct {
				Pin      string    `json:"pin"`
				Subject  string    `json:"subject"`
				NotAfter time.Time `json:"not_after"`
				Source   string    `json:"source"`
			} `json:"clients"`
		} `json:"lanes"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return fmt.Errorf("decoding the lanes: %w", err)
	}
	now := time.Now()
	expires := func(t time.Time) string {
		return fmt.Sprintf("%s (%d days)", t.Format(time.DateOnly), int(t.Sub(now).Hours()/24))
	}
	t := newTable("LANE", "KIND", "LISTEN", "TRANSPORT", "ALLOW", "CONNS", "SIGNED ON", "CERT EXPIRES").alignRight("CONNS", "SIGNED ON")
	for _, l := range page.Lanes {
		transport, cert := "tcp", "-"
		if l.TLS {
			transport = "mtls"
		}
		if l.CertNotAfter != nil {
			cert = expires(*l.CertNotAfter)
		}
		signed := strconv.Itoa(l.SignedOn)
		if !l.RequireSignOn {
			signed += " (not required)"
		}
		t.add(l.Name, l.Kind, l.Listen, transport, strings.Join(l.Allow, ","), strconv.Itoa(l.Connections), signed, cert)
	}
	if err := t.write(stdout); err != nil {
		return err
	}
	ct := newTable("LANE", "CLIENT CERTIFICATE", "PIN", "FROM", "EXPIRES")
	n := 0
	for _, l := range page.Lanes {
		for _, c := range l.Clients {
			ct.add(l.Name, c.Subject, c.Pin[:16]+"…", c.Source, expires(c.NotAfter))
			n++
		}
	}
	if n > 0 {
		fmt.Fprintln(stdout)
		return ct.write(stdout)
	}
	return nil
}
