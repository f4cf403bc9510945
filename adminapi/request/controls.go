package request

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/armgate/armgate/ipallow"
	"github.com/armgate/armgate/quota"
)

// Per-token controls: quotas and IP allow-lists.

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
		return quota.Limit{}, BadRequest("rate_limit.requests must be from 1 to %d, got %d", quota.MaxRequests, r.Requests)
	}
	w, err := time.ParseDuration(r.Window)
	if err != nil {
		return quota.Limit{}, BadRequest(`rate_limit.window must be a duration from "1s" to "24h" such as "1h" or "30s", got %q`, r.Window)
	}
	l := quota.Limit{Requests: r.Requests, Window: w}
	if err := l.Validate(); err != nil {
		return quota.Limit{}, BadRequest("rate_limit: %v", err)
	}
	return l, nil
}

// AllowedIPs validates an allow-list: at most ipallow.Max CIDRs (or bare
// addresses), IPv4 or IPv6, returned masked and normalised.
func AllowedIPs(cidrs []string) (ipallow.List, error) {
	if len(cidrs) > ipallow.Max {
		return ipallow.List{}, BadRequest("allowed_ips holds at most %d CIDRs, got %d", ipallow.Max, len(cidrs))
	}
	l, err := ipallow.Parse(cidrs)
	if err != nil {
		return ipallow.List{}, BadRequest("allowed_ips: %v", err)
	}
	return l, nil
}

// TokenControls is the body of PATCH /tokens/{token_id}: an absent field
// is left as it is, null (or an empty allowed_ips) removes the control.
type TokenControls struct {
	RateLimit  Optional[RateLimit] `json:"rate_limit,omitzero"`
	AllowedIPs Optional[[]string]  `json:"allowed_ips,omitzero"`
}

// Controls is a checked change of a token's quota and allow-list; a nil
// field is left as it is, a zero Limit or an empty List removes the
// control.
type Controls struct {
	RateLimit  *quota.Limit
	AllowedIPs *ipallow.List
}

// Controls validates the body and returns the change to store.
func (b TokenControls) Controls() (Controls, error) {
	var c Controls
	if !b.RateLimit.Set && !b.AllowedIPs.Set {
		return c, BadRequest("give rate_limit, allowed_ips or both (null removes one)")
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
