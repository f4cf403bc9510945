package adminapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/armgate/armgate/ipallow"
	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/storage"
)

// Per-token controls: quotas and IP allow-lists, and the usage per day.

// Usage days: GET /tokens/{token_id}/usage?days= takes 1 to MaxUsageDays,
// DefaultUsageDays when omitted.
const (
	DefaultUsageDays = 30
	MaxUsageDays     = 90
)

// Optional is a JSON field that may be absent (Set false), null (Set, Value
// nil: clear) or a value. With omitzero an unset Optional is not sent.
type Optional[T any] struct {
	Set   bool
	Value *T
}

// Some is an Optional holding v; None is an Optional holding null.
func Some[T any](v T) Optional[T] { return Optional[T]{Set: true, Value: &v} }

// None is an explicit null: clear the control.
func None[T any]() Optional[T] { return Optional[T]{Set: true} }

// UnmarshalJSON is only called when the field is present.
func (o *Optional[T]) UnmarshalJSON(b []byte) error {
	o.Set = true
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		o.Value = nil
		return nil
	}
	var v T
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return err
	}
	o.Value = &v
	return nil
}

// MarshalJSON writes the value or null.
func (o Optional[T]) MarshalJSON() ([]byte, error) {
	if o.Value == nil {
		return []byte("null"), nil
	}
	return json.Marshal(*o.Value)
}

// RateLimit is a quota on the wire: {"requests": 1000, "window": "1h"}.
type RateLimit struct {
	Requests int64  `json:"requests"`
	Window   string `json:"window"`
}

// Limit validates r: requests from 1, window a Go duration of whole
// seconds from 1s to 24h.
func (r RateLimit) Limit() (quota.Limit, error) {
	if r.Requests < 1 || r.Requests > quota.MaxRequests {
		return quota.Limit{}, badRequest("rate_limit.requests must be from 1 to %d, got %d", quota.MaxRequests, r.Requests)
	}
	w, err := time.ParseDuration(r.Window)
	if err != nil {
		return quota.Limit{}, badRequest(`rate_limit.window must be a duration from "1s" to "24h" such as "1h" or "30s", got %q`, r.Window)
	}
	l := quota.Limit{Requests: r.Requests, Window: w}
	if err := l.Validate(); err != nil {
		return quota.Limit{}, badRequest("rate_limit: %v", err)
	}
	return l, nil
}

// AllowedIPs validates an allow-list: at most ipallow.Max CIDRs (or bare
// addresses), IPv4 or IPv6, returned masked and normalised.
func AllowedIPs(cidrs []string) (ipallow.List, error) {
	if len(cidrs) > ipallow.Max {
		return ipallow.List{}, badRequest("allowed_ips holds at most %d CIDRs, got %d", ipallow.Max, len(cidrs))
	}
	l, err := ipallow.Parse(cidrs)
	if err != nil {
		return ipallow.List{}, badRequest("allowed_ips: %v", err)
	}
	return l, nil
}

// TokenControlsRequest is the body of PATCH /tokens/{token_id}: an absent
// field is left as it is, null (or an empty allowed_ips) removes the
// control.
type TokenControlsRequest struct {
	RateLimit  Optional[RateLimit] `json:"rate_limit,omitzero"`
	AllowedIPs Optional[[]string]  `json:"allowed_ips,omitzero"`
}

// Controls validates the body and returns the change to store.
func (b TokenControlsRequest) Controls() (storage.TokenControls, error) {
	var c storage.TokenControls
	if !b.RateLimit.Set && !b.AllowedIPs.Set {
		return c, badRequest("give rate_limit, allowed_ips or both (null removes one)")
	}
	if b.RateLimit.Set {
		var l quota.Limit
		if b.RateLimit.Value != nil {
			var err error
			if l, err = b.RateLimit.Value.Limit(); err != nil {
				return c, err
			}
		}
		c.RateLimit = &l
	}
	if b.AllowedIPs.Set {
		var l ipallow.List
		if b.AllowedIPs.Value != nil {
			var err error
			if l, err = AllowedIPs(*b.AllowedIPs.Value); err != nil {
				return c, err
			}
		}
		c.AllowedIPs = &l
	}
	return c, nil
}

// Usage is the answer of GET /tokens/{token_id}/usage: one entry per UTC
// day, oldest first, days without requests as zeros.
type Usage struct {
	Days   []DayUsage `json:"days"`
	LastIP *string    `json:"last_ip"`
}

// ParseUsageDays reads ?days=: 1 to MaxUsageDays, DefaultUsageDays if empty.
func ParseUsageDays(s string) (int, error) {
	if s == "" {
		return DefaultUsageDays, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxUsageDays {
		return 0, badRequest("days must be a whole number from 1 to %d, got %q", MaxUsageDays, s)
	}
	return n, nil
}

func (h *handler) patchToken(w http.ResponseWriter, r *http.Request) error {
	id, body, err := change[TokenControlsRequest](r, pathTokenID)
	if err != nil {
		return err
	}
	c, err := body.Controls()
	if err != nil {
		return err
	}
	t, inv, err := h.store.SetTokenControls(r.Context(), actor(r), id, c, nil)
	if err != nil {
		return err
	}
	return h.changed(w, inv, http.StatusOK, TokenJSON(t))
}

func (h *handler) tokenUsage(w http.ResponseWriter, r *http.Request) error {
	id, err := pathTokenID(r)
	if err != nil {
		return err
	}
	days, err := ParseUsageDays(r.URL.Query().Get("days"))
	if err != nil {
		return err
	}
	u, err := usage(r, h.store, id, days)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, u)
	return nil
}

// usage reads the token's usage; the caller has checked who may see it.
func usage(r *http.Request, s Store, id string, days int) (Usage, error) {
	d, last, err := s.TokenUsage(r.Context(), id, days)
	if err != nil {
		return Usage{}, err
	}
	return UsageJSON(d, last), nil
}

// setUserRateLimit sets the user's quota (a zero Limit removes it) and
// returns the user as it now is.
func (h *handler) setUserRateLimit(r *http.Request, id string, l quota.Limit) (storage.User, error) {
	inv, err := h.store.SetUserRateLimit(r.Context(), actor(r), id, l)
	if err != nil {
		return storage.User{}, err
	}
	h.invalidate(inv)
	return h.store.GetUser(r.Context(), id)
}
