//go:build linux

package store

import (
	"testing"

	"golang.org/x/sys/unix"
)

// Flushes run on a thread at Config.BackgroundNice, and the goroutines that
// serve requests keep normal priority.
func TestFlushRunsAtBackgroundNice(t *testing.T) {
	for _, nice := range []int{0, 15} {
		cfg := testConfig(t)
		cfg.BackgroundNice = nice
		s := openCfg(t, cfg)
		fund := acct("fund", KindFunding, "USD")
		fund.Unlimited = true
		mustOK(t, s, createCmd(fund))
		got := make(chan int, 1)
		testFlushEnd = func() {
			// The raw syscall answers 20 - nice.
			prio, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
			if err != nil {
				t.Error(err)
			}
			select {
			case got <- 20 - prio:
			default:
			}
		}
		if err := s.db.Flush(); err != nil {
			t.Fatal(err)
		}
		testFlushEnd = nil
		if n := <-got; n != nice {
			t.Fatalf("background_nice %d: flush ran at nice %d", nice, n)
		}
		prio, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
		if err != nil || 20-prio != 0 {
			t.Fatalf("the test's own thread is at nice %d (%v)", 20-prio, err)
		}
	}
}
