package codec

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind (the Wireshark test
// runs a TCP server and a tshark stderr reader; the concurrency test its
// workers).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
