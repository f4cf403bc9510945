package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/token"
)

// runCaddyCommand runs `caddy <args>` in process and returns its stdout.
func runCaddyCommand(t testing.TB, args ...string) (string, error) {
	t.Helper()
	c, ok := caddycmd.Commands()[args[0]]
	if !ok {
		t.Fatalf("no caddy command %q", args[0])
	}
	root := &cobra.Command{Use: args[0], SilenceUsage: true, SilenceErrors: true}
	c.CobraFunc(root)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args[1:])
	err := root.Execute()
	return out.String(), err
}

// TestCaddyfileExample runs Caddyfile.example as the README's session does:
// 401 without a token, a token from `caddy armgate token create`, then 200
// with the identity header at the stand-in upstream and no Authorization.
func TestCaddyfileExample(t *testing.T) {
	t.Setenv("ARMGATE_DATABASE_URL", testpg.NewDatabase(t))
	t.Setenv("ARMGATE_ADMIN_KEY", testAdminKey)
	src, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	gw, up := freePort(t), freePort(t)
	cfg := strings.NewReplacer(
		"admin localhost:2019", "admin off",
		":8080 {", fmt.Sprintf(":%d {", gw),
		"127.0.0.1:8081", fmt.Sprintf("127.0.0.1:%d", up),
		":8081 {", fmt.Sprintf(":%d {", up),
	).Replace(string(src))
	if cfg == string(src) {
		t.Fatal("Caddyfile.example no longer has the expected addresses")
	}
	loadCaddyfile(t, cfg)
	// localhost, as in the README: the upstream must not depend on the Host
	// header that reverse_proxy passes through.
	g := &gateway{t: t, URL: fmt.Sprintf("http://localhost:%d", gw), client: http.DefaultClient}

	if r := g.get("/v1/projects", ""); r.Status != 401 || r.Header.Get("WWW-Authenticate") != realmChallenge {
		t.Fatalf("without a token: %d %q", r.Status, r.Header.Get("WWW-Authenticate"))
	}
	out, err := runCaddyCommand(t, "armgate", "token", "create", "--config", "../Caddyfile.example",
		"--user", "alice", "--name", "laptop")
	if err != nil {
		t.Fatalf("token create: %v: %s", err, out)
	}
	plain := strings.TrimSpace(out)
	if token.Check(plain) != nil {
		t.Fatalf("token create printed %q, not just a token", out)
	}
	r := g.get("/v1/projects", plain)
	if r.Status != 200 {
		t.Fatalf("with the token: %d %s", r.Status, r.Body)
	}
	var echo map[string]string
	if err := json.Unmarshal(r.Body, &echo); err != nil {
		t.Fatalf("upstream echo is not JSON: %v: %s", err, r.Body)
	}
	if echo["x_arm_user_id"] != "alice" || echo["x_arm_token_name"] != "laptop" || echo["authorization"] != "" {
		t.Errorf("upstream saw %v", echo)
	}
	if strings.Contains(string(r.Body), plain) {
		t.Error("the token reached the upstream")
	}

	// Same name again: refused, and nothing printed on stdout.
	out, err = runCaddyCommand(t, "armgate", "token", "create", "--config", "../Caddyfile.example",
		"--user", "alice", "--name", "laptop")
	if err == nil || strings.Contains(out, token.Prefix) {
		t.Errorf("duplicate name: err=%v out=%q", err, out)
	}
}

// TestMissingGlobalOption: armgate_auth without the armgate global option is
// a config error that says what to add, not an empty app.
func TestMissingGlobalOption(t *testing.T) {
	for _, directive := range []string{"armgate_auth", "armgate_admin"} {
		err := tryLoadCaddyfile(t, fmt.Sprintf("{\n\tadmin off\n}\nhttp://127.0.0.1:%d {\n\t%s\n}\n", freePort(t), directive))
		if err == nil || !strings.Contains(err.Error(), "the armgate app is not configured") {
			t.Errorf("%s without the global option: %v", directive, err)
		}
	}
}
