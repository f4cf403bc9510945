package tests

// Lifecycle events end to end: real Caddy processes, real PostgreSQL, a
// webhook receiver that verifies every signature with the Standard
// Webhooks library. A gateway killed with SIGKILL in the middle of a
// delivery loses no event: a new process delivers it and every later one,
// in order per user.

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/armgate/armgate/internal/wait"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// hookReceiver accepts deliveries with a valid signature and records them
// by webhook-id. While holding, it keeps the first request it gets open
// (the sender is then mid-delivery) and accepts nothing.
type hookReceiver struct {
	wh  *standardwebhooks.Webhook
	srv *httptest.Server

	mu       sync.Mutex
	holding  bool
	held     chan struct{} // closed when a request is being held
	release  chan struct{}
	order    []string // webhook-ids accepted, in arrival order
	users    map[string]string
	bodies   []string
	count    map[string]int
	badSigs  int
	heldOnce sync.Once
}

func newHookReceiver(t *testing.T, secret string) *hookReceiver {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	r := &hookReceiver{wh: wh, held: make(chan struct{}), release: make(chan struct{}),
		users: map[string]string{}, count: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(func() {
		r.stopHolding()
		r.srv.CloseClientConnections()
		r.srv.Close()
	})
	return r
}

func (r *hookReceiver) stopHolding() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.holding {
		r.holding = false
		close(r.release)
	}
}

func (r *hookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	r.mu.Lock()
	if r.holding {
		r.mu.Unlock()
		r.heldOnce.Do(func() { close(r.held) })
		<-r.release
		http.Error(w, "held", http.StatusServiceUnavailable)
		return
	}
	defer r.mu.Unlock()
	if err := r.wh.Verify(body, req.Header); err != nil {
		r.badSigs++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var p struct {
		Type string `json:"type"`
		Data struct {
			UserID string `json:"user_id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		http.Error(w, "bad payload", http.StatusBadRequest)
		return
	}
	id := req.Header.Get("webhook-id")
	if r.count[id] == 0 {
		r.order = append(r.order, id)
		r.users[id] = p.Data.UserID
	}
	r.count[id]++
	r.bodies = append(r.bodies, string(body))
	w.WriteHeader(http.StatusOK)
}

func TestEventsSurviveSIGKILL(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	rcv := newHookReceiver(t, secret)
	rcv.holding = true
	pc := procConfig{DSN: dsn, ExtraApp: fmt.Sprintf(`events {
			webhook %s/hooks
			secret %s
			retry_min 50ms
			retry_max 200ms
			poll 100ms
			expiring_notice off
		}`, rcv.srv.URL, secret)}

	a := startCaddy(t, "A", pc)
	var plains []string
	users := []string{"ann", "ben", "cid"}
	for _, u := range users {
		for i := range 2 {
			id, plain := a.createToken(u, fmt.Sprint("t", i))
			plains = append(plains, plain)
			if i == 1 {
				a.adminOK(http.StatusOK, http.MethodPost, "/tokens/"+id+"/revoke", `{"reason":"test"}`)
			}
		}
	}
	select {
	case <-rcv.held:
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery reached the receiver")
	}
	// A is in the middle of a delivery: kill it.
	if err := a.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-a.Exited

	// Changes while no gateway runs are queued too.
	pool, store := openStore(t, dsn)
	store.EnableEvents()
	tk, plain, err := store.CreateToken(t.Context(), storage.ActorAdminKey, storage.NewToken{
		UserID: "ann", Name: "offline", Scopes: []string{token.ScopeAPI}, ExpiresAt: time.Now().Add(time.Hour), MaxPerUser: 10})
	if err != nil {
		t.Fatal(err)
	}
	plains = append(plains, plain)
	if _, _, err := store.SetUserActive(t.Context(), storage.ActorAdminKey, "cid", false); err != nil {
		t.Fatal(err)
	}
	var total int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM armgate.outbox`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	if total != 3*3+2 {
		t.Fatalf("%d events queued, want %d", total, 3*3+2)
	}
	rcv.stopHolding()

	b := startCaddy(t, "B", pc)
	if !wait.Until(60*time.Second, func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return len(rcv.order) == total
	}) {
		rcv.mu.Lock()
		t.Fatalf("%d of %d events delivered", len(rcv.order), total)
	}
	if !b.waitMetric("caddy_armgate_events_queue_length", 30*time.Second, func(v float64) bool { return v == 0 }) {
		t.Fatal("the queue length never came back to 0")
	}

	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for id, n := range rcv.count {
		if n != 1 {
			t.Errorf("event %s accepted %d times", id, n)
		}
	}
	if rcv.badSigs != 0 {
		t.Errorf("%d deliveries with a bad signature", rcv.badSigs)
	}
	for _, u := range users {
		var got []string
		for _, id := range rcv.order {
			if rcv.users[id] == u {
				got = append(got, id)
			}
		}
		rows, _ := pool.Query(t.Context(), `SELECT event_id FROM armgate.outbox WHERE user_id = $1 ORDER BY id`, u)
		var want []string
		for rows.Next() {
			var id string
			_ = rows.Scan(&id)
			want = append(want, id)
		}
		if rows.Err() != nil || !slices.Equal(got, want) {
			t.Errorf("user %s: events arrived as %v, queued as %v (%v)", u, got, want, rows.Err())
		}
	}
	for _, body := range rcv.bodies {
		for _, p := range plains {
			h := token.Sum(p)
			if strings.Contains(body, p) || strings.Contains(body, hex.EncodeToString(h[:])) {
				t.Fatalf("a delivered event holds a token or its hash: %s", body)
			}
		}
	}
	if !strings.Contains(strings.Join(rcv.bodies, "\n"), tk.ID) {
		t.Error("the event of the change made while no gateway ran was not delivered")
	}
	if m := b.metrics(); m.Value("caddy_armgate_events_sent_total") < 1 {
		t.Errorf("events_sent_total on B = %v", m.Value("caddy_armgate_events_sent_total"))
	}
	if r := b.admin(http.MethodGet, "/events?status=pending", ""); r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"events":[]`) {
		t.Errorf("GET /events?status=pending: %d %s", r.Status, r.Body)
	}
}
