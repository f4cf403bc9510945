// Setting up: building Caddy, the private PostgreSQL (scripts/pg.sh), the
// upstream and auth service, and the Caddy processes under test.

package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/armgate/armgate/internal/gatewayproc"
	"github.com/armgate/armgate/ipallow"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

func (b *bench) build(ctx context.Context) error {
	t := time.Now()
	b.caddy = filepath.Join(b.work, "caddy")
	// The tag links in bench_floor (bench/floor), which only F uses.
	if err := gatewayproc.Build(b.caddy, false, "armgate_benchfloor"); err != nil {
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
	// benchTokens tokens, 8 per user (the limit is 10 per user), each with
	// a four-prefix allow-list whose last prefix holds loopback, so that
	// every request walks the list.
	store := storage.New(pool)
	allow, err := ipallow.Parse([]string{"10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32", "127.0.0.0/8"})
	if err != nil {
		return err
	}
	var pairs strings.Builder
	for i := range benchTokens {
		user := fmt.Sprintf("bench-user-%d", i/8)
		_, tok, err := store.CreateToken(cctx, "bench", storage.NewToken{
			UserID: user, Name: fmt.Sprintf("load-%d", i), Scopes: []string{token.ScopeAPI},
			ExpiresAt: time.Now().Add(24 * time.Hour), MaxPerUser: 10, CreateUser: true,
			AllowedIPs: allow})
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

func (b *bench) startCaddy(name, file string, port, mport int, dsn string, env ...string) (*proc, error) {
	return startProc("caddy "+name, filepath.Join(b.work, "caddy-"+name+".log"), append(b.caddyEnv(port, mport, dsn), env...),
		b.caddy, "run", "--adapter", "caddyfile", "--config", filepath.Join(b.root, "bench/caddy", file))
}

func (b *bench) startServer(ctx context.Context, s *server) error {
	s.port, s.mport = freePort(), freePort()
	// PLAIN_PORT: the second site of a same-process configuration (S).
	plainPort := freePort()
	var err error
	if s.proc, err = b.startCaddy(s.name, s.file, s.port, s.mport, b.dsn, "PLAIN_PORT="+strconv.Itoa(plainPort)); err != nil {
		return err
	}
	if src, err := os.ReadFile(filepath.Join(b.root, "bench/caddy", s.file)); err == nil && strings.Contains(string(src), "{$PLAIN_PORT}") {
		s.plain = &server{name: s.name + "/plain", file: s.file, port: plainPort, mport: s.mport, proc: s.proc}
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := waitHTTP(wctx, s.url(), http.Header{"Authorization": {b.auth}}, 200, s.proc); err != nil {
		return fmt.Errorf("configuration %s did not come up (see %s): %w", s.name, filepath.Join(b.work, "caddy-"+s.name+".log"), err)
	}
	b.logf("configuration %s: caddy pid %d on port %d", s.name, s.proc.pid(), s.port)
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
