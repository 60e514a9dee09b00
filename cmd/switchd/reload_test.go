package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/switchd/switchd/internal/switchdtest"
)

// POST /v1/lanes/reload in the real binary: the node re-reads its config
// file (SIGHUP's code path) and a lane's new allowlist applies to new
// connections while an established one keeps going; a source the new
// list leaves out is refused, and that refusal is in the audit chain
// (lane.refused, wired through the cluster); a config the lane cannot
// take is a lane-reload-failed problem naming the lane, and the lane
// keeps its settings.
func TestLaneReloadOverOps(t *testing.T) {
	n := switchdtest.Start(t, switchdtest.Build(t))
	post := func() (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", n.OpsURL+"/v1/lanes/reload", nil)
		resp, err := switchdtest.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	dial := func(from string) net.Conn {
		t.Helper()
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", n.LaneAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
	// An echo (0800/301, iso87ascii, binary2 header) answered 0810.
	echo := func(c net.Conn) bool {
		msg := "0800" + "8220000000000000" + "0400000000000000" + "1121120000" + "000001" + "301"
		frame := append([]byte{byte(len(msg) >> 8), byte(len(msg))}, msg...)
		if _, err := c.Write(frame); err != nil {
			return false
		}
		br := bufio.NewReader(c)
		hdr := make([]byte, 2)
		if _, err := io.ReadFull(br, hdr); err != nil {
			return false
		}
		body := make([]byte, int(hdr[0])<<8|int(hdr[1]))
		_, err := io.ReadFull(br, body)
		return err == nil && strings.HasPrefix(string(body), "0810")
	}
	held := dial("127.0.0.1")
	if !echo(held) {
		t.Fatal("echo before the reload not answered")
	}
	cfg, err := os.ReadFile(n.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	narrowed := strings.Replace(string(cfg), "      partners: [demo-acquirer]\n", "      partners: [demo-acquirer]\n      allow: [127.0.0.2/32]\n", 1)
	if narrowed == string(cfg) {
		t.Fatal("the test's config has no lane to narrow")
	}
	if err := os.WriteFile(n.ConfigPath(), []byte(narrowed), 0o600); err != nil {
		t.Fatal(err)
	}
	code, body := post()
	if code != 200 || !strings.Contains(body, `{"lane":"test","reloaded":true}`) {
		t.Fatalf("reload: %d %s", code, body)
	}
	if !echo(dial("127.0.0.2")) {
		t.Fatal("the newly listed source is not served")
	}
	stranger := dial("127.0.0.1")
	if echo(stranger) {
		t.Fatal("a source the reloaded allowlist leaves out was served")
	}
	if !echo(held) {
		t.Fatal("the established connection was dropped by the reload")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := switchdtest.Get(n.OpsURL + "/v1/audit?object=lane/test")
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Records []struct{ Action, Actor, Remote string }
		}
		json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if len(page.Records) == 1 && page.Records[0].Action == "lane.refused" && page.Records[0].Actor == "lane:test" && page.Records[0].Remote == "127.0.0.1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("refusal not audited: %+v", page.Records)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A file switchd would not start on: nothing reloaded.
	invalid := strings.Replace(narrowed, "      allow: [127.0.0.2/32]\n", "      allow: [127.0.0.1/8]\n", 1)
	if err := os.WriteFile(n.ConfigPath(), []byte(invalid), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, body = post(); code != 422 || !strings.Contains(body, "lane-reload-failed") || !strings.Contains(body, "host bits") {
		t.Fatalf("an invalid config: %d %s", code, body)
	}
	// A new listen address is not a reload: refused for that lane, which
	// keeps its settings; the problem lists every lane's result.
	moved := strings.Replace(narrowed, "listen: "+n.LaneAddr, "listen: "+switchdtest.FreePort(t), 1)
	if err := os.WriteFile(n.ConfigPath(), []byte(moved), 0o600); err != nil {
		t.Fatal(err)
	}
	code, body = post()
	if code != 422 || !strings.Contains(body, "lane-reload-failed") || !strings.Contains(body, `"lanes":[{"lane":"test","reloaded":false`) {
		t.Fatalf("a lane the reload cannot move: %d %s", code, body)
	}
	if !echo(dial("127.0.0.2")) {
		t.Fatal("a refused reload changed the lane")
	}
	if echo(dial("127.0.0.1")) {
		t.Fatal("a refused reload changed the lane's allowlist")
	}
}
