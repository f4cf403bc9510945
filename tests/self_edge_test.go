package tests

// End-to-end tests of armgate_self at the edges of its deployment: behind a
// load balancer that terminates TLS, behind armgate_auth by mistake, and
// under a flood of changes from one signed-in user.

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// lbSelf sends a self-service call as a load balancer that terminated the
// browser's HTTPS forwards it: Host and Origin of the public site
// (https://127.0.0.1, the site's host without a port), X-Forwarded-Proto
// https, X-Forwarded-For with the browser's address, basic auth of user.
func (g *gateway) lbSelf(user, method, path, body string) response {
	g.t.Helper()
	req, err := http.NewRequest(method, g.URL+"/me"+path, bytes.NewReader([]byte(body)))
	if err != nil {
		g.t.Fatal(err)
	}
	req.Host = "127.0.0.1"
	req.SetBasicAuth(user, selfPasswords[user])
	req.Header.Set("Origin", "https://127.0.0.1")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := g.client.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// TestSelfBehindTLSProxy: behind a load balancer that terminates TLS, the
// browser's Origin is https while the request reaches Caddy over HTTP. From
// a trusted proxy, its X-Forwarded-Proto makes it the same origin, and the
// screen's calls work; the same headers from a peer Caddy does not trust
// are a spoof and are refused.
func TestSelfBehindTLSProxy(t *testing.T) {
	site := basicAuthSite(t)
	trusted := startGateway(t, gatewayConfig{ExtraSite: site,
		ExtraGlobal: "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t\ttrusted_proxies_strict\n\t}"})
	putUsers(t, trusted.Store, "alice")
	c := want(t, trusted.lbSelf("alice", http.MethodPost, "/tokens", `{"name":"laptop","expires_in":"24h"}`), 201, "")
	id := c["id"].(string)
	want(t, trusted.lbSelf("alice", http.MethodPost, "/tokens/"+id+"/rotate", `{"grace":"0s"}`), 201, "")
	want(t, trusted.lbSelf("alice", http.MethodDelete, "/tokens/"+id, ""), 204, "")

	// The same database, Caddy trusting another network only: the peer
	// (127.0.0.1) is now a client that wrote X-Forwarded-Proto itself.
	untrusted := startGateway(t, gatewayConfig{DSN: trusted.DSN, ExtraSite: site,
		ExtraGlobal: "servers {\n\t\ttrusted_proxies static 10.0.0.0/8\n\t\ttrusted_proxies_strict\n\t}"})
	tokens, audits := rowCounts(t, untrusted)
	m := want(t, untrusted.lbSelf("alice", http.MethodPost, "/tokens", `{"name":"spoofed"}`), 403, "forbidden")
	if !strings.Contains(m["message"].(string), "origin") {
		t.Errorf("refusal message: %v", m)
	}
	if tk, au := rowCounts(t, untrusted); tk != tokens || au != audits {
		t.Errorf("the refused create changed rows: tokens %d→%d, audit %d→%d", tokens, tk, audits, au)
	}
	// Without a proxy at all, the plain-HTTP site's own origin still works.
	want(t, untrusted.self("alice", http.MethodPost, "/tokens", `{"name":"direct"}`,
		http.Header{"Origin": {untrusted.URL}, "Sec-Fetch-Site": {"same-origin"}}), 201, "")
}

// TestSelfRefusesTokenAuth: armgate_self behind armgate_auth (a mistake in
// a Caddyfile) answers every call with a valid token 403: a stolen token
// cannot mint, rotate or re-approve tokens.
func TestSelfRefusesTokenAuth(t *testing.T) {
	g := startGateway(t, gatewayConfig{ExtraSite: `handle_path /tokme/* {
		route {
			armgate_auth
			armgate_self
		}
	}`})
	tok, plain := g.createToken("alice", "ci", nil, time.Hour)
	if r := g.get("/api/x", plain); r.Status != 200 {
		t.Fatalf("the token through armgate_auth: %d %s", r.Status, r.Body)
	}
	tokens, audits := rowCounts(t, g)
	bearer := http.Header{"Authorization": {"Bearer " + plain}, "Content-Type": {"application/json"}}
	for _, call := range []struct{ method, path, body string }{
		{http.MethodGet, "/tokens", ""},
		{http.MethodPost, "/tokens", `{"name":"minted","expires_in":"24h"}`},
		{http.MethodPost, "/tokens/" + tok.ID + "/rotate", `{"grace":"0s"}`},
		{http.MethodPost, "/tokens/" + tok.ID + "/revoke", `{}`},
		{http.MethodPost, "/tokens/" + tok.ID + "/reapprove", ""},
		{http.MethodDelete, "/tokens/" + tok.ID, ""},
	} {
		m := want(t, g.do(call.method, "/tokme"+call.path, []byte(call.body), bearer), 403, "forbidden")
		if !strings.Contains(m["message"].(string), "signed in") {
			t.Errorf("%s %s: message %v", call.method, call.path, m)
		}
	}
	if tk, au := rowCounts(t, g); tk != tokens || au != audits {
		t.Errorf("refused calls changed rows: tokens %d→%d, audit %d→%d", tokens, tk, audits, au)
	}
	if r := g.get("/api/x", plain); r.Status != 200 {
		t.Errorf("the token after the refusals: %d", r.Status)
	}
}

// TestSelfWriteLimit: with the default write limit, a user's 61st change
// within an hour is 429 with Retry-After, while reads still answer and
// another user's changes go through.
func TestSelfWriteLimit(t *testing.T) {
	g := startGateway(t, gatewayConfig{ExtraSite: basicAuthSite(t)})
	putUsers(t, g.Store, "alice", "bob")
	hour := func() int64 { return time.Now().UnixNano() / int64(time.Hour) }
	start := hour()
	c := want(t, g.self("alice", http.MethodPost, "/tokens", `{"name":"laptop"}`, nil), 201, "")
	revoke := "/tokens/" + c["id"].(string) + "/revoke"
	for i := 2; i <= 60; i++ {
		if r := g.self("alice", http.MethodPost, revoke, "", nil); r.Status != 200 {
			t.Fatalf("write %d: %d %s", i, r.Status, r.Body)
		}
	}
	if hour() != start {
		// The sliding window weighs the previous hour's writes by the part
		// of it still covered: across the boundary it lets one more
		// through.
		want(t, g.self("alice", http.MethodPost, revoke, "", nil), 200, "")
	}
	tokens, audits := rowCounts(t, g)
	r := g.self("alice", http.MethodPost, "/tokens", `{"name":"61st"}`, nil)
	want(t, r, 429, "too_many_requests")
	if secs, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || secs < 1 || secs > 3600 {
		t.Errorf("Retry-After = %q", r.Header.Get("Retry-After"))
	}
	want(t, g.self("alice", http.MethodDelete, "/tokens/"+c["id"].(string), "", nil), 429, "too_many_requests")
	if tk, au := rowCounts(t, g); tk != tokens || au != audits {
		t.Errorf("refused writes changed rows: tokens %d→%d, audit %d→%d", tokens, tk, audits, au)
	}
	m := want(t, g.self("alice", http.MethodGet, "/tokens", "", nil), 200, "")
	if n := len(m["tokens"].([]any)); n != 1 {
		t.Errorf("alice's list over the write limit: %d tokens", n)
	}
	want(t, g.self("alice", http.MethodGet, "/tokens/"+c["id"].(string), "", nil), 200, "")
	want(t, g.self("bob", http.MethodPost, "/tokens", `{"name":"bobs"}`, nil), 201, "")
}
