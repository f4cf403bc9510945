package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
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
