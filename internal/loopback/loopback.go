// Package loopback hands tests and the chaos harness loopback addresses
// to listen on.
package loopback

import (
	"fmt"
	"net"
	"sync"
)

// freeAddrTries bounds FreeAddr's search for a port not given before.
const freeAddrTries = 100

var given = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

// FreeAddr is a loopback address (127.0.0.1:port) that was free a moment
// ago and that this process has not handed out before. Another process
// could take it before it is bound, which is rare on a test machine; the
// kernel readily gives a port just closed to the next bind(0) of this one
// (CI once saw a node's ops and API addresses be the same port), which is
// why a port is never handed out twice.
func FreeAddr() (string, error) {
	for range freeAddrTries {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := ln.Addr().String()
		ln.Close()
		given.Lock()
		seen := given.addrs[addr]
		given.addrs[addr] = true
		given.Unlock()
		if !seen {
			return addr, nil
		}
	}
	return "", fmt.Errorf("loopback: no port not handed out before in %d tries", freeAddrTries)
}
