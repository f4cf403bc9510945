package tests

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/internal/wait"
)

// selfCall calls instance p's armgate_self (at /me/) as user with basic
// auth and a JSON body, and fails the test unless the status is want.
func (p *caddyProc) selfCall(want int, user, method, path, body string) map[string]any {
	p.t.Helper()
	req, err := http.NewRequest(method, p.URL+"/me"+path, strings.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	req.SetBasicAuth(user, selfPasswords[user])
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	r, err := p.send(req)
	if err != nil {
		p.t.Fatalf("caddy %s: %s /me%s: %v", p.Name, method, path, err)
	}
	if r.Status != want {
		p.t.Fatalf("caddy %s: %s /me%s: %d %s, want %d", p.Name, method, path, r.Status, r.Body, want)
	}
	var m map[string]any
	_ = json.Unmarshal(r.Body, &m)
	return m
}

// TestSelfServiceTwoInstances: a rotation made through armgate_self on A and
// a revoke-all through A's admin API reach B, which had the tokens cached,
// on its next request after the notification.
func TestSelfServiceTwoInstances(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	_, store := openStore(t, dsn)
	putUsers(t, store, "alice")
	pc := procConfig{DSN: dsn, ExtraSite: basicAuthSite(t)}
	a := startCaddy(t, "A", pc)
	b := startCaddy(t, "B", pc)

	c := a.selfCall(201, "alice", http.MethodPost, "/tokens", `{"name":"ci"}`)
	oldTok, oldID := c["token"].(string), c["id"].(string)
	b.ensureCached(oldTok)

	rot := a.selfCall(201, "alice", http.MethodPost, "/tokens/"+oldID+"/rotate", `{"grace":"0s"}`)
	newTok := rot["token"].(string)
	if !wait.Until(10*time.Second, func() bool { return b.get("/", oldTok).Status == http.StatusUnauthorized }) {
		t.Fatal("B still accepts the token rotated away on A")
	}
	if r := b.get("/", newTok); r.Status != http.StatusOK || string(r.Body) != "ok alice" {
		t.Fatalf("B refuses the new token: %d %s", r.Status, r.Body)
	}
	b.ensureCached(newTok)

	r := a.adminOK(http.StatusOK, http.MethodPost, "/users/alice/tokens/revoke", `{"reason":"signed out everywhere"}`)
	var n struct{ Revoked int }
	if err := json.Unmarshal(r.Body, &n); err != nil || n.Revoked != 2 { // the new token, and the rotated-away one
		t.Errorf("revoke-all: %s", r.Body)
	}
	if !wait.Until(10*time.Second, func() bool { return b.get("/", newTok).Status == http.StatusUnauthorized }) {
		t.Fatal("B still accepts a token revoked on A")
	}
	if r := a.get("/", newTok); r.Status != http.StatusUnauthorized {
		t.Errorf("A accepts the token it revoked: %d", r.Status)
	}
}
