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

func (g *gatedConn) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.writes)
}

func waitWrites(t *testing.T, g *gatedConn, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for g.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes, want %d", g.count(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// Frames queued while a write is under way go out together in the next
// write, in order, each framed; alone a frame goes at once.
func TestWireCombinesWrites(t *testing.T) {
	g := &gatedConn{entered: make(chan struct{}), release: make(chan struct{})}
	w := newWire(g, time.Second)
	defer w.close()
	fr := codec.Framer{Header: codec.HeaderBinary2, FrameBytesMax: 1024}
	if err := w.send(fr, []byte("first")); err != nil {
		t.Fatal(err)
	}
	<-g.entered // the writer is in the first write
	for _, p := range []string{"b", "cc", "ddd"} {
		if err := w.send(fr, []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	close(g.release)
	waitWrites(t, g, 2)
	want := [][]byte{append([]byte{0, 5}, "first"...), {0, 1, 'b', 0, 2, 'c', 'c', 0, 3, 'd', 'd', 'd'}}
	g.mu.Lock()
	got := g.writes
	g.mu.Unlock()
	if len(got) != 2 || !bytes.Equal(got[0], want[0]) || !bytes.Equal(got[1], want[1]) {
		t.Fatalf("writes %q, want %q", got, want)
	}
	if err := w.send(fr, []byte("e")); err != nil {
		t.Fatal(err)
	}
	waitWrites(t, g, 3)
	if err := w.send(fr, nil); !errors.Is(err, codec.ErrFrameEmpty) {
		t.Fatalf("unframable: %v", err)
	}
}

// A failed write fails every later send (the stream is unusable after a
// partial frame) and stops the writer.
func TestWireFailureSticks(t *testing.T) {
	g := &gatedConn{entered: make(chan struct{}), release: make(chan struct{}), fail: errors.New("broken pipe")}
	close(g.release)
	w := newWire(g, time.Second)
	defer w.close()
	fr := codec.Framer{Header: codec.HeaderBinary2, FrameBytesMax: 1024}
	if err := w.send(fr, []byte("x")); err != nil {
		t.Fatal(err) // queued; the write fails after
	}
	<-w.stopped
	for i := range 2 {
		if err := w.send(fr, []byte("y")); !errors.Is(err, ErrConnectionLost) {
			t.Fatalf("send %d after the failure: %v", i, err)
		}
	}
	if g.count() != 1 {
		t.Fatalf("%d writes after the failure", g.count())
	}
}
