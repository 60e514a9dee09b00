package main

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAuditChange(t *testing.T) {
	for _, c := range []struct{ before, after, want string }{
		{``, ``, "-"},
		{``, `{"id":"r1"}`, "created"},
		{`{"id":"r1"}`, ``, "deleted"},
		{`{"id":"r1","settlement_account":"biller-power-co"}`, `{"id":"r1","settlement_account":"biller-grid-co"}`,
			`settlement_account: "biller-power-co" → "biller-grid-co"`},
		{`{"id":"p1","suspended":true}`, `{"id":"p1"}`, "suspended: true → -"},
		{`{"id":"p1"}`, `{"id":"p1"}`, "no change"},
	} {
		if got := auditChange([]byte(c.before), []byte(c.after)); got != c.want {
			t.Errorf("%s → %s: %q, want %q", c.before, c.after, got, c.want)
		}
	}
	long := auditChange([]byte(`{"a":"`+strings.Repeat("→", 200)+`"}`), []byte(`{"a":"x"}`))
	if !utf8.ValidString(long) || utf8.RuneCountInString(long) != changeBytesMax+1 {
		t.Errorf("long change: %d runes, valid %v", utf8.RuneCountInString(long), utf8.ValidString(long))
	}
}
