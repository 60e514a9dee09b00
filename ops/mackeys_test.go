package ops_test

import (
	"bytes"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"

	"github.com/switchd/switchd/mac"
)

const (
	opsTestKey  = "7962D9ECE03D1ACD4C76089DCE131543"
	opsTestKey2 = "2b7e151628aed2a6abf7158809cf4f3c"
)

func startMACNode(t *testing.T, kek *mac.KEK) string {
	t.Helper()
	tn := newTestNode(t)
	tn.srv.HandleMACKeys(kek)
	return tn.start(t)
}

func TestMACKeyAPI(t *testing.T) {
	kek, err := mac.NewKEK(bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	base := startMACNode(t, kek)
	defer http.DefaultClient.CloseIdleConnections()
	k1, _ := mac.NewKey(mac.AlgX919, mac.PadMethod1, mustUnhex(t, opsTestKey))
	k2, _ := mac.NewKey(mac.AlgAESCMAC, "", mustUnhex(t, opsTestKey2))
	path := base + "/v1/partners/demo-acquirer/mac-key"

	before := snapshotState(t, base)
	for _, c := range []struct {
		name, path, body string
		code             int
		typ, field       string
	}{
		{"no reason", path, `{"alg":"x919","padding":"m1","key":"` + opsTestKey + `"}`, 422, "invalid-change", "reason"},
		{"wrong kcv", path, `{"alg":"x919","padding":"m1","key":"` + opsTestKey + `","kcv":"000000","reason":"x"}`, 422, "invalid-change", "kcv"},
		{"not hex", path, `{"alg":"x919","padding":"m1","key":"` + opsTestKey[:30] + `zz","reason":"x"}`, 422, "invalid-change", "key"},
		{"short key", path, `{"alg":"x919","padding":"m1","key":"` + opsTestKey[:16] + `","reason":"x"}`, 422, "invalid-key", ""},
		{"no padding", path, `{"alg":"x919","key":"` + opsTestKey + `","reason":"x"}`, 422, "invalid-mac-algorithm", ""},
		{"bad overlap", path, `{"alg":"x919","padding":"m1","key":"` + opsTestKey + `","overlap":"a day","reason":"x"}`, 422, "invalid-change", "overlap"},
		{"long overlap", path, `{"alg":"x919","padding":"m1","key":"` + opsTestKey + `","overlap":"1000h","reason":"x"}`, 422, "invalid-change", "mac_key.overlap"},
		{"unknown partner", base + "/v1/partners/nobody/mac-key", `{"alg":"x919","padding":"m1","key":"` + opsTestKey + `","reason":"x"}`, 404, "not-found", ""},
		{"none without a MAC", path, `{"alg":"none","reason":"x"}`, 422, "invalid-change", "mac_key.alg"},
		{"not json", path, `{"alg":"x919","key":"` + opsTestKey[:20], 400, "bad-request", ""},
	} {
		code, body, _ := do(t, "POST", c.path, c.body)
		refused(t, base, c.name, code, body, c.code, c.typ, c.field, before)
		if strings.Contains(strings.ToLower(body), strings.ToLower(opsTestKey[:16])) {
			t.Errorf("%s: the problem shows the key: %s", c.name, body)
		}
	}
	if code, body, _ := doWith(t, http.Header{}, "POST", path, `{"alg":"x919","padding":"m1","key":"`+opsTestKey+`","reason":"x"}`); code != 401 {
		t.Errorf("no token: %d %s", code, body)
	}
	if code, body, _ := doWith(t, as(t, testActor, "routes:write"), "POST", path, `{"alg":"x919","padding":"m1","key":"`+opsTestKey+`","reason":"x"}`); code != 403 {
		t.Errorf("without keys:write: %d %s", code, body)
	}

	// Set, with the KCV the partner's ceremony printed (any case).
	code, body, _ := do(t, "POST", path, `{"alg":"x919","padding":"m1","key":"`+opsTestKey+`","kcv":"`+strings.ToLower(k1.KCV())+`","reason":"onboarding"}`)
	if code != 200 || !strings.Contains(body, `"kcv":"`+k1.KCV()+`"`) || !strings.Contains(body, `"kek":"`+kek.ID()+`"`) {
		t.Fatalf("set: %d %s", code, body)
	}
	// The change, with an overlap, retried with the same Idempotency-Key.
	hdr := withKey(as(t, testActor), "change-1")
	change := `{"alg":"aes-cmac","key":"` + opsTestKey2 + `","overlap":"24h","reason":"yearly rotation"}`
	code, body, _ = doWith(t, hdr, "POST", path, change)
	if code != 200 || !strings.Contains(body, `"previous":{"alg":"x919"`) || !strings.Contains(body, `"kcv":"`+k2.KCV()+`"`) {
		t.Fatalf("change: %d %s", code, body)
	}
	if code, body, _ := doWith(t, hdr, "POST", path, change); code != 200 || !strings.Contains(body, `"replayed":true`) {
		t.Fatalf("retry: %d %s", code, body)
	}
	before = snapshotState(t, base)
	code, body, _ = do(t, "POST", path, change)
	refused(t, base, "the current key again", code, body, 422, "invalid-change", "mac_key.kcv", before)

	// Nowhere the key: not in the partner, the list, or the audit chain.
	_, partner, _ := do(t, "GET", base+"/v1/partners/demo-acquirer", "")
	_, partners, _ := do(t, "GET", base+"/v1/partners", "")
	_, audit, _ := do(t, "GET", base+"/v1/audit?limit=1000", "")
	for name, s := range map[string]string{"partner": partner, "partners": partners, "audit": audit} {
		for _, key := range []string{opsTestKey, opsTestKey2} {
			if strings.Contains(strings.ToLower(s), strings.ToLower(key[:16])) || strings.Contains(s, "wrapped") {
				t.Errorf("%s shows key material: %s", name, s)
			}
		}
	}
	recs := auditOf(t, base, "partner/demo-acquirer")
	var macRecs int
	for _, r := range recs {
		if r.Action == "partner.mac_key" {
			macRecs++
		}
	}
	if macRecs != 2 || recs[len(recs)-1].Reason != "yearly rotation" {
		t.Errorf("audit: %d mac_key records: %+v", macRecs, recs)
	}
	// Removing the requirement needs no KEK and no key.
	if code, body, _ := do(t, "POST", path, `{"alg":"none","reason":"partner left the MAC scheme"}`); code != 200 || strings.Contains(body, `"mac"`) {
		t.Fatalf("none: %d %s", code, body)
	}
}

// A node without a KEK refuses to take a key (409 no-kek) and changes nothing.
func TestMACKeyAPIWithoutKEK(t *testing.T) {
	base := startMACNode(t, nil)
	defer http.DefaultClient.CloseIdleConnections()
	before := snapshotState(t, base)
	code, body, _ := do(t, "POST", base+"/v1/partners/demo-acquirer/mac-key", `{"alg":"x919","padding":"m1","key":"`+opsTestKey+`","reason":"x"}`)
	refused(t, base, "no KEK", code, body, 409, "no-kek", "", before)
}

func mustUnhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
