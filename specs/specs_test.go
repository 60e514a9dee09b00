package specs

import (
	"encoding/json"
	"io/fs"
	"slices"
	"testing"

	moovspecs "github.com/moov-io/iso8583/specs"
)

func TestNames(t *testing.T) {
	want := []string{"iso87ascii", "iso87binary"}
	if got := Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
}

// TestMoovLoads: every dialect must load with moov's importer, unchanged.
func TestMoovLoads(t *testing.T) {
	for _, name := range Names() {
		raw, err := fs.ReadFile(FS, name+".json")
		if err != nil {
			t.Fatal(err)
		}
		spec, err := moovspecs.ImportJSON(raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for id := 0; id <= 128; id++ {
			if _, ok := spec.Fields[id]; !ok {
				t.Errorf("%s: field %d missing", name, id)
			}
		}
	}
}

type field struct {
	Type    string `json:"type"`
	Length  int    `json:"length"`
	Enc     string `json:"enc"`
	Prefix  string `json:"prefix"`
	Class   string `json:"class"`
	Padding *struct {
		Type string `json:"type"`
		Pad  string `json:"pad"`
	} `json:"padding"`
}

func load(t *testing.T, name string) map[string]field {
	t.Helper()
	raw, err := fs.ReadFile(FS, name+".json")
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Fields map[string]field `json:"fields"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	return s.Fields
}

// TestSwitchFields pins the ISO 8583:1987 attributes of the fields the
// switch reads and writes, in every dialect: class, length, and
// fixed/LL/LLL.
func TestSwitchFields(t *testing.T) {
	type attr struct {
		class  string
		length int
		kind   string // Fixed, LL, LLL
	}
	want := map[string]attr{
		"2": {"n", 19, "LL"}, "3": {"n", 6, "Fixed"}, "4": {"n", 12, "Fixed"},
		"7": {"n", 10, "Fixed"}, "11": {"n", 6, "Fixed"}, "12": {"n", 6, "Fixed"},
		"13": {"n", 4, "Fixed"}, "14": {"n", 4, "Fixed"}, "18": {"n", 4, "Fixed"},
		"22": {"n", 3, "Fixed"}, "25": {"n", 2, "Fixed"}, "32": {"n", 11, "LL"},
		"35": {"z", 37, "LL"}, "37": {"an", 12, "Fixed"}, "38": {"an", 6, "Fixed"},
		"39": {"an", 2, "Fixed"}, "41": {"ans", 8, "Fixed"}, "42": {"ans", 15, "Fixed"},
		"43": {"ans", 40, "Fixed"}, "48": {"ans", 999, "LLL"}, "49": {"n", 3, "Fixed"},
		"52": {"b", 8, "Fixed"}, "54": {"an", 120, "LLL"}, "55": {"ans", 999, "LLL"},
		"64": {"b", 8, "Fixed"}, "70": {"n", 3, "Fixed"}, "90": {"n", 42, "Fixed"},
		"95": {"an", 42, "Fixed"}, "102": {"ans", 28, "LL"}, "103": {"ans", 28, "LL"},
		"128": {"b", 8, "Fixed"},
	}
	for _, name := range Names() {
		fields := load(t, name)
		for id, w := range want {
			f := fields[id]
			_, kind, _ := cutLast(f.Prefix)
			if f.Class != w.class || f.Length != w.length || kind != w.kind {
				t.Errorf("%s field %s: class %q length %d %s, want %q %d %s", name, id, f.Class, f.Length, kind, w.class, w.length, w.kind)
			}
		}
	}
}

func cutLast(s string) (string, string, bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '.' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// TestDialectsAgree: the dialects differ only in encoding, never in the
// field table (class, length, fixed or variable, padding).
func TestDialectsAgree(t *testing.T) {
	a, b := load(t, "iso87ascii"), load(t, "iso87binary")
	if len(a) != len(b) {
		t.Fatalf("field counts differ: %d vs %d", len(a), len(b))
	}
	for id, fa := range a {
		fb := b[id]
		_, ka, _ := cutLast(fa.Prefix)
		_, kb, _ := cutLast(fb.Prefix)
		if fa.Class != fb.Class || fa.Length != fb.Length || ka != kb || (fa.Padding == nil) != (fb.Padding == nil) {
			t.Errorf("field %s differs between dialects: %+v vs %+v", id, fa, fb)
		}
	}
}

// TestBitmapAutoExpands: bit 1 must announce the secondary bitmap, which
// needs 8-byte bitmaps that expand (moov's stock 16-byte bitmap never sets
// bit 1).
func TestBitmapAutoExpands(t *testing.T) {
	for _, name := range Names() {
		raw, _ := fs.ReadFile(FS, name+".json")
		var s struct {
			Fields map[string]struct {
				Type              string `json:"type"`
				Length            int    `json:"length"`
				DisableAutoExpand bool   `json:"disableAutoExpand"`
			} `json:"fields"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		bm := s.Fields["1"]
		if bm.Type != "Bitmap" || bm.Length != 8 || bm.DisableAutoExpand {
			t.Errorf("%s: bitmap %+v, want auto-expanding Bitmap of length 8", name, bm)
		}
	}
}
