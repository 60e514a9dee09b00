package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

const (
	benchCards     = 4000
	benchMerchants = 50
	benchBatchCmds = 256
)

// benchStore is a store with benchCards funded card accounts and
// benchMerchants merchants.
func benchStore(b *testing.B) *Store {
	cfg := DefaultConfig()
	cfg.Dir = b.TempDir() + "/db"
	return benchStoreCfg(b, cfg)
}

func benchStoreCfg(b testing.TB, cfg Config) *Store {
	s := openCfg(b, cfg)
	fund := acct("fund", KindFunding, "USD")
	fund.Unlimited = true
	cmds := []Command{createCmd(fund)}
	for i := 0; i < benchMerchants; i++ {
		cmds = append(cmds, createCmd(acct(fmt.Sprintf("m%04d", i), KindBiller, "USD")))
	}
	for i := 0; i < benchCards; i++ {
		a := acct(fmt.Sprintf("c%06d", i), KindCardholder, "USD")
		a.CardHash = fmt.Sprintf("%064x", i)
		cmds = append(cmds, createCmd(a), postCmd("fund-"+a.ID, "fund", a.ID, 1<<40))
	}
	for len(cmds) > 0 {
		n := min(len(cmds), 1000)
		mustOK(b, s, cmds[:n]...)
		cmds = cmds[n:]
	}
	return s
}

// benchEntries makes n raft entries of benchBatchCmds card commands, half
// OpPost and half OpAuthorize, each with a fresh idempotency key.
func benchEntries(b *testing.B, first uint64, n int, rng *rand.Rand) []*raft.Log {
	return benchEntriesOf(b, first, n, benchBatchCmds, rng)
}

// benchEntriesOf makes n raft entries of per commands each.
func benchEntriesOf(b testing.TB, first uint64, n, per int, rng *rand.Rand) []*raft.Log {
	logs := make([]*raft.Log, n)
	seq := int(first) * per
	for i := range logs {
		cmds := make([]Command, per)
		for j := range cmds {
			seq++
			card := fmt.Sprintf("%064x", rng.IntN(benchCards))
			merch := fmt.Sprintf("m%04d", rng.IntN(benchMerchants))
			key := fmt.Sprintf("acq:12345678:%06d:0302101500:%012d:0200", seq%1_000_000, seq)
			if j%2 == 0 {
				cmds[j] = postCardCmd(key, card, merch, 1+int64(rng.IntN(10_000)), "ref-"+key)
			} else {
				cmds[j] = authCmd(key, card, merch, 1+int64(rng.IntN(10_000)), "ref-"+key)
			}
			cmds[j].Fingerprint = fmt.Sprintf("%064x", seq)
			cmds[j].Time = t0 + int64(seq)*1000
			cmds[j].HoldExpiry = cmds[j].Time + 7*24*hour
			cmds[j].Ref = Ref{MTI: "0200", ProcCode: "000000", STAN: "123456", RRN: "123456789012",
				Acquirer: "12345678", Terminal: "TERM0001", Merchant: "MERCHANT0000001", TransmissionTime: "0302101500"}
		}
		logs[i] = logEntry(b, first+uint64(i), cmds...)
	}
	return logs
}

// BenchmarkApplyBatch measures the FSM end to end per ApplyBatch call:
// decoding, rules, idempotency, indexes and the NoSync pebble commit.
// ns/cmd is the number that matters (target well under 20 µs).
func BenchmarkApplyBatch(b *testing.B) {
	for _, logsPerCall := range []int{1, 4} {
		b.Run(fmt.Sprintf("logs=%d", logsPerCall), func(b *testing.B) {
			s := benchStore(b)
			rng := rand.New(rand.NewPCG(1, 2))
			logs := benchEntries(b, s.AppliedIndex()+1, b.N*logsPerCall, rng)
			b.ReportAllocs()
			cpu0 := processCPU()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				out := s.ApplyBatch(logs[i*logsPerCall : (i+1)*logsPerCall])
				if rs, ok := out[0].([]Result); !ok || rs[0].Status != StatusOK {
					b.Fatalf("apply: %v", out[0])
				}
			}
			b.StopTimer()
			cpu := processCPU() - cpu0
			cmds := float64(b.N * logsPerCall * benchBatchCmds)
			// CPU time of the whole process (apply plus pebble's flushes
			// and compactions) per command: steadier than wall time on a
			// shared machine, and what the FSM really costs the node.
			b.ReportMetric(float64(cpu.Nanoseconds())/cmds, "cpu-ns/cmd")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/cmds, "ns/cmd")
			b.ReportMetric(cmds/b.Elapsed().Seconds(), "cmds/s")
		})
	}
}

// processCPU is the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchTransfer() Transfer {
	return Transfer{ID: "T00000000012345", Op: OpAuthorize, Status: TransferPending, Debit: "c000123", Credit: "m0001",
		Amount: 12345, Currency: "USD", Held: 12345, Expiry: t0 + hour, Time: t0, BusinessDay: "2026-03-02", Partner: "p1",
		Ref: Ref{MTI: "0100", ProcCode: "000000", STAN: "123456", RRN: "123456789012", Acquirer: "12345678",
			Terminal: "TERM0001", Merchant: "MERCHANT0000001", TransmissionTime: "0302101500"}}
}

func benchAccount() Account {
	return Account{ID: "c000123", Kind: KindCardholder, Currency: "USD", CardHash: fmt.Sprintf("%064x", 7),
		MaskedPAN: "411111******1111", DebitsPending: 1234, DebitsPosted: 99999, CreditsPosted: 1 << 40}
}

// BenchmarkRecordEncoding compares the binary record encoding with JSON
// (the decision recorded in DESIGN.md).
func BenchmarkRecordEncoding(b *testing.B) {
	tr, a := benchTransfer(), benchAccount()
	trBin, aBin := appendTransferRecord(nil, &tr), appendAccountRecord(nil, &a)
	trJSON, _ := json.Marshal(tr)
	aJSON, _ := json.Marshal(a)
	b.Run("transfer/binary/encode", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = appendTransferRecord(buf[:0], &tr)
		}
		b.ReportMetric(float64(len(trBin)), "bytes")
	})
	b.Run("transfer/json/encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(&tr)
		}
		b.ReportMetric(float64(len(trJSON)), "bytes")
	})
	b.Run("transfer/binary/decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeTransferRecord(trBin); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("transfer/json/decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var t Transfer
			if err := json.Unmarshal(trJSON, &t); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("account/binary/decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeAccountRecord(aBin); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("account/json/decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var a Account
			if err := json.Unmarshal(aJSON, &a); err != nil {
				b.Fatal(err)
			}
		}
	})
	cmds := benchEntries(b, 1, 1, rand.New(rand.NewPCG(1, 2)))[0].Data
	decoded, _ := DecodeBatch(cmds)
	cmdsJSON, _ := json.Marshal(decoded)
	b.Run("batch256/binary/decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeBatch(cmds); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(cmds)), "bytes")
	})
	b.Run("batch256/json/decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var out []Command
			if err := json.Unmarshal(cmdsJSON, &out); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(cmdsJSON)), "bytes")
	})
}

// BenchmarkOverlay compares the txn's map overlay with a pebble indexed
// batch for what one ApplyBatch of 256 commands does to it: ~2,300 writes
// of index-like keys, each followed by a read of a key written earlier
// (the decision recorded in DESIGN.md). Both then build the batch that is
// committed; the commit itself is the same for both and not measured.
func BenchmarkOverlay(b *testing.B) {
	const n = 2300
	keys := make([]string, n)
	for i := range keys {
		keys[i] = skeyIndex2(pfxByAccount, fmt.Sprintf("c%06d", (i*7919)%4000), formatTransferID(uint64(i)))
	}
	val := []byte("T00000000000001")
	s := openTest(b)
	b.Run("map", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			t := newTxn(s.db, &s.cfg, &s.cache, s.dir.Load(), 256)
			for i, k := range keys {
				t.set(k, val)
				if _, ok := t.get(keys[i/2]); !ok {
					b.Fatal("lost a write")
				}
			}
			batch := s.db.NewBatchWithSize(t.batchBytes())
			for _, k := range sortedKeys(t.kv) {
				_ = batch.Set([]byte(k), t.kv[k].val, nil)
			}
			batch.Close()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/key")
	})
	b.Run("indexed-batch", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			batch := s.db.NewIndexedBatch()
			for i, k := range keys {
				_ = batch.Set([]byte(k), val, nil)
				v, closer, err := batch.Get([]byte(keys[i/2]))
				if err != nil {
					b.Fatal(err)
				}
				_ = bytes.Clone(v)
				closer.Close()
			}
			batch.Close()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/key")
	})
}

// BenchmarkFlushStall applies raft-sized entries (10 commands) at a steady
// 10,000 commands/s, as a cluster leader does, while another goroutine
// appends and fsyncs a file beside the ledger the way the raft log does.
// It reports the worst ApplyBatch and the worst fsync over a run that
// crosses several memtable flushes, with pebble's WAL written back as it
// grows (our default) and left dirty until the WAL is closed (pebble's
// default). Compare the two in one run: the machine is shared.
func BenchmarkFlushStall(b *testing.B) {
	const (
		perEntry = 10
		entries  = 14_000 // 140k commands: two flushes of a 64 MiB memtable
		pace     = time.Millisecond
	)
	for _, bps := range []int{0, DefaultConfig().WALBytesPerSync} {
		b.Run(fmt.Sprintf("wal_bytes_per_sync=%d", bps), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Dir = b.TempDir() + "/db"
			cfg.WALBytesPerSync = bps
			s := benchStoreCfg(b, cfg)
			logs := benchEntriesOf(b, s.AppliedIndex()+1, entries, perEntry, rand.New(rand.NewPCG(1, 2)))

			f, err := os.Create(b.TempDir() + "/raft-log")
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			stop, done := make(chan struct{}), make(chan time.Duration, 1)
			go func() { // the raft log's appends
				var worst time.Duration
				buf := make([]byte, 3000)
				for {
					select {
					case <-stop:
						done <- worst
						return
					case <-time.After(pace):
					}
					_, _ = f.Write(buf)
					t := time.Now()
					_ = f.Sync()
					worst = max(worst, time.Since(t))
				}
			}()
			var worst time.Duration
			var slow int // applies over 5 ms
			tick := time.NewTicker(pace)
			defer tick.Stop()
			b.ResetTimer()
			for i := range logs {
				<-tick.C
				t := time.Now()
				out := s.ApplyBatch(logs[i : i+1])
				d := time.Since(t)
				if rs, ok := out[0].([]Result); !ok || rs[0].Status != StatusOK {
					b.Fatalf("apply: %v", out[0])
				}
				worst = max(worst, d)
				if d > 5*time.Millisecond {
					slow++
				}
			}
			b.StopTimer()
			close(stop)
			fsyncWorst := <-done
			b.ReportMetric(float64(worst.Microseconds())/1000, "worst-apply-ms")
			b.ReportMetric(float64(slow), "applies>5ms")
			b.ReportMetric(float64(fsyncWorst.Microseconds())/1000, "worst-fsync-ms")
		})
	}
}

// BenchmarkRestore restores a state stream of ~100k transfers (what a
// follower does with a snapshot) into a fresh store: the time a new node
// spends before it can replay the log tail.
func BenchmarkRestore(b *testing.B) {
	src := benchStore(b)
	rng := rand.New(rand.NewPCG(3, 4))
	logs := benchEntries(b, src.AppliedIndex()+1, 400, rng)
	for i := 0; i < len(logs); i += 4 {
		src.ApplyBatch(logs[i : i+4])
	}
	st, err := src.OpenState()
	if err != nil {
		b.Fatal(err)
	}
	var data bytes.Buffer
	if _, err := data.ReadFrom(st); err != nil {
		b.Fatal(err)
	}
	st.Close()
	_, want, _ := src.StateHash()
	b.SetBytes(int64(data.Len()))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		cfg := DefaultConfig()
		cfg.Dir = b.TempDir() + "/db"
		dst := openCfg(b, cfg)
		b.StartTimer()
		if err := dst.Restore(io.NopCloser(bytes.NewReader(data.Bytes()))); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, got, _ := dst.StateHash(); got != want {
			b.Fatal("restored state differs")
		}
		dst.Close()
		b.StartTimer()
	}
}
