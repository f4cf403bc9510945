package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/armgate/armgate/token"
)

// verifyFunc is a tokenVerifier.
type verifyFunc func(ctx context.Context, tok string) (token.Credential, token.Status, error)

func (f verifyFunc) Verify(ctx context.Context, tok string) (token.Credential, token.Status, error) {
	return f(ctx, tok)
}

func (verifyFunc) NeedsBlindLookup(string) bool { return true }

// authRequest is a request as Caddy's server hands it to a handler: with a
// replacer in its context; each value in auth is one Authorization header.
func authRequest(ctx context.Context, auth ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v1/items", nil)
	for _, a := range auth {
		r.Header.Add("Authorization", a)
	}
	ctx = context.WithValue(ctx, caddy.ReplacerCtxKey, caddy.NewReplacer())
	return r.WithContext(ctx)
}

// TestAuthClientCanceled: a client that hangs up during the lookup is
// counted as canceled, logged at DEBUG only, and is no 503.
func TestAuthClientCanceled(t *testing.T) {
	initProcessMetrics()
	core, logs := observer.New(zapcore.DebugLevel)
	h := &AuthHandler{Realm: defaultRealm, Scope: "api", logger: zap.New(core),
		challenge: `Bearer realm="` + defaultRealm + `"`,
		verifier: verifyFunc(func(ctx context.Context, _ string) (token.Credential, token.Status, error) {
			<-ctx.Done() // as Verify: the caller stops waiting when its context ends
			return token.Credential{}, token.Unknown, ctx.Err()
		})}
	canceled, unavailable := counterValue(t, outcomeCanceled), counterValue(t, outcomeUnavailable)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		t.Error("next called")
		return nil
	})
	if err := h.ServeHTTP(w, authRequest(ctx, "Bearer arm_whatever"), next); err != nil {
		t.Fatalf("ServeHTTP = %v", err)
	}
	if w.Code != statusClientClosedRequest || w.Header().Get("Retry-After") != "" || w.Header().Get("WWW-Authenticate") != "" {
		t.Errorf("status %d, Retry-After %q, WWW-Authenticate %q; want 499 alone", w.Code,
			w.Header().Get("Retry-After"), w.Header().Get("WWW-Authenticate"))
	}
	if got := counterValue(t, outcomeCanceled) - canceled; got != 1 {
		t.Errorf("canceled decisions = %v, want 1", got)
	}
	if got := counterValue(t, outcomeUnavailable) - unavailable; got != 0 {
		t.Errorf("unavailable decisions = %v, want 0", got)
	}
	if n := logs.Filter(func(e observer.LoggedEntry) bool { return e.Level > zapcore.DebugLevel }).Len(); n != 0 {
		t.Errorf("%d log entries above DEBUG: %v", n, logs.All())
	}
	if logs.FilterLevelExact(zapcore.DebugLevel).Len() != 1 {
		t.Errorf("want one DEBUG entry, got %v", logs.All())
	}
}

// TestAuthRefusals is the RFC 6750 table: status, challenge and JSON body
// of every answer, placeholders on success, and next only then.
func TestAuthRefusals(t *testing.T) {
	const challenge = `Bearer realm="Test API"`
	live := token.Credential{TokenID: "tid-1", UserID: "uid-1", Name: "laptop", Scopes: []string{"api"}}
	narrow := live
	narrow.Scopes = []string{"other"}
	verdicts := map[string]struct {
		cred   token.Credential
		status token.Status
		err    error
	}{
		"tok-live":        {cred: live, status: token.Active},
		"tok-narrow":      {cred: narrow, status: token.Active},
		"tok-expired":     {cred: live, status: token.Expired},
		"tok-revoked":     {cred: live, status: token.Revoked},
		"tok-deactivated": {cred: live, status: token.Deactivated},
		"tok-db-down":     {err: errors.New("connection refused")},
	}
	v := verifyFunc(func(_ context.Context, tok string) (token.Credential, token.Status, error) {
		d, ok := verdicts[tok]
		if !ok {
			return token.Credential{}, token.Unknown, nil
		}
		return d.cred, d.status, d.err
	})
	invalid := func(desc string) string {
		return challenge + `, error="invalid_token", error_description="` + desc + `"`
	}
	tests := []struct {
		name      string
		auth      []string
		status    int
		challenge string // "" means no WWW-Authenticate
		code      string
		message   string // a substring of the message
	}{
		{"no header", nil, 401, challenge, "unauthorized", "bearer token is required"},
		{"other scheme", []string{"Basic dXNlcjpwYXNz"}, 401, challenge, "unauthorized", "bearer token is required"},
		{"empty header", []string{""}, 400, challenge + `, error="invalid_request"`, "invalid_request", "single 'Bearer <token>'"},
		{"bare Bearer", []string{"Bearer"}, 400, challenge + `, error="invalid_request"`, "invalid_request", "single 'Bearer <token>'"},
		{"extra parts", []string{"Bearer tok-live extra"}, 400, challenge + `, error="invalid_request"`, "invalid_request", "single"},
		{"two headers", []string{"Bearer tok-live", "Bearer tok-live"}, 400, challenge + `, error="invalid_request"`, "invalid_request", "single"},
		{"whitespace in token", []string{"Bearer tok-\u00a0live"}, 400, challenge + `, error="invalid_request"`, "invalid_request", "single"},
		{"unknown token", []string{"Bearer tok-nope"}, 401, invalid("The access token is invalid"), "invalid_token", "The access token is invalid"},
		{"expired", []string{"Bearer tok-expired"}, 401, invalid("The access token expired"), "invalid_token", "The access token expired"},
		{"revoked", []string{"Bearer tok-revoked"}, 401, invalid("The access token was revoked"), "invalid_token", "The access token was revoked"},
		{"deactivated", []string{"Bearer tok-deactivated"}, 401, invalid("The access token's user is deactivated"), "invalid_token", "user is deactivated"},
		{"missing scope", []string{"Bearer tok-narrow"}, 403, challenge + `, error="insufficient_scope", scope="api"`, "insufficient_scope", "scope api"},
		{"verifier error", []string{"Bearer tok-db-down"}, 503, "", "unavailable", "unavailable"},
		{"success", []string{"bearer   tok-live"}, 200, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			initProcessMetrics()
			h := &AuthHandler{Realm: "Test API", Scope: "api", verifier: v, logger: zap.NewNop(),
				challenge: challenge}
			r := authRequest(context.Background(), tt.auth...)
			repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
			var placeholders string
			called := false
			next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
				called = true
				placeholders = repl.ReplaceAll("{http.auth.user.id} {http.auth.user.token_id} {http.auth.user.token_name}", "-")
				w.WriteHeader(http.StatusOK)
				return nil
			})
			w := httptest.NewRecorder()
			if err := h.ServeHTTP(w, r, next); err != nil {
				t.Fatalf("ServeHTTP = %v", err)
			}
			if w.Code != tt.status {
				t.Errorf("status %d, want %d", w.Code, tt.status)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.challenge)
			}
			if ra := w.Header().Get("Retry-After"); (tt.status == 503) != (ra == "5") {
				t.Errorf("Retry-After = %q", ra)
			}
			if tt.status == 200 {
				if !called || placeholders != "uid-1 tid-1 laptop" {
					t.Errorf("next called %v, placeholders %q", called, placeholders)
				}
				return
			}
			if called {
				t.Error("a refused request reached next")
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var body map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if len(body) != 2 || body["error"] != tt.code || !strings.Contains(body["message"], tt.message) {
				t.Errorf("body = %v, want error %q and a message with %q", body, tt.code, tt.message)
			}
			if strings.Contains(w.Body.String(), "tok-") {
				t.Errorf("the body echoes the token: %s", w.Body)
			}
		})
	}
}
