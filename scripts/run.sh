#!/usr/bin/env bash
# run.sh — build the gateway if needed and run it in the foreground with Caddyfile.example.
#
# - Rebuilds ./caddy with ./xcaddy.sh when it is missing or older than a *.go file, go.mod or go.sum.
# - Without ARMGATE_DATABASE_URL: starts a private PostgreSQL (data in .armgate/pgdata, port 54329)
#   and stops it when the gateway exits.
# - Without ARMGATE_ADMIN_KEY: uses the key stored in .armgate/admin_key (generated on first use).
# Ctrl-C (SIGINT) and SIGTERM are passed on to Caddy, which shuts down gracefully.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$root"
# shellcheck source=scripts/pg.sh
. scripts/pg.sh

log() { printf 'run.sh: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

config=Caddyfile.example
[[ -f "$config" ]] || die "$config not found in $root"

# 1. Build.
stale=
if [[ ! -x ./caddy ]]; then
	stale="./caddy is missing"
elif [[ -n "$(find . \( -path ./.git -o -path ./.armgate -o -path ./node_modules \) -prune -o \
	\( -name '*.go' -o -name go.mod -o -name go.sum \) -newer ./caddy -print -quit)" ]]; then
	stale="sources changed since ./caddy was built"
fi
if [[ -n "$stale" ]]; then
	[[ -f ./xcaddy.sh ]] || die "$stale and ./xcaddy.sh does not exist"
	log "$stale; building with ./xcaddy.sh"
	if [[ -x ./xcaddy.sh ]]; then ./xcaddy.sh; else bash ./xcaddy.sh; fi
	[[ -x ./caddy ]] || die "./xcaddy.sh did not produce ./caddy"
fi

# 2. State directory (git-ignored). It must be traversable by the PostgreSQL user when run as root.
state=$root/.armgate
mkdir -p -- "$state"
chmod 711 -- "$state"

pgdata=$state/pgdata
pg_started=
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n "$pg_started" ]]; then
		pg_stop "$pgdata" || true
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 3. Database.
if [[ -z "${ARMGATE_DATABASE_URL:-}" ]]; then
	if pg_is_running "$pgdata"; then
		log "PostgreSQL is already running on $pgdata; using it and leaving it running"
	else
		pg_started=1
	fi
	ARMGATE_DATABASE_URL=$(pg_start "$pgdata" 54329 | tail -n 1)
	[[ -n "$ARMGATE_DATABASE_URL" ]] || die "could not start PostgreSQL"
	export ARMGATE_DATABASE_URL
	log "ARMGATE_DATABASE_URL=$ARMGATE_DATABASE_URL (private PostgreSQL, data in $pgdata)"
fi

# 4. Admin key (never printed).
if [[ -z "${ARMGATE_ADMIN_KEY:-}" ]]; then
	keyfile=$state/admin_key
	if [[ ! -s "$keyfile" ]]; then
		(
			umask 077
			head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$keyfile"
		)
	fi
	chmod 600 -- "$keyfile"
	ARMGATE_ADMIN_KEY=$(<"$keyfile")
	export ARMGATE_ADMIN_KEY
	log "admin key is in $keyfile (send it as 'Authorization: Bearer <key>')"
fi

# Let a second terminal reach the same gateway: `. .armgate/env` (mode 600, git-ignored).
(
	umask 077
	printf 'export ARMGATE_DATABASE_URL=%q\nexport ARMGATE_ADMIN_KEY=%q\n' \
		"$ARMGATE_DATABASE_URL" "$ARMGATE_ADMIN_KEY" >"$state/env"
)
log "for a second terminal: . .armgate/env"

# 5. Run Caddy in the foreground. Job control puts Caddy in its own process group, so a terminal
# Ctrl-C reaches it once, through the trap below (a second SIGINT would make Caddy force-quit).
set -m
./caddy run --config "$config" --adapter caddyfile &
caddy_pid=$!
set +m
trap 'kill -INT "$caddy_pid" 2>/dev/null || true' INT
trap 'kill -TERM "$caddy_pid" 2>/dev/null || true' TERM
rc=0
while :; do
	wait "$caddy_pid" && rc=0 || rc=$?
	# wait also returns when a trapped signal arrives; keep waiting while Caddy is still alive.
	kill -0 "$caddy_pid" 2>/dev/null || break
done
exit "$rc"
