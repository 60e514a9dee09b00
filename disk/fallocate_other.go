//go:build !linux

package disk

import (
	"errors"
	"os"
)

// fallocate is not available: the caller writes zeros.
func fallocate(*os.File, int64) error { return errors.ErrUnsupported }
