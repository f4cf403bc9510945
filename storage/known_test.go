package storage_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/internal/wait"
	"github.com/armgate/armgate/knownset"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

func prefixOf(plain string) uint64 { return knownset.Prefix(token.Sum(plain)) }

// TestKnownNotifications: a creation notifies the new hash (Created, not an
// invalidation), a deletion the deleted one (Deleted, and Hashes so that
// caches drop it).
func TestKnownNotifications(t *testing.T) {
	e := newEnv(t)
	e.user(t, "u")
	l := listen(t, e.dsn)

	tk, plain := e.mustCreate(t, "u", "t")
	h := hashOf(plain)
	got := l.next(t)
	if !sameHashes(got.Created, [][]byte{h}) || len(got.Hashes)+len(got.Deleted) != 0 || got.All || got.Rescan {
		t.Errorf("create notified %+v", got)
	}

	inv, err := e.store.DeleteToken(t.Context(), admin, tk.ID)
	if err != nil {
		t.Fatal(err)
	}
	for name, inv := range map[string]storage.Invalidation{"returned": inv, "notified": l.next(t)} {
		if !sameHashes(inv.Deleted, [][]byte{h}) || !sameHashes(inv.Hashes, [][]byte{h}) || len(inv.Created) != 0 || inv.All {
			t.Errorf("delete %s %+v", name, inv)
		}
	}

	// A failed creation notifies nothing: the next notification is the
	// marker's.
	e.create(t, "u", "over-the-limit", 0)
	_, markerPlain := e.mustCreate(t, "u", "marker")
	if got := l.next(t); !sameHashes(got.Created, [][]byte{hashOf(markerPlain)}) {
		t.Errorf("first notification after a failed create: %+v", got)
	}
}

func scanAll(t *testing.T, s *storage.Store) []uint64 {
	t.Helper()
	var got []uint64
	if err := s.ScanTokenHashes(t.Context(), func(p uint64) { got = append(got, p) }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	return got
}

// TestScanTokenHashes: the scan yields exactly the tokens that exist
// (revoked and expired ones too, not deleted ones), over the extended and
// the simple protocol.
func TestScanTokenHashes(t *testing.T) {
	e := newEnv(t)
	e.user(t, "u")
	if got := scanAll(t, e.store); len(got) != 0 {
		t.Fatalf("empty database scanned %d", len(got))
	}
	var want []uint64
	for _, name := range []string{"live", "revoked", "expired", "deleted"} {
		tk, plain := e.mustCreate(t, "u", name)
		switch name {
		case "revoked":
			if _, _, err := e.store.RevokeToken(t.Context(), admin, tk.ID, ""); err != nil {
				t.Fatal(err)
			}
		case "expired":
			e.expire(t, tk.ID)
		case "deleted":
			if _, err := e.store.DeleteToken(t.Context(), admin, tk.ID); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want = append(want, prefixOf(plain))
	}
	slices.Sort(want)
	if got := scanAll(t, e.store); !slices.Equal(got, want) {
		t.Errorf("scan %x, want %x", got, want)
	}

	cfg, err := pgxpool.ParseConfig(e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	simple, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer simple.Close()
	if got := scanAll(t, storage.New(simple)); !slices.Equal(got, want) {
		t.Errorf("simple protocol: scan %x, want %x", got, want)
	}
}

// TestListenKeepsKnownSet wires the listener to a knownset.Loader: the set
// is loaded on connect and follows creations and deletions.
func TestListenKeepsKnownSet(t *testing.T) {
	e := newEnv(t)
	e.user(t, "u")
	_, before := e.mustCreate(t, "u", "before")

	cfg, err := pgx.ParseConfig(e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = "listen-known-test"
	set := knownset.New()
	loader := knownset.NewLoader(set, e.store.ScanTokenHashes, knownset.LoaderOptions{})
	defer loader.Stop()
	ctx, cancel := context.WithCancel(t.Context())
	var (
		wg       sync.WaitGroup
		connects atomic.Int64
	)
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		storage.Listen(ctx, cfg, storage.ListenHooks{
			Invalidate: func(inv storage.Invalidation) { loader.Apply(inv.Created, inv.Deleted, inv.Rescan) },
			Connected: func() {
				connects.Add(1)
				loader.Connected()
			},
			Disconnected: loader.Disconnected,
			LogError:     func(err error) { t.Log(err) },
		})
	})
	wait.For(t, "the first load", set.Current)
	if set.Absent(prefixOf(before)) {
		t.Fatal("the token created before the start is absent")
	}

	tk, plain := e.mustCreate(t, "u", "after")
	wait.For(t, "the creation", func() bool { return !set.Absent(prefixOf(plain)) })
	if _, err := e.store.DeleteToken(t.Context(), admin, tk.ID); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the deletion", func() bool { return set.Absent(prefixOf(plain)) })
	if !set.Current() || set.Absent(prefixOf(before)) {
		t.Error("the deletion dropped another token")
	}

	// A lost listener connection makes the set stale until it is back and
	// reloaded.
	e.exec(t, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = 'listen-known-test'`)
	wait.For(t, "the reload after the reconnect", func() bool {
		return connects.Load() >= 2 && set.Current() && !set.Absent(prefixOf(before))
	})
}

// BenchmarkLoad inserts 1M tokens into a fresh database and times
// ScanTokenHashes and a knownset load from it, and the same scan of the
// whole hash column for comparison. Skipped with -short (it takes a while
// to set up).
func BenchmarkLoad(b *testing.B) {
	if testing.Short() {
		b.Skip("1M rows")
	}
	const n = 1_000_000
	e := newBenchEnv(b)
	start := time.Now()
	if _, err := e.pool.Exec(b.Context(), `INSERT INTO armgate.users (id) VALUES ('u')`); err != nil {
		b.Fatal(err)
	}
	if _, err := e.pool.Exec(b.Context(), `INSERT INTO armgate.tokens (user_id, name, hash, hint, scopes, expires_at)
		SELECT 'u', 't' || i, sha256(int8send(i)), 'arm_xxxx…', '{api}', now() + interval '1 day'
		FROM generate_series(1, $1::int8) AS i`, n); err != nil {
		b.Fatal(err)
	}
	if _, err := e.pool.Exec(b.Context(), `VACUUM ANALYZE armgate.tokens`); err != nil {
		b.Fatal(err)
	}
	b.Logf("inserted %d tokens in %v", n, time.Since(start).Round(time.Millisecond))
	// Spot check: the prefix of row 42 is the one Go computes.
	var b42 [8]byte
	binary.BigEndian.PutUint64(b42[:], 42)
	want := knownset.Prefix(sha256.Sum256(b42[:]))

	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			count, found := 0, false
			err := e.store.ScanTokenHashes(b.Context(), func(p uint64) { count++; found = found || p == want })
			if err != nil || count != n || !found {
				b.Fatalf("scan: %v, %d rows, row 42 found %v", err, count, found)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/1M")
	})
	b.Run("scan-full-hash", func(b *testing.B) {
		for b.Loop() {
			count := 0
			rows, err := e.pool.Query(b.Context(), `SELECT hash FROM armgate.tokens`, pgx.QueryResultFormats{pgx.BinaryFormatCode})
			if err != nil {
				b.Fatal(err)
			}
			for rows.Next() {
				_ = binary.BigEndian.Uint64(rows.RawValues()[0])
				count++
			}
			if rows.Err() != nil || count != n {
				b.Fatalf("scan: %v, %d rows", rows.Err(), count)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/1M")
	})
	b.Run("load", func(b *testing.B) {
		set := knownset.New()
		for b.Loop() {
			if err := set.Load(b.Context(), e.store.ScanTokenHashes); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/1M")
		if set.Len() != n || set.Absent(want) {
			b.Fatalf("loaded %d", set.Len())
		}
	})
}

// newBenchEnv is newEnv for a benchmark.
func newBenchEnv(b *testing.B) *env {
	b.Helper()
	dsn := testpg.NewDatabase(b)
	pool, err := pgxpool.New(b.Context(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if err := storage.Migrate(b.Context(), pool); err != nil {
		b.Fatal(err)
	}
	return &env{dsn: dsn, pool: pool, store: storage.New(pool)}
}
