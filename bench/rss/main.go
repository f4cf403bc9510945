// Command rss measures the resident memory of a Caddy process with armgate
// when every token of a large customer is cached: it starts a private
// PostgreSQL (scripts/pg.sh), creates -tokens live tokens directly in the
// database, builds and starts Caddy (internal/caddybin) with armgate_auth,
// requests each token until the gauge caddy_armgate_cache_entries counts
// them all, and prints VmRSS (from /proc/<pid>/status) and the Go heap of
// the process idle and with all tokens cached. Both readings include what
// the Go runtime keeps between collections: with GOGC=100 the heap may grow
// to twice the live heap before the next one.
//
// Run from the repository root:
//
//	go run ./bench/rss [-tokens 100000] [-max-entries 200000] [-passes 3]
//
// The first pass requests every token until all are cached (a 503 under
// load is asked again); the later passes are hits only. The cache ttl is
// 600 s, so that nothing goes stale during the run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/armgate/armgate/internal/freeport"
	"github.com/armgate/armgate/internal/gatewayproc"
	"github.com/armgate/armgate/internal/promtext"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

const caddyfile = `{
	admin off
	persist_config off
	auto_https off
	grace_period 1s
	armgate {
		database {$ARMGATE_DATABASE_URL}
		cache {
			ttl 600s
			max_entries {$MAX_ENTRIES}
		}
	}
}

http://127.0.0.1:{$LISTEN_PORT} {
	bind 127.0.0.1
	armgate_auth
	respond "ok" 200
}

http://127.0.0.1:{$METRICS_PORT} {
	bind 127.0.0.1
	metrics
}
`

func main() {
	n := flag.Int("tokens", 100_000, "distinct live tokens to cache")
	workers := flag.Int("workers", 8, "concurrent requests")
	maxEntries := flag.Int("max-entries", 200_000, "the cache's max_entries")
	passes := flag.Int("passes", 3, "passes over all tokens (from the second on, hits only)")
	flag.Parse()
	if err := run(*n, *workers, *maxEntries, *passes); err != nil {
		log.Fatal(err)
	}
}

func run(n, workers, maxEntries, passes int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "scripts/pg.sh")); err != nil {
		return errors.New("run from the repository root")
	}
	work, err := os.MkdirTemp("", "armgate-rss.")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	// As root, PostgreSQL runs as user postgres, which must reach pg/.
	if err := os.Chmod(work, 0o711); err != nil {
		return err
	}

	caddy := filepath.Join(work, "caddy")
	if err := gatewayproc.Build(caddy, false); err != nil {
		return fmt.Errorf("building caddy: %w", err)
	}

	pgDir := filepath.Join(work, "pg")
	pgPort, err := freeport.Loopback()
	if err != nil {
		return err
	}
	start := exec.CommandContext(ctx, "bash", "scripts/pg.sh", "start", pgDir, strconv.Itoa(pgPort))
	start.Stderr = os.Stderr
	out, err := start.Output()
	if err != nil {
		return fmt.Errorf("starting PostgreSQL: %w", err)
	}
	defer func() {
		stop := exec.Command("bash", "scripts/pg.sh", "stop", pgDir)
		stop.Stderr = os.Stderr
		_ = stop.Run()
	}()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	dsn := lines[len(lines)-1]

	t := time.Now()
	tokens, err := createTokens(ctx, dsn, n)
	if err != nil {
		return err
	}
	log.Printf("%d tokens created in %s", n, time.Since(t).Round(time.Millisecond))

	port, err := freeport.Loopback()
	if err != nil {
		return err
	}
	mport, err := freeport.Loopback()
	if err != nil {
		return err
	}
	conf := filepath.Join(work, "Caddyfile")
	if err := os.WriteFile(conf, []byte(caddyfile), 0o600); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(work, "caddy.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(caddy, "run", "--adapter", "caddyfile", "--config", conf)
	cmd.Env = append(os.Environ(), "ARMGATE_DATABASE_URL="+dsn,
		"LISTEN_PORT="+strconv.Itoa(port), "METRICS_PORT="+strconv.Itoa(mport),
		"MAX_ENTRIES="+strconv.Itoa(maxEntries))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}()
	pid := cmd.Process.Pid
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)

	// Up when the metrics answer and a token passes.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := metrics(client, metricsURL); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("caddy did not come up (log: %s)", logf.Name())
		}
		time.Sleep(100 * time.Millisecond)
	}
	idle, err := snapshot(client, metricsURL, pid)
	if err != nil {
		return err
	}

	t = time.Now()
	var cached float64
	for round := 1; ; round++ {
		if err := requestAll(client, url, tokens, workers); err != nil {
			return err
		}
		m, err := metrics(client, metricsURL)
		if err != nil {
			return err
		}
		cached = m.Value("caddy_armgate_cache_entries")
		log.Printf("round %d: %.0f of %d tokens cached", round, cached, n)
		if cached >= float64(n) {
			break
		}
		if round == 10 {
			return fmt.Errorf("only %.0f of %d tokens cached after %d rounds", cached, n, round)
		}
	}
	log.Printf("all cached in %s", time.Since(t).Round(time.Millisecond))
	type row struct {
		name string
		snap
	}
	rows := []row{{"idle", idle}}
	for p := 1; p <= passes; p++ {
		if p > 1 {
			if err := requestAll(client, url, tokens, workers); err != nil {
				return err
			}
		}
		s, err := snapshot(client, metricsURL, pid)
		if err != nil {
			return err
		}
		rows = append(rows, row{fmt.Sprintf("pass %d", p), s})
	}
	m, err := metrics(client, metricsURL)
	if err != nil {
		return err
	}

	fmt.Printf("caddy pid %d, max_entries %d, %d tokens cached, %.0f database lookups\n",
		pid, maxEntries, int(cached), m.Value("caddy_armgate_db_lookups_total"))
	fmt.Printf("%-8s %12s %14s %14s %16s\n", "", "VmRSS", "Go heap inuse", "live heap", "cache estimate")
	for _, r := range rows {
		fmt.Printf("%-8s %9.1f MB %11.1f MB %11.1f MB %13.1f MB\n", r.name, mb(r.rss), mb(r.heap), mb(r.live), mb(r.est))
	}
	per := func(a, b float64) float64 { return (b - a) / cached }
	last := rows[len(rows)-1]
	fmt.Printf("%-8s %10.0f B %12.0f B %12.0f B %14.0f B  per cached token, idle to %s\n", "delta",
		per(idle.rss, last.rss), per(idle.heap, last.heap), per(idle.live, last.live), per(idle.est, last.est), last.name)
	return nil
}

// snap is one reading: VmRSS, the Go heap in use (live objects and garbage
// not yet collected), the live heap at the last collection (the GC goal
// divided by 1+GOGC/100) and armgate's estimate of its cache.
type snap struct{ rss, heap, live, est float64 }

// gogc is the GOGC of the Caddy process, which inherits this environment.
func gogc() float64 {
	if v, err := strconv.ParseFloat(os.Getenv("GOGC"), 64); err == nil && v > 0 {
		return v
	}
	return 100
}

func mb(b float64) float64 { return b / 1e6 }

func snapshot(client *http.Client, metricsURL string, pid int) (snap, error) {
	m, err := metrics(client, metricsURL)
	if err != nil {
		return snap{}, err
	}
	rss, err := vmRSS(pid)
	if err != nil {
		return snap{}, err
	}
	return snap{rss: rss, heap: m.Value("go_memstats_heap_inuse_bytes"),
		live: m.Value("go_memstats_next_gc_bytes") / (1 + gogc()/100),
		est:  m.Value("caddy_armgate_cache_bytes_estimated")}, nil
}

func metrics(client *http.Client, url string) (promtext.Samples, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return promtext.Parse(resp.Body)
}

// vmRSS reads the resident set size of process pid, in bytes.
func vmRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// requestAll sends one request per token. Each must pass, or be answered
// 503 (a lookup that failed under load: the next round asks again).
func requestAll(client *http.Client, url string, tokens []string, workers int) error {
	var next, unavailable atomic.Int64
	defer func() {
		if n := unavailable.Load(); n > 0 {
			log.Printf("%d requests answered 503", n)
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(tokens) {
					return
				}
				req, err := http.NewRequest(http.MethodGet, url, nil)
				if err != nil {
					errs <- err
					return
				}
				req.Header.Set("Authorization", "Bearer "+tokens[i])
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusServiceUnavailable {
					unavailable.Add(1)
				} else if resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("token %d: %s", i, resp.Status)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// createTokens migrates the database and copies n live tokens into it, ten
// per user, with a UUID id and a short name like those the admin API
// creates; it returns the plaintext tokens.
func createTokens(ctx context.Context, dsn string, n int) ([]string, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if err := storage.Migrate(ctx, pool); err != nil {
		return nil, fmt.Errorf("migrating: %w", err)
	}
	users := make([][]any, 0, n/10+1)
	for u := 0; u*10 < n; u++ {
		users = append(users, []any{fmt.Sprintf("user-%07d", u)})
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"armgate", "users"}, []string{"id"}, pgx.CopyFromRows(users)); err != nil {
		return nil, fmt.Errorf("copying users: %w", err)
	}
	tokens := make([]string, n)
	rows := make([][]any, n)
	expires := time.Now().Add(30 * 24 * time.Hour)
	for i := range n {
		tok, err := token.Generate()
		if err != nil {
			return nil, err
		}
		h := token.Sum(tok)
		tokens[i] = tok
		rows[i] = []any{fmt.Sprintf("user-%07d", i/10), fmt.Sprintf("token-%d", i%10), h[:],
			token.Hint(tok), []string{token.ScopeAPI}, expires}
	}
	cols := []string{"user_id", "name", "hash", "hint", "scopes", "expires_at"}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"armgate", "tokens"}, cols, pgx.CopyFromRows(rows)); err != nil {
		return nil, fmt.Errorf("copying tokens: %w", err)
	}
	return tokens, nil
}
