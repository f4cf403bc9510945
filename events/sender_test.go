package events_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/armgate/armgate/events"
	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

func TestMain(m *testing.M) { testpg.Main(m) }

// secret returns a fresh signing secret in the whsec_ form.
func secret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// received is one delivery the receiver accepted.
type received struct {
	ID   string
	Body []byte
	Type string
	User string
}

// receiver is a webhook endpoint that verifies every signature with the
// Standard Webhooks library and records what it accepted, by webhook-id.
type receiver struct {
	t    *testing.T
	wh   *standardwebhooks.Webhook
	srv  *httptest.Server
	down atomic.Bool // answer 503 and record nothing

	mu       sync.Mutex
	got      []received
	count    map[string]int
	badSigs  int
	attempts int
}

func newReceiver(t *testing.T, secret string) *receiver {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, wh: wh, count: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts++
	if r.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if err != nil || req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if err := r.wh.Verify(body, req.Header); err != nil {
		r.badSigs++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var p struct {
		Type      string         `json:"type"`
		Timestamp string         `json:"timestamp"`
		Data      map[string]any `json:"data"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Type == "" || p.Timestamp == "" {
		http.Error(w, "bad payload", http.StatusBadRequest)
		return
	}
	id := req.Header.Get("webhook-id")
	user, _ := p.Data["user_id"].(string)
	r.count[id]++
	r.got = append(r.got, received{ID: id, Body: body, Type: p.Type, User: user})
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) snapshot() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type env struct {
	dsn   string
	pool  *pgxpool.Pool
	store *storage.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dsn := testpg.NewDatabase(t)
	e := &env{dsn: dsn}
	e.pool, e.store = openStore(t, dsn)
	if err := storage.Migrate(t.Context(), e.pool); err != nil {
		t.Fatal(err)
	}
	return e
}

// openStore opens another store (as another instance would) with events
// enabled.
func openStore(t *testing.T, dsn string) (*pgxpool.Pool, *storage.Store) {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := storage.New(pool)
	s.EnableEvents()
	return pool, s
}

// fast are settings for tests: short polls and backoff, no real minute.
func fast(url, secret string) events.Config {
	return events.Config{
		URL: url, Secret: secret,
		ExpiringNotice: -1,
		Poll:           20 * time.Millisecond,
		ScanEvery:      20 * time.Millisecond,
		MinBackoff:     10 * time.Millisecond,
		MaxBackoff:     80 * time.Millisecond,
		Timeout:        5 * time.Second,
	}
}

// runSender runs a sender until the test ends.
func runSender(t *testing.T, cfg events.Config, store *storage.Store) *events.Sender {
	t.Helper()
	s, err := events.New(cfg, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// outboxOrder returns the event ids of a user in the order they were
// queued.
func (e *env) outboxOrder(t *testing.T, user string) []string {
	t.Helper()
	rows, err := e.pool.Query(t.Context(), `SELECT event_id FROM armgate.outbox WHERE user_id = $1 ORDER BY id`, user)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// outboxIDs returns every event id in queue order.
func (e *env) outboxIDs(t *testing.T) []string {
	t.Helper()
	rows, err := e.pool.Query(t.Context(), `SELECT event_id FROM armgate.outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func (e *env) outboxCount(t *testing.T) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM armgate.outbox`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *env) user(t *testing.T, id string) {
	t.Helper()
	email := id + "@example.com"
	if _, _, err := e.store.UpsertUser(t.Context(), storage.ActorAdminKey, id, storage.UserPatch{Email: &email}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) create(t *testing.T, user, name string, life time.Duration) (storage.Token, string) {
	t.Helper()
	tk, plain, err := e.store.CreateToken(t.Context(), storage.ActorAdminKey, storage.NewToken{
		UserID: user, Name: name, Scopes: []string{token.ScopeAPI}, ExpiresAt: time.Now().Add(life), MaxPerUser: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tk, plain
}

// checkSecrets fails if a body holds a plaintext token or the hex of its
// hash.
func checkSecrets(t *testing.T, got []received, plains []string) {
	t.Helper()
	for _, r := range got {
		for _, p := range plains {
			h := token.Sum(p)
			for _, s := range []string{p, hex.EncodeToString(h[:]), base64.StdEncoding.EncodeToString(h[:])} {
				if strings.Contains(string(r.Body), s) {
					t.Fatalf("event %s (%s) holds a token or its hash: %s", r.ID, r.Type, r.Body)
				}
			}
		}
	}
}

// checkOrder fails unless the receiver got each user's events in the
// order they were queued (first arrivals).
func checkOrder(t *testing.T, e *env, got []received, users []string) {
	t.Helper()
	for _, u := range users {
		var seen []string
		for _, r := range got {
			if r.User == u && !slices.Contains(seen, r.ID) {
				seen = append(seen, r.ID)
			}
		}
		if want := e.outboxOrder(t, u); !slices.Equal(seen, want) {
			t.Fatalf("user %s: events arrived in order %v, queued as %v", u, seen, want)
		}
	}
}

func TestEventsLifecycle(t *testing.T) {
	e := newEnv(t)
	sec := secret(t)
	rcv := newReceiver(t, sec)
	ctx := t.Context()

	e.user(t, "alice")
	tk, plain := e.create(t, "alice", "ci", 24*time.Hour)
	tk2, plain2 := e.create(t, "alice", "laptop", 24*time.Hour)
	if _, _, err := e.store.RevokeToken(ctx, storage.ActorAdminKey, tk.ID, "no longer needed"); err != nil {
		t.Fatal(err)
	}
	// Revoking again changes nothing and queues nothing.
	if _, _, err := e.store.RevokeToken(ctx, storage.ActorAdminKey, tk.ID, "again"); err != nil {
		t.Fatal(err)
	}
	newTok, plain3, _, err := e.store.RotateToken(ctx, storage.ActorUser("alice"), tk2.ID, time.Hour, time.Now().Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.Logout(ctx, newTok.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.SetUserActive(ctx, storage.ActorAdminKey, "alice", false); err != nil {
		t.Fatal(err)
	}
	// Not events: delete, reapprove, reactivate, user update.
	if _, err := e.store.DeleteToken(ctx, storage.ActorAdminKey, tk.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.SetUserActive(ctx, storage.ActorAdminKey, "alice", true); err != nil {
		t.Fatal(err)
	}

	runSender(t, fast(rcv.srv.URL, sec), e.store)
	want := []string{"token.created", "token.created", "token.revoked", "token.rotated", "token.revoked", "user.deactivated"}
	waitFor(t, "6 events", func() bool { return len(rcv.snapshot()) >= len(want) })
	got := rcv.snapshot()
	var types []string
	for _, r := range got {
		types = append(types, r.Type)
	}
	if !slices.Equal(types, want) {
		t.Fatalf("event types %v, want %v", types, want)
	}
	checkSecrets(t, got, []string{plain, plain2, plain3})
	checkOrder(t, e, got, []string{"alice"})

	var p struct {
		Data map[string]any `json:"data"`
	}
	check := func(i int, key string, want any) {
		t.Helper()
		p.Data = nil
		if err := json.Unmarshal(got[i].Body, &p); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(p.Data[key]) != fmt.Sprint(want) {
			t.Errorf("%s: data.%s = %v, want %v (%s)", got[i].Type, key, p.Data[key], want, got[i].Body)
		}
	}
	check(0, "token_id", tk.ID)
	check(0, "token_name", "ci")
	check(0, "user_id", "alice")
	check(0, "user_email", "alice@example.com")
	check(0, "expires_at", tk.ExpiresAt.UTC().Format("2006-01-02T15:04:05.000000Z"))
	check(2, "reason", "no longer needed")
	check(2, "revoked_by", storage.ActorAdminKey)
	check(3, "new_token_id", newTok.ID)
	check(3, "actor", storage.ActorUser("alice"))
	check(4, "reason", "logout")
	check(4, "revoked_by", storage.ActorToken(newTok.ID))
	check(5, "actor", storage.ActorAdminKey)

	// Nothing more comes, and each event came once.
	waitFor(t, "an empty queue", func() bool {
		st, err := e.store.OutboxStats(ctx)
		return err == nil && st.Pending == 0
	})
	if n := len(rcv.snapshot()); n != len(want) {
		t.Fatalf("%d deliveries, want %d", n, len(want))
	}
	for id, n := range rcv.count {
		if n != 1 {
			t.Errorf("event %s delivered %d times", id, n)
		}
	}
	if rcv.badSigs != 0 {
		t.Fatalf("%d bad signatures", rcv.badSigs)
	}
}

func TestEventsDisabledQueueNothing(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	pool, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := storage.Migrate(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	e := &env{dsn: dsn, pool: pool, store: storage.New(pool)}
	e.user(t, "bob")
	tk, _ := e.create(t, "bob", "x", time.Hour)
	if _, _, err := e.store.RevokeToken(t.Context(), storage.ActorAdminKey, tk.ID, ""); err != nil {
		t.Fatal(err)
	}
	if n := e.outboxCount(t); n != 0 {
		t.Fatalf("events disabled, but %d events queued", n)
	}
}

// A change that rolls back queues nothing; revoke-all queues one event per
// token, in one transaction.
func TestEventsTransactional(t *testing.T) {
	e := newEnv(t)
	e.user(t, "carol")
	for i := range 3 {
		e.create(t, "carol", fmt.Sprint("t", i), time.Hour)
	}
	if _, _, err := e.store.CreateToken(t.Context(), storage.ActorAdminKey, storage.NewToken{
		UserID: "carol", Name: "t0", Scopes: []string{token.ScopeAPI}, ExpiresAt: time.Now().Add(time.Hour), MaxPerUser: 100,
	}); !errors.Is(err, storage.ErrNameTaken) {
		t.Fatalf("duplicate name: %v", err)
	}
	if n := e.outboxCount(t); n != 3 {
		t.Fatalf("%d events after 3 creates and a failed one, want 3", n)
	}
	n, _, err := e.store.RevokeAllTokens(t.Context(), storage.ActorAdminKey, "carol", "offboarding")
	if err != nil || n != 3 {
		t.Fatalf("RevokeAllTokens = %d, %v", n, err)
	}
	var revoked int
	if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM armgate.outbox WHERE type = 'token.revoked'
		AND payload->'data'->>'reason' = 'offboarding'`).Scan(&revoked); err != nil {
		t.Fatal(err)
	}
	if revoked != 3 {
		t.Fatalf("%d token.revoked events after revoke-all of 3, want 3", revoked)
	}
}

// The receiver is down for a while: nothing is lost, nothing is sent out of
// order per user, and then everything arrives.
func TestEventsReceiverDown(t *testing.T) {
	e := newEnv(t)
	sec := secret(t)
	rcv := newReceiver(t, sec)
	rcv.down.Store(true)
	users := []string{"u1", "u2", "u3"}
	var plains []string
	for _, u := range users {
		e.user(t, u)
	}
	s := runSender(t, fast(rcv.srv.URL, sec), e.store)
	for i := range 5 {
		for _, u := range users {
			tk, plain := e.create(t, u, fmt.Sprint("t", i), time.Hour)
			plains = append(plains, plain)
			if i%2 == 1 {
				if _, _, err := e.store.RevokeToken(t.Context(), storage.ActorAdminKey, tk.ID, "test"); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	total := e.outboxCount(t)
	// Several failed attempts each, with backoff.
	waitFor(t, "failed attempts", func() bool { return s.Stats.AttemptErrors.Load() >= 10 })
	if got := rcv.snapshot(); len(got) != 0 {
		t.Fatalf("%d events accepted while down", len(got))
	}
	rcv.down.Store(false)
	waitFor(t, "every event", func() bool {
		seen := map[string]bool{}
		for _, r := range rcv.snapshot() {
			seen[r.ID] = true
		}
		return len(seen) == total
	})
	got := rcv.snapshot()
	checkOrder(t, e, got, users)
	checkSecrets(t, got, plains)
	if s.Stats.Failed.Load() != 0 {
		t.Fatalf("%d events failed for good", s.Stats.Failed.Load())
	}
}

// Two instances run senders on one outbox: every event arrives, once, in
// order per user.
func TestEventsTwoSenders(t *testing.T) {
	e := newEnv(t)
	sec := secret(t)
	rcv := newReceiver(t, sec)
	_, store2 := openStore(t, e.dsn)
	users := []string{"a", "b", "c", "d"}
	for _, u := range users {
		e.user(t, u)
	}
	s1 := runSender(t, fast(rcv.srv.URL, sec), e.store)
	s2 := runSender(t, fast(rcv.srv.URL, sec), store2)
	// Changes from both instances, while both send.
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := e.store
			if i%2 == 1 {
				st = store2
			}
			for j := range 10 {
				tk, _, err := st.CreateToken(context.Background(), storage.ActorAdminKey, storage.NewToken{
					UserID: u, Name: fmt.Sprint("t", j), Scopes: []string{token.ScopeAPI},
					ExpiresAt: time.Now().Add(time.Hour), MaxPerUser: 100})
				if err != nil {
					t.Error(err)
					return
				}
				if _, _, err := st.RevokeToken(context.Background(), storage.ActorAdminKey, tk.ID, ""); err != nil {
					t.Error(err)
					return
				}
				s1.Wake()
				s2.Wake()
			}
		}()
	}
	wg.Wait()
	total := e.outboxCount(t)
	if total != len(users)*20 {
		t.Fatalf("%d events queued, want %d", total, len(users)*20)
	}
	waitFor(t, "every event", func() bool { return len(rcv.snapshot()) >= total })
	waitFor(t, "an empty queue", func() bool {
		st, err := e.store.OutboxStats(t.Context())
		return err == nil && st.Pending == 0
	})
	got := rcv.snapshot()
	if len(got) != total {
		t.Fatalf("%d deliveries of %d events: some were sent twice", len(got), total)
	}
	checkOrder(t, e, got, users)
	// The sent events, listed a page at a time, come oldest first.
	var listed []string
	for after := ""; ; {
		page, more, err := e.store.ListEvents(t.Context(), storage.EventSent, after, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range page {
			listed = append(listed, ev.ID)
		}
		if !more {
			break
		}
		after = page[len(page)-1].ID
	}
	if all := e.outboxIDs(t); !slices.Equal(listed, all) {
		t.Fatalf("ListEvents gave %v, want every event in queue order %v", listed, all)
	}
	if s1.Stats.Sent.Load() == 0 && s2.Stats.Sent.Load() == 0 {
		t.Fatal("no sender counted a delivery")
	}
}

// An event past its retries is failed, listed, and retried by hand.
func TestEventsFailedRetry(t *testing.T) {
	e := newEnv(t)
	sec := secret(t)
	rcv := newReceiver(t, sec)
	rcv.down.Store(true)
	e.user(t, "dave")
	e.create(t, "dave", "x", time.Hour)
	cfg := fast(rcv.srv.URL, sec)
	cfg.MaxAge = time.Millisecond
	s := runSender(t, cfg, e.store)
	var failed []storage.Event
	waitFor(t, "a failed event", func() bool {
		var err error
		failed, _, err = e.store.ListEvents(t.Context(), storage.EventFailed, "", 10)
		return err == nil && len(failed) == 1
	})
	ev := failed[0]
	if ev.Type != "token.created" || ev.UserID != "dave" || ev.LastError == nil || !strings.Contains(*ev.LastError, "503") {
		t.Fatalf("failed event %+v", ev)
	}
	if strings.Contains(*ev.LastError, rcv.srv.URL) {
		t.Fatalf("last_error holds the webhook URL: %s", *ev.LastError)
	}
	// The counter moves once the sender is back from the outbox.
	waitFor(t, "the failed counter", func() bool { return s.Stats.Failed.Load() == 1 })
	if _, err := e.store.RetryEvent(t.Context(), "cli", "evt_00000000000000000000000000000000"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("retry of an unknown event: %v", err)
	}
	rcv.down.Store(false)
	re, err := e.store.RetryEvent(t.Context(), "cli", ev.ID)
	if err != nil || re.Status != storage.EventPending || re.Attempts != 0 {
		t.Fatalf("RetryEvent = %+v, %v", re, err)
	}
	s.Wake()
	waitFor(t, "the retried event", func() bool { return len(rcv.snapshot()) == 1 })
	if got := rcv.snapshot()[0].ID; got != ev.ID {
		t.Fatalf("delivered %s, want %s", got, ev.ID)
	}
	waitFor(t, "the event marked sent", func() bool {
		sent, _, err := e.store.ListEvents(t.Context(), storage.EventSent, "", 10)
		return err == nil && len(sent) == 1
	})
	if _, err := e.store.RetryEvent(t.Context(), "cli", ev.ID); !errors.Is(err, storage.ErrEventNotFailed) {
		t.Fatalf("retry of a sent event: %v", err)
	}
	audit, err := e.store.Audit(t.Context(), "dave", 10)
	if err != nil || audit[0].Action != storage.ActionEventRetry || audit[0].Actor != "cli" {
		t.Fatalf("audit after retry: %+v, %v", audit, err)
	}
}

// token.expiring is sent once per token, however many scans and senders
// run: not for tokens outside the notice, revoked, or rotated away.
func TestEventsExpiringOnce(t *testing.T) {
	e := newEnv(t)
	sec := secret(t)
	rcv := newReceiver(t, sec)
	e.user(t, "erin")
	soon, plain := e.create(t, "erin", "soon", 2*time.Hour)
	e.create(t, "erin", "later", 30*24*time.Hour)
	revoked, _ := e.create(t, "erin", "revoked", 2*time.Hour)
	if _, _, err := e.store.RevokeToken(t.Context(), storage.ActorAdminKey, revoked.ID, ""); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if _, err := e.store.QueueExpiring(context.Background(), 7*24*time.Hour); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	cfg := fast(rcv.srv.URL, sec)
	cfg.ExpiringNotice = 7 * 24 * time.Hour
	_, store2 := openStore(t, e.dsn)
	runSender(t, cfg, e.store)
	runSender(t, cfg, store2)
	waitFor(t, "the expiring event", func() bool {
		for _, r := range rcv.snapshot() {
			if r.Type == "token.expiring" {
				return true
			}
		}
		return false
	})
	// Let both senders scan again several times.
	scans := func() int {
		var n int
		_ = e.pool.QueryRow(t.Context(), `SELECT count(*) FROM armgate.outbox_expiring`).Scan(&n)
		return n
	}
	waitFor(t, "an empty queue", func() bool {
		st, err := e.store.OutboxStats(t.Context())
		return err == nil && st.Pending == 0
	})
	for range 5 {
		if _, err := e.store.QueueExpiring(t.Context(), 7*24*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	var expiring []received
	for _, r := range rcv.snapshot() {
		if r.Type == "token.expiring" {
			expiring = append(expiring, r)
		}
	}
	if len(expiring) != 1 || scans() != 1 {
		t.Fatalf("%d token.expiring events, %d tokens recorded; want 1", len(expiring), scans())
	}
	if !strings.Contains(string(expiring[0].Body), soon.ID) {
		t.Fatalf("token.expiring for the wrong token: %s", expiring[0].Body)
	}
	checkSecrets(t, rcv.snapshot(), []string{plain})
}

func TestConfigValidate(t *testing.T) {
	good := secret(t)
	for _, c := range []struct {
		url, secret string
		ok          bool
	}{
		{"https://hooks.example.com/x", good, true},
		{"ftp://hooks.example.com/x", good, false},
		{"https://hooks.example.com/x", "", false},
		{"https://hooks.example.com/x", "whsec_!!!", false},
		{"https://hooks.example.com/x", "whsec_" + base64.StdEncoding.EncodeToString([]byte("short")), false},
		{"https://hooks.example.com/x", strings.TrimPrefix(good, "whsec_"), false},
	} {
		err := events.Config{URL: c.url, Secret: c.secret}.Validate()
		if (err == nil) != c.ok {
			t.Errorf("Validate(%q) = %v, want ok %v", c.url, err, c.ok)
		}
		if err != nil && c.secret != "" && strings.Contains(err.Error(), c.secret) {
			t.Errorf("the error holds the secret: %v", err)
		}
	}
}
