package switching_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchd/switchd/api"
	"github.com/switchd/switchd/config"
	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
	switching "github.com/switchd/switchd/switch"
)

type benchLedger struct {
	*store.Store
	h *harness
}

func (l benchLedger) ReadIndex(ctx context.Context) error { return l.h.node.ReadIndex(ctx) }
func (l benchLedger) Propose(ctx context.Context, cmd store.Command) (store.Result, error) {
	return l.h.node.Propose(ctx, cmd)
}
func (l benchLedger) Leading() bool { return l.h.node.Leading() }

// BenchmarkRESTvsLane: the same purchase of 0.01 from the same card, on
// one node in one run, as an ISO 8583 0200 on a plain lane and as
// POST /v1/payments over HTTPS with keep-alive (a bearer token checked per
// call, an Idempotency-Key per payment). 16 clients each, one request in
// flight per client; every answer checked (00, 201).
func BenchmarkRESTvsLane(b *testing.B) {
	h := newHarness(b, func(f *config.File) {
		f.Accounts = append(f.Accounts, payment.AccountSeed{ID: "card-bench", Kind: store.KindCardholder, Currency: "USD",
			PAN: "4242424242424242", Opening: "100000000.00", FundedBy: "bank-funding-usd"})
		for i := range f.Switch.Partners {
			if f.Switch.Partners[i].ID == "demo-acquirer" {
				f.Switch.Partners[i].Lanes = []string{"plain", "api"}
			}
		}
	})
	lane := newTestLane(h, func(lc *switching.LaneConfig) { lc.Name = "plain" })
	ctx := context.Background()
	res, err := h.node.Propose(ctx, store.Command{Op: store.OpPutClient, Key: "bench-client", Fingerprint: "f", Time: 1,
		Admin: &store.Admin{Actor: "bench", ClientChange: &store.ClientChange{Action: store.ClientCreate,
			Client: store.Client{ID: "demo-acquirer", Scopes: oauth.PartnerScopes, Certs: []store.ClientCert{{Thumbprint: strings.Repeat("A", 43)}}}}}})
	if err != nil || res.Status != store.StatusOK {
		b.Fatal(err, res)
	}
	key := filepath.Join(b.TempDir(), "k.pem")
	if _, err := oauth.GenerateKeyFile(key); err != nil {
		b.Fatal(err)
	}
	ks, err := oauth.LoadKeys([]string{key})
	if err != nil {
		b.Fatal(err)
	}
	auth, err := oauth.NewServer(oauth.DefaultConfig(), ks, h.st.Directory, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	tok, err := auth.Issue("demo-acquirer", oauth.PartnerScopes, "")
	if err != nil {
		b.Fatal(err)
	}
	tcfg, ca, err := api.DevTLS(filepath.Join(b.TempDir(), "api"))
	if err != nil {
		b.Fatal(err)
	}
	acfg := api.Config{Listen: "127.0.0.1:0", Lane: "api", TLS: &tcfg}
	srv, err := api.New(acfg, h.core, benchLedger{h.st, h}, auth, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer srv.Close(ctx)
	pem, _ := os.ReadFile(ca)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, MaxIdleConnsPerHost: 32, MaxConnsPerHost: 32, ForceAttemptHTTP2: false}}
	defer hc.CloseIdleConnections()
	url := "https://" + srv.Addr().String() + "/v1/payments"

	var seq atomic.Int64
	b.Run("iso8583-lane", func(b *testing.B) {
		b.SetParallelism(8) // × GOMAXPROCS (2) = 16 clients
		b.RunParallel(func(pb *testing.PB) {
			c, err := net.Dial("tcp", lane.Addr().String())
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Close()
			cl := &client{t: b, c: c, br: bufio.NewReader(c), h: h}
			for pb.Next() {
				cl.write(purchase(int(seq.Add(1)%1_000_000), "4242424242424242", 1))
				if m, err := cl.read(); err != nil || m.Get(39) != "00" {
					b.Errorf("answer %v %v", m, err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "answers/s")
	})
	b.Run("rest-https", func(b *testing.B) {
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				n := seq.Add(1)
				body := fmt.Sprintf(`{"amount":"0.01","currency":"USD","debtor_account":"card-bench","reference":"B-%d"}`, n)
				req, _ := http.NewRequest("POST", url, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+tok.Token)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", fmt.Sprintf("bench-%d", n))
				resp, err := hc.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 201 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "answers/s")
	})
	// Open loop at 2,000/s for 5 s (b.N is not used: one run is the
	// measurement): the latency of each payment, p50 and p99.
	b.Run("rest-https-2000/s", func(b *testing.B) {
		const rate, dur = 2000, 5 * time.Second
		total := int(rate * dur / time.Second)
		lat := make([]time.Duration, total)
		var wg sync.WaitGroup
		var failed atomic.Int64
		start := time.Now()
		for i := 0; i < total; i++ {
			at := start.Add(time.Duration(i) * time.Second / rate)
			time.Sleep(time.Until(at))
			wg.Add(1)
			go func() {
				defer wg.Done()
				n := seq.Add(1)
				body := fmt.Sprintf(`{"amount":"0.01","currency":"USD","debtor_account":"card-bench","reference":"B-%d"}`, n)
				req, _ := http.NewRequest("POST", url, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+tok.Token)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", fmt.Sprintf("bench-%d", n))
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				lat[i] = time.Since(t0)
				if err != nil || resp.StatusCode != 201 {
					failed.Add(1)
				}
			}()
		}
		wg.Wait()
		if failed.Load() > 0 {
			b.Fatalf("%d of %d payments failed", failed.Load(), total)
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[total/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[total*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(total)/time.Since(start).Seconds(), "answers/s")
	})
}
