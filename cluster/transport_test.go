package cluster

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// A peer that refuses connections is restarting: raft's dial keeps trying
// for refusedRetryWindow and connects once it listens, instead of failing
// at once and growing raft's replication backoff. A peer that stays down
// is still reported, after the window.
func TestRaftDialWaitsForARestartingPeer(t *testing.T) {
	own, err := newMux("127.0.0.1:0", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer own.close()
	layer := &raftLayer{m: own}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // now refused

	// Stays down: refused after about the window.
	start := time.Now()
	if _, err := layer.Dial(raft.ServerAddress(addr), 10*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial to a closed port: %v, want connection refused", err)
	}
	if took := time.Since(start); took < refusedRetryWindow/2 {
		t.Errorf("gave up after %s, before the retry window (%s)", took, refusedRetryWindow)
	}

	// Comes back within the window: connected.
	up := make(chan net.Listener, 1)
	go func() {
		time.Sleep(refusedRetryWindow / 4)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Error(err)
		}
		up <- l
	}()
	c, err := layer.Dial(raft.ServerAddress(addr), 10*time.Second)
	l := <-up
	if l != nil {
		defer l.Close()
	}
	if err != nil {
		t.Fatalf("dial to a peer that came back within the window: %v", err)
	}
	c.Close()

	// A closing node does not wait.
	l.Close()
	own.close()
	start = time.Now()
	if _, err := layer.Dial(raft.ServerAddress(addr), 10*time.Second); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	if took := time.Since(start); took > refusedRetryWindow/2 {
		t.Errorf("a closing node's dial waited %s", took)
	}
}
