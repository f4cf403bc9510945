#!/usr/bin/env bash
# Builds ./caddy: Caddy v2.11.9 with the armgate modules from this checkout.
# Installs xcaddy when it is missing. Extra arguments go to `xcaddy build`
# (e.g. --with another/plugin).
set -euo pipefail
cd "$(dirname "$0")"

CADDY_VERSION=v2.11.9
XCADDY_VERSION=v0.4.5
export PATH="$(go env GOPATH)/bin:$PATH"

if ! command -v xcaddy >/dev/null 2>&1; then
	echo "xcaddy.sh: installing xcaddy $XCADDY_VERSION" >&2
	go install "github.com/caddyserver/xcaddy/cmd/xcaddy@$XCADDY_VERSION"
fi

# A local replacement needs an explicit placeholder version: the module proxy
# answers 400 for a module it has never seen.
exec xcaddy build "$CADDY_VERSION" \
	--output ./caddy \
	--with "github.com/armgate/armgate@v0.0.0-00010101000000-000000000000=$PWD" \
	"$@"
