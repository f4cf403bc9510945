package tests

// The command line through the real binary: exit statuses, one-line
// messages, nothing written on refusal, and changes seen by a running
// gateway.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/internal/wait"
	"github.com/armgate/armgate/token"
)

// cliResult is what one run of `caddy armgate ...` did.
type cliResult struct {
	Stdout, Stderr string
	Code           int
}

// runCLI runs the built Caddy with args and env added to the environment.
func runCLI(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(caddyBinary(t), append([]string{"armgate"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running caddy armgate %v: %v", args, err)
	}
	return cliResult{out.String(), errOut.String(), cmd.ProcessState.ExitCode()}
}

// cliConfig writes a Caddyfile whose armgate option reads the database
// from {env.ARMGATE_CLI_DSN}, as a production config would.
func cliConfig(t *testing.T, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	cfg := fmt.Sprintf("{\n\tadmin off\n\tarmgate {\n\t\tdatabase {env.ARMGATE_CLI_DSN}\n\t\t%s\n\t}\n}\n", extra)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCLIBinary(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	env := []string{"ARMGATE_CLI_DSN=" + dsn}
	cfg := cliConfig(t, "max_tokens_per_user 1\n\t\tmax_token_lifetime 48h\n\t\ttoken_lifetime 24h")
	cli := func(args ...string) cliResult {
		t.Helper()
		return runCLI(t, env, append(args, "--config", cfg)...)
	}
	ok := func(r cliResult) cliResult {
		t.Helper()
		if r.Code != 0 || r.Stderr != "" {
			t.Fatalf("exit %d, stderr %q", r.Code, r.Stderr)
		}
		return r
	}

	if r := ok(cli("migrate")); !strings.HasPrefix(r.Stdout, "schema version ") {
		t.Errorf("migrate printed %q", r.Stdout)
	}
	r := ok(cli("user", "put", "--user", "alice", "--email", "alice@example.com", "--json"))
	var u map[string]any
	if err := json.Unmarshal([]byte(r.Stdout), &u); err != nil || u["id"] != "alice" || u["max_tokens_per_user"] != 1.0 {
		t.Errorf("user put --json: %v %s", err, r.Stdout)
	}
	plain := strings.TrimSpace(ok(cli("token", "create", "--user", "alice", "--name", "ci", "--scope", "api", "--scope", "admin")).Stdout)
	if token.Check(plain) != nil {
		t.Fatalf("token create printed %q", plain)
	}
	r = ok(cli("token", "list", "--user", "alice", "--json"))
	var list struct {
		Tokens []struct {
			ID     string   `json:"id"`
			Scopes []string `json:"scopes"`
		} `json:"tokens"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &list); err != nil || len(list.Tokens) != 1 || len(list.Tokens[0].Scopes) != 2 {
		t.Fatalf("token list --json: %v %s", err, r.Stdout)
	}
	id := list.Tokens[0].ID
	if r := ok(cli("token", "get", "--id", id)); !strings.Contains(r.Stdout, "api,admin") || strings.Contains(r.Stdout, plain) {
		t.Errorf("token get:\n%s", r.Stdout)
	}

	pool, _ := openStore(t, dsn)
	counts := func() string {
		var s string
		if err := pool.QueryRow(t.Context(), `SELECT format('%s users, %s tokens, %s events',
			(SELECT count(*) FROM armgate.users), (SELECT count(*) FROM armgate.tokens), (SELECT count(*) FROM armgate.audit))`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := counts()
	const missing = "0190b6b8-6b7e-7c1a-9f3e-2d5c8a1b4e6f"
	down := cliConfig(t, "") // same file shape, unreachable database with a password
	downEnv := []string{"ARMGATE_CLI_DSN=postgres://armgate:sekret-pw-42@127.0.0.1:1/armgate?connect_timeout=5"}
	cases := []struct {
		name string
		args []string
		env  []string
		code int
		msg  string
	}{
		{"unknown flag", []string{"user", "get", "--user", "alice", "--bogus", "--config", cfg}, env, 2, "unknown flag: --bogus"},
		{"unknown command", []string{"token", "frob"}, env, 2, `unknown command "frob"`},
		{"no subcommand", []string{"user"}, env, 2, "needs a subcommand"},
		{"stray argument", []string{"user", "get", "alice", "--config", cfg}, env, 2, `unexpected argument "alice"`},
		{"no config", []string{"user", "get", "--user", "alice"}, env, 2, "--config is required"},
		{"missing --user", []string{"user", "put", "--config", cfg}, env, 2, "--user is required"},
		{"missing --id", []string{"token", "revoke", "--config", cfg}, env, 2, "--id is required"},
		{"bad id", []string{"token", "delete", "--id", "7", "--config", cfg}, env, 2, "must be a UUID"},
		{"bad user id", []string{"user", "deactivate", "--user", "a b", "--config", cfg}, env, 2, "invalid user id"},
		{"bad duration", []string{"token", "create", "--user", "bob", "--name", "x", "--expires-in", "soon", "--config", cfg}, env, 2, `"soon" is not a duration`},
		{"over max lifetime", []string{"token", "create", "--user", "bob", "--name", "x", "--expires-in", "72h", "--config", cfg}, env, 2, "--expires-in 72h exceeds the maximum token lifetime 48h"},
		{"bad scope", []string{"token", "create", "--user", "bob", "--name", "x", "--scope", "root", "--config", cfg}, env, 2, "scope"},
		{"bad grace", []string{"token", "rotate", "--id", id, "--grace", "1y", "--config", cfg}, env, 2, "grace must be"},
		{"bad limit", []string{"user", "list", "--limit", "0", "--config", cfg}, env, 2, "limit must be"},
		{"bad email", []string{"user", "put", "--user", "bob", "--email", "bob", "--config", cfg}, env, 2, "not an email address"},
		{"limit reached", []string{"token", "create", "--user", "alice", "--name", "second", "--config", cfg}, env, 1, "maximum number of tokens"},
		{"user not found", []string{"user", "get", "--user", "nobody", "--config", cfg}, env, 1, `user "nobody" not found`},
		{"token not found", []string{"token", "reapprove", "--id", missing, "--config", cfg}, env, 1, "not found"},
		{"revoke-all not found", []string{"token", "revoke-all", "--user", "nobody", "--config", cfg}, env, 1, "not found"},
		{"config missing", []string{"user", "get", "--user", "alice", "--config", cfg + ".gone"}, env, 1, "reading config"},
		{"database unreachable", []string{"token", "revoke", "--id", id, "--config", down}, downEnv, 1, "connect"},
		{"bootstrap unreachable", []string{"token", "create", "--user", "x", "--name", "x", "--config", down}, downEnv, 1, "connect"},
	}
	for _, c := range cases {
		r := runCLI(t, c.env, c.args...)
		if r.Code != c.code {
			t.Errorf("%s: exit %d, want %d (stderr %q)", c.name, r.Code, c.code, r.Stderr)
		}
		if !strings.Contains(r.Stderr, c.msg) || strings.Count(r.Stderr, "\n") != 1 || !strings.HasPrefix(r.Stderr, "armgate: ") {
			t.Errorf("%s: stderr %q, want one line with %q", c.name, r.Stderr, c.msg)
		}
		if r.Stdout != "" {
			t.Errorf("%s: stdout %q", c.name, r.Stdout)
		}
		if strings.Contains(r.Stderr, "sekret-pw-42") || strings.Contains(r.Stderr, token.Prefix) {
			t.Errorf("%s: stderr shows a secret: %q", c.name, r.Stderr)
		}
	}
	if after := counts(); after != before {
		t.Errorf("refused commands wrote: %s before, %s after", before, after)
	}

	// The remaining calls, with their effect in the database.
	if r := ok(cli("token", "revoke", "--id", id, "--reason", "lost")); !strings.Contains(r.Stdout, "revoked") {
		t.Errorf("revoke printed:\n%s", r.Stdout)
	}
	ok(cli("token", "reapprove", "--id", id))
	newPlain := strings.TrimSpace(ok(cli("token", "rotate", "--id", id, "--grace", "1h")).Stdout)
	if token.Check(newPlain) != nil || newPlain == plain {
		t.Fatalf("rotate printed %q", newPlain)
	}
	if r := ok(cli("token", "revoke-all", "--user", "alice")); r.Stdout != "2\n" {
		t.Errorf("revoke-all printed %q, want 2", r.Stdout)
	}
	if r := ok(cli("token", "delete", "--id", id)); r.Stdout != "deleted "+id+"\n" {
		t.Errorf("delete printed %q", r.Stdout)
	}
	ok(cli("user", "deactivate", "--user", "alice"))
	if r := ok(cli("user", "list", "--status", "deactivated")); !strings.Contains(r.Stdout, "alice") {
		t.Errorf("user list:\n%s", r.Stdout)
	}
	var events []string
	rows, err := pool.Query(t.Context(), `SELECT actor || ' ' || action FROM armgate.audit ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		events = append(events, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := "cli user.create,cli token.create,cli token.revoke,cli token.reapprove,cli token.rotate," +
		"cli token.revoke,cli token.revoke,cli token.delete,cli user.deactivate"
	if got := strings.Join(events, ","); got != want {
		t.Errorf("audit:\n got %s\nwant %s", got, want)
	}
}

// TestCLIReachesGateway: a change made on the command line reaches a
// gateway that is serving, through the database's notifications.
func TestCLIReachesGateway(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	p := startCaddy(t, "cli", procConfig{DSN: dsn})
	cfg := p.writeConfig(procConfig{DSN: dsn})
	cli := func(args ...string) string {
		t.Helper()
		r := runCLI(t, nil, append(args, "--config", cfg)...)
		if r.Code != 0 {
			t.Fatalf("caddy armgate %v: exit %d: %s", args, r.Code, r.Stderr)
		}
		return r.Stdout
	}
	plain := strings.TrimSpace(cli("token", "create", "--user", "alice", "--name", "laptop"))
	if r := p.get("/", plain); r.Status != http.StatusOK {
		t.Fatalf("new token: %d %s", r.Status, r.Body)
	}
	p.ensureCached(plain) // so that only an invalidation can change the answer
	var list struct {
		Tokens []struct {
			ID string `json:"id"`
		} `json:"tokens"`
	}
	if err := json.Unmarshal([]byte(cli("token", "list", "--user", "alice", "--json")), &list); err != nil || len(list.Tokens) != 1 {
		t.Fatalf("token list: %v %+v", err, list)
	}
	status := func(want int) func() bool {
		return func() bool { return p.get("/", plain).Status == want }
	}
	steps := []struct {
		args []string
		want int
	}{
		{[]string{"token", "revoke", "--id", list.Tokens[0].ID}, http.StatusUnauthorized},
		{[]string{"token", "reapprove", "--id", list.Tokens[0].ID}, http.StatusOK},
		{[]string{"user", "deactivate", "--user", "alice"}, http.StatusUnauthorized},
		{[]string{"user", "reactivate", "--user", "alice"}, http.StatusOK},
		{[]string{"token", "revoke-all", "--user", "alice"}, http.StatusUnauthorized},
	}
	for _, s := range steps {
		cli(s.args...)
		if !wait.Until(10*time.Second, status(s.want)) {
			t.Fatalf("after %v the gateway still does not answer %d", s.args, s.want)
		}
	}
}
