package admincli_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/admincli"
)

// exitCode is what the test host's ExitStatus returns.
type exitCode int

func (c exitCode) Error() string { return "exit status" }

// TestCommandTree: the command tree runs without Caddy on the host's
// config: a call prints its result, and a failure prints one line on
// stderr and exits with 1, a usage error (a bad flag value, an unknown
// flag, a missing subcommand or config) with 2.
func TestCommandTree(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var loaded []string
	host := admincli.Host{
		LoadConfig: func(file, adapter string) (admincli.Config, error) {
			loaded = append(loaded, file+"|"+adapter)
			if file == "empty.json" {
				return admincli.Config{DatabaseOption: "{env.NOPE}", Limits: e.r.Limits}, nil
			}
			return admincli.Config{Database: e.dsn, Limits: e.r.Limits}, nil
		},
		ExitStatus: func(_ *cobra.Command, code int) error { return exitCode(code) },
	}
	run := func(args ...string) (stdout, stderr string, code int) {
		t.Helper()
		root := &cobra.Command{Use: "caddy", SilenceUsage: true}
		cmd := &cobra.Command{Use: admincli.Name, Short: admincli.Short}
		host.Build(cmd)
		root.AddCommand(cmd)
		var out, errOut bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&errOut)
		root.SetArgs(append([]string{admincli.Name}, args...))
		err := root.Execute()
		var ec exitCode
		switch {
		case err == nil:
		case errors.As(err, &ec):
			code = int(ec)
		default:
			code = 1
		}
		return out.String(), errOut.String(), code
	}

	out, stderr, code := run("token", "create", "--config", "c.json", "-a", "json", "--user", "tina", "--name", "ci", "--json")
	created := decode[adminapi.CreatedToken](t, out)
	if code != 0 || stderr != "" || created.UserID != "tina" || !strings.HasPrefix(created.Plaintext, "arm_") {
		t.Fatalf("token create: exit %d, %q, %+v", code, stderr, created)
	}
	if len(loaded) != 1 || loaded[0] != "c.json|json" {
		t.Errorf("configs loaded: %q", loaded)
	}
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"token", "rotate", "--config", "c.json", "--id", created.ID, "--grace", "200h"}, 2, `--grace must be from 0s to 168h, got "200h"`},
		{[]string{"token", "create", "--config", "c.json", "--user", "tina", "--name", "x", "--expires-in", "49h"}, 2,
			"--expires-in 49h exceeds the maximum token lifetime 48h"},
		{[]string{"token", "create", "--config", "c.json", "--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"token", "get", "--config", "c.json", "--id", created.ID, "extra"}, 2, `unexpected argument "extra" (values are given with flags)`},
		{[]string{"token", "get", "--id", created.ID}, 2, "--config is required"},
		{[]string{"token"}, 2, `"caddy armgate token" needs a subcommand (see --help)`},
		{[]string{"nope"}, 2, `unknown command "nope" for "caddy armgate"`},
		{[]string{"token", "get", "--config", "c.json", "--id", "0190b6b8-6b7e-7c1a-9f3e-2d5c8a1b4e6f"}, 1, "token 0190b6b8-6b7e-7c1a-9f3e-2d5c8a1b4e6f not found"},
		{[]string{"migrate", "--config", "empty.json"}, 1, "the armgate option's database in empty.json ({env.NOPE}) is empty"},
	} {
		out, stderr, code := run(c.args...)
		if code != c.code || out != "" || !strings.HasPrefix(stderr, "armgate: "+c.msg) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d and one line %q", c.args, code, out, stderr, c.code, c.msg)
		}
	}
}
