package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
)

func batchItems(n int) []BatchItem {
	items := make([]BatchItem, n)
	for i := range items {
		items[i] = BatchItem{Amount: "0.01", Currency: "USD", Debtor: "card-4111", Reference: fmt.Sprintf("L-%d", i)}
	}
	return items
}

func batchCmd(key, partner, id string, items []BatchItem) Command {
	return Command{Op: OpPutBatch, Key: partner + "|" + key, Fingerprint: "fp-" + key, Time: t0, Partner: partner,
		Batch: &BatchChange{ID: id, Request: key, Digest: "d-" + key, Origin: BatchOrigin{Lane: "rest", Source: "10.0.0.1"}, Items: items}}
}

func batchDoneCmd(partner, id string, completed, failed int, refused ...BatchRefusal) Command {
	return Command{Op: OpPutBatch, Key: partner + "|done|" + id, Time: t0 + 1, Partner: partner,
		Batch: &BatchChange{ID: id, Done: true, Completed: completed, Failed: failed, Refused: refused}}
}

func stmtCmd(key, partner string, j StatementJob) Command {
	return Command{Op: OpPutStatementJob, Key: partner + "|" + key, Fingerprint: "fp", Time: t0, Partner: partner, StatementJob: &j}
}

// A batch is stored whole (items across chunks), listed open until its
// completion, and answered by key like every command.
func TestBatchOp(t *testing.T) {
	s := openTest(t)
	items := batchItems(1234) // three chunks, the last one short
	mustOK(t, s, batchCmd("k1", "p1", "B1", items))
	b, err := s.Batch("p1", "B1")
	if err != nil || b.Items != 1234 || b.Request != "k1" || b.Digest != "d-k1" || b.Done || b.Time != t0 || b.Origin.Source != "10.0.0.1" {
		t.Fatalf("batch: %+v %v", b, err)
	}
	for _, c := range []struct{ from, n int }{{0, 1234}, {499, 2}, {1000, 500}, {1233, 10}, {1234, 5}} {
		got, err := s.BatchItems("p1", "B1", c.from, c.n)
		want := items[min(c.from, len(items)):min(c.from+c.n, len(items))]
		if err != nil || len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want)) {
			t.Fatalf("items [%d,+%d): %d items, %v", c.from, c.n, len(got), err)
		}
	}
	if _, err := s.Batch("p2", "B1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another partner's batch: %v", err)
	}
	// A repeat is answered from its record; another batch under the id is
	// StatusExists, and nothing of it is kept.
	if r := run1(t, s, batchCmd("k1", "p1", "B1", items)); r.Status != StatusOK || !r.Replayed {
		t.Fatalf("repeat: %+v", r)
	}
	if r := run1(t, s, batchCmd("k2", "p1", "B1", items[:1])); r.Status != StatusExists {
		t.Fatalf("id reused: %+v", r)
	}
	if b, _ := s.Batch("p1", "B1"); b.Request != "k1" || b.Items != 1234 {
		t.Fatalf("batch after a refused reuse: %+v", b)
	}
	mustOK(t, s, batchCmd("k3", "p2", "B1", items[:2]))
	open, err := s.OpenBatches(BatchRef{}, 10)
	if err != nil || !reflect.DeepEqual(open, []BatchRef{{"p1", "B1"}, {"p2", "B1"}}) {
		t.Fatalf("open: %+v %v", open, err)
	}
	if next, _ := s.OpenBatches(open[0], 10); !reflect.DeepEqual(next, open[1:]) {
		t.Fatalf("open after %v: %+v", open[0], next)
	}
	ref := BatchRefusal{Type: "https://switchd.dev/problems/unknown-account", Title: "Unknown account", Status: 404, Items: []int{3, 7, 1233}}
	mustOK(t, s, batchDoneCmd("p1", "B1", 1230, 4, ref))
	if b, _ := s.Batch("p1", "B1"); !b.Done || b.Completed != 1230 || b.Failed != 4 || !reflect.DeepEqual(b.Refused, []BatchRefusal{ref}) {
		t.Fatalf("completed: %+v", b)
	}
	// The first completion stands.
	if r := run1(t, s, Command{Op: OpPutBatch, Key: "p1|done2", Time: t0, Partner: "p1", Batch: &BatchChange{ID: "B1", Done: true, Completed: 1234}}); r.Status != StatusOK {
		t.Fatalf("second completion: %+v", r)
	}
	if b, _ := s.Batch("p1", "B1"); len(b.Refused) != 1 {
		t.Fatalf("second completion changed the refusals: %+v", b)
	}
	if open, _ := s.OpenBatches(BatchRef{}, 10); !reflect.DeepEqual(open, []BatchRef{{"p2", "B1"}}) {
		t.Fatalf("open after completion: %+v", open)
	}
}

// Refused batch changes are not stored and change nothing.
func TestBatchOpRefusals(t *testing.T) {
	s := openTest(t)
	mustOK(t, s, batchCmd("ok", "p1", "B1", batchItems(10)))
	long := batchItems(1)
	long[0].Reference = string(bytes.Repeat([]byte{'r'}, batchItemFieldBytesMax+1))
	noRef := batchItems(1)
	noRef[0].Reference = ""
	_, before, _ := s.StateHash()
	cases := []struct {
		name string
		c    Command
		want Status
	}{
		{"no items", batchCmd("a", "p1", "B2", nil), StatusInvalidCommand},
		{"too many items", batchCmd("b", "p1", "B2", batchItems(BatchItemsMax+1)), StatusInvalidCommand},
		{"long field", batchCmd("c", "p1", "B2", long), StatusInvalidCommand},
		{"no reference", batchCmd("d", "p1", "B2", noRef), StatusInvalidCommand},
		{"no partner", batchCmd("e", "", "B2", batchItems(1)), StatusInvalidCommand},
		{"id with a separator", batchCmd("f", "p1", "B\x002", batchItems(1)), StatusInvalidCommand},
		{"completion of none", batchDoneCmd("p1", "nope", 1, 0), StatusNotFound},
		{"counts not the items", batchDoneCmd("p1", "B1", 5, 4), StatusInvalidCommand},
		{"more refused than failed", batchDoneCmd("p1", "B1", 10, 0, BatchRefusal{Type: "x", Status: 422, Items: []int{1}}), StatusInvalidCommand},
		{"refusal out of range", batchDoneCmd("p1", "B1", 9, 1, BatchRefusal{Type: "x", Status: 422, Items: []int{10}}), StatusInvalidCommand},
		{"item refused twice", batchDoneCmd("p1", "B1", 8, 2, BatchRefusal{Type: "x", Status: 422, Items: []int{1}}, BatchRefusal{Type: "y", Status: 422, Items: []int{1}}), StatusInvalidCommand},
		{"refusal not a problem status", batchDoneCmd("p1", "B1", 9, 1, BatchRefusal{Type: "x", Status: 200, Items: []int{1}}), StatusInvalidCommand},
	}
	for _, c := range cases {
		if c.name == "too many items" {
			// The encoder accepts it only below its own limit: apply the
			// decoded form directly.
			if err := c.c.CheckEncodable(); err == nil {
				t.Errorf("%s: encodable", c.name)
			}
			continue
		}
		if r := run1(t, s, c.c); r.Status != c.want {
			t.Errorf("%s: %v, want %v", c.name, r.Status, c.want)
		}
	}
	// Only the applied index moved: compare everything else by a fresh
	// replay of the one good command.
	ref := openTest(t)
	mustOK(t, ref, batchCmd("ok", "p1", "B1", batchItems(10)))
	for range len(cases) - 1 {
		run(t, ref, expireCmd(0, 0)) // advance the index alike, changing nothing
	}
	_, after, _ := s.StateHash()
	_, want, _ := ref.StateHash()
	if after == before || after != want {
		t.Fatalf("refused batch changes changed the state")
	}
}

// The 10,000 items of the API's largest shape fit one command
// far inside a raft entry.
func TestBatchCommandSize(t *testing.T) {
	items := make([]BatchItem, BatchItemsMax)
	w := func(c byte, n int) string { return string(bytes.Repeat([]byte{c}, n)) }
	for i := range items {
		items[i] = BatchItem{Amount: w('9', 24), Currency: "USD", Debtor: w('d', 64), Reference: fmt.Sprintf("%035d", i), BillType: w('b', 32), PayerType: w('p', 32)}
	}
	c := batchCmd("k", "p1", "B", items)
	data, err := EncodeBatch([]Command{c})
	if err != nil {
		t.Fatal(err)
	}
	if n := batchChangeBytes(c.Batch); n > BatchCommandBytesMax || len(data) < n {
		t.Fatalf("batch change of %d bytes (limit %d), entry %d", n, BatchCommandBytesMax, len(data))
	}
	t.Logf("largest batch: %d bytes per raft entry; typical items: %d", len(data), batchChangeBytes(batchCmd("k", "p1", "B", batchItems(BatchItemsMax)).Batch))
	got, err := DecodeBatch(data)
	if err != nil || !reflect.DeepEqual(got[0], c) {
		t.Fatalf("round trip: %v", err)
	}
}

// Batches and statement jobs round-trip the binary encoding exactly,
// and apply alike on every store whatever the split into entries; they
// survive a snapshot reference and a reopen.
func TestBatchAndStatementJobEncoding(t *testing.T) {
	cmds := []Command{
		batchCmd("k1", "p1", "B1", batchItems(3)),
		batchDoneCmd("p1", "B1", 1, 2, BatchRefusal{Type: "t", Title: "T", Detail: "d", Status: 422, Items: []int{0, 2}}),
		stmtCmd("s1", "p1", StatementJob{ID: "stj-1", Account: "acct", Day: "2026-01-02", Format: "mt940", Request: "s1", State: StatementQueued}),
		stmtCmd("s2", "p1", StatementJob{ID: "stj-1", Account: "acct", Day: "2026-01-02", Format: "mt940", Request: "s1", State: StatementDone,
			File: "acct.mt940", Bytes: 10, SHA256: string(bytes.Repeat([]byte{'a'}, 64)), Entries: 2}),
	}
	data, err := EncodeBatch(cmds)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeBatch(data)
	if err != nil || !reflect.DeepEqual(got, cmds) {
		t.Fatalf("round trip: %v\n%+v", err, got)
	}
	// An empty extended-flags byte is not an encoding of anything.
	one, _ := EncodeBatch(cmds[:1])
	if _, err := DecodeBatch(one); err != nil {
		t.Fatal(err)
	}
	if i := bytes.Index(one, []byte{flagExt, flagExtBatch}); i < 0 {
		t.Fatalf("no extended flags in %x", one)
	} else {
		bad := bytes.Clone(one)
		bad[i+1] = 0
		if _, err := DecodeBatch(bad); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("empty extended flags: %v", err)
		}
	}

	whole, split := openTest(t), openTest(t)
	mustOK(t, whole, cmds...)
	for _, c := range cmds {
		mustOK(t, split, c)
		run(t, split, expireCmd(0, 0))
	}
	bw, _ := whole.Batch("p1", "B1")
	bs, _ := split.Batch("p1", "B1")
	jw, _ := whole.StatementJobOf("p1", "stj-1")
	js, _ := split.StatementJobOf("p1", "stj-1")
	if !reflect.DeepEqual(bw, bs) || jw != js || jw.State != StatementDone || jw.Time != t0 {
		t.Fatalf("whole %+v %+v, split %+v %+v", bw, jw, bs, js)
	}

	ref := persistRef(t, whole)
	_, before, _ := whole.StateHash()
	if err := whole.Restore(io.NopCloser(bytes.NewReader(ref))); err != nil {
		t.Fatal(err)
	}
	dir := whole.cfg.Dir
	whole.Close()
	re := openCfg(t, testConfigIn(dir))
	if _, after, _ := re.StateHash(); after != before {
		t.Fatal("state changed over restore and reopen")
	}
	if b, err := re.Batch("p1", "B1"); err != nil || !b.Done {
		t.Fatalf("batch after reopen: %+v %v", b, err)
	}
	if items, _ := re.BatchItems("p1", "B1", 0, 10); len(items) != 3 {
		t.Fatalf("items after reopen: %d", len(items))
	}
	if j, err := re.StatementJobOf("p1", "stj-1"); err != nil || j.SHA256 != jw.SHA256 {
		t.Fatalf("job after reopen: %+v %v", j, err)
	}
}

// A statement job is created once, ends once with its file's hash, and
// refuses other bytes for the same job.
func TestStatementJobOp(t *testing.T) {
	s := openTest(t)
	q := StatementJob{ID: "stj-1", Account: "acct", Day: "2026-01-02", Format: "mt940", Request: "r1", State: StatementQueued}
	mustOK(t, s, stmtCmd("c1", "p1", q))
	if r := run1(t, s, stmtCmd("c2", "p1", q)); r.Status != StatusExists {
		t.Fatalf("created twice: %+v", r)
	}
	if _, err := s.StatementJobOf("p2", "stj-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another partner's job: %v", err)
	}
	failed := q
	failed.State, failed.Error = StatementFailed, "ledger unavailable"
	mustOK(t, s, stmtCmd("f1", "p1", failed))
	done := q
	done.State, done.File, done.Bytes, done.SHA256 = StatementDone, "acct.mt940", 10, string(bytes.Repeat([]byte{'a'}, 64))
	mustOK(t, s, stmtCmd("d1", "p1", done)) // a re-run after a failure
	again := done
	mustOK(t, s, stmtCmd("d2", "p1", again)) // another node made the same bytes
	other := done
	other.SHA256 = string(bytes.Repeat([]byte{'b'}, 64))
	if r := run1(t, s, stmtCmd("d3", "p1", other)); r.Status != StatusInvalidChange {
		t.Fatalf("other bytes: %+v", r)
	}
	mustOK(t, s, stmtCmd("f2", "p1", failed)) // a failed re-run does not undo the file
	if j, _ := s.StatementJobOf("p1", "stj-1"); j.State != StatementDone || j.SHA256 != done.SHA256 || j.Time != t0 {
		t.Fatalf("job: %+v", j)
	}
	for name, c := range map[string]Command{
		"end of none":   stmtCmd("n1", "p1", StatementJob{ID: "nope", Account: "acct", Day: "2026-01-02", Format: "mt940", State: StatementFailed}),
		"bad day":       stmtCmd("n2", "p1", StatementJob{ID: "x", Account: "acct", Day: "2026-13-02", Format: "mt940", State: StatementQueued}),
		"done no hash":  stmtCmd("n3", "p1", StatementJob{ID: "stj-1", Account: "acct", Day: "2026-01-02", Format: "mt940", State: StatementDone, File: "f"}),
		"unknown state": stmtCmd("n4", "p1", StatementJob{ID: "y", Account: "acct", Day: "2026-01-02", Format: "mt940", State: "running"}),
		"other account": stmtCmd("n5", "p1", StatementJob{ID: "stj-1", Account: "other", Day: "2026-01-02", Format: "mt940", Request: "r1", State: StatementFailed}),
	} {
		want := StatusInvalidCommand
		switch name {
		case "end of none":
			want = StatusNotFound
		case "other account":
			want = StatusInvalidChange
		}
		if r := run1(t, s, c); r.Status != want {
			t.Errorf("%s: %v, want %v", name, r.Status, want)
		}
	}
}
