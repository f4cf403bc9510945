package caddymodule

import (
	"reflect"
	"slices"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// warnLaxTrustedProxies warns about every HTTP server that trusts proxies
// without trusted_proxies_strict. Caddy then takes the client address from
// the left of X-Forwarded-For, which the client writes itself: a client can
// pick the address the failure limiter counts it under, to dodge its own
// block or to get another address blocked.
func warnLaxTrustedProxies(ctx caddy.Context, logger *zap.Logger) {
	v, err := ctx.AppIfConfigured("http")
	if err != nil {
		return
	}
	app, ok := v.(*caddyhttp.App)
	if !ok {
		return
	}
	names := make([]string, 0, len(app.Servers))
	for name := range app.Servers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		srv := app.Servers[name]
		if srv.TrustedProxiesStrict == 0 && trustsProxies(srv) {
			logger.Warn("trusted_proxies without trusted_proxies_strict: a client can choose the address the failure limiter counts it under through X-Forwarded-For; add trusted_proxies_strict to the servers options",
				zap.String("server", name))
		}
	}
}

// trustsProxies reports whether srv has trusted proxies. Provisioning loads
// the trusted_proxies module and clears its raw JSON, and the loaded source
// is unexported, so this looks at either: reflection may read an
// unexported field, it may not use it.
func trustsProxies(srv *caddyhttp.Server) bool {
	if len(srv.TrustedProxiesRaw) > 0 {
		return true
	}
	f := reflect.ValueOf(srv).Elem().FieldByName("trustedProxies")
	return f.IsValid() && f.Kind() == reflect.Interface && !f.IsNil()
}
