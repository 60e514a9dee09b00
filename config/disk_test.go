package config

import (
	"errors"
	"testing"
)

// Issue 9 item 2: a disk reserve below one raft-wal segment is refused
// (raft-wal preallocates a segment at each rotation).
func TestDiskReserveCoversAWALSegment(t *testing.T) {
	f := Demo()
	f.Finish()
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	f.Disk.ReserveBytes = uint64(f.Cluster.WALSegmentBytes) - 1
	if err := f.Validate(); !errors.Is(err, ErrConfig) {
		t.Fatalf("reserve below a segment: %v, want ErrConfig", err)
	}
	f.Cluster.LogStore = "bolt"
	if err := f.Validate(); err != nil {
		t.Fatalf("bolt log (no segments): %v", err)
	}
}
