package settle

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchd/switchd/store"
)

// Benchmarks of issue 4's budgets (docs/BENCHMARKS.md): settlement file
// for 1M transfers ≤ 10 s, MT940 of 100k entries ≤ 2 s, reconciliation of
// 1M rows per source ≤ 10 s and ≤ 1 GiB RSS. Ledgers are built once per
// size and shared by the benchmarks of one run.
//
//	go test ./settle -run NONE -bench 'Settlement|MT940|Recon' -benchtime 1x

var (
	benchMu      sync.Mutex // protects benchLedgers
	benchLedgers = map[int]*ledger{}
	benchDirs    []string
)

func benchCleanup() {
	benchMu.Lock()
	defer benchMu.Unlock()
	for _, l := range benchLedgers {
		l.Close()
	}
	for _, d := range benchDirs {
		os.RemoveAll(d)
	}
}

// benchLedger returns a closed day 2026-03-02 with n posted transfers of
// partner acq from fund to biller (a biller account, so every one must be
// in the biller's file), RRN %012d and STAN %06d of i.
func benchLedger(b *testing.B, n int) *ledger {
	b.Helper()
	benchMu.Lock()
	defer benchMu.Unlock()
	if l, ok := benchLedgers[n]; ok {
		return l
	}
	dir, err := os.MkdirTemp("", "settle-bench-")
	if err != nil {
		b.Fatal(err)
	}
	benchDirs = append(benchDirs, dir)
	cfg := store.DefaultConfig()
	cfg.Dir = filepath.Join(dir, "db")
	cfg.CacheBytes = 128 << 20
	cfg.MemTableBytes = 16 << 20
	st, err := store.Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	l := &ledger{Store: st}
	start := time.Now()
	seedAccounts(b, l)
	const entry = 4096
	cmds := make([]store.Command, 0, entry)
	for i := 0; i < n; i++ {
		cmds = append(cmds, benchCmd(i))
		if len(cmds) == entry || i == n-1 {
			if _, err := l.apply(cmds...); err != nil {
				b.Fatal(err)
			}
			cmds = cmds[:0]
		}
	}
	l.must(b, store.Command{Op: store.OpCloseDay, Time: tBase.Add(time.Hour).UnixNano(), BusinessDay: "2026-03-02", NextDay: "2026-03-03"})
	// Let pebble finish the compactions the build caused: the benchmark
	// measures the files, not the bulk load's aftermath.
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if m := st.Metrics(); m.L0Files <= 2 && m.CompactionDebtBytes < 64<<20 {
			break
		}
	}
	b.Logf("ledger of %d transfers built in %s", n, time.Since(start).Round(time.Millisecond))
	benchLedgers[n] = l
	return l
}

func benchCmd(i int) store.Command {
	return store.Command{Op: store.OpPost, Key: "k" + strconv.Itoa(i), Fingerprint: "f", Time: tBase.UnixNano() + int64(i),
		BusinessDay: "2026-03-02", Partner: "acq", Debit: "fund", Credit: "biller", Amount: int64(100 + i%10000), Currency: "USD",
		Ref: store.Ref{MTI: "0200", ProcCode: "500000", STAN: fmt.Sprintf("%06d", i%1_000_000), RRN: fmt.Sprintf("%012d", i), Acquirer: "100001"}}
}

func sizes() []int {
	if s := os.Getenv("SWITCHD_BENCH_ROWS"); s != "" {
		var out []int
		for _, f := range strings.Split(s, ",") {
			n, _ := strconv.Atoi(f)
			out = append(out, n)
		}
		return out
	}
	return []int{100_000, 1_000_000}
}

func BenchmarkSettlementFile(b *testing.B) {
	for _, n := range sizes() {
		b.Run(fmt.Sprintf("transfers=%d", n), func(b *testing.B) {
			l := benchLedger(b, n)
			dir := b.TempDir()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				csv, _ := os.Create(filepath.Join(dir, "s.csv"))
				js, _ := os.Create(filepath.Join(dir, "s.json"))
				rows, err := WriteSettlement(context.Background(), l, "2026-03-02", "acq", csv, js)
				csv.Close()
				js.Close()
				if err != nil || rows != int64(n) {
					b.Fatalf("%d rows, %v", rows, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Seconds())/float64(b.N), "s/file")
		})
	}
}

func BenchmarkMT940(b *testing.B) {
	l := benchLedger(b, 100_000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st, err := BuildStatement(context.Background(), l, "biller", "2026-03-02")
		if err != nil || len(st.Entries) != 100_000 {
			b.Fatal(err)
		}
		if err := WriteMT940(io.Discard, st); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Seconds())/float64(b.N), "s/statement")
}

// writeReconFiles writes the partner's and the biller's file for the
// bench ledger of n with 1% planted differences each.
func writeReconFiles(b *testing.B, dir string, n int) (string, string) {
	b.Helper()
	pf, bf := filepath.Join(dir, "partner.csv"), filepath.Join(dir, "biller.csv")
	for _, f := range []struct {
		path, header string
		partner      bool
	}{{pf, "record,rrn,stan,amount,currency,business_day,status\n", true}, {bf, "rrn,stan,amount,currency,date,status\n", false}} {
		fh, err := os.Create(f.path)
		if err != nil {
			b.Fatal(err)
		}
		w := bufio.NewWriterSize(fh, 1<<20)
		w.WriteString(f.header)
		for i := 0; i < n; i++ {
			amt := int64(100 + i%10000)
			status := "OK"
			if f.partner {
				status = "posted"
				w.WriteString("D,")
			}
			switch {
			case i%100 == 7 && f.partner:
				amt++ // B3
			case i%100 == 11 && !f.partner:
				status = "FAIL" // B4
			case i%100 == 13 && !f.partner:
				continue // B2
			}
			fmt.Fprintf(w, "%012d,%06d,%d.%02d,USD,2026-03-02,%s\n", i, i%1_000_000, amt/100, amt%100, status)
		}
		if f.partner {
			w.WriteString("T,trailer\n")
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		fh.Close()
	}
	return pf, bf
}

// peakRSS is the process's peak resident set (VmHWM), in MiB.
func peakRSS() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}

func BenchmarkRecon(b *testing.B) {
	for _, n := range sizes() {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			l := benchLedger(b, n)
			pf, bf := writeReconFiles(b, b.TempDir(), n)
			cfg := DefaultConfig()
			cfg.Dir = b.TempDir()
			cfg.Recon.FileBytesMax = 1 << 30
			svc, err := New(cfg, l, NewDays(Calendar{}, l, l, nil, nil), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer svc.Close()
			runtime.GC()
			before := peakRSS() // the ledger build's own peak
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p, _ := os.Open(pf)
				bl, _ := os.Open(bf)
				res, err := svc.reconcileDir(context.Background(), filepath.Dir(pf), Spec{Kind: KindRecon, Day: "2026-03-02", Partner: "acq", Recon: "Rbench"})
				p.Close()
				bl.Close()
				if err != nil {
					b.Fatal(err)
				}
				if want := n / 100; res.Counts[B3] != want || res.Counts[B4] != want || res.Counts[B2] != want || res.Counts[B1] != 0 {
					b.Fatalf("counts %v, want %d of B2, B3, B4", res.Counts, want)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Seconds())/float64(b.N), "s/recon")
			b.ReportMetric(peakRSS(), "peak-RSS-MiB")
			b.ReportMetric(before, "peak-RSS-before-recon-MiB")
		})
	}
}
