// The start-up phase: time from process start to the first served request.

package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// startupRuns measures the time from starting the Caddy process to the
// first request served: a 200 through armgate_auth with a valid token
// (database migrated already), and, once, against a fresh database (the
// migrations run at start; the first answer from the database is a 401
// for the token, which that database does not know).
func (b *bench) startupRuns(ctx context.Context) error {
	measure := func(dsn string, want int) (time.Duration, error) {
		port, mport := freePort(), freePort()
		url := fmt.Sprintf("http://127.0.0.1:%d/v1/items", port)
		t0 := time.Now()
		p, err := b.startCaddy("startup", "B.Caddyfile", port, mport, dsn)
		if err != nil {
			return 0, err
		}
		defer p.stop()
		client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for time.Since(t0) < 30*time.Second {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			req.Header.Set("Authorization", b.auth)
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode == want {
					return time.Since(t0), nil
				}
			}
			if p.exited() {
				return 0, fmt.Errorf("caddy exited: %v", p.err)
			}
			time.Sleep(2 * time.Millisecond)
		}
		return 0, errors.New("no answer within 30s")
	}
	var warm []float64
	for range b.s.startupRuns {
		d, err := measure(b.dsn, http.StatusOK)
		if err != nil {
			return fmt.Errorf("start-up: %w", err)
		}
		warm = append(warm, ms(d))
		b.logf("start-up: first 200 after %s", d.Round(time.Millisecond))
	}
	cold, err := b.freshDatabase(ctx)
	if err != nil {
		return err
	}
	dc, err := measure(cold, http.StatusUnauthorized)
	if err != nil {
		return fmt.Errorf("start-up on a fresh database: %w", err)
	}
	b.logf("start-up on a fresh database: first answer from the database after %s", dc.Round(time.Millisecond))
	fmt.Fprintf(&b.out, "### Start-up\n")
	fmt.Fprintln(&b.out)
	fmt.Fprintf(&b.out, "- Process start to the first served request (a 200 through armgate_auth, token looked up in PostgreSQL): median %.0f ms, max %.0f ms over %d starts (target ≤ 1 s): %s.\n",
		median(warm), quantile(warm, 1), len(warm), verdict(quantile(warm, 1) <= 1000))
	fmt.Fprintf(&b.out, "- The same on a fresh database (migrations applied at start; first answer from the database): %.0f ms.\n", ms(dc))
	return nil
}
