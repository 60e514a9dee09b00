package sim

import (
	"testing"

	"go.uber.org/goleak"
)

// Every simulator owns its goroutines: after each test's Close none may
// be left.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
