package adminapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	liberrors "github.com/pb33f/libopenapi-validator/errors"
)

// pendingRoutes are documented calls the handler does not serve yet; the
// route test accepts a router miss for them and nothing else. Keep it
// empty once they exist.
var pendingRoutes = []string{}

// openAPIDoc is the part of an OpenAPI document the tests walk.
type openAPIDoc struct {
	OpenAPI string                                `json:"openapi"`
	Paths   map[string]map[string]json.RawMessage `json:"paths"`
}

type openAPIOperation struct {
	RequestBody *struct {
		Content map[string]struct {
			Example any `json:"example"`
		} `json:"content"`
	} `json:"requestBody"`
	Responses map[string]struct {
		Ref     string `json:"$ref"`
		Content map[string]struct {
			Example any `json:"example"`
		} `json:"content"`
	} `json:"responses"`
}

// operations lists a document's "METHOD /path" with their operations.
func operations(t *testing.T, raw []byte) map[string]openAPIOperation {
	t.Helper()
	var d openAPIDoc
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	ops := map[string]openAPIOperation{}
	for p, item := range d.Paths {
		for m, op := range item {
			if m == "parameters" {
				continue
			}
			var o openAPIOperation
			if err := json.Unmarshal(op, &o); err != nil {
				t.Fatalf("%s %s: %v", m, p, err)
			}
			ops[strings.ToUpper(m)+" "+p] = o
		}
	}
	return ops
}

func newOpenAPIValidator(t *testing.T, raw []byte) validator.Validator {
	t.Helper()
	doc, err := libopenapi.NewDocument(raw)
	if err != nil {
		t.Fatal(err)
	}
	if v := doc.GetVersion(); v != "3.1.0" {
		t.Fatalf("OpenAPI version %q, want 3.1.0", v)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("building the validator: %v", errs)
	}
	return v
}

// TestOpenAPIDocumentsValid checks both descriptions against the OpenAPI
// 3.1 schema, and every example response against its operation's schema.
func TestOpenAPIDocumentsValid(t *testing.T) {
	t.Parallel()
	for name, raw := range map[string][]byte{"admin": adminOpenAPI(), "self": selfOpenAPI()} {
		t.Run(name, func(t *testing.T) {
			v := newOpenAPIValidator(t, raw)
			if ok, errs := v.ValidateDocument(); !ok {
				for _, e := range errs {
					t.Errorf("%s", e.Error())
				}
			}
			examples := 0
			for key, op := range operations(t, raw) {
				method, p, _ := strings.Cut(key, " ")
				for status, resp := range op.Responses {
					media, ok := resp.Content["application/json"]
					if !ok || media.Example == nil {
						continue
					}
					body, err := json.Marshal(media.Example)
					if err != nil {
						t.Fatal(err)
					}
					req := httptest.NewRequest(method, exampleTarget(p, "alice", "84b27aeb-aff9-4fcd-bea3-0f8bd72fc58d"), nil)
					rec := httptest.NewRecorder()
					rec.Header().Set("Content-Type", "application/json")
					rec.WriteHeader(atoi(t, status))
					rec.Body.Write(body)
					if ok, errs := v.ValidateHttpResponse(req, rec.Result()); !ok {
						t.Errorf("%s example %s: %s", key, status, validationText(errs))
					}
					examples++
				}
			}
			if examples < 5 {
				t.Fatalf("only %d example responses checked", examples)
			}
		})
	}
}

// TestOpenAPIDocumentsEveryRoute: the admin description documents exactly
// the routes the handler's mux serves.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	t.Parallel()
	var documented []string
	for key := range operations(t, adminOpenAPI()) {
		documented = append(documented, key)
	}
	served := routes()
	sort.Strings(documented)
	for _, r := range served {
		if !slices.Contains(documented, r) {
			t.Errorf("route %q is served but not documented", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(served, d) && !slices.Contains(pendingRoutes, d) {
			t.Errorf("%q is documented but not served", d)
		}
	}
	if len(served) < 15 {
		t.Fatalf("Routes() lists %d routes: %v", len(served), served)
	}
}

// TestOpenAPIAgainstHandler sends every documented call, with the
// description's example bodies, to the handler on a real database: each
// is routed (no 404 or 405 from the router), and each answer validates
// against the description.
func TestOpenAPIAgainstHandler(t *testing.T) {
	t.Parallel()
	h := newStoreAdmin(t)
	v := newOpenAPIValidator(t, adminOpenAPI())
	// Data for the example ids.
	if rec := do(t, h, "PUT", "/users/alice", testAdminKey, `{"email":"alice@example.com"}`, nil); rec.Code != http.StatusCreated {
		t.Fatalf("put user: %d %s", rec.Code, rec.Body)
	}
	var tok CreatedToken
	if rec := do(t, h, "POST", "/users/alice/tokens", testAdminKey, `{"name":"seed"}`, &tok); rec.Code != http.StatusCreated {
		t.Fatalf("create token: %d %s", rec.Code, rec.Body)
	}
	ops := operations(t, adminOpenAPI())
	keys := make([]string, 0, len(ops))
	for k := range ops {
		keys = append(keys, k)
	}
	// Calls that end the token's or user's usefulness come last.
	rank := func(k string) int {
		switch {
		case strings.HasPrefix(k, "DELETE "):
			return 3
		case k == logoutPattern, strings.Contains(k, "/revoke"), strings.Contains(k, "/deactivate"):
			return 2
		case strings.Contains(k, "/rotate"):
			return 1
		}
		return 0
	}
	sort.Slice(keys, func(i, j int) bool {
		if rank(keys[i]) != rank(keys[j]) {
			return rank(keys[i]) < rank(keys[j])
		}
		return keys[i] < keys[j]
	})
	for _, key := range keys {
		op := ops[key]
		method, p, _ := strings.Cut(key, " ")
		target := exampleTarget(p, "alice", tok.ID)
		var body, contentType string
		if op.RequestBody != nil {
			for ct, media := range op.RequestBody.Content {
				contentType = ct
				if ct == "application/x-www-form-urlencoded" {
					body = "token=" + url.QueryEscape(tok.Plaintext)
					continue
				}
				b, err := json.Marshal(media.Example)
				if err != nil {
					t.Fatal(err)
				}
				body = string(b)
			}
		}
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		cred := testAdminKey
		if key == logoutPattern {
			cred = tok.Plaintext
		}
		req.Header.Set("Authorization", "Bearer "+cred)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		routed := rec.Code != http.StatusMethodNotAllowed &&
			!(rec.Code == http.StatusNotFound && strings.Contains(rec.Body.String(), "no such endpoint"))
		switch {
		case slices.Contains(pendingRoutes, key):
			t.Logf("%s: pending, answered %d", key, rec.Code)
			continue
		case !routed:
			t.Errorf("%s: not routed: %d %s", key, rec.Code, rec.Body)
			continue
		}
		if _, documented := op.Responses[itoa(rec.Code)]; !documented {
			t.Errorf("%s: status %d is not documented (%s)", key, rec.Code, rec.Body)
			continue
		}
		vreq := httptest.NewRequest(method, target, nil)
		if ok, errs := v.ValidateHttpResponse(vreq, rec.Result()); !ok {
			t.Errorf("%s: answer %d %s does not validate: %s", key, rec.Code, rec.Body, validationText(errs))
		}
	}
}

// TestOpenAPIServed: GET /openapi.json needs no credential and serves the
// embedded description.
func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	h := New(Options{AdminKeys: []string{testAdminKey}})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/openapi.json", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if rec.Body.String() != string(adminOpenAPI()) {
		t.Fatal("served description differs from the embedded one")
	}
}

// exampleTarget fills a path template with example ids.
func exampleTarget(p, userID, tokenID string) string {
	return strings.NewReplacer("{user_id}", userID, "{token_id}", tokenID).Replace(p)
}

func validationText(errs []*liberrors.ValidationError) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString(e.Error())
		for _, s := range e.SchemaValidationErrors {
			b.WriteString("; " + s.FieldPath + ": " + s.Reason)
		}
		b.WriteString(" | ")
	}
	return b.String()
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func itoa(n int) string { return strconv.Itoa(n) }
