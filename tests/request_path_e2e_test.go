package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/armgate/armgate/internal/promtext"
	"github.com/armgate/armgate/internal/wait"
)

// TestTokenExpiresHeaderE2E: a response that passed armgate_auth, the
// upstream's through reverse_proxy, carries the token's expiry in UTC;
// expires_header renames or drops it; a refusal has none.
func TestTokenExpiresHeaderE2E(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	stored, live := g.createToken("exp", "laptop", nil, 36*time.Hour)
	want := stored.ExpiresAt.UTC().Format(time.RFC3339)

	r := g.get("/v1/x", live)
	if r.Status != http.StatusOK {
		t.Fatalf("live token: status %d; body %s", r.Status, r.Body)
	}
	if got := r.Header.Values("ARM-Token-Expires"); len(got) != 1 || got[0] != want {
		t.Errorf("ARM-Token-Expires = %q, want [%q]", got, want)
	}
	if r.Header.Get("Content-Type") != "application/json" || !bytes.Contains(r.Body, []byte(`"user_id":"exp"`)) {
		t.Errorf("not the upstream's response: %v %s", r.Header, r.Body)
	}
	if g.Upstream.lastHeader().Get("ARM-Token-Expires") != "" {
		t.Error("the expiry header went to the upstream")
	}
	if r := g.get("/v1/x", wellFormedUnknown(t)); r.Header.Get("ARM-Token-Expires") != "" {
		t.Errorf("a refusal carries ARM-Token-Expires %q", r.Header.Get("ARM-Token-Expires"))
	}

	for _, tt := range []struct{ option, header, want string }{
		{"expires_header X-Token-Expiry", "X-Token-Expiry", want},
		{"expires_header X-Token-Expiry", "ARM-Token-Expires", ""},
		{"expires_header off", "ARM-Token-Expires", ""},
	} {
		g := startGateway(t, gatewayConfig{DSN: g.DSN, AuthExtra: tt.option})
		r := g.get("/v1/x", live)
		if r.Status != http.StatusOK {
			t.Fatalf("%s: status %d", tt.option, r.Status)
		}
		if got := r.Header.Get(tt.header); got != tt.want {
			t.Errorf("%s: %s = %q, want %q", tt.option, tt.header, got, tt.want)
		}
	}
}

// TestClientHangUpE2E: a client that hangs up while its token's lookup
// waits on the database is counted as canceled, not unavailable, and
// leaves no ERROR in the logs; the lookup itself finishes for the next
// request.
func TestClientHangUpE2E(t *testing.T) {
	logDir := t.TempDir()
	g := startGateway(t, gatewayConfig{LogDir: logDir, ExtraApp: "query_timeout 30s",
		ExtraSite: "handle /metrics {\n\t\tmetrics\n\t}"})
	_, live := g.createToken("hang", "laptop", nil, time.Hour)
	decisions := func() (canceled, unavailable float64) {
		t.Helper()
		r := g.get("/metrics", "")
		m, err := promtext.Parse(bytes.NewReader(r.Body))
		if err != nil {
			t.Fatal(err)
		}
		const series = `caddy_armgate_auth_decisions_total{result=%q}`
		return m.Value(fmt.Sprintf(series, "canceled")), m.Value(fmt.Sprintf(series, "unavailable"))
	}
	canceled0, unavailable0 := decisions()

	// Hold the tokens table so that the lookup waits.
	ctx := context.Background()
	tx, err := g.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `LOCK TABLE armgate.tokens IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	reqCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, g.URL+"/v1/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+live)
	done := make(chan error, 1)
	go func() {
		resp, err := g.client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	waiting := wait.Until(10*time.Second, func() bool {
		var n int
		err := g.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		return err == nil && n > 0
	})
	if !waiting {
		t.Fatal("the lookup never waited for the lock")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the client's request ended with %v, want context.Canceled", err)
	}
	if !wait.Until(10*time.Second, func() bool { c, _ := decisions(); return c > canceled0 }) {
		t.Fatal("the hang-up was not counted as canceled")
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if r := g.get("/v1/x", live); r.Status != http.StatusOK {
		t.Errorf("after the lock: status %d, want 200", r.Status)
	}
	if c, u := decisions(); c != canceled0+1 || u != unavailable0 {
		t.Errorf("canceled %v -> %v (want +1), unavailable %v -> %v (want +0)", canceled0, c, unavailable0, u)
	}
	for _, name := range []string{"caddy.log", "access.log"} {
		b, err := os.ReadFile(filepath.Join(logDir, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, `"level":"error"`) {
				t.Errorf("%s has an ERROR line: %s", name, line)
			}
		}
	}
}
