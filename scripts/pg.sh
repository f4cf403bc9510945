#!/usr/bin/env bash
# pg.sh — manage a private, throwaway PostgreSQL server for development and tests: the one
# implementation of it (scripts/test.sh, scripts/run.sh, bench/load and internal/testpg use it).
#
# Usage:
#   scripts/pg.sh start DIR PORT   initialise DIR if needed, start the server on 127.0.0.1:PORT,
#                                  create database "armgate"; prints the DSN as the last line of stdout
#   scripts/pg.sh stop DIR         stop the server running on DIR (pg_ctl stop -m fast)
#   scripts/pg.sh status DIR       exit 0 if a server is running on DIR
#   scripts/pg.sh bindir           print the PostgreSQL server binary directory (installs if missing)
#   scripts/pg.sh found-bindir     the same without installing: fails if there is none
#   scripts/pg.sh install          install the PostgreSQL server binaries if missing
#
# Sourcing this file (". scripts/pg.sh") defines the pg_* functions without running anything.
#
# The server is for throwaway use only: trust authentication (no password) on 127.0.0.1, fsync off.
# PostgreSQL refuses to run as root, so as root the server runs as the "postgres" user (created if
# missing); otherwise it runs as the current user. All messages go to stderr; stdout carries only
# the DSN.

pg_log() { printf 'pg.sh: %s\n' "$*" >&2; }
pg_die() { pg_log "error: $*"; return 1; }

# pg_bindir_candidate prints the newest directory that holds initdb, pg_ctl and postgres, or fails.
pg_bindir_candidate() {
	local d
	if [[ -n "${ARMGATE_PG_BINDIR:-}" ]] && pg__bindir_ok "$ARMGATE_PG_BINDIR"; then
		printf '%s\n' "$ARMGATE_PG_BINDIR"
		return 0
	fi
	# shellcheck disable=SC2012 # the brief: newest by sort -V; these paths have no odd characters
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
	if [[ -n "$d" ]] && pg__bindir_ok "$d"; then
		printf '%s\n' "$d"
		return 0
	fi
	if command -v pg_config >/dev/null 2>&1; then
		d=$(pg_config --bindir 2>/dev/null || true)
		if [[ -n "$d" ]] && pg__bindir_ok "$d"; then
			printf '%s\n' "$d"
			return 0
		fi
	fi
	return 1
}

pg__bindir_ok() {
	[[ -x "$1/initdb" && -x "$1/pg_ctl" && -x "$1/postgres" && -x "$1/pg_isready" && -x "$1/psql" ]]
}

# pg_install installs the PostgreSQL server with apt-get when its binaries are missing.
pg_install() {
	if pg_bindir_candidate >/dev/null; then
		return 0
	fi
	command -v apt-get >/dev/null 2>&1 ||
		pg_die "PostgreSQL server binaries not found and apt-get is unavailable; install PostgreSQL (initdb, pg_ctl, postgres) or set ARMGATE_PG_BINDIR" || return 1
	local sudo=()
	if [[ $EUID -ne 0 ]]; then
		command -v sudo >/dev/null 2>&1 ||
			pg_die "PostgreSQL server binaries not found; run as root or install the 'postgresql' package" || return 1
		sudo=(sudo)
	fi
	pg_log "PostgreSQL server binaries not found; installing package 'postgresql' with apt-get"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || return 1
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >&2 || return 1
	pg_bindir_candidate >/dev/null || pg_die "PostgreSQL installed but no server binaries found under /usr/lib/postgresql/*/bin"
}

# pg_bindir prints the server binary directory, installing PostgreSQL if needed.
pg_bindir() {
	pg_install || return 1
	pg_bindir_candidate
}

# pg_user prints the name of the user that runs the server; as root it makes sure "postgres" exists.
pg_user() {
	if [[ $EUID -ne 0 ]]; then
		id -un
		return 0
	fi
	if ! id -u postgres >/dev/null 2>&1; then
		pg_log "creating system user 'postgres'"
		useradd --system --user-group --no-create-home --home-dir /var/lib/postgresql \
			--shell /usr/sbin/nologin postgres >&2 || pg_die "could not create user 'postgres'" || return 1
	fi
	echo postgres
}

# pg_as runs a command as the server user (from "/", so an unreadable working directory is no issue).
pg_as() {
	if [[ $EUID -eq 0 ]]; then
		(cd / && runuser -u "$(pg_user)" -- "$@")
	else
		(cd / && "$@")
	fi
}

# pg_prepare_dir DIR: creates DIR if missing (owned by the server user) and checks that the server user
# owns DIR and can reach it.
pg_prepare_dir() {
	local dir=$1 user uid
	user=$(pg_user) || return 1
	uid=$(id -u "$user")
	if [[ ! -e "$dir" ]]; then
		mkdir -p -- "$dir" || return 1
		chmod 700 -- "$dir"
		if [[ $EUID -eq 0 ]]; then
			chown "$user:$(id -gn "$user")" -- "$dir" || return 1
		fi
	fi
	[[ -d "$dir" ]] || pg_die "$dir is not a directory" || return 1
	dir=$(pg__abs "$dir") || return 1
	# Every parent must be traversable (x) by the server user.
	local p=$dir
	while [[ "$p" != / ]]; do
		p=$(dirname -- "$p")
		if ! pg_as test -x "$p"; then
			pg_die "directory $p is not traversable by user '$user' (needed to reach $dir); run 'chmod o+x $p' or choose another place" || return 1
		fi
	done
	if [[ "$(stat -c %u -- "$dir")" != "$uid" ]]; then
		if [[ $EUID -eq 0 && -z "$(ls -A -- "$dir")" ]]; then
			chown "$user:$(id -gn "$user")" -- "$dir" || return 1
		else
			pg_die "$dir must be owned by user '$user' (it is owned by '$(stat -c %U -- "$dir")'); run 'chown -R $user $dir'" || return 1
		fi
	fi
}

pg__abs() { (cd -- "$1" && pwd -P); }

pg__major() { "$1/postgres" --version | awk '{print $3}' | cut -d. -f1; }

pg__quote() { printf "'%s'" "${1//\'/\'\'}"; }

# pg_is_running DIR: exit 0 if a server runs on DIR.
pg_is_running() {
	local dir=$1 bindir
	[[ -f "$dir/postmaster.pid" ]] || return 1
	dir=$(pg__abs "$dir") || return 1
	bindir=$(pg_bindir_candidate) || return 1
	pg_as "$bindir/pg_ctl" status -D "$dir" >/dev/null 2>&1
}

pg__log_tail() {
	local log=$1
	if [[ -f "$log" ]]; then
		pg_log "last lines of $log:"
		tail -n 30 -- "$log" >&2
	fi
}

# pg_start DIR PORT: see the usage at the top. Prints the DSN on stdout.
pg_start() {
	local dir=$1 port=$2 bindir user
	[[ -n "$dir" && -n "$port" ]] || pg_die "usage: pg.sh start DIR PORT" || return 1
	[[ "$port" =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || pg_die "invalid port '$port'" || return 1
	bindir=$(pg_bindir) || return 1
	user=$(pg_user) || return 1
	pg_prepare_dir "$dir" || return 1
	dir=$(pg__abs "$dir") || return 1

	if [[ -f "$dir/PG_VERSION" ]]; then
		local have want
		have=$(<"$dir/PG_VERSION")
		want=$(pg__major "$bindir")
		if [[ "$have" != "$want" ]]; then
			if pg__bindir_ok "/usr/lib/postgresql/$have/bin"; then
				bindir=/usr/lib/postgresql/$have/bin
			else
				pg_die "$dir was initialised by PostgreSQL $have but the binaries in $bindir are version $want; remove $dir to start afresh" || return 1
			fi
		fi
	else
		pg_log "initialising $dir (PostgreSQL $("$bindir/postgres" --version | awk '{print $3}'), user $user)"
		local out
		if ! out=$(pg_as "$bindir/initdb" -D "$dir" -U postgres -A trust -E UTF8 --no-locale --no-sync 2>&1); then
			printf '%s\n' "$out" >&2
			pg_die "initdb failed for $dir" || return 1
		fi
		printf "\n# Added by scripts/pg.sh; settings in armgate.conf are rewritten at every start.\ninclude_if_exists = 'armgate.conf'\n" >>"$dir/postgresql.conf"
	fi

	local sockdir=$dir
	if pg_is_running "$dir"; then
		local running_port
		running_port=$(sed -n 4p "$dir/postmaster.pid")
		if [[ "$running_port" != "$port" ]]; then
			pg_die "a server already runs on $dir with port $running_port, not $port; stop it first (pg.sh stop $dir)" || return 1
		fi
		pg_log "server on $dir already running (port $port)"
	else
		# A Unix socket path is limited to ~107 bytes: "$sockdir/.s.PGSQL.$port" must fit.
		rm -f -- "$dir/armgate.sockdir"
		if ((${#dir} > 90)); then
			sockdir=$(mktemp -d /tmp/armgate-pgsock.XXXXXX) || return 1
			[[ $EUID -eq 0 ]] && chown "$user" -- "$sockdir"
			printf '%s\n' "$sockdir" >"$dir/armgate.sockdir"
		fi
		{
			echo "# Written by scripts/pg.sh at every start; throwaway settings, do not use in production."
			echo "listen_addresses = '127.0.0.1'"
			echo "port = $port"
			echo "unix_socket_directories = $(pg__quote "$sockdir")"
			echo "unix_socket_permissions = 0700"
			echo "max_connections = 200"
			echo "fsync = off"
			echo "synchronous_commit = off"
			echo "full_page_writes = off"
		} >"$dir/armgate.conf"
		[[ $EUID -eq 0 ]] && chown "$user" -- "$dir/armgate.conf"
		pg_log "starting PostgreSQL on 127.0.0.1:$port (data $dir, log $dir/log)"
		local out
		if ! out=$(pg_as "$bindir/pg_ctl" start -D "$dir" -l "$dir/log" -w -t 60 2>&1); then
			printf '%s\n' "$out" >&2
			pg__log_tail "$dir/log"
			pg_die "could not start PostgreSQL on $dir (port $port)" || return 1
		fi
	fi

	local i
	for ((i = 0; i < 120; i++)); do
		"$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres && break
		sleep 0.25
	done
	if ((i == 120)); then
		pg__log_tail "$dir/log"
		pg_die "PostgreSQL on port $port did not become ready" || return 1
	fi

	local psql=("$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres -tA)
	if [[ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'armgate'")" != 1 ]]; then
		pg_log "creating database armgate"
		"${psql[@]}" -c 'CREATE DATABASE armgate' >/dev/null || pg_die "could not create database armgate" || return 1
	fi
	printf 'postgres://postgres@127.0.0.1:%s/armgate?sslmode=disable\n' "$port"
}

# pg_stop DIR: stops the server on DIR if it runs.
pg_stop() {
	local dir=$1 bindir
	[[ -n "$dir" ]] || pg_die "usage: pg.sh stop DIR" || return 1
	[[ -d "$dir" ]] || pg_die "$dir does not exist" || return 1
	dir=$(pg__abs "$dir") || return 1
	if pg_is_running "$dir"; then
		bindir=$(pg_bindir_candidate) || return 1
		if [[ -f "$dir/PG_VERSION" ]] && pg__bindir_ok "/usr/lib/postgresql/$(<"$dir/PG_VERSION")/bin"; then
			bindir=/usr/lib/postgresql/$(<"$dir/PG_VERSION")/bin
		fi
		pg_log "stopping PostgreSQL on $dir"
		pg_as "$bindir/pg_ctl" stop -D "$dir" -m fast -w -t 60 >/dev/null || pg_die "could not stop PostgreSQL on $dir" || return 1
	else
		pg_log "no server running on $dir"
	fi
	if [[ -f "$dir/armgate.sockdir" ]]; then
		local sockdir
		sockdir=$(<"$dir/armgate.sockdir")
		[[ "$sockdir" == /tmp/armgate-pgsock.* ]] && rm -rf -- "$sockdir"
		rm -f -- "$dir/armgate.sockdir"
	fi
}

pg_main() {
	local cmd=${1:-}
	shift || true
	case "$cmd" in
	start) (($# == 2)) || pg_die "usage: pg.sh start DIR PORT" || return 2; pg_start "$@" ;;
	stop) (($# == 1)) || pg_die "usage: pg.sh stop DIR" || return 2; pg_stop "$@" ;;
	status) (($# == 1)) || pg_die "usage: pg.sh status DIR" || return 2; pg_is_running "$1" ;;
	bindir) pg_bindir ;;
	found-bindir) pg_bindir_candidate ;;
	install) pg_install ;;
	*)
		sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
		return 2
		;;
	esac
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
	set -euo pipefail
	pg_main "$@"
fi
