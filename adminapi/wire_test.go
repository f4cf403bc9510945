package adminapi

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// The rows the wire-shape test marshals: every field set, and every
// optional field empty (nil pointers, nil slices and maps), so that both
// null and [] stay what they were.

func ptr[T any](v T) *T { return &v }

var (
	wireAt    = time.Date(2026, 12, 6, 12, 0, 0, 123456789, time.UTC)
	wireLater = time.Date(2026, 12, 7, 8, 30, 0, 0, time.UTC)
	wireLimit = quota.Limit{Requests: 100, Window: time.Hour}

	fullToken = storage.Token{
		ID: "84b27aeb-aff9-4fcd-bea3-0f8bd72fc58d", UserID: "alice", Name: "ci", Hint: "arm_oVJ4…",
		Scopes: []string{"api", "admin"}, Status: token.Revoked, CreatedAt: wireAt, ExpiresAt: wireLater,
		LastUsedAt: ptr(wireAt), RevokedAt: ptr(wireLater), RevokedReason: ptr("leaked"),
		RevokedBy: ptr("leak:github"), RotatedTo: ptr("e726a983-b717-4deb-80b1-8942cceabb23"),
		RateLimit: &wireLimit, AllowedIPs: []string{"192.0.2.0/24", "2001:db8::/32"},
		LeakedAt: ptr(wireLater), LeakURL: ptr("https://example.com/leak"),
	}
	// emptyToken: a zero row but for its status, with scopes [] and
	// allowed_ips nil, to pin that neither turns into the other.
	emptyToken = storage.Token{Scopes: []string{}, Status: token.Active}
	fullUser   = storage.User{
		ID: "alice", Email: ptr("alice@example.com"), DisplayName: ptr("Alice B"), Status: storage.UserDeactivated,
		TokenCount: 3, CreatedAt: wireAt, RateLimit: &wireLimit, RLRequests: ptr[int64](100), RLWindow: ptr[int64](3600),
	}
	fullAudit = storage.AuditEvent{At: wireAt, Actor: "admin_key", Action: storage.ActionTokenRevoke,
		Target: fullToken.ID, Detail: map[string]any{"reason": "leaked", "n": 2, "nested": map[string]any{"ok": true}}}
	fullEvent = storage.Event{ID: "evt_0123456789abcdef0123456789abcdef", Type: "token.revoked", UserID: "alice",
		Status: storage.EventFailed, Attempts: 7, CreatedAt: wireAt, NextAttemptAt: ptr(wireLater), SentAt: ptr(wireLater),
		LastError: ptr("503 Service Unavailable"), Payload: json.RawMessage(`{"type":"token.revoked","data":{"token_id":"t"}}`)}
	fullDays = []storage.DayUsage{{Day: "2026-12-05", Allowed: 412, QuotaRefused: 3, IPRefused: 1}, {Day: "2026-12-06"}}
)

// The JSON of each row as the API, the CLI (--json) and the screens see it.
const (
	fullTokenJSON = `{"id":"84b27aeb-aff9-4fcd-bea3-0f8bd72fc58d","user_id":"alice","name":"ci","hint":"arm_oVJ4…",` +
		`"scopes":["api","admin"],"status":"revoked","created_at":"2026-12-06T12:00:00.123456789Z",` +
		`"expires_at":"2026-12-07T08:30:00Z","last_used_at":"2026-12-06T12:00:00.123456789Z",` +
		`"revoked_at":"2026-12-07T08:30:00Z","revoked_reason":"leaked","revoked_by":"leak:github",` +
		`"rotated_to":"e726a983-b717-4deb-80b1-8942cceabb23","rate_limit":{"requests":100,"window":"1h"},` +
		`"allowed_ips":["192.0.2.0/24","2001:db8::/32"],"leaked_at":"2026-12-07T08:30:00Z","leak_url":"https://example.com/leak"}`
	emptyTokenJSON = `{"id":"","user_id":"","name":"","hint":"","scopes":[],"status":"active",` +
		`"created_at":"0001-01-01T00:00:00Z","expires_at":"0001-01-01T00:00:00Z","last_used_at":null,` +
		`"revoked_at":null,"revoked_reason":null,"revoked_by":null,"rotated_to":null,"rate_limit":null,` +
		`"allowed_ips":null,"leaked_at":null,"leak_url":null}`
	fullUserJSON = `{"id":"alice","email":"alice@example.com","display_name":"Alice B","status":"deactivated",` +
		`"token_count":3,"created_at":"2026-12-06T12:00:00.123456789Z","rate_limit":{"requests":100,"window":"1h"},` +
		`"max_tokens_per_user":10}`
	emptyUserJSON = `{"id":"","email":null,"display_name":null,"status":"","token_count":0,` +
		`"created_at":"0001-01-01T00:00:00Z","rate_limit":null,"max_tokens_per_user":0}`
	fullAuditJSON = `{"at":"2026-12-06T12:00:00.123456789Z","actor":"admin_key","action":"token.revoke",` +
		`"target":"84b27aeb-aff9-4fcd-bea3-0f8bd72fc58d","detail":{"n":2,"nested":{"ok":true},"reason":"leaked"}}`
	emptyAuditJSON = `{"at":"0001-01-01T00:00:00Z","actor":"","action":"","target":"","detail":null}`
	fullEventJSON  = `{"id":"evt_0123456789abcdef0123456789abcdef","type":"token.revoked","user_id":"alice",` +
		`"status":"failed","attempts":7,"created_at":"2026-12-06T12:00:00.123456789Z",` +
		`"next_attempt_at":"2026-12-07T08:30:00Z","sent_at":"2026-12-07T08:30:00Z",` +
		`"last_error":"503 Service Unavailable","payload":{"type":"token.revoked","data":{"token_id":"t"}}}`
	emptyEventJSON = `{"id":"","type":"","user_id":"","status":"","attempts":0,"created_at":"0001-01-01T00:00:00Z",` +
		`"next_attempt_at":null,"sent_at":null,"last_error":null,"payload":null}`
	fullDaysJSON = `[{"day":"2026-12-05","allowed":412,"quota_refused":3,"ip_refused":1},` +
		`{"day":"2026-12-06","allowed":0,"quota_refused":0,"ip_refused":0}]`
)

// TestWireShapes pins the JSON of every response the admin API, the
// self-service API and the CLI build from storage rows: field names and
// order, null versus [] and absent, and the time format.
func TestWireShapes(t *testing.T) {
	t.Parallel()
	userCursor := EncodeCursor("alice")
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"token", TokenJSON(fullToken), fullTokenJSON},
		{"token empty", TokenJSON(emptyToken), emptyTokenJSON},
		{"created token", CreatedTokenJSON(fullToken, "arm_secret"),
			fullTokenJSON[:len(fullTokenJSON)-1] + `,"token":"arm_secret"}`},
		{"rotated token", RotatedToken{CreatedToken: CreatedTokenJSON(fullToken, "arm_secret"), RotatedFrom: "old"},
			fullTokenJSON[:len(fullTokenJSON)-1] + `,"token":"arm_secret","rotated_from":"old"}`},
		{"token list", TokenListJSON([]storage.Token{fullToken, emptyToken}), `{"tokens":[` + fullTokenJSON + `,` + emptyTokenJSON + `]}`},
		{"token list empty", TokenListJSON(nil), `{"tokens":[]}`},
		{"user", UserJSON(fullUser, 10), fullUserJSON},
		{"user empty", UserJSON(storage.User{}, 0), emptyUserJSON},
		{"users page", UsersPageJSON([]storage.User{fullUser}, true, 10),
			`{"users":[` + fullUserJSON + `],"next_cursor":"` + userCursor + `"}`},
		{"users page last", UsersPageJSON(nil, false, 10), `{"users":[],"next_cursor":null}`},
		{"self tokens", selfTokenList{User: UserJSON(fullUser, 10), MaxTokens: 10, Tokens: tokensJSON([]storage.Token{fullToken})},
			`{"user":` + fullUserJSON + `,"max_tokens":10,"tokens":[` + fullTokenJSON + `]}`},
		{"self tokens empty", selfTokenList{User: UserJSON(storage.User{}, 0), Tokens: tokensJSON(nil)},
			`{"user":` + emptyUserJSON + `,"max_tokens":0,"tokens":[]}`},
		{"audit", auditListJSON([]storage.AuditEvent{fullAudit, {}}), `{"events":[` + fullAuditJSON + `,` + emptyAuditJSON + `]}`},
		{"audit empty", auditListJSON(nil), `{"events":[]}`},
		{"event", EventJSON(fullEvent), fullEventJSON},
		{"event empty", EventJSON(storage.Event{}), emptyEventJSON},
		{"events page", EventsPageJSON([]storage.Event{fullEvent}, true),
			`{"events":[` + fullEventJSON + `],"next_cursor":"` + fullEvent.ID + `"}`},
		{"events page last", EventsPageJSON(nil, true), `{"events":[],"next_cursor":null}`},
		{"usage", UsageJSON(fullDays, netip.MustParseAddr("192.0.2.7")), `{"days":` + fullDaysJSON + `,"last_ip":"192.0.2.7"}`},
		{"usage empty", UsageJSON(nil, netip.Addr{}), `{"days":[],"last_ip":null}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("JSON changed:\n got %s\nwant %s", b, tc.want)
			}
		})
	}
}

// TestOpenAPIMatchesWireTypes: each response schema of both descriptions
// names exactly the JSON fields of the type the handlers answer with (an
// allOf schema the fields of its parts), so that a field added to a wire
// type, or to the description only, fails here.
func TestOpenAPIMatchesWireTypes(t *testing.T) {
	t.Parallel()
	types := map[string]any{
		"User": User{}, "UsersPage": UsersPage{}, "Token": Token{}, "CreatedToken": CreatedToken{},
		"RotatedToken": RotatedToken{}, "TokenList": TokenList{}, "AuditList": auditList{}, "AuditEvent": auditEvent{},
		"Event": Event{}, "EventsPage": EventsPage{}, "Usage": Usage{}, "SelfTokens": selfTokenList{},
		"RevokedLeaks": RevokedLeaks{}, "RevokedCount": RevokedCount{}, "Introspection": introspection{},
		"Error": ErrorBody{},
	}
	for doc, raw := range map[string][]byte{"admin": adminOpenAPI(), "self": selfOpenAPI()} {
		var d struct {
			Components struct {
				Schemas map[string]openAPISchema `json:"schemas"`
			} `json:"components"`
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatal(err)
		}
		checked := 0
		for name, v := range types {
			s, ok := d.Components.Schemas[name]
			if !ok {
				continue
			}
			checked++
			got := request.JSONNames(reflect.TypeOf(v))
			if want := s.fields(d.Components.Schemas); !sameSet(got, want) {
				t.Errorf("%s %s: the type has %v, the description %v", doc, name, got, slices.Sorted(slices.Values(want)))
			}
		}
		if usage, ok := d.Components.Schemas["Usage"]; ok {
			checked++
			if got, want := request.JSONNames(reflect.TypeOf(DayUsage{})), usage.Properties["days"].Items.fields(nil); !sameSet(got, want) {
				t.Errorf("%s Usage.days: the type has %v, the description %v", doc, got, want)
			}
		}
		if checked < 6 {
			t.Fatalf("%s: only %d schemas checked", doc, checked)
		}
	}
}

// openAPISchema is the part of a schema whose field names the test reads.
type openAPISchema struct {
	Ref        string                    `json:"$ref"`
	Properties map[string]*openAPISchema `json:"properties"`
	AllOf      []*openAPISchema          `json:"allOf"`
	Items      *openAPISchema            `json:"items"`
}

// fields are the property names of s and of the parts of its allOf, with
// references looked up in schemas.
func (s *openAPISchema) fields(schemas map[string]openAPISchema) []string {
	if s == nil {
		return nil
	}
	if name, ok := strings.CutPrefix(s.Ref, "#/components/schemas/"); ok {
		r := schemas[name]
		return r.fields(schemas)
	}
	var names []string
	for n := range s.Properties {
		names = append(names, n)
	}
	for _, p := range s.AllOf {
		names = append(names, p.fields(schemas)...)
	}
	return names
}

func sameSet(a, b []string) bool {
	a, b = slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))
	return len(a) > 0 && slices.Equal(a, b)
}
