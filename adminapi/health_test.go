package adminapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestHealthz: GET /healthz needs no credential, answers 200 when all is
// up and 503 naming what is down otherwise.
func TestHealthz(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		health HealthStatus
		status int
		body   HealthBody
	}{
		{"up", HealthStatus{true, true, true}, 200, HealthBody{"ok", "up", "up", ""}},
		{"database down", HealthStatus{false, true, true}, 503, HealthBody{"unavailable", "down", "up", ""}},
		{"listener down", HealthStatus{true, false, true}, 503, HealthBody{"unavailable", "up", "down", ""}},
		{"migrations pending", HealthStatus{true, true, false}, 503, HealthBody{"unavailable", "up", "up", "pending"}},
		{"all down", HealthStatus{false, false, false}, 503, HealthBody{"unavailable", "down", "down", "pending"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := New(Options{AdminKeys: []string{testAdminKey},
				Health: func(context.Context) HealthStatus { return c.health }})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
			if rec.Code != c.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.status, rec.Body)
			}
			var got HealthBody
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
