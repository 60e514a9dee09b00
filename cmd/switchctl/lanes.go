package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// switchctl lanes status: one node's lanes (lanes are per node), their
// connections by partner, signed-on sessions and the certificates in use
// with their expiry, from GET /v1/lanes.
//
// switchctl lanes reload: that node re-reads its config file and gives
// every lane its allowlist and TLS files (as SIGHUP does), POST
// /v1/lanes/reload; established connections keep going.
func lanesCmd(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "status" && args[0] != "reload" {
		return usagef("lanes: want status or reload")
	}
	var o opsFlags
	fs := flag.NewFlagSet("switchctl lanes "+args[0], flag.ContinueOnError)
	o.register(fs)
	if err := noArgs(fs, args, stdout); err != nil {
		return err
	}
	if args[0] == "reload" {
		return lanesReload(ctx, &o, stdout)
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
				Partner  string    `json:"partner"`
			} `json:"clients"`
			Partners []struct {
				Partner      string     `json:"partner"`
				Connections  int        `json:"connections"`
				SignedOn     int        `json:"signed_on"`
				CertNotAfter *time.Time `json:"cert_not_after"`
			} `json:"partners"`
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
	pt := newTable("LANE", "PARTNER", "CONNS", "SIGNED ON", "CLIENT CERT EXPIRES").alignRight("CONNS", "SIGNED ON")
	np := 0
	for _, l := range page.Lanes {
		for _, p := range l.Partners {
			cert := "-"
			if p.CertNotAfter != nil {
				cert = expires(*p.CertNotAfter)
			}
			pt.add(l.Name, orDash(p.Partner), strconv.Itoa(p.Connections), strconv.Itoa(p.SignedOn), cert)
			np++
		}
	}
	if np > 0 {
		fmt.Fprintln(stdout)
		if err := pt.write(stdout); err != nil {
			return err
		}
	}
	ct := newTable("LANE", "CLIENT CERTIFICATE", "PARTNER", "PIN", "FROM", "EXPIRES")
	n := 0
	for _, l := range page.Lanes {
		for _, c := range l.Clients {
			ct.add(l.Name, c.Subject, orDash(c.Partner), c.Pin[:16]+"…", c.Source, expires(c.NotAfter))
			n++
		}
	}
	if n > 0 {
		fmt.Fprintln(stdout)
		return ct.write(stdout)
	}
	return nil
}

// lanesReload asks the node to reload its lanes and prints each lane's
// result; a lane that kept its old settings makes it fail (the problem's
// detail names it).
func lanesReload(ctx context.Context, o *opsFlags, stdout io.Writer) error {
	body, err := o.write(ctx, http.MethodPost, "/v1/lanes/reload", nil, opsBodyBytesMax)
	if err != nil || o.json {
		return jsonOr(err, stdout, body)
	}
	var page struct {
		Lanes []struct {
			Lane     string `json:"lane"`
			Reloaded bool   `json:"reloaded"`
			Error    string `json:"error"`
		} `json:"lanes"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return fmt.Errorf("decoding the reload: %w", err)
	}
	t := newTable("LANE", "RELOADED")
	for _, l := range page.Lanes {
		res := "yes"
		if !l.Reloaded {
			res = "no: " + l.Error
		}
		t.add(l.Lane, res)
	}
	return t.write(stdout)
}
