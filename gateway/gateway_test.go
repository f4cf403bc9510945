package gateway

import (
	"reflect"
	goruntime "runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap/zaptest"

	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/internal/wait"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
	"github.com/armgate/armgate/verifier"
)

func TestMain(m *testing.M) { testpg.Main(m) }

// TestRuntime runs a Runtime through its life on a fresh database: Open
// dials nothing, Start applies the migrations and connects the listener,
// a revoke committed by anyone reaches the cache through NOTIFY, and Close
// flushes last use before closing the pool.
func TestRuntime(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	var lookups, invalidations atomic.Int64
	rt, err := Open(Config{
		DSN:           dsn,
		Verifier:      verifier.Config{TTL: time.Hour, NegativeTTL: time.Hour, MaxEntries: 1000},
		LastUsedFlush: time.Hour, // only the flush at Close
		Logger:        zaptest.NewLogger(t),
		Hooks: Hooks{
			LookupDone:   func(time.Duration) { lookups.Add(1) },
			Invalidation: func() { invalidations.Add(1) },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			rt.Close()
		}
	})
	if n := rt.Database().PoolStat().TotalConns(); n != 0 {
		t.Errorf("Open made %d connections, want none", n)
	}

	rt.Start()
	rt.Start() // a second Start does nothing
	select {
	case <-rt.Migrated():
	case <-time.After(30 * time.Second):
		t.Fatal("migrations not applied 30s after Start")
	}
	ctx := t.Context()
	var app string
	if err := rt.db.pool.QueryRow(ctx,
		`SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()`).Scan(&app); err != nil {
		t.Fatal(err)
	}
	if app != "armgate" {
		t.Errorf("pool application_name = %q, want armgate", app)
	}
	wait.For(t, "the listener", rt.Listening)
	var listeners int
	if err := rt.db.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'armgate-listen'`).Scan(&listeners); err != nil {
		t.Fatal(err)
	}
	if listeners != 1 {
		t.Errorf("%d armgate-listen backends, want 1", listeners)
	}

	tok, plain, err := rt.Store().CreateToken(ctx, "test", storage.NewToken{
		UserID: "alice", Name: "laptop", Scopes: []string{token.ScopeAPI},
		ExpiresAt: time.Now().Add(time.Hour), MaxPerUser: 10, CreateUser: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	verify := func() {
		t.Helper()
		if _, res, err := rt.Verifier().Verify(ctx, plain); err != nil || res != token.Active {
			t.Fatalf("Verify = %v, %v; want active", res, err)
		}
	}
	verify()
	if n := lookups.Load(); n != 1 {
		t.Errorf("LookupDone called %d times for the first check, want 1", n)
	}
	// The cache stores asynchronously (and ristretto may drop a set): once
	// the entry has landed, a check costs no lookup.
	wait.For(t, "a check answered from the cache", func() bool {
		before := lookups.Load()
		verify()
		return lookups.Load() == before
	})

	// Revoked without a local Invalidate: only the notification can drop
	// the cached entry before its hour is up.
	if _, _, err := rt.Store().RevokeToken(ctx, "test", tok.ID, "lost"); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the revoke to reach the cache", func() bool {
		_, res, err := rt.Verifier().Verify(ctx, plain)
		return err == nil && res == token.Revoked
	})
	if invalidations.Load() == 0 {
		t.Error("the Invalidation hook was not called")
	}

	rt.Close()
	closed = true
	if err := rt.db.pool.Ping(ctx); err == nil {
		t.Error("the pool still answers after Close")
	}
	other, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	got, err := storage.New(other).GetToken(ctx, tok.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.LastUsedAt == nil {
		t.Error("last_used_at still empty after Close: the last flush did not happen")
	}
}

// TestInvalidate checks that a local invalidation drops the cached entry at
// once, without the listener (the runtime is not started).
func TestInvalidate(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	rt, err := Open(Config{DSN: dsn, LastUsedFlush: time.Hour,
		Verifier: verifier.Config{TTL: time.Hour, NegativeTTL: time.Hour, MaxEntries: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctx := t.Context()
	if err := rt.Database().Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	tok, plain, err := rt.Store().CreateToken(ctx, "test", storage.NewToken{
		UserID: "bob", Name: "ci", Scopes: []string{token.ScopeAPI},
		ExpiresAt: time.Now().Add(time.Hour), MaxPerUser: 10, CreateUser: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, res, err := rt.Verifier().Verify(ctx, plain); err != nil || res != token.Active {
		t.Fatalf("Verify = %v, %v; want active", res, err)
	}
	// The cache stores asynchronously (and ristretto may drop a set): wait
	// until a check is answered from it, so that the check below proves the
	// Invalidate.
	wait.For(t, "a check answered from the cache", func() bool {
		before := rt.Verifier().Stats.Loads.Load()
		_, _, err := rt.Verifier().Verify(ctx, plain)
		return err == nil && rt.Verifier().Stats.Loads.Load() == before
	})
	_, inv, err := rt.Store().RevokeToken(ctx, "test", tok.ID, "lost")
	if err != nil {
		t.Fatal(err)
	}
	if _, res, _ := rt.Verifier().Verify(ctx, plain); res != token.Active {
		t.Fatalf("Verify = %v before Invalidate, want active (cached): the test proves nothing", res)
	}
	rt.Invalidate(inv)
	if _, res, err := rt.Verifier().Verify(ctx, plain); err != nil || res != token.Revoked {
		t.Errorf("Verify after Invalidate = %v, %v; want revoked", res, err)
	}
}

// TestOpenConfig checks the connection settings, and that a bad connection
// string is refused without being quoted.
func TestOpenConfig(t *testing.T) {
	t.Parallel()
	pool, err := poolConfig("postgres://u:pw@localhost/db")
	if err != nil {
		t.Fatal(err)
	}
	if got := pool.ConnConfig.RuntimeParams["application_name"]; got != "armgate" {
		t.Errorf("application_name = %q, want armgate", got)
	}
	db, err := OpenDatabase("postgres://u:pw@localhost/db")
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if got := db.pool.Config().ConnConfig.RuntimeParams["application_name"]; got != "armgate" {
		t.Errorf("OpenDatabase: application_name = %q, want armgate", got)
	}
	pool, err = poolConfig("postgres://u:pw@localhost/db?application_name=mine")
	if err != nil {
		t.Fatal(err)
	}
	if got := pool.ConnConfig.RuntimeParams["application_name"]; got != "mine" {
		t.Errorf("application_name = %q, want the DSN's own", got)
	}
	for _, listenDSN := range []string{"", "postgres://u:pw@localhost/db?application_name=mine", "host=other application_name=x"} {
		l, err := listenConfig(pool, "postgres://u:pw@localhost/db?application_name=mine", listenDSN)
		if err != nil {
			t.Fatal(err)
		}
		if got := l.RuntimeParams["application_name"]; got != "armgate-listen" {
			t.Errorf("listen DSN %q: application_name = %q, want armgate-listen", listenDSN, got)
		}
	}

	const secret = "s3cr3t-pw"
	tests := []struct {
		name, dsn, listenDSN, want string
	}{
		{"database", "postgres://u:" + secret + "@localhost:notaport/db", "", "database: invalid connection string"},
		{"listen", "postgres://u@localhost/db", "postgres://u:" + secret + "@localhost:notaport/db", "listen_database: invalid connection string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, err := Open(Config{DSN: tt.dsn, ListenDSN: tt.listenDSN, LastUsedFlush: time.Second})
			if err == nil {
				rt.Close()
				t.Fatal("Open accepted a bad connection string")
			}
			if err.Error() != tt.want {
				t.Errorf("error %q, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q quotes the password", err)
			}
		})
	}
	if _, err := OpenDatabase("postgres://u:" + secret + "@localhost:notaport/db"); err == nil ||
		strings.Contains(err.Error(), secret) {
		t.Errorf("OpenDatabase error = %v, want a refusal that does not quote the password", err)
	}
}

// TestPreferWritable checks which servers the pool and the listener accept:
// the pool one that accepts writes unless the DSN or PGTARGETSESSIONATTRS
// says otherwise (an explicit "any" included); the listener keeps the DSN's
// choice (none: storage.Listen then picks a primary).
func TestPreferWritable(t *testing.T) {
	readWrite := pgconn.ValidateConnectTargetSessionAttrsReadWrite
	tests := []struct {
		name, dsn, env string
		want           pgconn.ValidateConnectFunc // nil: any server
	}{
		{"URL", "postgres://u:pw@localhost/db", "", readWrite},
		{"keyword/value", "host=localhost dbname=db", "", readWrite},
		{"multi-host", "postgres://u@h1:5432,h2:5433/db?sslmode=disable", "", readWrite},
		{"pool settings", "postgres://u@localhost/db?pool_max_conns=4", "", readWrite},
		{"URL any", "postgres://u@localhost/db?target_session_attrs=any", "", nil},
		{"keyword any", "host=localhost target_session_attrs=any", "", nil},
		{"URL read-only", "postgres://u@localhost/db?target_session_attrs=read-only", "",
			pgconn.ValidateConnectTargetSessionAttrsReadOnly},
		{"keyword prefer-standby", "host=localhost target_session_attrs=prefer-standby", "",
			pgconn.ValidateConnectTargetSessionAttrsPreferStandby},
		{"URL primary", "postgres://u@localhost/db?target_session_attrs=primary", "",
			pgconn.ValidateConnectTargetSessionAttrsPrimary},
		{"env any", "postgres://u@localhost/db", "any", nil},
		{"env standby", "postgres://u@localhost/db", "standby", pgconn.ValidateConnectTargetSessionAttrsStandby},
		{"DSN over env", "postgres://u@localhost/db?target_session_attrs=any", "read-write", nil},
	}
	name := func(f pgconn.ValidateConnectFunc) string {
		if f == nil {
			return "any"
		}
		return runtimeFuncName(f)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PGTARGETSESSIONATTRS", tt.env)
			db, err := OpenDatabase(tt.dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if got := db.pool.Config().ConnConfig.ValidateConnect; name(got) != name(tt.want) {
				t.Errorf("pool accepts %s, want %s", name(got), name(tt.want))
			}

			rt, err := Open(Config{DSN: tt.dsn, LastUsedFlush: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close()
			if got := rt.db.pool.Config().ConnConfig.ValidateConnect; name(got) != name(tt.want) {
				t.Errorf("runtime pool accepts %s, want %s", name(got), name(tt.want))
			}
			want := tt.want
			if name(want) == name(readWrite) {
				want = nil // chosen for the pool, not by the DSN
			}
			if got := rt.listenCfg.ValidateConnect; name(got) != name(want) {
				t.Errorf("listener accepts %s, want %s", name(got), name(want))
			}
			if _, ok := rt.listenCfg.RuntimeParams["pool_max_conns"]; ok {
				t.Error("the listener would send the pool's settings to the server")
			}
		})
	}
}

func runtimeFuncName(f any) string {
	return goruntime.FuncForPC(reflect.ValueOf(f).Pointer()).Name()
}

// TestKnownTokens: Start loads the set of known tokens; a token created
// behind the runtime's back is known once its notification arrives, and
// one added through Invalidate (as the admin API does for the tokens it
// creates) is known at once. With the lookup budget off, an absent token is
// refused without a lookup.
func TestKnownTokens(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	var lookups atomic.Int64
	rt, err := Open(Config{DSN: dsn, LastUsedFlush: time.Hour,
		Verifier:    verifier.Config{TTL: time.Hour, NegativeTTL: time.Hour, MaxEntries: 1000},
		KnownTokens: KnownTokens{LookupsPerSecond: -1, ReloadJitter: -1},
		Hooks:       Hooks{LookupDone: func(time.Duration) { lookups.Add(1) }},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctx := t.Context()
	if err := rt.Database().Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	newToken := storage.NewToken{UserID: "kim", Name: "a", Scopes: []string{token.ScopeAPI},
		ExpiresAt: time.Now().Add(time.Hour), MaxPerUser: 10, CreateUser: true}
	if _, _, err := rt.Store().CreateToken(ctx, "test", newToken); err != nil {
		t.Fatal(err)
	}
	rt.Start()
	wait.For(t, "the known set to load", func() bool { n, ok := rt.KnownTokens(); return ok && n == 1 })

	newToken.Name = "b"
	_, notified, err := rt.Store().CreateToken(ctx, "test", newToken)
	if err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the creation's notification", func() bool { n, _ := rt.KnownTokens(); return n == 2 })
	if _, res, err := rt.Verifier().Verify(ctx, notified); err != nil || res != token.Active {
		t.Errorf("notified token: %v, %v; want active", res, err)
	}

	unknown, err := token.Generate()
	if err != nil {
		t.Fatal(err)
	}
	before := lookups.Load()
	if _, res, err := rt.Verifier().Verify(ctx, unknown); err != nil || res != token.Unknown || lookups.Load() != before {
		t.Errorf("absent token: %v, %v, %d lookups; want unknown without a lookup", res, err, lookups.Load()-before)
	}
	// A local create is known at once and counted once its own
	// notification arrives, not twice.
	newToken.Name = "c"
	c, local, err := rt.Store().CreateToken(ctx, "test", newToken)
	if err != nil {
		t.Fatal(err)
	}
	h := token.Sum(local)
	rt.Invalidate(storage.Invalidation{Created: [][]byte{h[:]}})
	if _, res, err := rt.Verifier().Verify(ctx, local); err != nil || res != token.Active {
		t.Errorf("locally created token: %v, %v; want active", res, err)
	}
	// Notifications arrive in commit order: once the next creation's has,
	// c's has too.
	barrier := func(name string, want int) {
		t.Helper()
		newToken.Name = name
		if _, _, err := rt.Store().CreateToken(ctx, "test", newToken); err != nil {
			t.Fatal(err)
		}
		wait.For(t, "the notification of "+name, func() bool { n, _ := rt.KnownTokens(); return n >= want })
		if n, _ := rt.KnownTokens(); n != want {
			t.Errorf("known tokens after %s = %d, want %d (the rows that exist)", name, n, want)
		}
	}
	barrier("d", 4)
	// Its deletion, local or not, leaves no entry behind.
	inv, err := rt.Store().DeleteToken(ctx, "test", c.ID)
	if err != nil {
		t.Fatal(err)
	}
	rt.Invalidate(inv)
	barrier("e", 4)
}

// TestRetention: Purge deletes exactly the tokens expired for longer than
// the retention, with their audit events, and every known set and cache
// drops them, and the usage days older than the retention; with retention
// off it deletes nothing.
func TestRetention(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	open := func(retention time.Duration) *Runtime {
		rt, err := Open(Config{DSN: dsn, LastUsedFlush: time.Hour, Retention: retention,
			Verifier:    verifier.Config{TTL: time.Hour, NegativeTTL: time.Hour, MaxEntries: 1000},
			KnownTokens: KnownTokens{ReloadJitter: -1},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rt.Close)
		// The test runs the purge itself: the first run at start, after a
		// random delay of up to a minute, could otherwise come before the
		// known sets are seen whole.
		rt.firstPurge = func() time.Duration { return time.Hour }
		return rt
	}
	rt, off := open(24*time.Hour), open(0)
	ctx := t.Context()
	if err := rt.Database().Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	newToken := storage.NewToken{UserID: "ret", Scopes: []string{token.ScopeAPI},
		ExpiresAt: time.Now().Add(time.Hour), MaxPerUser: 10, CreateUser: true}
	plain := map[string]string{}
	ids := map[string]string{}
	for _, name := range []string{"live", "recent", "old", "older"} {
		newToken.Name = name
		tk, p, err := rt.Store().CreateToken(ctx, "test", newToken)
		if err != nil {
			t.Fatal(err)
		}
		plain[name], ids[name] = p, tk.ID
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for name, age := range map[string]string{"recent": "1 hour", "old": "25 hours", "older": "400 days"} {
		if _, err := pool.Exec(ctx, `UPDATE armgate.tokens SET expires_at = now() - $2::interval WHERE id = $1`, ids[name], age); err != nil {
			t.Fatal(err)
		}
	}
	// Usage of the live token today and ten days ago: the older day goes.
	if _, err := pool.Exec(ctx, `INSERT INTO armgate.token_usage (token_id, day, allowed)
		VALUES ($1, (now() AT TIME ZONE 'UTC')::date, 1), ($1, (now() AT TIME ZONE 'UTC')::date - 10, 1)`, ids["live"]); err != nil {
		t.Fatal(err)
	}
	usageDays := func() (n int) {
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM armgate.token_usage WHERE token_id = $1`, ids["live"]).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	rt.Start()
	off.Start()
	for _, r := range []*Runtime{rt, off} {
		wait.For(t, "the known set", func() bool { n, ok := r.KnownTokens(); return ok && n == 4 })
	}
	// The expired refusal is cached on both.
	for _, r := range []*Runtime{rt, off} {
		if _, res, err := r.Verifier().Verify(ctx, plain["old"]); err != nil || res != token.Expired {
			t.Fatalf("old token before the purge: %v, %v", res, err)
		}
	}

	if n, err := off.Purge(ctx); err != nil || n != 0 {
		t.Errorf("retention off: purged %d, %v; want nothing", n, err)
	}
	if n := usageDays(); n != 2 {
		t.Errorf("retention off: %d usage days left, want 2", n)
	}
	if n, err := rt.Purge(ctx); err != nil || n != 2 {
		t.Fatalf("purged %d, %v; want 2", n, err)
	}
	if n := usageDays(); n != 1 {
		t.Errorf("%d usage days of the live token left, want 1 (today's)", n)
	}
	var left []string
	rows, _ := pool.Query(ctx, `SELECT name FROM armgate.tokens ORDER BY name`)
	left, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || !reflect.DeepEqual(left, []string{"live", "recent"}) {
		t.Errorf("tokens left: %v, %v; want live and recent", left, err)
	}
	var events []string
	rows, _ = pool.Query(ctx, `SELECT target FROM armgate.audit WHERE action = 'token.purge' AND actor = 'system' ORDER BY target`)
	events, err = pgx.CollectRows(rows, pgx.RowTo[string])
	want := []string{ids["old"], ids["older"]}
	if want[0] > want[1] {
		want[0], want[1] = want[1], want[0]
	}
	if err != nil || !reflect.DeepEqual(events, want) {
		t.Errorf("token.purge events for %v, %v; want %v", events, err, want)
	}
	for _, r := range []*Runtime{rt, off} {
		wait.For(t, "the purge's notifications", func() bool { n, _ := r.KnownTokens(); return n == 2 })
		wait.For(t, "the cached refusal to go", func() bool {
			_, res, err := r.Verifier().Verify(ctx, plain["old"])
			return err == nil && res == token.Unknown
		})
	}
	if n, err := rt.Purge(ctx); err != nil || n != 0 {
		t.Errorf("second purge: %d, %v; want nothing", n, err)
	}
}
