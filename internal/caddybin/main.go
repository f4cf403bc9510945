// Command caddybin is Caddy with the standard modules and armgate's, built
// straight from this checkout with `go build`. Tests and benchmarks that need
// separate Caddy processes build it; users build with ./xcaddy.sh instead.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/armgate/armgate"
)

func main() {
	caddycmd.Main()
}
