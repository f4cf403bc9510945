package admincli_test

import (
	"context"
	"strings"
	"testing"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/admincli"
)

// TestCLIRevokeLeaked: tokens come from the input, one or more per line;
// the output names them by hint (none for strings that are not armgate
// tokens) and never shows a token; the audit records leak:admin reported
// by cli.
func TestCLIRevokeLeaked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	plain := strings.TrimSpace(e.run(t, false, func(ctx context.Context, r *admincli.Runner) error {
		return r.TokenCreate(ctx, "alice", request.CreateToken{Name: "ci"})
	}))
	in := plain + "\n  hunter2 " + plain + "\n\n"
	res := decode[adminapi.RevokedLeaks](t, e.run(t, true, func(ctx context.Context, r *admincli.Runner) error {
		return r.TokenRevokeLeaked(ctx, strings.NewReader(in), "https://paste.example.com/x")
	}))
	if len(res.Results) != 3 || res.Revoked != 1 || res.Results[0].Result != adminapi.LeakRevoked ||
		res.Results[1].Result != adminapi.LeakMalformed || res.Results[1].Hint != "" {
		t.Fatalf("results %+v", res)
	}
	out := e.run(t, false, func(ctx context.Context, r *admincli.Runner) error {
		return r.TokenRevokeLeaked(ctx, strings.NewReader(in), "")
	})
	if strings.Contains(out, plain) || strings.Contains(out, "hunter2") || !strings.Contains(out, "already leaked") {
		t.Errorf("table:\n%s", out)
	}
	if got := e.scalar(t, `SELECT detail->>'reported_by' || ' ' || actor || ' ' || (detail->>'url') FROM armgate.audit WHERE action = 'token.leaked'`); got != "cli leak:admin https://paste.example.com/x" {
		t.Errorf("audit: %v", got)
	}
	e.r.JSON = false
	if err := e.r.TokenRevokeLeaked(t.Context(), strings.NewReader("\n \n"), ""); !admincli.IsUsage(err) {
		t.Errorf("no tokens: %v, want a usage error", err)
	}
	if err := e.r.TokenRevokeLeaked(t.Context(), strings.NewReader(plain), "a\x00b"); !admincli.IsUsage(err) {
		t.Errorf("bad url: %v, want a usage error", err)
	}
}
