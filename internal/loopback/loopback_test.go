package loopback

import (
	"net"
	"testing"
)

// Addresses handed out are distinct, and free: each can be listened on.
func TestFreeAddrDistinct(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		a, err := FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		if seen[a] {
			t.Fatalf("%s handed out twice", a)
		}
		seen[a] = true
	}
	a, _ := FreeAddr()
	ln, err := net.Listen("tcp", a)
	if err != nil {
		t.Fatalf("listen on %s: %v", a, err)
	}
	ln.Close()
}
