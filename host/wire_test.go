package host

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/switchd/switchd/codec"
)

// gatedConn is a net.Conn whose first Write waits for release, and that
// keeps each Write's bytes.
type gatedConn struct {
	net.Conn
	entered, release chan struct{}
	mu               sync.Mutex
	writes           [][]byte
	fail             error
}

func (g *gatedConn) Write(b []byte) (int, error) {
	g.mu.Lock()
	first := len(g.writes) == 0
	g.writes = append(g.writes, bytes.Clone(b))
	fail := g.fail
	g.mu.Unlock()
	if first {
		close(g.entered)
		<-g.release
	}
	if fail != nil {
		return 0, fail
	}
	return len(b), nil
}
func (g *gatedConn) SetWriteDeadline(time.Time) error { return nil }
func (g *gatedConn) Close() error                     { return nil }

// Frames sent while a write is under way go out together in the next
// write, in order, each framed; alone a frame goes at once.
func TestWireCombinesWrites(t *testing.T) {
	g := &gatedConn{entered: make(chan struct{}), release: make(chan struct{})}
	w := &wire{nc: g}
	fr := codec.Framer{Header: codec.HeaderBinary2, FrameBytesMax: 1024}
	done := make(chan error, 4)
	go func() { done <- w.send(fr, []byte("first"), time.Second) }()
	<-g.entered
	for _, p := range []string{"b", "cc", "ddd"} {
		if err := w.send(fr, []byte(p), time.Second); err != nil {
			t.Fatal(err) // queued behind the write under way: returns at once
		}
	}
	close(g.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := [][]byte{append([]byte{0, 5}, "first"...), {0, 1, 'b', 0, 2, 'c', 'c', 0, 3, 'd', 'd', 'd'}}
	if len(g.writes) != 2 || !bytes.Equal(g.writes[0], want[0]) || !bytes.Equal(g.writes[1], want[1]) {
		t.Fatalf("writes %q, want %q", g.writes, want)
	}
	if err := w.send(fr, []byte("e"), time.Second); err != nil || len(g.writes) != 3 {
		t.Fatalf("alone: %v, %d writes", err, len(g.writes))
	}
	if err := w.send(fr, nil, time.Second); !errors.Is(err, codec.ErrFrameEmpty) || len(g.writes) != 3 {
		t.Fatalf("unframable: %v, %d writes", err, len(g.writes))
	}
}

// A failed write fails that send and every later one: the stream is
// unusable after a partial frame.
func TestWireFailureSticks(t *testing.T) {
	g := &gatedConn{entered: make(chan struct{}), release: make(chan struct{}), fail: errors.New("broken pipe")}
	close(g.release)
	w := &wire{nc: g}
	fr := codec.Framer{Header: codec.HeaderBinary2, FrameBytesMax: 1024}
	for i := range 2 {
		if err := w.send(fr, []byte("x"), time.Second); !errors.Is(err, ErrConnectionLost) {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if len(g.writes) != 1 {
		t.Fatalf("%d writes after the failure", len(g.writes))
	}
}
