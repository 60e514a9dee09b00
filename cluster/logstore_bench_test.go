package cluster

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// BenchmarkLogStoreAppend appends one raft entry per StoreLogs call, as
// the leader does per dispatch and a follower per AppendEntries, each
// fsync'd, to the bolt and the WAL log stores. Entry sizes: one command,
// a batch of five, a batch of fifty. Compare the stores within one run.
func BenchmarkLogStoreAppend(b *testing.B) {
	for _, size := range []int{600, 3000, 30000} {
		for _, kind := range []string{LogStoreBolt, LogStoreWAL} {
			b.Run(fmt.Sprintf("%s/entry=%dB", kind, size), func(b *testing.B) {
				s, _, err := openLogStore(b.TempDir(), kind, walSegmentBytesDefault, nil, nil)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				data := make([]byte, size)
				cpu0 := processCPU()
				i := uint64(0)
				for b.Loop() {
					i++
					if err := s.StoreLogs([]*raft.Log{{Index: i, Term: 1, Type: raft.LogCommand, Data: data}}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N)/1000, "cpu-µs/op")
			})
		}
	}
}

// processCPU is the user+system CPU time this process has used (fsync's
// kernel time included).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
