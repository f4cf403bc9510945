package tests

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/armgate/armgate/internal/testpg"
)

// TestCLIControlsBinary: the built binary's token limit, allow-ips and
// usage, with their exit statuses.
func TestCLIControlsBinary(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	env := []string{"ARMGATE_CLI_DSN=" + dsn}
	cfg := cliConfig(t, "")
	cli := func(args ...string) cliResult {
		t.Helper()
		return runCLI(t, env, append(args, "--config", cfg)...)
	}
	r := cli("token", "create", "--user", "dora", "--name", "ci", "--json")
	var created struct{ ID string }
	if err := json.Unmarshal([]byte(r.Stdout), &created); r.Code != 0 || err != nil {
		t.Fatalf("create: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	id := created.ID
	r = cli("token", "limit", "--id", id, "--requests", "50", "--window", "30m")
	if r.Code != 0 || !strings.Contains(r.Stdout, "50 requests per 30m") {
		t.Errorf("limit: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	r = cli("token", "allow-ips", "--id", id, "--cidr", "192.0.2.0/24,2001:db8::1", "--json")
	var tok struct {
		AllowedIPs []string `json:"allowed_ips"`
		RateLimit  struct {
			Requests int64
			Window   string
		} `json:"rate_limit"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &tok); r.Code != 0 || err != nil ||
		strings.Join(tok.AllowedIPs, " ") != "192.0.2.0/24 2001:db8::1/128" || tok.RateLimit.Window != "30m" {
		t.Errorf("allow-ips --json: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	r = cli("token", "usage", "--id", id, "--days", "2")
	if lines := strings.Split(strings.TrimSpace(r.Stdout), "\n"); r.Code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "DAY") {
		t.Errorf("usage: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"token", "limit", "--id", id, "--requests", "many", "--window", "1h"}, "invalid argument"},
		{[]string{"token", "limit", "--id", id, "--requests", "5", "--window", "2d"}, "--window must be a duration"},
		{[]string{"token", "allow-ips", "--id", id}, "give --cidr"},
		{[]string{"token", "usage", "--id", id, "--days", "0"}, "days must be"},
	} {
		r := cli(c.args...)
		if r.Code != 2 || !strings.Contains(r.Stderr, c.want) || r.Stdout != "" {
			t.Errorf("%v: exit %d, stderr %q, want 2 with %q", c.args, r.Code, r.Stderr, c.want)
		}
	}
	if r := cli("token", "limit", "--id", "00000000-0000-4000-8000-000000000000", "--clear"); r.Code != 1 || !strings.Contains(r.Stderr, "not found") {
		t.Errorf("unknown token: %d %q", r.Code, r.Stderr)
	}
	if r := cli("token", "limit", "--id", id, "--clear"); r.Code != 0 || !strings.Contains(r.Stdout, "quota       none") {
		t.Errorf("limit --clear: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
}
