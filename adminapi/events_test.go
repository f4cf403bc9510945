package adminapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestEventsEndpoints: GET /events lists failed events (by default), POST
// /events/{id}/retry puts one back in the queue; both need an admin
// credential, and every answer matches the OpenAPI description.
func TestEventsEndpoints(t *testing.T) {
	t.Parallel()
	env := newStoreEnv(t)
	env.store.EnableEvents()
	h := New(Options{Store: env.store, AdminKeys: []string{testAdminKey}, Limits: testLimits})
	v := newOpenAPIValidator(t, adminOpenAPI())
	body := ""
	call := func(method, target, cred string, want int) *httptest.ResponseRecorder {
		t.Helper()
		rec := do(t, h, method, target, cred, body, nil)
		if rec.Code != want {
			t.Fatalf("%s %s: %d %s, want %d", method, target, rec.Code, rec.Body, want)
		}
		if ok, errs := v.ValidateHTTPResponse(httptest.NewRequest(method, target, nil), rec.Result()); !ok {
			t.Fatalf("%s %s: answer does not validate: %s", method, target, validationText(errs))
		}
		return rec
	}
	call("PUT", "/users/alice", testAdminKey, http.StatusCreated)
	body = `{"name":"seed"}`
	call("POST", "/users/alice/tokens", testAdminKey, http.StatusCreated)
	body = ""
	var id string
	if err := env.pool.QueryRow(t.Context(), `UPDATE armgate.outbox SET status = 'failed', attempts = 9,
		last_error = 'receiver answered 503' RETURNING event_id`).Scan(&id); err != nil {
		t.Fatal(err)
	}

	call("GET", "/events", "", http.StatusUnauthorized)
	call("POST", "/events/"+id+"/retry", "", http.StatusUnauthorized)
	if rec := call("GET", "/events", testAdminKey, http.StatusOK); !strings.Contains(rec.Body.String(), id) ||
		!strings.Contains(rec.Body.String(), `"type":"token.created"`) {
		t.Fatalf("failed events: %s", rec.Body)
	}
	if rec := call("GET", "/events?status=pending", testAdminKey, http.StatusOK); strings.Contains(rec.Body.String(), id) {
		t.Fatalf("pending events list the failed one: %s", rec.Body)
	}
	call("GET", "/events?status=lost", testAdminKey, http.StatusBadRequest)
	call("GET", "/events?cursor=x", testAdminKey, http.StatusBadRequest)
	call("POST", "/events/42/retry", testAdminKey, http.StatusBadRequest)
	call("POST", "/events/evt_00000000000000000000000000000000/retry", testAdminKey, http.StatusNotFound)

	if rec := call("POST", "/events/"+id+"/retry", testAdminKey, http.StatusOK); !strings.Contains(rec.Body.String(), `"status":"pending"`) ||
		!strings.Contains(rec.Body.String(), `"attempts":0`) {
		t.Fatalf("retried event: %s", rec.Body)
	}
	if rec := call("GET", "/events", testAdminKey, http.StatusOK); strings.Contains(rec.Body.String(), id) {
		t.Fatalf("the retried event is still failed: %s", rec.Body)
	}
	call("POST", "/events/"+id+"/retry", testAdminKey, http.StatusOK) // pending: no change
	if _, err := env.pool.Exec(t.Context(), `UPDATE armgate.outbox SET status = 'sent' WHERE event_id = $1`, id); err != nil {
		t.Fatal(err)
	}
	call("POST", "/events/"+id+"/retry", testAdminKey, http.StatusConflict)
	if rec := call("GET", "/audit?user_id=alice", testAdminKey, http.StatusOK); !strings.Contains(rec.Body.String(), `"action":"event.retry"`) {
		t.Fatalf("the retry is not audited: %s", rec.Body)
	}
}
