package admincli_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/admincli"
	"github.com/armgate/armgate/quota"
)

func i64(n int64) *int64 { return &n }

// TestCLIControls: token limit, allow-ips and usage set, clear and show
// what the admin API does, audited as cli; bad input is a usage error in
// the command line's words and changes nothing.
func TestCLIControls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var id string
	e.run(t, true, func(ctx context.Context, r *admincli.Runner) error {
		return r.TokenCreate(ctx, "carl", request.CreateToken{Name: "ci"})
	})
	id = decode[adminapi.CreatedToken](t, e.out.String()).ID

	out := e.run(t, false, func(ctx context.Context, r *admincli.Runner) error {
		return r.TokenLimit(ctx, admincli.Limit{ID: id, Requests: i64(1000), Window: ptr("3600s")})
	})
	if !strings.Contains(out, "quota       1000 requests per 1h\n") || !strings.Contains(out, "allowed_ips anywhere") {
		t.Errorf("token limit printed:\n%s", out)
	}
	out = e.run(t, true, func(ctx context.Context, r *admincli.Runner) error {
		return r.TokenAllowIPs(ctx, id, []string{"192.0.2.9/24", "2001:db8::/32"}, false)
	})
	tok := decode[adminapi.Token](t, out)
	if tok.RateLimit == nil || *tok.RateLimit != (quota.Limit{Requests: 1000, Window: time.Hour}) ||
		strings.Join(tok.AllowedIPs, " ") != "192.0.2.0/24 2001:db8::/32" {
		t.Errorf("allow-ips --json: %s", out)
	}
	if n := e.scalar(t, `SELECT count(*) FROM armgate.audit WHERE action = 'token.update' AND actor = 'cli' AND target = $1`, id).(int64); n != 2 {
		t.Errorf("%d token.update events by cli, want 2", n)
	}

	before := e.counts(t)
	for _, c := range []struct {
		call func(context.Context, *admincli.Runner) error
		want string
	}{
		{func(ctx context.Context, r *admincli.Runner) error {
			return r.TokenLimit(ctx, admincli.Limit{ID: id, Requests: i64(0), Window: ptr("1h")})
		}, "--requests must be from 1"},
		{func(ctx context.Context, r *admincli.Runner) error {
			return r.TokenLimit(ctx, admincli.Limit{ID: id, Requests: i64(5), Window: ptr("48h")})
		}, "window must be from 1s to 24h"},
		{func(ctx context.Context, r *admincli.Runner) error {
			return r.TokenLimit(ctx, admincli.Limit{ID: id, Requests: i64(5)})
		}, "give --requests and --window"},
		{func(ctx context.Context, r *admincli.Runner) error {
			return r.TokenLimit(ctx, admincli.Limit{ID: id, Requests: i64(5), Window: ptr("1h"), Clear: true})
		}, "--clear removes the quota"},
		{func(ctx context.Context, r *admincli.Runner) error {
			return r.TokenAllowIPs(ctx, id, []string{"10.0.0.0/40"}, false)
		}, `--cidr: "10.0.0.0/40" is not a CIDR`},
		{func(ctx context.Context, r *admincli.Runner) error { return r.TokenAllowIPs(ctx, id, nil, false) }, "give --cidr"},
		{func(ctx context.Context, r *admincli.Runner) error { return r.TokenUsage(ctx, id, ptr("91")) }, "days must be a whole number from 1 to 90"},
		{func(ctx context.Context, r *admincli.Runner) error { return r.TokenUsage(ctx, "nope", nil) }, "invalid token id"},
	} {
		err := c.call(t.Context(), e.r)
		if err == nil || admincli.ExitCode(err) != 2 || !strings.Contains(admincli.Message(err), c.want) {
			t.Errorf("got %v (exit %d), want a usage error with %q", err, admincli.ExitCode(err), c.want)
		}
	}
	if after := e.counts(t); after != before {
		t.Errorf("refused calls wrote: %v → %v", before, after)
	}
	if err := e.r.TokenLimit(t.Context(), admincli.Limit{ID: "00000000-0000-4000-8000-000000000000", Clear: true}); err == nil ||
		admincli.ExitCode(err) != 1 || !strings.Contains(err.Error(), "not found") {
		t.Errorf("unknown token: %v", err)
	}

	out = e.run(t, false, func(ctx context.Context, r *admincli.Runner) error {
		return r.TokenLimit(ctx, admincli.Limit{ID: id, Clear: true})
	})
	if !strings.Contains(out, "quota       none") {
		t.Errorf("limit --clear printed:\n%s", out)
	}
	e.run(t, false, func(ctx context.Context, r *admincli.Runner) error { return r.TokenAllowIPs(ctx, id, nil, true) })

	today := time.Now().UTC().Truncate(24 * time.Hour)
	if err := e.r.Store.RecordUsage(t.Context(), []quota.Usage{{TokenID: id, Day: today, Allowed: 12, QuotaRefused: 3, IPRefused: 4}}); err != nil {
		t.Fatal(err)
	}
	out = e.run(t, false, func(ctx context.Context, r *admincli.Runner) error { return r.TokenUsage(ctx, id, ptr("3")) })
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "DAY") || strings.Fields(lines[3])[1] != "12" ||
		strings.Join(strings.Fields(lines[3]), " ") != today.Format(time.DateOnly)+" 12 3 4" ||
		strings.Join(strings.Fields(lines[1])[1:], " ") != "0 0 0" || lines[4] != "last client address: -" {
		t.Errorf("usage table:\n%s", out)
	}
	out = e.run(t, true, func(ctx context.Context, r *admincli.Runner) error { return r.TokenUsage(ctx, id, nil) })
	u := decode[struct {
		Days   []adminapi.DayUsage `json:"days"`
		LastIP *string             `json:"last_ip"`
	}](t, out)
	if len(u.Days) != 30 || u.Days[29].Allowed != 12 || u.LastIP != nil {
		t.Errorf("usage --json: %s", out)
	}
}
