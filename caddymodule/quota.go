package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unsafe"

	"github.com/caddyserver/caddy/v2"

	"github.com/armgate/armgate/gateway"
	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/refusal"
	"github.com/armgate/armgate/token"
)

// QuotaConfig is the `quota` block of the armgate global option: the
// default quotas of tokens and users that have none of their own, and how
// often the instances reconcile their counts.
type QuotaConfig struct {
	// Token is the default quota of a token; none when unset.
	Token *LimitConfig `json:"token,omitempty"`
	// User is the default quota of all of a user's tokens together; none
	// when unset.
	User *LimitConfig `json:"user,omitempty"`
	// Sync is how often each instance adds its counts to the shared ones
	// in PostgreSQL (one statement per instance per interval). The
	// cluster may overshoot a quota by at most 2 × instances × request
	// rate per instance × sync. Default 1s.
	Sync caddy.Duration `json:"sync,omitempty"`
}

// LimitConfig is a number of requests per window.
type LimitConfig struct {
	Requests int64          `json:"requests"`
	Window   caddy.Duration `json:"window"`
}

func (l *LimitConfig) limit() quota.Limit {
	if l == nil {
		return quota.Limit{}
	}
	return quota.Limit{Requests: l.Requests, Window: time.Duration(l.Window)}
}

// validate checks the defaults.
func (q *QuotaConfig) validate() error {
	if q == nil {
		return nil
	}
	for name, l := range map[string]*LimitConfig{"token": q.Token, "user": q.User} {
		if l == nil {
			continue
		}
		lim := l.limit()
		if lim.IsZero() {
			return fmt.Errorf("armgate: quota %s: requests must be positive", name)
		}
		if err := lim.Validate(); err != nil {
			return fmt.Errorf("armgate: quota %s: %v", name, err)
		}
	}
	if q.Sync < 0 || (q.Sync > 0 && time.Duration(q.Sync) < 100*time.Millisecond) {
		return fmt.Errorf("armgate: quota sync must be at least 100ms, got %s", time.Duration(q.Sync))
	}
	return nil
}

// quotaSync is the configured sync interval, or the default.
// defaultTokenQuota is the configured default quota of a token (zero:
// none), the one a user lowers from on the self-service mount.
func (a *App) defaultTokenQuota() quota.Limit {
	if a.Quota == nil {
		return quota.Limit{}
	}
	return a.Quota.Token.limit()
}

func (a *App) quotaSync() time.Duration {
	if a.Quota == nil || a.Quota.Sync == 0 {
		return gateway.DefaultQuotaSync
	}
	return time.Duration(a.Quota.Sync)
}

// problemQuotaExceeded is the RFC 9457 problem type of a quota refusal, as
// IANA registers it.
const problemQuotaExceeded = "https://iana.org/assignments/http-problem-types#quota-exceeded"

// quotaProblem is the RFC 9457 body of a 429 quota_exceeded; error repeats
// the code every other armgate refusal carries.
type quotaProblem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Error  string `json:"error"`
}

// respHeaders holds, in one allocation, the values of the headers a request
// that passed the check gets: the expiry notice and the IETF rate limit
// headers. Every request gets its own slices, since handlers such as
// `header` edit response header values in place; the strings point into
// buf (or into the cached entry) and are never written after they are made.
// buf fits the one value formatted per request, RateLimit (at most 57
// bytes); the rare values formatted too (a policy or expiry not cached)
// make append move to memory of its own.
type respHeaders struct {
	exp, policy, limit [1]string
	buf                [64]byte
}

// Header keys in canonical form.
const (
	hdrRateLimitPolicy = "Ratelimit-Policy"
	hdrRateLimit       = "Ratelimit"
)

// appendItem appends one list member `"<name>";<k1>=<v1>;<k2>=<v2>` of a
// Structured Fields list (draft-ietf-httpapi-ratelimit-headers-11).
func appendItem(b []byte, name string, k1 byte, v1 int64, k2 byte, v2 int64) []byte {
	if len(b) > 0 {
		b = append(b, ", "...)
	}
	b = append(b, '"')
	b = append(b, name...)
	b = append(b, '"', ';', k1, '=')
	b = strconv.AppendInt(b, v1, 10)
	b = append(b, ';', k2, '=')
	return strconv.AppendInt(b, v2, 10)
}

// setPassHeaders sets the expiry notice and, where a quota applies and the
// handler sends them, the RateLimit-Policy and RateLimit headers, in one
// allocation.
func (h *AuthHandler) setPassHeaders(w http.ResponseWriter, cred *token.Credential, qs *quota.Token, d *quota.Decision) {
	wantExp := !h.expiresOff && !cred.ExpiresAt.IsZero()
	wantRL := !h.rateLimitOff && (!d.Token.Limit.IsZero() || !d.User.Limit.IsZero())
	if !wantExp && !wantRL {
		return
	}
	if !wantRL && cred.ExpiresText != "" {
		// The common case without a quota: the cached value in a slice
		// of its own, 16 bytes.
		v := &[1]string{cred.ExpiresText}
		h.setExpires(w.Header(), v[:])
		return
	}
	rh := new(respHeaders)
	free := rh.buf[:0] // each value is appended after the previous one
	hdr := w.Header()
	if wantRL {
		// The policy depends on the limits only: built once per token
		// and limits, in memory of its own, and read from qs afterwards.
		policy, ok := "", false
		if qs != nil {
			policy, ok = qs.LimitsText(d.Token.Limit, d.User.Limit)
		}
		if !ok {
			b := free
			if !d.Token.Limit.IsZero() {
				b = appendItem(b, "token", 'q', d.Token.Limit.Requests, 'w', d.Token.Limit.Seconds())
			}
			if !d.User.Limit.IsZero() {
				b = appendItem(b, "user", 'q', d.User.Limit.Requests, 'w', d.User.Limit.Seconds())
			}
			if qs != nil {
				policy = string(b)
				qs.SetLimitsText(d.Token.Limit, d.User.Limit, policy)
			} else {
				policy = bufString(b)
				free = b[len(b):len(b)]
			}
		}
		rh.policy[0] = policy
		b := free
		if !d.Token.Limit.IsZero() {
			b = appendItem(b, "token", 'r', d.Token.Remaining, 't', d.Token.Reset)
		}
		if !d.User.Limit.IsZero() {
			b = appendItem(b, "user", 'r', d.User.Remaining, 't', d.User.Reset)
		}
		rh.limit[0] = bufString(b)
		free = b[len(b):len(b)]
		hdr[hdrRateLimitPolicy] = rh.policy[:]
		hdr[hdrRateLimit] = rh.limit[:]
	}
	if wantExp {
		v := cred.ExpiresText
		if v == "" {
			v = bufString(cred.ExpiresAt.UTC().AppendFormat(free, time.RFC3339))
		}
		rh.exp[0] = v
		h.setExpires(hdr, rh.exp[:])
	}
}

// setExpires sets the expiry notice to v. It is set before next, so that
// it is in every response, the upstream's included: reverse_proxy adds the
// upstream's headers to these.
func (h *AuthHandler) setExpires(hdr http.Header, v []string) {
	key := h.expiresKey
	if key == "" {
		key = defaultExpiresHeader
	}
	hdr[key] = v
}

// bufString returns b as a string without copying; b is never written
// again.
func bufString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// quotaExceeded answers 429 with Retry-After, the rate limit headers (r=0
// for the exhausted limit) and an RFC 9457 problem body. It is not a
// failure for the failure limiter: the token exists.
func (h *AuthHandler) quotaExceeded(w http.ResponseWriter, r *http.Request, cred *token.Credential, d *quota.Decision) {
	countDecision(outcomeQuotaExceeded, r)
	h.setPassHeaders(w, &token.Credential{}, nil, d) // no expiry notice: the request did not pass
	which := "token"
	if d.ByUser {
		which = "user"
	}
	retry := max(d.RetryAfter, 1)
	hdr := w.Header()
	hdr.Set("Retry-After", strconv.FormatInt(retry, 10))
	hdr.Set("Content-Type", "application/problem+json")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusTooManyRequests)
	_ = json.NewEncoder(w).Encode(quotaProblem{
		Type:   problemQuotaExceeded,
		Title:  "Request cannot be satisfied as assigned quota has been exceeded",
		Status: http.StatusTooManyRequests,
		Detail: "The " + which + " quota that applies to this token is used up; retry after " + strconv.FormatInt(retry, 10) + " seconds",
		Error:  "quota_exceeded",
	})
}

// ipNotAllowed answers 403 ip_not_allowed.
func ipNotAllowed(w http.ResponseWriter, r *http.Request) {
	countDecision(outcomeIPNotAllowed, r)
	refusal.Write(w, http.StatusForbidden, "", refusal.CodeIPNotAllowed, refusal.MsgIPNotAllowed)
}
