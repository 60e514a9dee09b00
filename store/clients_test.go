package store

import (
	"strings"
	"testing"
)

func clientCmd(key, action string, c Client, overlap int64, at int64) Command {
	cmd := adminCmd(OpPutClient, key, &Admin{ClientChange: &ClientChange{Action: action, Client: c, Overlap: overlap}})
	cmd.Time = at
	return cmd
}

const hashA, hashB, hashC = "$argon2id$v=19$m=1,t=1,p=1$YQ$YQ", "$argon2id$v=19$m=1,t=1,p=1$Yg$Yg", "$argon2id$v=19$m=1,t=1,p=1$Yw$Yw"

func TestClientsApply(t *testing.T) {
	s := openTest(t)
	ops := Client{ID: "ops", Scopes: []string{"ops:read"}, Secrets: []ClientSecret{{Hash: hashA}}}
	// Bootstrap makes the first client; a second bootstrap, or a create
	// of an existing id, is refused and changes nothing.
	mustOK(t, s, clientCmd("b1", ClientBootstrap, Client{ID: "admin", Scopes: []string{"ops:read", "clients:admin"}, Secrets: []ClientSecret{{Hash: hashA}}}, 0, t0))
	for _, c := range []Command{
		clientCmd("b2", ClientBootstrap, ops, 0, t0),
		clientCmd("c0", ClientCreate, Client{ID: "admin", Scopes: []string{"ops:read"}, Secrets: []ClientSecret{{Hash: hashB}}}, 0, t0),
	} {
		if r := run1(t, s, c); r.Status != StatusExists {
			t.Fatalf("%s: %v %s", c.Key, r.Status, r.Detail)
		}
	}
	mustOK(t, s, clientCmd("c1", ClientCreate, ops, 0, t0))
	for name, bad := range map[string]Client{
		"no scope":       {ID: "x", Secrets: []ClientSecret{{Hash: hashA}}},
		"no credential":  {ID: "x", Scopes: []string{"ops:read"}},
		"clear secret":   {ID: "x", Scopes: []string{"ops:read"}, Secrets: []ClientSecret{{Hash: "hunter2"}}},
		"bad thumbprint": {ID: "x", Scopes: []string{"ops:read"}, Certs: []ClientCert{{Thumbprint: "abc"}}},
		"bad scope":      {ID: "x", Scopes: []string{"ops read"}, Secrets: []ClientSecret{{Hash: hashA}}},
		"bad id":         {ID: "x y", Scopes: []string{"ops:read"}, Secrets: []ClientSecret{{Hash: hashA}}},
	} {
		if r := run1(t, s, clientCmd("bad-"+name, ClientCreate, bad, 0, t0)); r.Status != StatusInvalidChange {
			t.Errorf("%s: %v %s", name, r.Status, r.Detail)
		}
	}
	if _, ok := s.Directory().Client("x"); ok {
		t.Fatal("an invalid client was stored")
	}
	// Rotation with a 24 h overlap: the old secret ends then, the new has
	// no end; a second rotation keeps at most two.
	const day = int64(24 * 3600 * 1e9)
	mustOK(t, s, clientCmd("r1", ClientRotateSecret, Client{ID: "ops", Secrets: []ClientSecret{{Hash: hashB}}}, day, t0))
	c, _ := s.Directory().Client("ops")
	if len(c.Secrets) != 2 || c.Secrets[0].Hash != hashA || c.Secrets[0].NotAfter != t0+day || c.Secrets[1].NotAfter != 0 {
		t.Fatalf("after rotation: %+v", c.Secrets)
	}
	if !c.Secrets[0].Valid(t0+day-1) || c.Secrets[0].Valid(t0+day) {
		t.Fatal("overlap bounds")
	}
	mustOK(t, s, clientCmd("r2", ClientRotateSecret, Client{ID: "ops", Secrets: []ClientSecret{{Hash: hashC}}}, day, t0+2*day))
	c, _ = s.Directory().Client("ops")
	if len(c.Secrets) != 2 || c.Secrets[0].Hash != hashB || c.Secrets[1].Hash != hashC {
		t.Fatalf("after a second rotation (the expired first secret dropped): %+v", c.Secrets)
	}
	// No overlap: the old secret goes at once.
	mustOK(t, s, clientCmd("r3", ClientRotateSecret, Client{ID: "ops", Secrets: []ClientSecret{{Hash: hashA}}}, 0, t0+3*day))
	c, _ = s.Directory().Client("ops")
	if len(c.Secrets) != 1 || c.Secrets[0].Hash != hashA {
		t.Fatalf("rotation without overlap: %+v", c.Secrets)
	}
	mustOK(t, s, clientCmd("d1", ClientDisable, Client{ID: "ops"}, 0, t0))
	if c, _ = s.Directory().Client("ops"); !c.Disabled {
		t.Fatal("not disabled")
	}
	if r := run1(t, s, clientCmd("d2", ClientDisable, Client{ID: "nobody"}, 0, t0)); r.Status != StatusNotFound {
		t.Fatalf("disable of an unknown client: %v", r.Status)
	}
	// The audit chain has every change, and no hash.
	recs, err := s.Audit(AuditFilter{Object: "client/ops"})
	if err != nil || len(recs) != 5 {
		t.Fatalf("audit: %d %v", len(recs), err)
	}
	for _, r := range recs {
		for _, h := range []string{hashA, hashB, hashC} {
			if strings.Contains(string(r.Before)+string(r.After), h) {
				t.Fatalf("audit record %d has a secret hash: %s", r.Seq, r.After)
			}
		}
	}
	if recs[0].Action != "client.create" || recs[1].Action != "client.rotate_secret" || recs[4].Action != "client.disable" {
		t.Errorf("actions: %s %s %s", recs[0].Action, recs[1].Action, recs[4].Action)
	}
	// Clients survive a reopen (loaded with the directory).
	dir := s.cfg.Dir
	s.Close()
	s2 := openCfg(t, testConfigIn(dir))
	if c, ok := s2.Directory().Client("ops"); !ok || !c.Disabled || len(s2.Directory().Clients()) != 2 {
		t.Fatalf("after reopen: %+v %v", c, ok)
	}
}

// Every key space has its own first byte: a directory load scans a
// prefix and would read another space's values as its own (the clients'
// first prefix was the original references' 'o').
func TestKeyPrefixesDistinct(t *testing.T) {
	pfx := map[string]byte{
		"meta": pfxMeta, "account": pfxAccount, "card": pfxCard, "transfer": pfxTransfer, "origref": pfxOrigRef,
		"expiry": pfxExpiry, "idem": pfxIdem, "idemtime": pfxIdemTime, "byaccount": pfxByAccount, "bydaypartner": pfxByDayPartnr,
		"route": pfxRoute, "partner": pfxPartner, "agent": pfxAgent, "audit": pfxAudit, "day": pfxDay,
		"break": pfxBreak, "breakaudit": pfxBreakAudit, "client": pfxClient,
		"authorization": pfxAuthorization, "macKeys": pfxMACKeys, "destination": pfxDestination,
		"forward": pfxForward, "forwardid": pfxForwardID, "forwarddue": pfxForwardDue, "saf": pfxSAF, "safqueue": pfxSAFQueue,
		"webhookendpoint": pfxWebhookEndpoint, "webhookdelivery": pfxWebhookDelivery, "webhookdue": pfxWebhookDue,
		"batch": pfxBatch, "batchopen": pfxBatchOpen, "statementjob": pfxStatementJob,
		"hostreversal": pfxHostReversal,
	}
	seen := map[byte]string{}
	for name, b := range pfx {
		if other, dup := seen[b]; dup {
			t.Errorf("key prefix %q is both %s and %s", b, name, other)
		}
		seen[b] = name
	}
}

// Clients load with the directory next to every other key space: an
// original reference (prefix of its own) is not read as a client.
func TestClientsLoadBesideOtherState(t *testing.T) {
	s := fixture(t)
	mustOK(t, s, authCmd("hold-1", "h1", "merch", 100, "ref-1"))
	mustOK(t, s, clientCmd("c1", ClientCreate, Client{ID: "ops", Scopes: []string{"ops:read"}, Secrets: []ClientSecret{{Hash: hashA}}}, 0, t0))
	dir := s.cfg.Dir
	s.Close()
	s2 := openCfg(t, testConfigIn(dir))
	if cs := s2.Directory().Clients(); len(cs) != 1 || cs[0].ID != "ops" {
		t.Fatalf("clients after reopen: %+v", cs)
	}
}
