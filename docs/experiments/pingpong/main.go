package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

func cpu() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// One connection, 256 callers each sending a 100-byte frame and waiting
// for its 100-byte answer, like a host client with a simulated issuer.
func main() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() {
		c, _ := ln.Accept()
		r := bufio.NewReader(c)
		buf := make([]byte, 100)
		for {
			if _, err := io.ReadFull(r, buf); err != nil {
				return
			}
			c.Write(buf)
		}
	}()
	c, _ := net.Dial("tcp", ln.Addr().String())
	var mu sync.Mutex
	waiters := make(chan chan struct{}, 1024)
	go func() {
		r := bufio.NewReader(c)
		buf := make([]byte, 100)
		for {
			if _, err := io.ReadFull(r, buf); err != nil {
				return
			}
			ch := <-waiters
			ch <- struct{}{}
		}
	}()
	const callers, per = 256, 400
	var wg sync.WaitGroup
	c0, t0 := cpu(), time.Now()
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			frame := make([]byte, 100)
			ch := make(chan struct{}, 1)
			for range per {
				mu.Lock()
				waiters <- ch
				c.Write(frame)
				mu.Unlock()
				<-ch
			}
		}()
	}
	wg.Wait()
	n := float64(callers * per)
	fmt.Printf("%.1f us CPU per round trip, %.0f round trips/s\n", float64((cpu()-c0).Microseconds())/n, n/time.Since(t0).Seconds())
}
