package adminapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/armgate/armgate/gateway"
)

// TestHealthz: GET /healthz needs no credential, answers 200 when all is
// up and 503 naming what is down otherwise.
func TestHealthz(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		health gateway.Health
		status int
		body   healthBody
	}{
		{"up", gateway.Health{Database: true, Listener: true, Migrated: true}, 200, healthBody{"ok", "up", "up", ""}},
		{"database down", gateway.Health{Database: false, Listener: true, Migrated: true}, 503, healthBody{"unavailable", "down", "up", ""}},
		{"listener down", gateway.Health{Database: true, Listener: false, Migrated: true}, 503, healthBody{"unavailable", "up", "down", ""}},
		{"migrations pending", gateway.Health{Database: true, Listener: true, Migrated: false}, 503, healthBody{"unavailable", "up", "up", "pending"}},
		{"all down", gateway.Health{Database: false, Listener: false, Migrated: false}, 503, healthBody{"unavailable", "down", "down", "pending"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := New(Options{AdminKeys: []string{testAdminKey},
				Health: func(context.Context) gateway.Health { return c.health }})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
			if rec.Code != c.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.status, rec.Body)
			}
			var got healthBody
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got != c.body {
				t.Fatalf("body %+v, want %+v", got, c.body)
			}
			if c.status == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") == "" {
				t.Fatal("503 without Retry-After")
			}
		})
	}
}
