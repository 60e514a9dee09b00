package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/internal/switchdtest"
)

// crashLoad is how long traffic runs before the kill -9; the test stays
// short in `make test` (set SWITCHD_CRASH_LOAD=30s for a longer run).
func crashLoad() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("SWITCHD_CRASH_LOAD")); err == nil {
		return d
	}
	return 2 * time.Second
}

type answer struct {
	rc, auth string
}

// The brief's "done means": approvals survive kill -9, balances are as the
// approvals say, and a repeat of an earlier request gets its original answer.
func TestKill9KeepsEveryApproval(t *testing.T) {
	node := switchdtest.Start(t, switchdtest.Build(t))
	laneAddr, opsAddr := node.LaneAddr, node.OpsAddr

	c, err := codec.Load("iso87ascii")
	if err != nil {
		t.Fatal(err)
	}
	fr := codec.Framer{Header: codec.HeaderBinary2, FrameBytesMax: 8192}
	msg := func(mti string, stan int) []byte {
		m := new(codec.Message)
		m.MTI = mti
		for id, v := range map[int]string{2: "4111111111111111", 3: "000000", 4: "000000000001",
			7: "1121120000", 11: fmt.Sprintf("%06d", stan), 32: "100001", 37: fmt.Sprintf("%012d", stan), 49: "840"} {
			m.Set(id, v)
		}
		b, err := c.Pack(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		f, _ := fr.AppendFrame(nil, b)
		return f
	}

	// Load: 8 connections, pipelined, each a range of STANs; then kill -9.
	const conns = 8
	var mu sync.Mutex // protects answered and sent
	answered := map[int]answer{}
	sent := map[int]bool{}
	var wg sync.WaitGroup
	stop := time.Now().Add(crashLoad())
	for ci := 0; ci < conns; ci++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", laneAddr)
			if err != nil {
				return
			}
			// The writer must be done before the test reads sent: close
			// the connection (a blocked Write returns) and wait for it.
			var writer sync.WaitGroup
			defer writer.Wait()
			defer conn.Close()
			br := bufio.NewReader(conn)
			writer.Add(1)
			go func() {
				defer writer.Done()
				for stan := ci*100000 + 1; time.Now().Before(stop); stan++ {
					mu.Lock()
					sent[stan] = true
					mu.Unlock()
					if _, err := conn.Write(msg("0200", stan)); err != nil {
						return
					}
					time.Sleep(200 * time.Microsecond)
				}
			}()
			for {
				b, err := fr.ReadFrame(br, nil)
				if err != nil {
					return
				}
				m := new(codec.Message)
				if err := c.Unpack(b, m); err != nil {
					t.Errorf("answer does not unpack: %v", err)
					return
				}
				var stan int
				fmt.Sscanf(m.Get(11), "%d", &stan)
				mu.Lock()
				answered[stan] = answer{m.Get(39), m.Get(38)}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(crashLoad() - crashLoad()/4)
	node.Kill9()
	wg.Wait()

	mu.Lock()
	approvedBefore := 0
	for _, a := range answered {
		if a.rc == "00" {
			approvedBefore++
		}
	}
	t.Logf("before kill -9: %d sent, %d answered, %d approved", len(sent), len(answered), approvedBefore)
	if approvedBefore == 0 {
		t.Fatal("no approvals before the kill: the test proves nothing")
	}
	mu.Unlock()

	node.Restart()
	conn, err := net.Dial("tcp", laneAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	// Repeat every request sent (0201): answered ones must get the same
	// answer; unanswered ones get a definite one now.
	approved := 0
	for stan := range sent {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(msg("0201", stan)); err != nil {
			t.Fatal(err)
		}
		b, err := fr.ReadFrame(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		m := new(codec.Message)
		if err := c.Unpack(b, m); err != nil {
			t.Fatal(err)
		}
		got := answer{m.Get(39), m.Get(38)}
		if want, ok := answered[stan]; ok && want != got {
			t.Errorf("stan %d: answered %+v before the crash, %+v after", stan, want, got)
		}
		if got.rc == "00" {
			approved++
		} else {
			t.Errorf("stan %d: repeat got %s", stan, got.rc)
		}
	}
	resp, err := switchdtest.Get("http://" + opsAddr + "/v1/accounts/card-4111")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var acct struct{ Posted, Available int64 }
	json.NewDecoder(resp.Body).Decode(&acct)
	if want := int64(100000 - approved); acct.Posted != want || acct.Available != want {
		t.Fatalf("card-4111 posted %d available %d, want %d (opening 100000 − %d approvals of 1)", acct.Posted, acct.Available, want, approved)
	}
	t.Logf("after restart: %d approvals, balance %d as expected", approved, acct.Posted)
}
