package tests

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// gatewayGrants returns the SQL block of docs/production.md that grants the
// gateway role its privileges, so the test runs exactly what the guide says.
func gatewayGrants(t testing.TB) string {
	t.Helper()
	doc, err := os.ReadFile("../docs/production.md")
	if err != nil {
		t.Fatal(err)
	}
	const start = "```sql\n-- armgate gateway privileges\n"
	_, rest, ok := strings.Cut(string(doc), start)
	if !ok {
		t.Fatalf("docs/production.md has no block starting %q", start)
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("docs/production.md: the grants block is not closed")
	}
	return block
}

// TestPrivilegesOfGatewayRole sets up the roles as docs/production.md says
// (an owner that migrates, a gateway role with only the documented grants)
// and runs, as the gateway role: the start-up schema check, every store
// operation, the invalidation listener and a real gateway. The gateway role
// cannot rewrite the audit log, and the start-up check also accepts a schema
// newer than the binary (a rolling upgrade).
func TestPrivilegesOfGatewayRole(t *testing.T) {
	t.Parallel()
	srv := testpg.StartPrivate(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	super := dialPG(t, ctx, srv.DSN("postgres"))
	for _, q := range []string{
		"CREATE ROLE armgate_owner LOGIN",
		"CREATE ROLE armgate_gateway LOGIN",
		"DROP DATABASE IF EXISTS armgate", // the empty one the throwaway server starts with
		"CREATE DATABASE armgate OWNER armgate_owner",
	} {
		if _, err := super.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	ownerDSN := strings.Replace(srv.DSN("armgate"), "postgres@", "armgate_owner@", 1)
	gatewayDSN := strings.Replace(srv.DSN("armgate"), "postgres@", "armgate_gateway@", 1)

	// The gateway role cannot apply the migrations: that is the owner's job.
	gwPool := openPool(t, ctx, gatewayDSN)
	if err := storage.Migrate(ctx, gwPool); err == nil {
		t.Fatal("the gateway role applied the migrations on an empty database")
	}
	migrateOnce(t, ownerDSN)
	owner := dialPG(t, ctx, ownerDSN)
	if _, err := owner.Exec(ctx, gatewayGrants(t)); err != nil {
		t.Fatalf("the documented grants: %v", err)
	}

	// Start-up: the schema is current, nothing to do.
	if err := storage.Migrate(ctx, gwPool); err != nil {
		t.Fatalf("start-up schema check as the gateway role: %v", err)
	}

	// The listener, as the gateway role.
	lctx, lcancel := context.WithCancel(ctx)
	listenDone := make(chan struct{})
	defer func() { lcancel(); <-listenDone }()
	connected := make(chan struct{}, 1)
	invalidations := make(chan storage.Invalidation, 16)
	go func() {
		defer close(listenDone)
		_ = storage.Listen(lctx, gwPool.Config().ConnConfig, storage.ListenHooks{
			Invalidate:   func(inv storage.Invalidation) { invalidations <- inv },
			Connected:    func() { connected <- struct{}{} },
			Disconnected: func() {},
			LogError: func(err error) {
				if lctx.Err() == nil {
					t.Logf("listener: %v", err)
				}
			},
		})
	}()
	select {
	case <-connected:
	case <-ctx.Done():
		t.Fatal("the listener did not connect as the gateway role")
	}

	// Every store operation, as the gateway role.
	st := storage.New(gwPool)
	email := "ann@example.com"
	step := func(name string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s as the gateway role: %v", name, err)
		}
	}
	_, _, err := st.UpsertUser(ctx, "test", "ann", storage.UserPatch{})
	step("create user", err)
	_, _, err = st.UpsertUser(ctx, "test", "ann", storage.UserPatch{Email: &email})
	step("update user", err)
	_, err = st.GetUser(ctx, "ann")
	step("get user", err)
	_, _, err = st.ListUsers(ctx, "", "", 10)
	step("list users", err)
	tok, plain, err := st.CreateToken(ctx, "test", storage.NewToken{UserID: "bob", Name: "laptop",
		Scopes: []string{token.ScopeAPI}, ExpiresAt: time.Now().Add(time.Hour), MaxPerUser: 10, CreateUser: true})
	step("create token (and user)", err)
	_, err = st.LookupCredential(ctx, token.Sum(plain))
	step("lookup", err)
	_, err = st.GetToken(ctx, tok.ID)
	step("get token", err)
	_, err = st.ListTokens(ctx, "bob")
	step("list tokens", err)
	step("record last use", st.RecordLastUse(ctx, map[string]time.Time{tok.ID: time.Now()}, nil))
	_, _, err = st.RevokeToken(ctx, "test", tok.ID, "lost")
	step("revoke", err)
	// The create's notification (Created only) comes first; wait for the revocation's.
	for revoked := false; !revoked; {
		select {
		case inv := <-invalidations:
			revoked = len(inv.Hashes) == 1
		case <-ctx.Done():
			t.Fatal("no invalidation for the revocation reached the gateway role's listener")
		}
	}
	_, _, err = st.ReapproveToken(ctx, "test", tok.ID)
	step("re-approve", err)
	_, _, err = st.SetUserActive(ctx, "test", "bob", false)
	step("deactivate", err)
	_, _, err = st.SetUserActive(ctx, "test", "bob", true)
	step("reactivate", err)
	_, _, err = st.Logout(ctx, tok.ID)
	step("logout", err)
	_, err = st.DeleteToken(ctx, "test", tok.ID)
	step("delete", err)
	events, err := st.Audit(ctx, "", 100)
	step("audit", err)
	if len(events) == 0 {
		t.Error("no audit events")
	}

	// The audit log is append-only for the gateway role.
	for _, q := range []string{"DELETE FROM armgate.audit", "UPDATE armgate.audit SET actor = 'x'",
		"CREATE TABLE armgate.x (a int)"} {
		_, err := gwPool.Exec(ctx, q)
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); !ok || pgErr.Code != "42501" {
			t.Errorf("%s as the gateway role: %v, want permission denied", q, err)
		}
	}

	// A real gateway as the gateway role: admin calls and the request path.
	p := startCaddy(t, "restricted", procConfig{DSN: gatewayDSN})
	id, ptok := p.createToken("carol", "ci")
	if r := p.get("/", ptok); r.Status != http.StatusOK {
		t.Errorf("gateway as the restricted role: %d %s", r.Status, r.Body)
	}
	p.adminOK(http.StatusOK, http.MethodPost, "/tokens/"+id+"/revoke", `{}`)
	if r := p.get("/", ptok); r.Status != http.StatusUnauthorized {
		t.Errorf("revoked token: %d %s", r.Status, r.Body)
	}
	p.adminOK(http.StatusOK, http.MethodGet, "/audit?user_id=carol", "")

	// A newer binary migrated further (rolling upgrade): this one still
	// starts, as either role.
	if _, err := owner.Exec(ctx, "UPDATE armgate.schema_version SET version = version + 1"); err != nil {
		t.Fatal(err)
	}
	step("start-up check on a newer schema", storage.Migrate(ctx, gwPool))
	ownerPool := openPool(t, ctx, ownerDSN)
	if err := storage.Migrate(ctx, ownerPool); err != nil {
		t.Errorf("owner, start-up check on a newer schema: %v", err)
	}
}

func dialPG(t testing.TB, ctx context.Context, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func openPool(t testing.TB, ctx context.Context, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(fmt.Errorf("pool: %w", err))
	}
	t.Cleanup(pool.Close)
	return pool
}
