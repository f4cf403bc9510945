#!/usr/bin/env bash
# test.sh — the single test command (also run by .ci/run).
#
#   scripts/test.sh                          go vet + go test over ./... (-race where Caddy is not
#                                            linked in, see below), then short fuzz runs
#   scripts/test.sh -run TestX ./storage/... extra arguments go to "go test"; package patterns given
#                                            there (./..., ./x, github.com/...) replace ./... for vet,
#                                            test and fuzz
#
# It installs the PostgreSQL server if missing, starts one throwaway server in a temporary
# directory, exports ARMGATE_TEST_DATABASE_URL (its "armgate" database; tests create their own
# databases on it via internal/testpg) and ARMGATE_PG_BINDIR, and removes it all on exit.
# ARMGATE_FUZZTIME (default 25000x, an execution count) sets the budget per fuzz target; 0 skips
# fuzzing. A count, not a duration: with a duration, Go 1.26's fuzz coordinator can report a bare
# "context deadline exceeded" at the end of the window on a busy machine (go.dev/issue/75804,
# fixed in Go 1.27), failing a run that found nothing.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$root"
# shellcheck source=scripts/pg.sh
. scripts/pg.sh

log() { printf 'test.sh: [%ds] %s\n' "$SECONDS" "$*" >&2; }

# Package patterns among the arguments; the rest are flags and flag values.
pkgs=()
for a in "$@"; do
	[[ "$a" == -args ]] && break
	case "$a" in
	./* | ../* | . | .. | /* | github.com/*) pkgs+=("$a") ;;
	esac
done
if ((${#pkgs[@]} == 0)); then
	pkgs=(./...)
	test_args=(./... "$@")
else
	test_args=("$@")
fi

# The browser test drives Debian's Chromium headless; install it when missing
# (ARMGATE_SKIP_BROWSER=1 skips the install, and the test then skips itself).
if [[ -z "${ARMGATE_SKIP_BROWSER:-}" && ! -x /usr/bin/chromium ]] && command -v apt-get >/dev/null 2>&1 && [[ $EUID -eq 0 ]]; then
	log "installing chromium for the browser test"
	DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-liberation >&2
fi

# The PgBouncer test runs Debian's pgbouncer; install it when missing (the test skips itself
# without it).
if ! command -v pgbouncer >/dev/null 2>&1 && [[ ! -x /usr/sbin/pgbouncer ]] && command -v apt-get >/dev/null 2>&1 && [[ $EUID -eq 0 ]]; then
	log "installing pgbouncer for the PgBouncer test"
	DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends pgbouncer >&2
fi

# The README's sessions (tests/readme_test.go) use jq; install it when missing (the test skips
# itself without it).
if ! command -v jq >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [[ $EUID -eq 0 ]]; then
	log "installing jq for the README test"
	DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends jq >&2
fi

# Compile without DWARF debugging information: a fifth less compile time on a cold build cache
# (`go build ./caddymodule`: 157 s and 303 CPU-seconds with it, 128 s and 247 without), and
# nothing in a test run reads it (stack traces and panics do not need it). Through GOFLAGS, so
# that the go commands the tests run themselves (building the Caddy binary) share the same
# compiled packages. Left alone when GOFLAGS already sets -gcflags.
# The Caddy set (below) also compiles the third-party packages without inlining (-l): they are
# only run by the tests, never measured, and their compile takes a sixth less CPU that way
# (170 against 206 CPU-seconds for Caddy's heaviest dependencies). The standard library and
# this module's own packages keep the usual optimisations, so the code under test is the code
# that ships. Later -gcflags patterns win, hence the order.
caddy_goflags=${GOFLAGS:-}
if [[ " ${GOFLAGS:-} " != *" -gcflags="* ]]; then
	export GOFLAGS="${GOFLAGS:+$GOFLAGS }-gcflags=all=-dwarf=false"
	caddy_goflags="${caddy_goflags:+$caddy_goflags }'-gcflags=all=-dwarf=false -l' -gcflags=std=-dwarf=false -gcflags=$(go list -m)/...=-dwarf=false"
fi

bindir=$(pg_bindir)
user=$(pg_user)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/armgate-test.XXXXXX")
datadir=$tmp/data
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	pg_stop "$datadir" 2>/dev/null || true
	rm -rf -- "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
chmod 755 -- "$tmp"
if [[ $EUID -eq 0 ]]; then
	chown "$user:$(id -gn "$user")" -- "$tmp"
fi

# port_busy PORT: true if something accepts connections on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

dsn=
port=55432
for ((tries = 0; tries < 5 && port < 65535; tries++)); do
	while port_busy "$port" && ((port < 65535)); do
		port=$((port + 1))
	done
	if dsn=$(pg_start "$datadir" "$port" | tail -n 1) && [[ -n "$dsn" ]]; then
		break
	fi
	dsn=
	port=$((port + 1)) # lost a race for the port, or another failure: try the next one
done
[[ -n "$dsn" ]] || {
	log "could not start PostgreSQL"
	exit 1
}
export ARMGATE_TEST_DATABASE_URL=$dsn
export ARMGATE_PG_BINDIR=$bindir
log "ARMGATE_TEST_DATABASE_URL=$dsn"

# -race for every package whose tests do not link Caddy; the ones that do (caddymodule, the
# end-to-end tests in tests/, the Caddy binary) run without it, so that a cold build cache
# compiles Caddy and its many dependencies once, not twice (with -race the compile and the tests
# of those packages cost several times as much). Every concurrent part the gateway has (verifier,
# gateway, storage, knownset, limiter, quota, events, adminapi, ...) is a Caddy-free package
# tested with -race. ARMGATE_RACE=all runs every package with -race.
race_pkgs=()
plain_pkgs=()
while read -r path links; do
	if [[ "${ARMGATE_RACE:-}" != all && "$links" == caddy ]]; then
		plain_pkgs+=("$path")
	else
		race_pkgs+=("$path")
	fi
done < <(go list -test -f '{{.ImportPath}}|{{.ForTest}}|{{join .Deps " "}}' "${pkgs[@]}" | awk -F'|' '
	{ key = ($2 != "") ? $2 : $1; sub(/\.test$/, "", key)
	  if (!(key in seen)) { seen[key] = 1; order[n++] = key }
	  if ((" " $3 " ") ~ / github\.com\/caddyserver\/caddy\/v2 /) caddy[key] = 1 }
	END { for (i = 0; i < n; i++) print order[i], (order[i] in caddy) ? "caddy" : "-" }')

# The go test flags: the arguments without the package patterns.
flags=()
for a in "${test_args[@]}"; do
	case "$a" in
	./* | ../* | . | .. | /* | github.com/*) ;;
	*) flags+=("$a") ;;
	esac
done

# The fuzz targets inside the selection: "DIR NAME" lines.
fuzz_targets() {
	local -A selected=()
	local d f dir name
	while IFS= read -r d; do
		[[ -n "$d" ]] && selected[$d]=1
	done < <(go list -f '{{.Dir}}' "${pkgs[@]}")
	while IFS= read -r f; do
		dir=$(cd "$(dirname -- "$f")" && pwd -P)
		[[ -n "${selected[$dir]:-}" ]] || continue
		while IFS= read -r name; do
			printf '%s %s\n' "./${dir#"$root"/}" "$name"
		done < <(sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\(.*\*testing\.F\).*/\1/p' -- "$f")
	done < <(grep -rl --include='*_test.go' --exclude-dir=.git --exclude-dir=.armgate --exclude-dir=testdata --exclude-dir=vendor 'func Fuzz' . | sort)
}

# fuzz: short fuzz runs of every selected target. The targets live in small packages (no net/http,
# no database driver in their test graphs), because the fuzzer recompiles a target's whole test
# graph with its instrumentation.
fuzz() {
	local fuzztime=${ARMGATE_FUZZTIME:-25000x} dir name
	if [[ "$fuzztime" == 0 || "$fuzztime" == 0s ]]; then
		log "fuzzing skipped (ARMGATE_FUZZTIME=$fuzztime)"
		return 0
	fi
	while read -r dir name; do
		log "fuzz $name in $dir for $fuzztime"
		nice -n 19 go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$dir" || return
	done < <(fuzz_targets)
}

# check_set NAME MODE NICE VET PKG...: tests one set of packages, MODE being -race or empty, NICE a
# command prefix for vet (see below) or empty, VET "vet" for the set that runs go vet over every
# selected package (both sets' packages: vet once, not once per set, since it analyses every
# dependency of what it vets) or "novet". It first compiles the packages, their tests and
# dependencies (go list -export: nothing linked or run), then runs go vet and go test at the same
# time: vet's analysis uses the CPU the tests leave idle while they wait on PostgreSQL, Caddy and
# the network. The Caddy set's vet and the fuzz runs run at the lowest priority (nice 19), beside
# the end-to-end tests: they take only CPU those tests leave idle, so that gateways that must
# answer within milliseconds (a token created on another instance waits 20 ms for its
# notification) are not slowed by them. The tests run with -vet=off: go vet runs every analyzer.
check_set() {
	local name=$1 mode=$2 vet_nice=$3 vet=$4
	shift 4
	local build=()
	[[ -n "$mode" ]] && build=("$mode")
	log "compiling the $name set: ${#@} packages${mode:+ with $mode}"
	go list "${build[@]}" -export -test -deps -f '' "$@" >/dev/null 2>&1 || true # go test reports errors
	local vet_pid=
	if [[ "$vet" == vet ]]; then
		log "the $name set: go vet (${#vet_pkgs[@]} packages) and go test -count=1${flags[*]:+ ${flags[*]}} at the same time"
		$vet_nice go vet "${build[@]}" "${vet_pkgs[@]}" >"$tmp/vet-$name.out" 2>&1 &
		vet_pid=$!
	else
		log "the $name set: go test -count=1${flags[*]:+ ${flags[*]}}"
	fi
	local rc=0
	go test "${build[@]}" -count=1 -vet=off "${flags[@]}" "$@" || rc=$?
	if [[ -n "$vet_pid" ]]; then
		if ! wait "$vet_pid"; then
			rc=1
			log "go vet failed"
		fi
		cat -- "$tmp/vet-$name.out"
	fi
	return "$rc"
}

# The two sets run at the same time from the start: on a cold cache the -race set compiles while
# the Caddy set does, and the -race tests and the fuzz runs use the CPU the end-to-end tests leave
# idle. The -race set's output (and the fuzz runs') is shown when it ends.
# The fuzz runs follow the -race set; at nice 19 they wait for CPU the compilation and the tests
# leave idle.
# go vet runs in the Caddy set, whose compiled packages (without -race) it reuses, or in the -race
# set when no selected package links Caddy.
vet_pkgs=("${race_pkgs[@]}" "${plain_pkgs[@]}")
race_set() {
	if ((${#race_pkgs[@]})); then
		local vet=vet
		((${#plain_pkgs[@]})) && vet=novet
		check_set race -race "" "$vet" "${race_pkgs[@]}" || return
	fi
	fuzz
}
plain_set() {
	((${#plain_pkgs[@]})) || return 0
	GOFLAGS=$caddy_goflags check_set Caddy "" "nice -n 19" vet "${plain_pkgs[@]}"
}

rc=0
race_set >"$tmp/race.out" 2>&1 &
race_pid=$!
plain_set || rc=$?
wait "$race_pid" || rc=$?
log "the -race set and the fuzz runs: their output"
cat -- "$tmp/race.out"
if ((rc != 0)); then
	log "tests failed"
	exit "$rc"
fi
log "all passed"
