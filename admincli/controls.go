package admincli

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/storage"
)

// Limit is the input of token limit: a quota (Requests per Window) or
// Clear, which removes the token's quota.
type Limit struct {
	ID       string
	Requests *int64
	Window   *string
	Clear    bool
}

// TokenLimit sets or removes a token's quota, validated by the admin API's
// own request type, and prints the token.
func (r *Runner) TokenLimit(ctx context.Context, l Limit) error {
	var req request.TokenControls
	switch {
	case l.Clear && (l.Requests != nil || l.Window != nil):
		return Usagef("--clear removes the quota: give it without --requests and --window")
	case l.Clear:
		req.RateLimit = request.None[request.RateLimit]()
	case l.Requests == nil || l.Window == nil:
		return Usagef("give --requests and --window (e.g. --requests 1000 --window 1h), or --clear")
	default:
		req.RateLimit = request.Some(request.RateLimit{Requests: *l.Requests, Window: *l.Window})
	}
	return r.setControls(ctx, l.ID, req)
}

// TokenAllowIPs sets a token's allow-list to cidrs, or with clear removes
// it (the token works from anywhere again), and prints the token.
func (r *Runner) TokenAllowIPs(ctx context.Context, id string, cidrs []string, clear bool) error {
	var req request.TokenControls
	switch {
	case clear && len(cidrs) > 0:
		return Usagef("--clear removes the allow-list: give it without --cidr")
	case clear:
		req.AllowedIPs = request.None[[]string]()
	case len(cidrs) == 0:
		return Usagef("give --cidr (repeat it or comma-separate, e.g. --cidr 192.0.2.0/24 --cidr 2001:db8::/32), or --clear")
	default:
		req.AllowedIPs = request.Some(cidrs)
	}
	return r.setControls(ctx, id, req)
}

func (r *Runner) setControls(ctx context.Context, id string, req request.TokenControls) error {
	id, err := tokenID(id)
	if err != nil {
		return err
	}
	c, err := req.Controls()
	if err != nil {
		return usage(err)
	}
	t, _, err := r.Store.SetTokenControls(ctx, Actor, id, adminapi.ControlsToStore(c), nil)
	if err != nil {
		return storeErr(err, "token "+id)
	}
	if r.JSON {
		return r.printJSON(adminapi.TokenJSON(t))
	}
	return r.printControls(t)
}

// printControls prints a token's quota and allow-list, one line each.
func (r *Runner) printControls(t storage.Token) error {
	q, ips := "none", "anywhere"
	if t.RateLimit != nil {
		q = fmt.Sprintf("%d requests per %s", t.RateLimit.Requests, quota.ShortWindow(t.RateLimit.Window))
	}
	if len(t.AllowedIPs) > 0 {
		ips = strings.Join(t.AllowedIPs, " ")
	}
	_, err := fmt.Fprintf(r.Out, "token %s\nquota       %s\nallowed_ips %s\n", t.ID, q, ips)
	return err
}

// TokenUsage prints a token's requests per UTC day, oldest first, and its
// last client address; days is 1 to 90, 30 when nil.
func (r *Runner) TokenUsage(ctx context.Context, id string, days *string) error {
	id, err := tokenID(id)
	if err != nil {
		return err
	}
	var d string
	if days != nil {
		if d = *days; d == "" {
			return Usagef("--days may not be empty")
		}
	}
	n, err := adminapi.ParseUsageDays(d)
	if err != nil {
		return usage(err)
	}
	rows, last, err := r.Store.TokenUsage(ctx, id, n)
	if err != nil {
		return storeErr(err, "token "+id)
	}
	u := adminapi.UsageJSON(rows, last)
	if r.JSON {
		return r.printJSON(u)
	}
	t := newTable(r.Out, "DAY", "ALLOWED", "QUOTA REFUSED", "IP REFUSED")
	for _, d := range u.Days {
		t.row(d.Day, strconv.FormatInt(d.Allowed, 10), strconv.FormatInt(d.QuotaRefused, 10), strconv.FormatInt(d.IPRefused, 10))
	}
	if err := t.flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintln(r.Out, "last client address:", str(u.LastIP))
	return err
}
