package instances

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/armgate/armgate/internal/gatewayproc"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// BenchmarkPropagation measures how long a revocation made through instance
// A takes to be refused by instance B, two Caddy processes on one
// PostgreSQL. One iteration is one revocation: a goroutine polls B with a
// token (cached on both instances beforehand) back to back while the
// revoke is sent through A's admin API; the time from sending it to B's
// first 401 is recorded. It reports min, median and p95 of that time
// (min-ms, median-ms, p95-ms) and logs the full summary;
// -benchtime 250x makes 250 revocations.
func BenchmarkPropagation(b *testing.B) {
	procs, dsn := startInstances(b, 2, "cache {\n\t\t\tttl 10m\n\t\t}") // a refusal can only come from an invalidation
	a, c := procs[0], procs[1]
	_, store := gatewayproc.OpenStore(b, dsn)

	type tok struct{ id, plain string }
	var ready []tok // created and cached on both instances
	created := 0
	prepare := func(n int) {
		plains := make([]string, n)
		for i := range plains {
			t, plain, err := store.CreateToken(context.Background(), "bench", storage.NewToken{
				UserID: fmt.Sprintf("bench-%04d", created/10), Name: fmt.Sprintf("t%d", created),
				Scopes: []string{token.ScopeAPI}, ExpiresAt: time.Now().Add(time.Hour), MaxPerUser: 10, CreateUser: true,
			})
			if err != nil {
				b.Fatal(err)
			}
			created++
			ready = append(ready, tok{t.ID, plain})
			plains[i] = plain
		}
		a.EnsureCached(b, plains...)
		c.EnsureCached(b, plains...)
	}

	m0, err := c.Scrape()
	if err != nil {
		b.Fatal(err)
	}
	var sinceSend, sinceAnswer []time.Duration // revoke sent → B refuses; A answered → B refuses (≤ 0: B was first)
	var polls int
	for b.Loop() {
		if len(ready) == 0 {
			b.StopTimer()
			prepare(100)
			b.StartTimer()
		}
		tk := ready[0]
		ready = ready[1:]
		type result struct {
			at    time.Time
			polls int
			err   error
		}
		done := make(chan result, 1)
		polling := make(chan struct{})
		go func() {
			var res result
			deadline := time.Now().Add(5 * time.Second)
			for {
				r, err := c.Try(http.MethodGet, "/", tk.plain)
				res.polls++
				if res.polls == 1 {
					close(polling)
				}
				switch {
				case err != nil:
					res.err = err
				case r.Status == http.StatusUnauthorized:
					res.at = time.Now()
				case r.Status != http.StatusOK:
					res.err = fmt.Errorf("B answered %d %s", r.Status, r.Body)
				case time.Now().After(deadline):
					res.err = fmt.Errorf("B still accepts the token 5s after the revoke")
				default:
					continue
				}
				done <- res
				return
			}
		}()
		<-polling
		sent := time.Now()
		r, err := a.Admin(http.MethodPost, "/tokens/"+tk.id+"/revoke", `{"reason":"benchmark"}`)
		if err != nil || r.Status != http.StatusOK {
			b.Fatalf("revoke through A: %d %s (%v)", r.Status, r.Body, err)
		}
		answered := time.Now()
		res := <-done
		if res.err != nil {
			b.Fatal(res.err)
		}
		sinceSend = append(sinceSend, res.at.Sub(sent))
		sinceAnswer = append(sinceAnswer, res.at.Sub(answered))
		polls += res.polls
	}
	m1, err := c.Scrape()
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for _, d := range sinceSend {
		total += d
	}
	delta := func(series string) float64 { return m1.Value(series) - m0.Value(series) }
	b.Logf("propagation of %d revocations from A to B (two Caddy processes, one PostgreSQL, loopback):", len(sinceSend))
	b.Logf("  revoke sent to A -> B refuses:      %s", summary(sinceSend))
	b.Logf("  A answered the revoke -> B refuses: %s", summary(sinceAnswer))
	b.Logf("  B polled every %v on average; B: %v invalidations received, %v database lookups (token creations and caching passes included)",
		(total / time.Duration(max(polls, 1))).Round(time.Microsecond),
		delta("caddy_armgate_invalidations_received_total"), delta("caddy_armgate_db_lookups_total"))
	b.ReportMetric(ms(quantile(sinceSend, 0)), "min-ms")
	b.ReportMetric(ms(quantile(sinceSend, 0.5)), "median-ms")
	b.ReportMetric(ms(quantile(sinceSend, 0.95)), "p95-ms")
}
