package tests

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/armgate/armgate/internal/testpg"
)

// TestPgBouncer runs two gateway instances whose database goes through a
// real PgBouncer in transaction pooling mode (pgx in
// default_query_exec_mode=cache_describe), with listen_database straight to
// PostgreSQL, since LISTEN needs a session. The request path, admin calls
// and a revocation made through A and refused by B all work, and the
// queries demonstrably pass through PgBouncer.
func TestPgBouncer(t *testing.T) {
	t.Parallel()
	srv := testpg.StartPrivate(t)
	direct := srv.CreateDatabase(t)
	db, err := testpg.DatabaseName(direct)
	if err != nil {
		t.Fatal(err)
	}
	bouncer := srv.StartPgBouncer(t)
	// Migrations run straight against PostgreSQL, as the owner would with
	// `caddy armgate migrate`; the gateways then find the schema current.
	migrateOnce(t, direct)

	pc := procConfig{
		DSN:      bouncer.DSN(db),
		ExtraApp: longTTL + "\n\t\tlisten_database \"" + direct + "\"",
	}
	a := startCaddy(t, "A", pc)
	b := startCaddy(t, "B", pc)
	before := bouncer.Queries(t, db)

	// Admin calls through PgBouncer: user upsert, token create (a
	// transaction with row locks, an audit insert).
	id, tok := a.createToken("pat", "laptop")
	_, other := a.createToken("pat", "ci")
	// The request path: uncached lookups on both instances.
	for _, p := range []*caddyProc{a, b} {
		for _, tk := range []string{tok, other} {
			if r := p.get("/", tk); r.Status != http.StatusOK {
				t.Fatalf("caddy %s: live token through PgBouncer: %d %s", p.Name, r.Status, r.Body)
			}
		}
		if r := p.get("/", wellFormedUnknown(t)); r.Status != http.StatusUnauthorized {
			t.Errorf("caddy %s: unknown token: %d %s", p.Name, r.Status, r.Body)
		}
	}
	b.ensureCached(tok, other)

	// A revocation through A (NOTIFY sent in A's transaction through
	// PgBouncer) reaches B's LISTEN connection, which goes straight to
	// PostgreSQL; B's cache ttl is 10 minutes, so only the notification can
	// make it refuse.
	a.adminOK(http.StatusOK, http.MethodPost, "/tokens/"+id+"/revoke", `{"reason":"pgbouncer test"}`)
	if r := a.get("/", tok); r.Status != http.StatusUnauthorized {
		t.Errorf("A after its own revocation: %d %s", r.Status, r.Body)
	}
	took, got, ok := b.waitVerdict(tok, answerRevoked)
	if !ok {
		t.Fatalf("B still answers %v for a token revoked through A", got)
	}
	t.Logf("revocation through A (via PgBouncer) refused by B %v later", took.Round(time.Millisecond))
	if v := b.verdictOf(other); v != answerLive {
		t.Errorf("B, the other token of the user: %v", v)
	}
	a.adminOK(http.StatusOK, http.MethodGet, "/users/pat/tokens", "")
	a.adminOK(http.StatusOK, http.MethodGet, "/audit?user_id=pat", "")

	if after := bouncer.Queries(t, db); after <= before {
		t.Errorf("PgBouncer passed no queries for the gateways (%d → %d)", before, after)
	} else {
		t.Logf("PgBouncer passed %d queries for the gateways", after-before)
	}
	// The LISTEN connections are sessions of their own on PostgreSQL.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, direct)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var listeners int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'armgate-listen'`).Scan(&listeners); err != nil {
		t.Fatal(err)
	}
	if listeners != 2 {
		t.Errorf("direct LISTEN connections = %d, want 2", listeners)
	}
}
