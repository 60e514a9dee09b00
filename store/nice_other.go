//go:build !linux

package store

// lowerThreadPriority is Linux only (a nice value per thread); elsewhere
// background work runs at normal priority.
func lowerThreadPriority(int) error { return nil }
