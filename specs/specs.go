// Package specs holds the ISO 8583 dialect definitions switchd speaks, as
// JSON files in moov-io/iso8583's spec format.
//
// The files are data, not code: a new dialect is a new JSON file. They load
// unchanged with moov-io/iso8583's specs.ImportJSON (moov ignores the extra
// "class" and "note" keys), and package codec derives its own compact field
// descriptors from the same bytes, so both agree on the wire format (except
// for iso87binary's BCD track 2 and signed amounts, jPOS forms moov lacks).
//
// The layouts are those of jPOS's ISO87APackager (iso87ascii, which moov-io's
// spec87ascii and Wireshark's dissector also read) and ISO87BPackager
// (iso87binary). Where jPOS, Wireshark and ISO 8583:1987 disagree on a
// field, its "note" says which the dialect follows and what the others do.
//
// Each field carries a "class" key with its character class (n, an, ans,
// ns, z, xn, b); a field without one has its ISO 8583:1987 class, and a class
// other than that one needs a "note" (package codec refuses the file
// otherwise). moov does not validate character classes; codec does.
// Fixed-length fields follow the ISO 8583 justification rule: numeric fields
// are right-justified with leading zeros, alphanumeric fields left-justified
// with trailing spaces ("padding" in the JSON). The bitmap field has 8-byte
// bitmaps with automatic expansion, so bit 1 is set and a secondary bitmap is
// emitted exactly when a field 65–128 is present.
package specs

import (
	"embed"
	"io/fs"
	"sort"
	"strings"
)

// FS holds every dialect file, named <dialect>.json.
//
//go:embed *.json
var FS embed.FS

// Names returns the dialect names (file names without ".json"), sorted.
func Names() []string {
	entries, err := fs.ReadDir(FS, ".")
	if err != nil {
		// The embedded root always exists; failing here is a broken build.
		panic("specs: reading embedded files: " + err.Error())
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".json"); ok && !e.IsDir() {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}
