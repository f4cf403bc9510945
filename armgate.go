// Package armgate is the module root that Caddy builds import
// (`xcaddy build --with github.com/armgate/armgate`): importing it registers
// the armgate app, the armgate_auth and armgate_admin handlers, the
// Caddyfile directives and the `caddy armgate` command.
package armgate

import (
	// plug in the armgate modules
	_ "github.com/armgate/armgate/caddymodule"
)
