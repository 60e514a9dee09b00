//go:build linux

package store

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// lowerThreadPriority runs the rest of the calling goroutine on its own OS
// thread at the given nice value. The thread is never unlocked: pebble runs
// each flush and compaction in a goroutine of its own, and when a locked
// goroutine ends Go ends its thread, so no lowered thread ever goes back to
// the pool to run partner requests.
func lowerThreadPriority(nice int) error {
	runtime.LockOSThread()
	return unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), nice)
}
