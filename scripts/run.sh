#!/usr/bin/env bash
# run.sh — build the gateway if needed and run it in the foreground with Caddyfile.example.
#
# - Rebuilds ./caddy with ./xcaddy.sh when it is missing or the sources changed since it was built
#   (a hash of the tracked and untracked-but-not-ignored files, docs excepted, kept in
#   .armgate/build.hash). The build's output is shown only when it fails.
# - Only one at a time: a second run.sh while one runs says so and exits.
# - Without ARMGATE_DATABASE_URL: starts a private PostgreSQL (data in .armgate/pgdata, port 54329)
#   and stops it when the gateway exits.
# - Without ARMGATE_ADMIN_KEY: uses the key stored in .armgate/admin_key (generated on first use).
# - The demo account for /me/ (basic_auth): user ARMGATE_DEMO_USER (default alice), a random
#   password kept in .armgate/demo_password; the user is created in armgate when missing.
# - Once the gateway answers, prints where everything is; `. .armgate/env` in a second terminal
#   sets the variables the README's examples use.
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

# 2. State directory (git-ignored). It must be traversable by the PostgreSQL user when run as root.
state=$root/.armgate
mkdir -p -- "$state"
chmod 711 -- "$state"

# One gateway at a time: Caddy's listeners use SO_REUSEPORT, so a second one would bind the same
# ports and share the traffic. The lock is released when this script exits.
exec 9>"$state/run.lock"
if ! flock -n 9; then
	die "a gateway started by scripts/run.sh is already running (pid $(cat "$state/run.pid" 2>/dev/null || echo unknown)); use it (. .armgate/env in this terminal), or stop it with Ctrl-C in its terminal first"
fi
echo $$ >"$state/run.pid"

# 1. Build, when the sources changed since the last build.
sources_hash() {
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		git ls-files -z --cached --others --exclude-standard -- . ':!docs' ':!*.md' |
			xargs -0 sha256sum 2>/dev/null | sha256sum | cut -d' ' -f1
	else
		find . \( -path ./.git -o -path ./.armgate -o -path ./docs \) -prune -o -type f ! -name caddy ! -name '*.md' -print0 |
			sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
	fi
}
want_hash=$(sources_hash)
stale=
if [[ ! -x ./caddy ]]; then
	stale="./caddy is missing"
elif [[ "$(cat "$state/build.hash" 2>/dev/null)" != "$want_hash" ]]; then
	stale="the sources changed since ./caddy was built"
fi
if [[ -n "$stale" ]]; then
	[[ -f ./xcaddy.sh ]] || die "$stale and ./xcaddy.sh does not exist"
	log "$stale; building with ./xcaddy.sh (a minute or more the first time)"
	rm -f -- "$state/build.hash"
	if ! bash ./xcaddy.sh >"$state/build.log" 2>&1 || [[ ! -x ./caddy ]]; then
		cat -- "$state/build.log" >&2
		die "the build failed (output above, also in .armgate/build.log)"
	fi
	echo "$want_hash" >"$state/build.hash"
fi

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
fi

# 5. The demo account for /me/ (basic_auth in Caddyfile.example).
ARMGATE_DEMO_USER=${ARMGATE_DEMO_USER:-alice}
pwfile=$state/demo_password
if [[ ! -s "$pwfile" || ! -s "$state/demo_hash" ]]; then
	(
		umask 077
		head -c 18 /dev/urandom | base64 | tr -d '/+=\n' >"$pwfile"
		./caddy hash-password --plaintext "$(<"$pwfile")" >"$state/demo_hash"
	) || die "could not make the demo account's password"
fi
ARMGATE_DEMO_PASSWORD=$(<"$pwfile")
ARMGATE_DEMO_HASH=$(<"$state/demo_hash")
export ARMGATE_DEMO_USER ARMGATE_DEMO_PASSWORD ARMGATE_DEMO_HASH

# Let a second terminal reach the same gateway: `. .armgate/env` (mode 600, git-ignored).
(
	umask 077
	printf 'export ARMGATE_DATABASE_URL=%q\nexport ARMGATE_ADMIN_KEY=%q\n' \
		"$ARMGATE_DATABASE_URL" "$ARMGATE_ADMIN_KEY" >"$state/env"
	printf 'export ARMGATE_DEMO_USER=%q\nexport ARMGATE_DEMO_PASSWORD=%q\nexport ARMGATE_DEMO_HASH=%q\n' \
		"$ARMGATE_DEMO_USER" "$ARMGATE_DEMO_PASSWORD" "$ARMGATE_DEMO_HASH" >>"$state/env"
)

# 6. Run Caddy in the foreground. Job control puts Caddy in its own process group, so a terminal
# Ctrl-C reaches it once, through the trap below (a second SIGINT would make Caddy force-quit).
set -m
./caddy run --config "$config" --adapter caddyfile &
caddy_pid=$!
set +m
trap 'kill -INT "$caddy_pid" 2>/dev/null || true' INT
trap 'kill -TERM "$caddy_pid" 2>/dev/null || true' TERM

# 7. Once it answers: the demo user in armgate (the migrations are in place by then), and one
# block that says where everything is.
ready=
for ((i = 0; i < 300; i++)); do
	kill -0 "$caddy_pid" 2>/dev/null || break
	if [[ "$(curl -s -o /dev/null -w '%{http_code}' localhost:8080/admin/healthz 2>/dev/null)" == 200 ]]; then
		ready=1
		break
	fi
	sleep 0.1
done
if [[ -n "$ready" ]]; then
	if ! out=$(./caddy armgate user put --config "$config" --user "$ARMGATE_DEMO_USER" 2>&1 >/dev/null); then
		log "could not create the demo user $ARMGATE_DEMO_USER: $out"
	fi
	cat >&2 <<READY

armgate is running (Ctrl-C stops it).
  API              http://localhost:8080/  with Authorization: Bearer <token>
                   a token: ./caddy armgate token create --config $config --user alice --name laptop
  API Tokens       http://localhost:8080/admin/  (the screen; the admin API is under /admin/ too)
                   sign in with the admin key: cat .armgate/admin_key
  My API Tokens    http://localhost:8080/me/  user $ARMGATE_DEMO_USER, password $ARMGATE_DEMO_PASSWORD
  Health           http://localhost:8080/admin/healthz
  Metrics          http://localhost:2019/metrics
  Second terminal  . .armgate/env   (ARMGATE_DATABASE_URL, ARMGATE_ADMIN_KEY, ARMGATE_DEMO_USER, ARMGATE_DEMO_PASSWORD)

READY
elif kill -0 "$caddy_pid" 2>/dev/null; then
	log "the gateway does not answer on localhost:8080/admin/healthz after 30 s; see Caddy's log above"
fi
rc=0
while :; do
	wait "$caddy_pid" && rc=0 || rc=$?
	# wait also returns when a trapped signal arrives; keep waiting while Caddy is still alive.
	kill -0 "$caddy_pid" 2>/dev/null || break
done
exit "$rc"
