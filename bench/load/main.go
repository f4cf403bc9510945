// Command load is armgate's load benchmark (issue 5): one command, loopback
// only, bounded in time. It builds Caddy with armgate, starts a private
// PostgreSQL, a tiny upstream, a small forward_auth service and four Caddy
// processes:
//
//	A      plain reverse_proxy, no check          bench/caddy/A.Caddyfile
//	A-app  A with the armgate app loaded          bench/caddy/A-app.Caddyfile
//	A-hdr  A-app + a trivial handler and header   bench/caddy/A-hdr.Caddyfile (not by default)
//	B      armgate_auth, cache hit                bench/caddy/B.Caddyfile
//	C      armgate_auth with the cache off        bench/caddy/C.Caddyfile
//	D      forward_auth to an in-memory service   bench/caddy/D.Caddyfile
//	S      one process, B's site and the same site without the check
//	       (S/plain), measured one after the other  bench/caddy/S.Caddyfile
//	S-quota  S with B-quota's quotas               bench/caddy/S-quota.Caddyfile
//	S-noexp  S with expires_header off             bench/caddy/S-noexp.Caddyfile
//	S-hdr    S-quota whose plain site sets the check's three response
//	         headers with `header`                   bench/caddy/S-hdr.Caddyfile
//	H      one process, the three headers set by `header` and no check,
//	       beside the same site bare (H/plain)     bench/caddy/H.Caddyfile
//	F      one process, bench_floor (bench/floor): SHA-256, a map lookup,
//	       an atomic add and the three headers, beside the same site bare
//	                                               bench/caddy/F.Caddyfile
//
// (S, S-quota, S-noexp, S-hdr, H and F are not run by default: CONFIGS=A,S,S-quota
// gives the check's cost against the same process without it, e/e0; H and
// S-hdr split it into the headers' cost and the check's; F is the least any
// check with those headers costs)
// and measures them interleaved (A A-app B B-quota C D A A-app B B-quota C D …) with wrk,
// 64 tokens sent in turn: requests/s, p50 and p99 latency, server CPU per
// request from /proc/PID/stat, database queries per request and Go GC
// cycles per request. A-app separates the cost of the check from the effect
// of the app's heap (armgate's preallocated cache makes Go's GC run about
// ten times less often than in a bare Caddy). Then
// flood resistance (random well-formed tokens from many 127.x.y.z client
// addresses beside valid-token traffic, with and without the failure
// limiter), the hot-path and memory Go benchmarks, and the time from process
// start to the first served request.
//
// Run it from the repository root with bash bench/load.sh (which installs
// wrk when missing) or go run ./bench/load. Settings come from the
// environment: QUICK=1 (a short run), REPS, DURATION (seconds per run),
// CONNS, CONFIGS (default A,A-app,B,B-quota,C,D; A first; any NAME of a
// bench/caddy/NAME.Caddyfile, NAME#2 for a second process), PHASES (default
// gobench,load,flood,startup), FLOOD_SECS, FLOOD_RPS, VALID_RPS,
// FLOOD_ADDRS (comma-separated), FLOOD_ROUNDS, STARTUP_RUNS, GOBENCH=0
// (skip the Go benchmarks), KEEP=1 (keep the work directory), PERF=1 (record
// Caddy's stacks with perf during every measured run, into the work
// directory as perf-NAME-REP.data).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		var err error
		switch os.Args[1] {
		case "upstream":
			err = runUpstream(os.Args[2:])
		case "authsvc":
			err = runAuthService(os.Args[2:])
		case "flood":
			err = runFlood(os.Args[2:])
		default:
			err = fmt.Errorf("unknown subcommand %q", os.Args[1])
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	b := &bench{s: loadSettings()}
	err := b.run(ctx)
	cancel()
	b.cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

// benchTokens is how many tokens the load runs send in turn.
const benchTokens = 64

// server is one Caddy configuration under test.
type server struct {
	name, file  string
	port, mport int
	proc        *proc
	// extra is a process whose CPU also serves this configuration: the
	// auth service for D.
	extra *proc
	// pg: the configuration queries PostgreSQL on every request (C).
	pg bool
	// plain is the same process's site without the check, for a
	// configuration that has one (S, S-quota): measured right beside this
	// site, it is the fairest e0 (the same process, heap and code layout).
	plain *server
}

func (s *server) url() string { return fmt.Sprintf("http://127.0.0.1:%d/v1/items", s.port) }

// sample is one wrk run of one configuration.
type sample struct {
	rps, p50, p99 float64 // requests/s, ms, ms
	cpu           float64 // Caddy CPU µs per request
	extra         float64 // auth service (D) or PostgreSQL (C) CPU µs per request
	upstream      float64 // upstream CPU µs per request
	loadgen       float64 // wrk CPU µs per request
	foreign       float64 // cores busy with other work during the run
	queries       float64 // database lookups per request (B, C)
	gcPer1k       float64 // Caddy's GC cycles per 1000 requests
	heapMB        float64 // Caddy's heap in use after the run, MB
	bad           int64   // non-2xx responses and socket errors
}

type bench struct {
	s         settings
	root      string
	work      string
	caddy     string
	self      string
	pgDir     string
	dsn       string
	postPID   int
	tokens    []string
	tokenFile string
	script    string
	auth      string
	upstream  *proc
	upPort    int
	authPort  int
	out       strings.Builder // the summary, printed at the end
}

func (b *bench) logf(format string, args ...any) {
	fmt.Printf("%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func (b *bench) cleanup() {
	stopAll()
	if b.pgDir != "" {
		cmd := exec.Command("bash", filepath.Join(b.root, "scripts/pg.sh"), "stop", b.pgDir)
		cmd.Stderr = io.Discard
		_ = cmd.Run()
	}
	if b.work != "" && !b.s.keep {
		_ = os.RemoveAll(b.work)
	}
}

func (b *bench) run(ctx context.Context) error {
	start := time.Now()
	var err error
	if b.root, err = os.Getwd(); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(b.root, "bench/caddy/B.Caddyfile")); err != nil {
		return errors.New("run from the repository root (bash bench/load.sh does)")
	}
	if _, err := exec.LookPath("wrk"); err != nil && b.s.phases["load"] {
		return errors.New("wrk not found: apt-get install -y wrk (bash bench/load.sh does it for you)")
	}
	if b.self, err = os.Executable(); err != nil {
		return err
	}
	if b.work, err = os.MkdirTemp("", "armgate-bench."); err != nil {
		return err
	}
	// PostgreSQL runs as another user when we are root: let it reach its
	// directory.
	_ = os.Chmod(b.work, 0o755)

	fmt.Fprintf(&b.out, "## Run of %s\n", start.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintln(&b.out)
	fmt.Fprintf(&b.out, "Machine: %d CPUs (nproc), %s; %s; load average at start %s.\n", runtime.NumCPU(), cpuModel(), runtime.Version(), loadAvg())
	fmt.Fprintf(&b.out, "Settings: %d repetitions × %s per configuration, wrk -t1 -c%d; flood %s per phase at %d req/s beside %d valid req/s, %d round(s).\n",
		b.s.reps, b.s.dur, b.s.conns, b.s.floodDur, b.s.floodRPS, b.s.validRPS, b.s.floodRounds)
	fmt.Fprintln(&b.out)
	b.logf("work directory %s", b.work)

	if err := b.build(ctx); err != nil {
		return err
	}
	if err := b.startDatabase(ctx); err != nil {
		return err
	}
	if err := b.startBackends(ctx); err != nil {
		return err
	}
	var servers []*server
	var bServer *server
	for _, name := range b.s.configs {
		if !b.s.phases["load"] {
			break // the flood phase starts the server it needs
		}
		// "B#2" is a second process running B's configuration.
		base, _, _ := strings.Cut(name, "#")
		s := &server{name: name, file: base + ".Caddyfile", pg: base == "C"}
		if err := b.startServer(ctx, s); err != nil {
			return err
		}
		if s.plain != nil {
			servers = append(servers, s.plain)
		}
		servers = append(servers, s)
		if name == "B" {
			bServer = s
		}
		if base == "D" {
			s.extra = authProc
		}
	}
	if b.s.phases["gobench"] {
		if err := b.goBenchmarks(ctx); err != nil {
			return err
		}
	}
	if b.s.phases["load"] {
		if err := b.loadRuns(ctx, servers); err != nil {
			return err
		}
	}
	for _, s := range servers {
		if s != bServer {
			s.proc.stop()
		}
	}
	if b.s.phases["flood"] {
		if bServer == nil {
			bServer = &server{name: "B", file: "B.Caddyfile"}
			if err := b.startServer(ctx, bServer); err != nil {
				return err
			}
		}
		if err := b.floodRuns(ctx, bServer); err != nil {
			return err
		}
	}
	if bServer != nil {
		bServer.proc.stop()
	}
	if b.s.phases["startup"] {
		if err := b.startupRuns(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintln(&b.out)
	fmt.Fprintf(&b.out, "Load average at the end %s; the whole benchmark took %s.\n", loadAvg(), time.Since(start).Round(time.Second))
	fmt.Println()
	fmt.Println("==================== results ====================")
	fmt.Print(b.out.String())
	name := filepath.Join(os.TempDir(), "armgate-bench-"+start.UTC().Format("20060102-150405")+".md")
	if err := os.WriteFile(name, []byte(b.out.String()), 0o644); err == nil {
		fmt.Printf("\n(also written to %s)\n", name)
	}
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}
