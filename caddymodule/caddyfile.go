package caddymodule

import (
	"math"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/armgate/armgate/adminapi"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("armgate", parseApp)
	httpcaddyfile.RegisterHandlerDirective("armgate_auth", parseAuth)
	httpcaddyfile.RegisterDirectiveOrder("armgate_auth", httpcaddyfile.After, "basic_auth")
	httpcaddyfile.RegisterHandlerDirective("armgate_admin", parseAdmin)
	httpcaddyfile.RegisterDirectiveOrder("armgate_admin", httpcaddyfile.Before, "reverse_proxy")
	httpcaddyfile.RegisterHandlerDirective("armgate_self", parseSelf)
	httpcaddyfile.RegisterDirectiveOrder("armgate_self", httpcaddyfile.Before, "reverse_proxy")
}

// parseApp sets up the armgate app from the global option:
//
//	armgate {
//		database <dsn>
//		listen_database <dsn>
//		admin_key <key>
//		admin_key <another key>
//		max_tokens_per_user <n>
//		token_lifetime <duration>
//		max_token_lifetime <duration>
//		last_used_flush <duration>
//		query_timeout <duration>
//		retention <duration> | off
//		listener_heartbeat <duration>
//		cache off
//		cache {
//			ttl <duration>
//			negative_ttl <duration>
//			max_entries <n>
//		}
//		known_tokens {
//			lookups_per_second <rate>
//			burst <n>
//			reload_jitter <duration>
//		}
//		quota {
//			token <requests> <window>
//			user <requests> <window>
//			sync <interval>
//		}
//		events {
//			webhook <url>
//			secret <whsec_...>
//			expiring_notice <duration>|off
//		}
//		leaks {
//			github_keys_url <url>
//			github_keys_file <path>
//			github off
//			gitlab_token <token>
//			gitlab_token_type <type>...
//		}
//	}
//
// Secrets may be given as {env.*} or {file.*}; they are resolved at
// provision time, so `caddy adapt` never prints them. admin_key may be
// repeated: every key given is valid (for rotation), and each must be at
// least 32 characters.
func parseApp(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	if existing != nil {
		return nil, d.Err("the armgate global option may appear only once")
	}
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "armgate", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from Caddyfile tokens; see parseApp.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch key := d.Val(); key {
		case "database", "listen_database", "admin_key":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			switch key {
			case "database":
				a.Database = v
			case "listen_database":
				a.ListenDatabase = v
			default:
				// Repeatable: every key given is valid.
				a.AdminKeys = append(a.AdminKeys, v)
			}
		case "max_tokens_per_user":
			n, err := intArg(d)
			if err != nil {
				return err
			}
			a.MaxTokensPerUser = int(n)
		case "token_lifetime":
			if err := durationArg(d, &a.TokenLifetime); err != nil {
				return err
			}
		case "max_token_lifetime":
			if err := durationArg(d, &a.MaxTokenLifetime); err != nil {
				return err
			}
		case "last_used_flush":
			if err := durationArg(d, &a.LastUsedFlush); err != nil {
				return err
			}
		case "query_timeout":
			if err := durationArg(d, &a.QueryTimeout); err != nil {
				return err
			}
		case "retention":
			// Caddy durations take days too: retention 90d.
			if d.CountRemainingArgs() == 1 && d.NextArg() {
				if d.Val() == "off" {
					a.RetentionOff, a.Retention = true, 0
					break
				}
				d.Prev()
			}
			if err := durationArg(d, &a.Retention); err != nil {
				return err
			}
			a.RetentionOff = false
		case "listener_heartbeat":
			if err := durationArg(d, &a.ListenerHeartbeat); err != nil {
				return err
			}
		case "cache":
			if err := parseMerged(d, &a.Cache); err != nil {
				return err
			}
		case "known_tokens":
			if err := parseMerged(d, &a.KnownTokens); err != nil {
				return err
			}
		case "quota":
			if err := parseMerged(d, &a.Quota); err != nil {
				return err
			}
		case "events":
			if err := parseMerged(d, &a.Events); err != nil {
				return err
			}
		case "leaks":
			if err := parseOnce(d, "leaks", &a.Leaks); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized armgate option: %s", key)
		}
	}
	return nil
}

func (c *CacheConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		if d.Val() != "off" || d.NextArg() {
			return d.Errf("cache takes a block, or the single argument 'off'")
		}
		c.Disabled = true
		return nil
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "ttl":
			if err := durationArg(d, &c.TTL); err != nil {
				return err
			}
		case "negative_ttl":
			if err := durationArg(d, &c.NegativeTTL); err != nil {
				return err
			}
		case "max_entries":
			n, err := intArg(d)
			if err != nil {
				return err
			}
			c.MaxEntries = n
		default:
			return d.Errf("unrecognized cache option: %s", d.Val())
		}
	}
	return nil
}

func (k *KnownTokensConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "lookups_per_second":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			v, err := strconv.ParseFloat(s, 64)
			if err != nil || !(v > 0) || math.IsInf(v, 0) {
				return d.Errf("lookups_per_second: expected a positive number, got %q", s)
			}
			k.LookupsPerSecond = v
		case "burst":
			n, err := intArg(d)
			if err != nil {
				return err
			}
			k.Burst = int(min(n, math.MaxInt32))
		case "reload_jitter":
			if err := durationArg(d, &k.ReloadJitter); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized known_tokens option: %s", d.Val())
		}
	}
	return nil
}

func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	var s string
	if !d.AllArgs(&s) {
		return d.ArgErr()
	}
	v, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("%s: invalid duration %q: %v", d.Val(), s, err)
	}
	if v <= 0 {
		return d.Errf("%s must be positive, got %s", d.Val(), s)
	}
	*dst = caddy.Duration(v)
	return nil
}

func intArg(d *caddyfile.Dispenser) (int64, error) {
	var s string
	if !d.AllArgs(&s) {
		return 0, d.ArgErr()
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return 0, d.Errf("expected a positive integer, got %q", s)
	}
	return n, nil
}

// parseAuth sets up the auth handler:
//
//	armgate_auth [<matcher>] {
//		realm <realm>
//		scope <scope>
//		expires_header <name> | off
//		ratelimit_headers off
//		failure_limit off
//		failure_limit <max> <window> {
//			max_clients <n>
//		}
//	}
//
// failure_limit defaults to 50 refused tokens per client address per 1m.
// expires_header renames the ARM-Token-Expires response header (the
// token's expiry, RFC 3339 in UTC) or, with off, drops it.
func parseAuth(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var m AuthHandler
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return &m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens; see parseAuth.
func (h *AuthHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "realm":
			if !d.AllArgs(&h.Realm) {
				return d.ArgErr()
			}
		case "scope":
			if !d.AllArgs(&h.Scope) {
				return d.ArgErr()
			}
		case "expires_header":
			if !d.AllArgs(&h.ExpiresHeader) {
				return d.ArgErr()
			}
		case "ratelimit_headers":
			if !d.AllArgs(&h.RateLimitHeaders) {
				return d.ArgErr()
			}
			if h.RateLimitHeaders != "on" && h.RateLimitHeaders != "off" {
				return d.Errf("ratelimit_headers takes on or off, got %q", h.RateLimitHeaders)
			}
		case "failure_limit":
			if err := parseOnce(d, "failure_limit", &h.FailureLimit); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized subdirective: %s", d.Val())
		}
	}
	return nil
}

// parseMerged reads a block into *dst, made on first use: a repeated block
// adds to what the earlier ones set.
func parseMerged[T any, P interface {
	*T
	unmarshalCaddyfile(*caddyfile.Dispenser) error
}](d *caddyfile.Dispenser, dst *P) error {
	if *dst == nil {
		*dst = P(new(T))
	}
	return (*dst).unmarshalCaddyfile(d)
}

// parseOnce reads the block or subdirective name into *dst, which it may
// set only once.
func parseOnce[T any, P interface {
	*T
	unmarshalCaddyfile(*caddyfile.Dispenser) error
}](d *caddyfile.Dispenser, name string, dst *P) error {
	if *dst != nil {
		return d.Errf("%s may appear only once", name)
	}
	*dst = P(new(T))
	return (*dst).unmarshalCaddyfile(d)
}

// unmarshalCaddyfile reads `failure_limit off` or
// `failure_limit <max> <window> [{ max_clients <n> }]`.
func (f *FailureLimit) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	switch {
	case len(args) == 1 && args[0] == "off":
		f.Off = true
		if d.NextBlock(d.Nesting()) {
			return d.Err("failure_limit off takes no block")
		}
		return nil
	case len(args) != 2:
		return d.Errf("failure_limit takes <max> <window>, or off")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return d.Errf("failure_limit: expected a positive number of failures, got %q", args[0])
	}
	w, err := caddy.ParseDuration(args[1])
	if err != nil || w < time.Second {
		return d.Errf("failure_limit: expected a window of at least 1s, got %q", args[1])
	}
	f.Max, f.Window = n, caddy.Duration(w)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "max_clients":
			n, err := intArg(d)
			if err != nil {
				return err
			}
			f.MaxClients = int(n)
		default:
			return d.Errf("unrecognized failure_limit option: %s", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*AuthHandler)(nil)
)

// parseAdmin sets up the admin handler:
//
//	armgate_admin {
//		failure_limit off
//		failure_limit <max> <window> {
//			max_clients <n>
//		}
//	}
//
// failure_limit defaults to 20 refused credentials per client address per
// 1m. The admin keys and token limits come from the armgate global option.
func parseAdmin(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var m AdminHandler
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return &m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens; see
// parseAdmin.
func (h *AdminHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "failure_limit":
			if err := parseOnce(d, "failure_limit", &h.FailureLimit); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized subdirective: %s", d.Val())
		}
	}
	return nil
}

// parseSelf sets up the self-service handler:
//
//	armgate_self {
//		user <placeholder or id>
//		origins <origin>...
//		write_limit <max> <window> | off
//	}
//
// user defaults to {http.auth.user.id}; write_limit to 60 1h; the token
// limits come from the armgate global option.
func parseSelf(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var m SelfHandler
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return &m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens; see
// parseSelf.
func (h *SelfHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "user":
			if h.User != "" {
				return d.Err("user may appear only once")
			}
			if !d.AllArgs(&h.User) || h.User == "" {
				return d.ArgErr()
			}
		case "origins":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			for _, a := range args {
				if _, err := adminapi.ParseOrigin(a); err != nil {
					return d.Errf("origins: %v", err)
				}
			}
			h.Origins = append(h.Origins, args...)
		case "write_limit":
			if err := parseOnce(d, "write_limit", &h.WriteLimit); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized subdirective: %s", d.Val())
		}
	}
	return nil
}

// unmarshalCaddyfile parses write_limit <max> <window> | off.
func (l *WriteLimit) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	switch {
	case len(args) == 1 && args[0] == "off":
		l.Off = true
		return nil
	case len(args) != 2:
		return d.Errf("write_limit takes <max> <window>, or off")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return d.Errf("write_limit: expected a positive number of calls, got %q", args[0])
	}
	w, err := caddy.ParseDuration(args[1])
	if err != nil || w < time.Second {
		return d.Errf("write_limit: expected a window of at least 1s, got %q", args[1])
	}
	l.Max, l.Window = n, caddy.Duration(w)
	return nil
}

// unmarshalCaddyfile reads
//
//	quota {
//		token <requests> <window>
//		user <requests> <window>
//		sync <interval>
//	}
func (q *QuotaConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch key := d.Val(); key {
		case "token", "user":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("quota %s takes <requests> <window>", key)
			}
			n, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || n < 1 {
				return d.Errf("quota %s: expected a positive number of requests, got %q", key, args[0])
			}
			w, err := caddy.ParseDuration(args[1])
			if err != nil {
				return d.Errf("quota %s: invalid window %q: %v", key, args[1], err)
			}
			l := &LimitConfig{Requests: n, Window: caddy.Duration(w)}
			if err := l.limit().Validate(); err != nil {
				return d.Errf("quota %s: %v", key, err)
			}
			if key == "token" {
				q.Token = l
			} else {
				q.User = l
			}
		case "sync":
			if err := durationArg(d, &q.Sync); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized quota option: %s", key)
		}
	}
	return nil
}

// unmarshalCaddyfile reads
//
//	leaks {
//		github_keys_url <url>
//		github_keys_file <path>
//		github off
//		gitlab_token <token>
//		gitlab_token_type <type>...
//	}
func (c *LeaksConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch key := d.Val(); key {
		case "github_keys_url", "github_keys_file", "gitlab_token":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			switch key {
			case "github_keys_url":
				c.GitHubKeysURL = v
			case "github_keys_file":
				c.GitHubKeysFile = v
			default:
				c.GitLabToken = v
			}
		case "github":
			var v string
			if !d.AllArgs(&v) || v != "off" {
				return d.Err("github takes the single argument 'off'")
			}
			c.GitHubOff = true
		case "gitlab_token_type":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			c.GitLabTokenTypes = append(c.GitLabTokenTypes, args...)
		default:
			return d.Errf("unrecognized leaks option: %s", key)
		}
	}
	return c.validate()
}

// unmarshalCaddyfile parses
//
//	events {
//		webhook <url>
//		secret <whsec_...>
//		expiring_notice <duration>|off
//		timeout <duration>
//		retry_min <duration>
//		retry_max <duration>
//		retry_for <duration>
//		poll <duration>
//		expiring_scan <duration>
//	}
func (e *EventsConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch key := d.Val(); key {
		case "webhook", "secret":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			if key == "webhook" {
				e.Webhook = v
			} else {
				e.Secret = v
			}
		case "expiring_notice":
			if d.CountRemainingArgs() == 1 && d.NextArg() {
				if d.Val() == "off" {
					e.ExpiringNotice = -1
					continue
				}
				d.Prev()
			}
			if err := durationArg(d, &e.ExpiringNotice); err != nil {
				return err
			}
		case "timeout", "retry_min", "retry_max", "retry_for", "poll", "expiring_scan":
			dst := map[string]*caddy.Duration{"timeout": &e.Timeout, "retry_min": &e.RetryMin,
				"retry_max": &e.RetryMax, "retry_for": &e.RetryFor, "poll": &e.Poll, "expiring_scan": &e.ExpiringScan}[key]
			if err := durationArg(d, dst); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized events option: %s", key)
		}
	}
	return nil
}
