package api_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchd/switchd/config"
	"github.com/switchd/switchd/store"
)

// TestExportLong seeds SWITCHD_EXPORT_ROWS transfers of the demo partner
// (OpPost commands proposed concurrently, so the node packs them into big
// raft entries) and exports them all as CSV, reporting the export's time,
// the peak Go heap while it runs and the process's peak RSS (VmHWM, reset
// before the export). The goal: 1,000,000 rows in ≤ 10 s and
// ≤ 256 MiB RSS. Off unless the variable is set:
//
//	SWITCHD_EXPORT_ROWS=1000000 go test -run TestExportLong -v -timeout 30m ./api/
//	SWITCHD_EXPORT_ROWS=1000000 SWITCHD_EXPORT_CACHE_MIB=64 go test -run TestExportLong -v -timeout 30m ./api/
func TestExportLong(t *testing.T) {
	rows, _ := strconv.Atoi(os.Getenv("SWITCHD_EXPORT_ROWS"))
	if rows <= 0 {
		t.Skip("SWITCHD_EXPORT_ROWS is not set")
	}
	// The block cache is the store's, not the export's: by default 512
	// MiB, which a scan of every transfer fills with ~150 MiB of blocks.
	// SWITCHD_EXPORT_CACHE_MIB sets it (and 8 MiB memtables, so that a
	// small cache validates), to see what the export itself costs.
	cacheMiB, _ := strconv.Atoi(os.Getenv("SWITCHD_EXPORT_CACHE_MIB"))
	n := startNode(t, func(c *config.File) {
		if cacheMiB > 0 {
			c.Store.CacheBytes, c.Store.MemTableBytes = int64(cacheMiB)<<20, 8<<20
		}
	})
	tok := n.token(t, "demo-acquirer")
	start := time.Now()
	const proposers = 512
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, proposers)
	ctx := context.Background()
	for range proposers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(rows) {
					return
				}
				key := fmt.Sprintf("seed-%d", i)
				res, err := n.cn.Propose(ctx, store.Command{Op: store.OpPost, Key: key, Fingerprint: "f", Time: time.Now().UnixNano(),
					Partner: "demo-acquirer", Debit: "bank-funding-usd", Credit: "demo-acquirer-settlement", Amount: 1 + i%100_000, Currency: "USD"})
				if err == nil && res.Status != store.StatusOK {
					err = fmt.Errorf("%v", res)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("seeded %d transfers in %v", rows, time.Since(start).Round(time.Millisecond))

	// The seeding's garbage goes back to the OS first, so the peak is the
	// node at rest plus the export.
	debug.FreeOSMemory()
	rest := procStatus("VmRSS:")
	// Writing 5 to clear_refs resets VmHWM (Linux ≥ 4.0): the peak below
	// is the export's, not the seeding's.
	resetHWM := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	var heapPeak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > heapPeak.Load() {
				heapPeak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	req, _ := http.NewRequest("GET", n.url+"/v1/transactions", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "text/csv")
	start = time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	lines, bytesN := 0, 0
	var last []byte
	for sc.Scan() {
		lines++
		bytesN += len(sc.Bytes()) + 1
		last = append(last[:0], sc.Bytes()...)
	}
	took := time.Since(start)
	close(stop)
	<-sampled
	if err := sc.Err(); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %v", resp.StatusCode, err)
	}
	// The seeding posts are the partner's; the demo's opening balances are
	// no partner's.
	if lines != rows+1 || !bytes.Contains(last, []byte(",post,posted,")) {
		t.Fatalf("%d lines, want %d; last %q", lines, rows+1, last)
	}
	hwm := "n/a"
	if resetHWM {
		hwm = procStatus("VmHWM:")
	}
	t.Logf("exported %d rows (%d MiB of CSV) in %v (%.0f rows/s); peak heap in use %d MiB; RSS before %s, peak RSS during %s",
		rows, bytesN>>20, took.Round(time.Millisecond), float64(rows)/took.Seconds(), heapPeak.Load()>>20, rest, hwm)
}

// procStatus is a size line of /proc/self/status (VmRSS:, VmHWM:), in MiB.
func procStatus(name string) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "n/a"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return fmt.Sprintf("%d MiB", kb>>10)
		}
	}
	return "n/a"
}
