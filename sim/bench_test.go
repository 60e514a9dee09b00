package sim

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkIssuer measures the issuer answering at once: conns client
// connections, each with window requests pipelined, b.N 0200s in all.
// msgs/s is what the switch can at most get out of one simulator; it must
// be far above what the switch itself does, or the simulator would be
// what a load test measures.
func BenchmarkIssuer(b *testing.B) {
	for _, conns := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			s := startIssuer(b, nil)
			const window = 32
			clients := make([]*isoClient, conns)
			for i := range clients {
				clients[i] = dialIssuer(b, s.Addr())
			}
			req := financial("0200", "000001")
			b.ReportAllocs()
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			var wg sync.WaitGroup
			for i, c := range clients {
				n := b.N / conns
				if i < b.N%conns {
					n++
				}
				wg.Add(2)
				sem := make(chan struct{}, window)
				go func() {
					defer wg.Done()
					for range n {
						sem <- struct{}{}
						c.send(req)
					}
				}()
				go func() {
					defer wg.Done()
					for range n {
						if _, err := c.recv(); err != nil {
							b.Error(err)
							return
						}
						<-sem
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			// CPU per message (client and issuer together, this process):
			// on a machine shared with other work, msgs/s moves with the
			// load and this does much less.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/msg")
		})
	}
}

// cpuTime is this process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
