package disk

import (
	"os"
	"syscall"
)

// fallocate allocates size bytes of f (mode 0: the file grows to size).
func fallocate(f *os.File, size int64) error {
	return syscall.Fallocate(int(f.Fd()), 0, 0, size)
}
