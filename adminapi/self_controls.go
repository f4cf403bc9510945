package adminapi

import (
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/ipallow"
	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/storage"
)

// The self-service calls on a token's quota and allow-list: a user may
// only lower the quota and narrow the allow-list of their own tokens.
// Raising, clearing and widening are the administrator's.

// forbidden is a 403 with a message saying what the user may do instead.
func forbidden(format string, args ...any) *Error {
	e := badRequest(format, args...)
	e.Status, e.Code = http.StatusForbidden, "forbidden"
	return e
}

// LowerOnly returns the check the store runs on a token's current
// controls, in the changing transaction, before a user's change c: a quota
// no higher than the effective one (the token's, else def, the configured
// default), never cleared while one applies; an allow-list only narrowed.
func LowerOnly(c storage.TokenControls, def quota.Limit) func(storage.Controls) error {
	return func(cur storage.Controls) error {
		if c.RateLimit != nil {
			eff := def
			if cur.RateLimit != nil {
				eff = *cur.RateLimit
			}
			if err := lowerQuota(eff, *c.RateLimit); err != nil {
				return err
			}
		}
		if c.AllowedIPs != nil {
			if err := narrower(cur.AllowedIPs, *c.AllowedIPs); err != nil {
				return err
			}
		}
		return nil
	}
}

// lowerQuota allows next in place of cur when it admits no more requests
// per window and no higher rate; with no quota in force (cur zero) any
// quota is lower.
func lowerQuota(cur, next quota.Limit) error {
	switch {
	case cur.IsZero():
		return nil
	case next.IsZero():
		return forbidden("the quota of %s cannot be removed here; you may only lower it (ask an administrator to raise or remove it)", describeLimit(cur))
	case next.Requests > cur.Requests || next.Requests*cur.Seconds() > cur.Requests*next.Seconds():
		return forbidden("%s is higher than the quota in force, %s; you may only lower it (fewer requests, no higher rate); ask an administrator to raise it",
			describeLimit(next), describeLimit(cur))
	}
	return nil
}

func describeLimit(l quota.Limit) string {
	return strconv.FormatInt(l.Requests, 10) + " requests per " + quota.ShortWindow(l.Window)
}

// narrower allows next in place of the allow-list cur when every prefix of
// next lies inside one of cur; an empty cur (anywhere) allows any list, and
// an empty next (anywhere) only when cur is empty too.
func narrower(cur []string, next ipallow.List) error {
	if len(cur) == 0 {
		return nil
	}
	if next.Empty() {
		return forbidden("the allow-list (%s) cannot be removed here; you may only narrow it (ask an administrator to widen it)", strings.Join(cur, " "))
	}
	have := make([]netip.Prefix, 0, len(cur))
	for _, s := range cur {
		if p, err := netip.ParsePrefix(s); err == nil {
			have = append(have, p)
		}
	}
	for _, p := range next.Prefixes() {
		inside := false
		for _, h := range have {
			if h.Addr().Is4() == p.Addr().Is4() && h.Bits() <= p.Bits() && h.Contains(p.Addr()) {
				inside = true
				break
			}
		}
		if !inside {
			return forbidden("%s is not inside the allow-list in force (%s); you may only narrow it; ask an administrator to widen it",
				p, strings.Join(cur, " "))
		}
	}
	return nil
}

func (s *selfHandler) patchToken(w http.ResponseWriter, r *http.Request) error {
	id, body, err := change[request.TokenControls](r, pathTokenID)
	if err != nil {
		return err
	}
	checked, err := body.Controls()
	if err != nil {
		return err
	}
	c := ControlsToStore(checked)
	// The store refuses another user's token (404) and runs the check on
	// the locked row, so that two calls cannot race past it.
	t, inv, err := s.store.SetTokenControls(r.Context(), selfActor(r), id, c, LowerOnly(c, s.defaultQuota))
	if err != nil {
		return err
	}
	return s.changed(w, inv, http.StatusOK, TokenJSON(t))
}

func (s *selfHandler) tokenUsage(w http.ResponseWriter, r *http.Request) error {
	id, err := pathTokenID(r)
	if err != nil {
		return err
	}
	days, err := ParseUsageDays(r.URL.Query().Get("days"))
	if err != nil {
		return err
	}
	// Another user's token is not found, like an unknown one.
	if _, err := s.ownToken(r, id); err != nil {
		return err
	}
	d, last, err := s.store.TokenUsage(r.Context(), id, days)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, UsageJSON(d, last))
	return nil
}
