// Package keyfile reads and makes the secret key files a node is given
// (the MAC and webhook key-encryption keys, the card key): owner-only
// files of hex digits, read with a bound, named in errors by the setting
// that points at them and never by their content.
package keyfile

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ErrReadable is a key file that group or others may read: a secret that
// every local user can read is no secret (like an ssh key).
var ErrReadable = errors.New("readable by others")

// Read returns the trimmed content of the key file at path, at most max
// bytes. setting names it in errors ("mac.kek_file").
func Read(path, setting string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", setting, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", setting, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s %s is %w (mode %v): chmod 600 it", setting, path, ErrReadable, fi.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil || len(b) > max {
		clear(b)
		return nil, fmt.Errorf("%s %s: not a key file", setting, path)
	}
	return bytes.TrimSpace(b), nil
}

// Generate writes n random bytes as hex to path (0600, its directory
// 0700) unless the file exists, and reports whether it made it. O_EXCL:
// two starts racing never make two keys.
func Generate(path string, n int) (made bool, err error) {
	return GenerateEncoded(path, n, hex.EncodeToString)
}

// GenerateEncoded is Generate with the file's text made from the random
// bytes by encode (a webhook secret's "whsec_" and base64). A file
// whose write fails is removed, never left half written for the next
// start to take as the key.
func GenerateEncoded(path string, n int, encode func([]byte) string) (made bool, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, os.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	b := make([]byte, n)
	defer clear(b)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		f.Close()
		os.Remove(path)
		return false, err
	}
	_, err = f.WriteString(encode(b) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return false, err
	}
	return true, nil
}
