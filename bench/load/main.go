// Command load is armgate's load benchmark (issue 5): one command, loopback
// only, bounded in time. It builds Caddy with armgate, starts a private
// PostgreSQL, a tiny upstream, a small forward_auth service and four Caddy
// processes:
//
//	A      plain reverse_proxy, no check          bench/caddy/A.Caddyfile
//	A-app  A with the armgate app loaded          bench/caddy/A-app.Caddyfile
//	B      armgate_auth, cache hit                bench/caddy/B.Caddyfile
//	C      armgate_auth with the cache off        bench/caddy/C.Caddyfile
//	D      forward_auth to an in-memory service   bench/caddy/D.Caddyfile
//
// and measures them interleaved (A A-app B C D A A-app B C D …) with wrk,
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
// CONNS, CONFIGS (default A,A-app,B,C,D; A first; any NAME of a
// bench/caddy/NAME.Caddyfile, NAME#2 for a second process), PHASES (default
// gobench,load,flood,startup), FLOOD_SECS, FLOOD_RPS, VALID_RPS,
// FLOOD_ADDRS (comma-separated), FLOOD_ROUNDS, STARTUP_RUNS, GOBENCH=0
// (skip the Go benchmarks), KEEP=1 (keep the work directory).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/armgate/armgate/internal/promtext"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
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

type settings struct {
	quick        bool
	reps         int
	dur, warm    time.Duration
	conns        int
	floodDur     time.Duration
	floodRPS     int
	validRPS     int
	floodAddrs   []int
	floodRounds  int
	startupRuns  int
	goBenchCount int
	configs      []string
	phases       map[string]bool
	keep         bool
}

func envInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			fmt.Fprintf(os.Stderr, "load: %s=%q is not a number\n", name, v)
			os.Exit(2)
		}
		return n
	}
	return def
}

func loadSettings() settings {
	quick := os.Getenv("QUICK") == "1"
	pick := func(full, q int) int {
		if quick {
			return q
		}
		return full
	}
	s := settings{
		quick:        quick,
		reps:         envInt("REPS", pick(15, 5)),
		dur:          time.Duration(envInt("DURATION", pick(4, 3))) * time.Second,
		warm:         time.Duration(pick(3, 2)) * time.Second,
		conns:        envInt("CONNS", 32),
		floodDur:     time.Duration(envInt("FLOOD_SECS", pick(8, 4))) * time.Second,
		floodRPS:     envInt("FLOOD_RPS", 2000),
		validRPS:     envInt("VALID_RPS", 500),
		floodRounds:  envInt("FLOOD_ROUNDS", pick(2, 1)),
		startupRuns:  envInt("STARTUP_RUNS", pick(5, 3)),
		goBenchCount: pick(3, 1),
		keep:         os.Getenv("KEEP") == "1",
	}
	configs := os.Getenv("CONFIGS")
	if configs == "" {
		configs = "A,A-app,B,C,D"
	}
	for c := range strings.SplitSeq(configs, ",") {
		c = strings.TrimSpace(c)
		base, _, _ := strings.Cut(c, "#")
		if _, err := os.Stat(filepath.Join("bench/caddy", base+".Caddyfile")); err != nil {
			fmt.Fprintf(os.Stderr, "load: CONFIGS: unknown configuration %q\n", c)
			os.Exit(2)
		}
		s.configs = append(s.configs, c)
	}
	if s.configs[0] != "A" {
		fmt.Fprintln(os.Stderr, "load: CONFIGS must start with A, the baseline")
		os.Exit(2)
	}
	phases := os.Getenv("PHASES")
	if phases == "" {
		phases = "gobench,load,flood,startup"
	}
	s.phases = map[string]bool{}
	for p := range strings.SplitSeq(phases, ",") {
		switch p = strings.TrimSpace(p); p {
		case "gobench", "load", "flood", "startup":
			s.phases[p] = true
		default:
			fmt.Fprintf(os.Stderr, "load: PHASES: unknown phase %q\n", p)
			os.Exit(2)
		}
	}
	if os.Getenv("GOBENCH") == "0" {
		delete(s.phases, "gobench")
	}
	addrs := os.Getenv("FLOOD_ADDRS")
	if addrs == "" {
		addrs = "64,4000"
	}
	for a := range strings.SplitSeq(addrs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(a))
		if err != nil || n < 1 || n > 250*250 {
			fmt.Fprintf(os.Stderr, "load: FLOOD_ADDRS: bad count %q\n", a)
			os.Exit(2)
		}
		s.floodAddrs = append(s.floodAddrs, n)
	}
	if s.reps < 1 || s.dur < time.Second || s.conns < 1 || s.floodRPS < 1 || s.validRPS < 1 {
		fmt.Fprintln(os.Stderr, "load: REPS, DURATION, CONNS, FLOOD_RPS and VALID_RPS must be at least 1")
		os.Exit(2)
	}
	return s
}

// configDesc describes the configurations in bench/caddy.
var configDesc = map[string]string{
	"A":     "A plain reverse_proxy",
	"A-app": "A with the armgate app loaded, no check",
	"B":     "B armgate_auth, cache hit",
	"C":     "C armgate_auth, cache off",
	"D":     "D forward_auth, in-memory service",
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

// sumf adds a line to the summary (and prints it).
func (b *bench) sumf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	b.out.WriteString(line + "\n")
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
	if _, err := exec.LookPath("wrk"); err != nil {
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

	b.sumf("## Run of %s", start.UTC().Format("2006-01-02 15:04 MST"))
	b.sumf("")
	b.sumf("Machine: %d CPUs (nproc), %s; %s; load average at start %s.", runtime.NumCPU(), cpuModel(), runtime.Version(), loadAvg())
	b.sumf("Settings: %d repetitions × %s per configuration, wrk -t1 -c%d; flood %s per phase at %d req/s beside %d valid req/s, %d round(s).",
		b.s.reps, b.s.dur, b.s.conns, b.s.floodDur, b.s.floodRPS, b.s.validRPS, b.s.floodRounds)
	b.sumf("")
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
		// "B#2" is a second process running B's configuration.
		base, _, _ := strings.Cut(name, "#")
		s := &server{name: name, file: base + ".Caddyfile", pg: base == "C"}
		if err := b.startServer(ctx, s); err != nil {
			return err
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
	b.sumf("")
	b.sumf("Load average at the end %s; the whole benchmark took %s.", loadAvg(), time.Since(start).Round(time.Second))
	fmt.Println()
	fmt.Println("==================== results ====================")
	fmt.Print(b.out.String())
	name := filepath.Join(os.TempDir(), "armgate-bench-"+start.UTC().Format("20060102-150405")+".md")
	if err := os.WriteFile(name, []byte(b.out.String()), 0o644); err == nil {
		fmt.Printf("\n(also written to %s)\n", name)
	}
	return nil
}

func (b *bench) build(ctx context.Context) error {
	t := time.Now()
	b.caddy = filepath.Join(b.work, "caddy")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", b.caddy, "./internal/caddybin")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building caddy: %w", err)
	}
	out, _ := exec.Command(b.caddy, "version").Output()
	b.logf("built %s (%s) in %s", b.caddy, strings.TrimSpace(string(out)), time.Since(t).Round(time.Millisecond))
	return nil
}

func (b *bench) startDatabase(ctx context.Context) error {
	b.pgDir = filepath.Join(b.work, "pg")
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(b.root, "scripts/pg.sh"), "start", b.pgDir, strconv.Itoa(freePort()))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("starting PostgreSQL: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	b.dsn = lines[len(lines)-1]
	if pidFile, err := os.ReadFile(filepath.Join(b.pgDir, "postmaster.pid")); err == nil {
		first, _, _ := strings.Cut(string(pidFile), "\n")
		b.postPID, _ = strconv.Atoi(strings.TrimSpace(first))
	}

	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	pool, err := pgxpool.New(cctx, b.dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := storage.Migrate(cctx, pool); err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	// benchTokens tokens, 8 per user (the limit is 10 per user).
	store := storage.New(pool)
	var pairs strings.Builder
	for i := range benchTokens {
		user := fmt.Sprintf("bench-user-%d", i/8)
		_, tok, err := store.CreateToken(cctx, "bench", storage.NewToken{
			UserID: user, Name: fmt.Sprintf("load-%d", i), Scopes: []string{token.ScopeAPI},
			ExpiresAt: time.Now().Add(24 * time.Hour), MaxPerUser: 10, CreateUser: true})
		if err != nil {
			return fmt.Errorf("creating the benchmark tokens: %w", err)
		}
		b.tokens = append(b.tokens, tok)
		fmt.Fprintf(&pairs, "%s %s\n", user, tok)
	}
	b.auth = "Bearer " + b.tokens[0]
	b.tokenFile = filepath.Join(b.work, "tokens.txt")
	if err := os.WriteFile(b.tokenFile, []byte(pairs.String()), 0o600); err != nil {
		return err
	}
	b.script = filepath.Join(b.work, "tokens.lua")
	if err := writeWrkScript(b.script, b.tokens); err != nil {
		return err
	}
	b.logf("PostgreSQL at %s (postmaster %d); %d tokens created", b.dsn, b.postPID, benchTokens)
	return nil
}

func (b *bench) startBackends(ctx context.Context) error {
	b.upPort = freePort()
	var err error
	b.upstream, err = startProc("upstream", filepath.Join(b.work, "upstream.log"), nil, b.self,
		"upstream", "-addr", fmt.Sprintf("127.0.0.1:%d", b.upPort))
	if err != nil {
		return err
	}
	b.authPort = freePort()
	authsvc, err := startProc("authsvc", filepath.Join(b.work, "authsvc.log"), nil, b.self,
		"authsvc", "-addr", fmt.Sprintf("127.0.0.1:%d", b.authPort), "-tokens", b.tokenFile)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := waitHTTP(wctx, fmt.Sprintf("http://127.0.0.1:%d/", b.upPort), nil, 200, b.upstream); err != nil {
		return err
	}
	h := http.Header{"Authorization": {b.auth}}
	if err := waitHTTP(wctx, fmt.Sprintf("http://127.0.0.1:%d/verify", b.authPort), h, 200, authsvc); err != nil {
		return err
	}
	authProc = authsvc
	return nil
}

// authProc is the auth service of configuration D.
var authProc *proc

func (b *bench) caddyEnv(port, mport int, dsn string) []string {
	return []string{
		"LISTEN_PORT=" + strconv.Itoa(port),
		"METRICS_PORT=" + strconv.Itoa(mport),
		"UPSTREAM_PORT=" + strconv.Itoa(b.upPort),
		"AUTH_PORT=" + strconv.Itoa(b.authPort),
		"ARMGATE_DATABASE_URL=" + dsn,
	}
}

func (b *bench) startCaddy(name, file string, port, mport int, dsn string) (*proc, error) {
	return startProc("caddy "+name, filepath.Join(b.work, "caddy-"+name+".log"), b.caddyEnv(port, mport, dsn),
		b.caddy, "run", "--adapter", "caddyfile", "--config", filepath.Join(b.root, "bench/caddy", file))
}

func (b *bench) startServer(ctx context.Context, s *server) error {
	s.port, s.mport = freePort(), freePort()
	var err error
	if s.proc, err = b.startCaddy(s.name, s.file, s.port, s.mport, b.dsn); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := waitHTTP(wctx, s.url(), http.Header{"Authorization": {b.auth}}, 200, s.proc); err != nil {
		return fmt.Errorf("configuration %s did not come up (see %s): %w", s.name, filepath.Join(b.work, "caddy-"+s.name+".log"), err)
	}
	b.logf("configuration %s: caddy pid %d on port %d", s.name, s.proc.pid(), s.port)
	return nil
}

// measure runs wrk once against s and reads the CPU the processes used.
func (b *bench) measure(s *server, d time.Duration) (sample, error) {
	ticks := func() (caddy, extra, up, pg int64, err error) {
		if caddy, err = cpuTicks(s.proc.pid()); err != nil {
			return
		}
		if s.extra != nil {
			if extra, err = cpuTicks(s.extra.pid()); err != nil {
				return
			}
		}
		if up, err = cpuTicks(b.upstream.pid()); err != nil {
			return
		}
		pg = childrenTicks(b.postPID)
		return
	}
	c0, e0, u0, g0, err := ticks()
	if err != nil {
		return sample{}, err
	}
	m0, err := scrape(s.mport)
	if err != nil {
		return sample{}, err
	}
	busy0, total0 := machineTicks()
	w, err := runWrk(s.url(), b.script, b.s.conns, d)
	if err != nil {
		return sample{}, err
	}
	busy1, total1 := machineTicks()
	c1, e1, u1, g1, err := ticks()
	if err != nil {
		return sample{}, err
	}
	perReq := func(t int64) float64 { return float64(t) / clkTck / float64(w.Requests) * 1e6 }
	sm := sample{
		rps: w.RPS, p50: ms(w.P50), p99: ms(w.P99),
		cpu: perReq(c1 - c0), upstream: perReq(u1 - u0),
		loadgen: w.CPU.Seconds() / float64(w.Requests) * 1e6,
		bad:     w.Non2xx + w.Errors,
	}
	m1, err := scrape(s.mport)
	if err != nil {
		return sample{}, err
	}
	sm.queries = (m1.Value(lookupsMetric) - m0.Value(lookupsMetric)) / float64(w.Requests)
	sm.gcPer1k = (m1.Value(gcMetric) - m0.Value(gcMetric)) / float64(w.Requests) * 1000
	sm.heapMB = m1.Value(heapMetric) / (1 << 20)
	switch {
	case s.extra != nil:
		sm.extra = perReq(e1 - e0)
	case s.pg:
		sm.extra = perReq(g1 - g0)
	}
	ours := float64(c1-c0+e1-e0+u1-u0+g1-g0) + w.CPU.Seconds()*clkTck
	if dt := float64(total1 - total0); dt > 0 {
		sm.foreign = max(0, (float64(busy1-busy0)-ours)/(dt/float64(runtime.NumCPU())))
	}
	return sm, nil
}

func (b *bench) loadRuns(ctx context.Context, servers []*server) error {
	b.logf("warm-up: %s per configuration", b.s.warm)
	for _, s := range servers {
		if _, err := b.measure(s, b.s.warm); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	res := map[string][]sample{}
	b.logf("%d repetitions of %s, %s each (%s in all)", b.s.reps, strings.Join(b.s.configs, " "), b.s.dur, time.Duration(b.s.reps*len(servers))*b.s.dur)
	fmt.Printf("          rep cfg    req/s   p50 ms   p99 ms  caddy µs/req  extra µs/req  upstream µs/req  wrk µs/req  other cores  queries/req  GC/1k req\n")
	for rep := range b.s.reps {
		for _, s := range servers {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			sm, err := b.measure(s, b.s.dur)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			res[s.name] = append(res[s.name], sm)
			warn := ""
			if sm.bad > 0 {
				warn = fmt.Sprintf("  WARNING: %d non-2xx responses or socket errors", sm.bad)
			}
			fmt.Printf("%s  %3d  %-5s  %8.0f  %7.2f  %7.2f  %12.1f  %12.1f  %15.1f  %10.1f  %11.2f  %11.3f  %9.2f%s\n",
				time.Now().Format("15:04:05"), rep+1, s.name, sm.rps, sm.p50, sm.p99, sm.cpu, sm.extra, sm.upstream, sm.loadgen, sm.foreign, sm.queries, sm.gcPer1k, warn)
		}
	}
	b.summarizeLoad(res)
	return nil
}

func pluck(ss []sample, f func(sample) float64) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = f(s)
	}
	return out
}

func (b *bench) summarizeLoad(res map[string][]sample) {
	rps := func(s sample) float64 { return s.rps }
	cpu := func(s sample) float64 { return s.cpu }
	names := b.s.configs
	desc := configDesc
	var bad int64
	var all []sample
	for _, n := range names {
		for _, s := range res[n] {
			bad += s.bad
		}
		all = append(all, res[n]...)
	}
	b.sumf("### Load: interleaved %s × %d (medians, [interquartile range] across repetitions)", strings.Join(names, " "), b.s.reps)
	b.sumf("")
	b.sumf("| configuration | req/s | p50 ms | p99 ms | Caddy CPU µs/req | + auth service / PostgreSQL µs/req | req/s ÷ A | Caddy CPU ÷ A | DB queries/req | Caddy GC cycles per 1000 req | Caddy heap MB |")
	b.sumf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	a := res["A"]
	for _, n := range names {
		ss := res[n]
		base, copyN, _ := strings.Cut(n, "#")
		label := desc[base]
		if label == "" {
			label = base
		}
		if copyN != "" {
			label += " (process " + copyN + ")"
		}
		extra := "–"
		switch base {
		case "C":
			extra = spread(pluck(ss, func(s sample) float64 { return s.extra }), "%.0f") + " (PostgreSQL)"
		case "D":
			extra = spread(pluck(ss, func(s sample) float64 { return s.extra }), "%.1f") + " (auth service)"
		}
		b.sumf("| %s | %s | %.2f | %.2f | %s | %s | %s | %s | %.3f | %.2f | %.0f |", label,
			spread(pluck(ss, rps), "%.0f"),
			median(pluck(ss, func(s sample) float64 { return s.p50 })),
			median(pluck(ss, func(s sample) float64 { return s.p99 })),
			spread(pluck(ss, cpu), "%.1f"), extra,
			spread(ratios(pluck(ss, rps), pluck(a, rps)), "%.3f"),
			spread(ratios(pluck(ss, cpu), pluck(a, cpu)), "%.3f"),
			median(pluck(ss, func(s sample) float64 { return s.queries })),
			median(pluck(ss, func(s sample) float64 { return s.gcPer1k })),
			median(pluck(ss, func(s sample) float64 { return s.heapMB })))
	}
	b.sumf("")
	b.sumf("Ratios are medians of the per-repetition ratios (each run against the A run just before it). Upstream CPU per request (same for all): %.1f µs; wrk's own CPU: %.1f µs/req; other work on the machine during the runs: %s cores (median [IQR]).",
		median(pluck(a, func(s sample) float64 { return s.upstream })),
		median(pluck(a, func(s sample) float64 { return s.loadgen })),
		spread(pluck(all, func(s sample) float64 { return s.foreign }), "%.2f"))
	if bad > 0 {
		b.sumf("WARNING: %d non-2xx responses or socket errors during the runs.", bad)
	}
	b.sumf("")

	// Verdicts.
	if res["B"] == nil || res["D"] == nil {
		return
	}
	cpuBA := median(ratios(pluck(res["B"], cpu), pluck(a, cpu)))
	rpsBA := median(ratios(pluck(res["B"], rps), pluck(a, rps)))
	aRPS := pluck(a, rps)
	noise := (quantile(aRPS, 0.75) - quantile(aRPS, 0.25)) / median(aRPS)
	rpsBD := median(ratios(pluck(res["B"], rps), pluck(res["D"], rps)))
	cpuDA := median(ratios(pluck(res["D"], cpu), pluck(a, cpu)))
	cpuDAall := median(ratios(pluck(res["D"], func(s sample) float64 { return s.cpu + s.extra }), pluck(a, cpu)))
	rpsDA := median(ratios(pluck(res["D"], rps), pluck(a, rps)))
	b.sumf("- B's Caddy CPU per request is %+.1f %% of A's (target ≤ +3 %%): %s.", 100*(cpuBA-1), verdict(cpuBA <= 1.03))
	b.sumf("- B's throughput is %.3f× A's; A's own run-to-run spread (IQR/median) is %.1f %% (target: within the noise): %s.",
		rpsBA, 100*noise, verdict(abs(rpsBA-1) <= max(noise, 0.01)))
	b.sumf("- B's throughput is %.2f× D's (target ≥ 1.8×): %s.", rpsBD, verdict(rpsBD >= 1.8))
	b.sumf("- D reaches %.2f× A's throughput at %.2f× A's Caddy CPU per request (%.2f× counting the auth service).", rpsDA, cpuDA, cpuDAall)
	if res["A-app"] != nil {
		b.sumf("- Against A-app (same process, armgate app loaded, no check), B's Caddy CPU per request is %+.1f %% and its throughput %.3f×.",
			100*(median(ratios(pluck(res["B"], cpu), pluck(res["A-app"], cpu)))-1), median(ratios(pluck(res["B"], rps), pluck(res["A-app"], rps))))
	}
	b.sumf("")
}

// coreSplit formats the median cores used by Caddy, PostgreSQL, the two
// load generators and everything else.
func coreSplit(c [5][]float64) string {
	return fmt.Sprintf("%.2f / %.2f / %.2f / %.2f", median(c[0]), median(c[1]), median(c[2])+median(c[3]), median(c[4]))
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

// scrape reads the series of a Caddy metrics endpoint.
func scrape(mport int) (promtext.Samples, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", mport))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return promtext.Parse(resp.Body)
}

const (
	lookupsMetric = "caddy_armgate_db_lookups_total"
	gcMetric      = "go_gc_duration_seconds_count"
	heapMetric    = "go_memstats_heap_inuse_bytes"
)

// floodRuns measures valid-token latency alone and beside a flood of
// random well-formed tokens, with the failure limiter on (B) and off.
func (b *bench) floodRuns(ctx context.Context, limited *server) error {
	off := &server{name: "B-nolimit", file: "B-nolimit.Caddyfile"}
	if err := b.startServer(ctx, off); err != nil {
		return err
	}
	defer off.proc.stop()
	type phase struct {
		srv   *server
		addrs int
	}
	var phases []phase
	phases = append(phases, phase{limited, 0})
	for _, n := range b.s.floodAddrs {
		phases = append(phases, phase{limited, n})
	}
	phases = append(phases, phase{off, 0}, phase{off, b.s.floodAddrs[0]})

	type result struct {
		p50, p99         []float64
		valid, validBad  int64
		sent, refused    int64
		limited, lookups float64
		unavailable      int64
		// cores: Caddy, PostgreSQL, valid client, flood client, rest of
		// the machine.
		cores [5][]float64
	}
	res := make([]result, len(phases))
	subnet := byte(10)
	b.logf("flood: %d round(s) of %d phases, %s each", b.s.floodRounds, len(phases), b.s.floodDur)
	for round := range b.s.floodRounds {
		for i, ph := range phases {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			m0, err := scrape(ph.srv.mport)
			if err != nil {
				return err
			}
			caddy0, _ := cpuTicks(ph.srv.proc.pid())
			pg0 := childrenTicks(b.postPID)
			self0, _ := cpuTicks(os.Getpid())
			busy0, total0 := machineTicks()
			valid := newValidLoad(ph.srv.url(), b.auth)
			var floodCmd *exec.Cmd
			var floodOut strings.Builder
			if ph.addrs > 0 {
				// Fresh addresses every phase: the limiter remembers
				// the previous ones for its window.
				floodCmd = exec.CommandContext(ctx, b.self, "flood", "-url", ph.srv.url(), "-subnet", strconv.Itoa(int(subnet)),
					"-addrs", strconv.Itoa(ph.addrs), "-rps", strconv.Itoa(b.s.floodRPS), "-dur", b.s.floodDur.String())
				floodCmd.Stdout, floodCmd.Stderr = &floodOut, os.Stderr
				subnet++
				if err := floodCmd.Start(); err != nil {
					return err
				}
			}
			skipped := valid.run(ctx, b.s.validRPS, b.s.floodDur)
			var fc floodCounts
			if floodCmd != nil {
				if err := floodCmd.Wait(); err != nil {
					return fmt.Errorf("flood: %w", err)
				}
				if err := json.Unmarshal([]byte(floodOut.String()), &fc); err != nil {
					return fmt.Errorf("flood output %q: %w", floodOut.String(), err)
				}
			}
			busy1, total1 := machineTicks()
			caddy1, _ := cpuTicks(ph.srv.proc.pid())
			pg1 := childrenTicks(b.postPID)
			self1, _ := cpuTicks(os.Getpid())
			m1, err := scrape(ph.srv.mport)
			if err != nil {
				return err
			}
			p50, p99, n := valid.quantiles()
			// Cores used during the phase, by whom.
			wall := float64(total1-total0) / float64(runtime.NumCPU())
			cores := func(t float64) float64 { return t / wall }
			var floodTicks float64
			if floodCmd != nil {
				floodTicks = (floodCmd.ProcessState.UserTime() + floodCmd.ProcessState.SystemTime()).Seconds() * clkTck
			}
			use := [5]float64{cores(float64(caddy1 - caddy0)), cores(float64(pg1 - pg0)), cores(float64(self1 - self0)), cores(floodTicks), 0}
			use[4] = max(0, cores(float64(busy1-busy0))-use[0]-use[1]-use[2]-use[3])
			r := &res[i]
			r.p50 = append(r.p50, ms(p50))
			r.p99 = append(r.p99, ms(p99))
			r.valid += int64(n)
			r.validBad += valid.bad.Load() + skipped
			r.lookups += m1.Value(lookupsMetric) - m0.Value(lookupsMetric)
			for k := range use {
				r.cores[k] = append(r.cores[k], use[k])
			}
			r.limited += m1.Value(`caddy_armgate_auth_decisions_total{result="rate_limited"}`) - m0.Value(`caddy_armgate_auth_decisions_total{result="rate_limited"}`)
			line := fmt.Sprintf("round %d %-9s flood from %4d addresses: valid p50 %6.2f ms p99 %6.2f ms (%d ok, %d bad); cores: caddy %.2f PostgreSQL %.2f clients %.2f+%.2f other %.2f",
				round+1, ph.srv.name, ph.addrs, ms(p50), ms(p99), n, valid.bad.Load()+skipped, use[0], use[1], use[2], use[3], use[4])
			if floodCmd != nil {
				refused := fc.Unauthorized + fc.Limited
				r.sent += refused + fc.Unavailable + fc.Other + fc.Errors + fc.Skipped
				r.refused += refused
				r.unavailable += fc.Unavailable
				line += fmt.Sprintf("; flood %s; db lookups %.0f", fc, m1.Value(lookupsMetric)-m0.Value(lookupsMetric))
			}
			b.logf("%s", line)
		}
	}

	b.sumf("### Flood: random well-formed tokens from many client addresses beside %d valid req/s", b.s.validRPS)
	b.sumf("")
	b.sumf("Each phase %s, %d round(s); the flood is open-loop at %d req/s, every token new (valid checksum, unknown), client addresses 127.x.y.z with one keep-alive connection each. Valid-token latency is measured from the scheduled send time (open loop, no coordinated omission).",
		b.s.floodDur, b.s.floodRounds, b.s.floodRPS)
	b.sumf("")
	b.sumf("| failure limiter | flood addresses | refused (401 + 429) | of which 429 | DB queries | DB queries per refused request | valid p50 ms | valid p99 ms | p99 ÷ no flood | cores: Caddy / PostgreSQL / clients / others |")
	b.sumf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	var baseP99 float64
	worst := 0.0
	for i, ph := range phases {
		r := res[i]
		lim := "on (50/1m)"
		if ph.srv == off {
			lim = "off"
		}
		p99 := median(r.p99)
		if ph.addrs == 0 {
			baseP99 = p99
			b.sumf("| %s | none | – | – | %.0f | – | %.2f | %.2f | 1 | %s |", lim, r.lookups, median(r.p50), p99, coreSplit(r.cores))
			continue
		}
		ratio := p99 / baseP99
		worst = max(worst, ratio)
		per := 0.0
		if r.refused > 0 {
			per = r.lookups / float64(r.refused)
		}
		b.sumf("| %s | %d | %d | %.0f | %.0f | %.3f | %.2f | %.2f | %.2f | %s |", lim, ph.addrs, r.refused, r.limited, r.lookups, per, median(r.p50), p99, ratio, coreSplit(r.cores))
		if r.unavailable > 0 || r.sent != r.refused {
			b.sumf("|  | (%d of %d flood requests were not refused: 503, errors or skipped by the client) | | | | | | | |", r.sent-r.refused, r.sent)
		}
	}
	b.sumf("")
	b.sumf("- Valid-token p99 beside a flood is at most %.2f× the p99 without (target ≤ 2×): %s.", worst, verdict(worst <= 2))
	b.sumf("")
	return nil
}

// startupRuns measures the time from starting the Caddy process to the
// first request served: a 200 through armgate_auth with a valid token
// (database migrated already), and, once, against a fresh database (the
// migrations run at start; the first answer from the database is a 401
// for the token, which that database does not know).
func (b *bench) startupRuns(ctx context.Context) error {
	measure := func(dsn string, want int) (time.Duration, error) {
		port, mport := freePort(), freePort()
		url := fmt.Sprintf("http://127.0.0.1:%d/v1/items", port)
		t0 := time.Now()
		p, err := b.startCaddy("startup", "B.Caddyfile", port, mport, dsn)
		if err != nil {
			return 0, err
		}
		defer p.stop()
		client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for time.Since(t0) < 30*time.Second {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			req.Header.Set("Authorization", b.auth)
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode == want {
					return time.Since(t0), nil
				}
			}
			if p.exited() {
				return 0, fmt.Errorf("caddy exited: %v", p.err)
			}
			time.Sleep(2 * time.Millisecond)
		}
		return 0, errors.New("no answer within 30s")
	}
	var warm []float64
	for range b.s.startupRuns {
		d, err := measure(b.dsn, http.StatusOK)
		if err != nil {
			return fmt.Errorf("start-up: %w", err)
		}
		warm = append(warm, ms(d))
		b.logf("start-up: first 200 after %s", d.Round(time.Millisecond))
	}
	cold, err := b.freshDatabase(ctx)
	if err != nil {
		return err
	}
	dc, err := measure(cold, http.StatusUnauthorized)
	if err != nil {
		return fmt.Errorf("start-up on a fresh database: %w", err)
	}
	b.logf("start-up on a fresh database: first answer from the database after %s", dc.Round(time.Millisecond))
	b.sumf("### Start-up")
	b.sumf("")
	b.sumf("- Process start to the first served request (a 200 through armgate_auth, token looked up in PostgreSQL): median %.0f ms, max %.0f ms over %d starts (target ≤ 1 s): %s.",
		median(warm), quantile(warm, 1), len(warm), verdict(quantile(warm, 1) <= 1000))
	b.sumf("- The same on a fresh database (migrations applied at start; first answer from the database): %.0f ms.", ms(dc))
	return nil
}

func (b *bench) freshDatabase(ctx context.Context) (string, error) {
	conn, err := pgx.Connect(ctx, b.dsn)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("armgate_cold_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	return strings.Replace(b.dsn, "/armgate?", "/"+name+"?", 1), nil
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// goBenchmarks runs the hot-path and memory benchmarks and summarizes
// them (medians over -count runs).
func (b *bench) goBenchmarks(ctx context.Context) error {
	b.logf("Go benchmarks (hot path × %d, memory at 1M entries)", b.s.goBenchCount)
	run := func(args ...string) (map[string]map[string][]float64, []string, error) {
		cmd := exec.CommandContext(ctx, "go", append([]string{"test", "-run", "^$", "-benchmem"}, args...)...)
		cmd.Env = append(os.Environ(), "ARMGATE_TEST_DATABASE_URL="+b.dsn)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return nil, nil, fmt.Errorf("go test %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		res := map[string]map[string][]float64{}
		var order []string
		for line := range strings.Lines(string(out)) {
			m := benchLine.FindStringSubmatch(strings.TrimSpace(line))
			if m == nil {
				continue
			}
			if res[m[1]] == nil {
				res[m[1]] = map[string][]float64{}
				order = append(order, m[1])
			}
			f := strings.Fields(m[2])
			for i := 0; i+1 < len(f); i += 2 {
				if v, err := strconv.ParseFloat(f[i], 64); err == nil {
					res[m[1]][f[i+1]] = append(res[m[1]][f[i+1]], v)
				}
			}
		}
		return res, order, nil
	}
	hot, order, err := run("-bench", "^Benchmark(AuthCheckHit|AuthServeHTTPHit|AuthServeHTTPHitOthersBlocked|AuthServeHTTPNegativeHit|AuthServeHTTPLimited|AuthMissPostgres|VerifyHit|VerifyNegativeHit)$",
		"-count", strconv.Itoa(b.s.goBenchCount), "./caddymodule", "./verifier")
	if err != nil {
		return err
	}
	mem, _, err := run("-bench", "^BenchmarkCacheMemory$", "-benchtime", "1x", "./verifier")
	if err != nil {
		return err
	}
	b.sumf("### Hot path (go test -bench, median of %d)", b.s.goBenchCount)
	b.sumf("")
	b.sumf("| benchmark | ns/op | B/op | allocs/op |")
	b.sumf("| --- | --- | --- | --- |")
	for _, name := range order {
		m := hot[name]
		b.sumf("| %s | %.0f | %.0f | %.0f |", strings.TrimPrefix(name, "Benchmark"), median(m["ns/op"]), median(m["B/op"]), median(m["allocs/op"]))
	}
	if m := hot["BenchmarkAuthCheckHit"]; m != nil {
		b.sumf("")
		b.sumf("- Check on a cache hit (parse, checksum, SHA-256, cache): %.0f ns, %.0f allocs (target ≤ 1 µs, ≤ 1 alloc): %s.",
			median(m["ns/op"]), median(m["allocs/op"]), verdict(median(m["ns/op"]) <= 1000 && median(m["allocs/op"]) <= 1))
	}
	b.sumf("")
	if m := mem["BenchmarkCacheMemory"]; m != nil {
		b.sumf("### Memory per cached entry at 1M entries")
		b.sumf("")
		b.sumf("- %.0f B per entry in all (target ≤ 300 B): %s. Of that: armgate's entry (struct, credential strings, scopes) %.0f B; ristretto's per-item bookkeeping (store map, TTL buckets, policy) %.0f B; ristretto's fixed structures sized by max_entries (TinyLFU sketch for 10M counters, bloom filter) %.0f B per entry.",
			median(m["B/entry"]), verdict(median(m["B/entry"]) <= 300), median(m["entry-B/entry"]),
			median(m["ristretto-item-B/entry"]), median(m["ristretto-fixed-B/entry"]))
		b.sumf("")
	}
	return nil
}
