package tests

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/armgate/armgate/internal/leakstest"
)

const testGitLabToken = "gitlab-revocation-token-0123456789abcdef"

// TestLeakReports runs a real Caddy with the leaks option (GitHub keys from
// a file in GitHub's shape, a GitLab token): a token reported by GitHub, by
// GitLab or by hand is refused by the gateway right after the report, shows
// as leaked in token JSON, and never appears in a log.
func TestLeakReports(t *testing.T) {
	dir := t.TempDir()
	signer := leakstest.NewSigner(t, "e2e-key")
	keys := filepath.Join(dir, "keys.json")
	if err := os.WriteFile(keys, leakstest.KeysDocument(t, signer), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, gatewayConfig{LogDir: dir, ExtraApp: fmt.Sprintf("leaks {\n\t\t\tgithub_keys_file %q\n\t\t\tgitlab_token %q\n\t\t}", keys, testGitLabToken)})
	var secrets []string
	live := func(name string) (string, string) {
		t.Helper()
		tk, plain := g.createToken("leaky", name, nil, time.Hour)
		secrets = append(secrets, plain)
		// Cached as live first, so that the refusal below shows the
		// invalidation, not a first lookup.
		if r := g.get("/v1/x", plain); r.Status != 200 {
			t.Fatalf("fresh token: %d %s", r.Status, r.Body)
		}
		return tk.ID, plain
	}
	leaked := func(id, actor, url string) {
		t.Helper()
		r := g.admin("GET", "/tokens/"+id, nil)
		m := r.json(t)
		if m["status"] != "revoked" || m["revoked_reason"] != "leaked" || m["revoked_by"] != actor || m["leak_url"] != url || m["leaked_at"] == nil {
			t.Errorf("token JSON after the report: %s", r.Body)
		}
	}

	t.Run("GitHub", func(t *testing.T) {
		id, plain := live("github")
		body := leakstest.Report(t, "https://github.com/octo/demo/blob/main/.env", plain, "arm_notarealtoken", "ghp_16C7e42F292c6912E7710c838347Ae178B4a")
		// A bad signature first: refused, nothing revoked.
		bad := http.Header{"Github-Public-Key-Identifier": {signer.ID}, "Github-Public-Key-Signature": {signer.Sign(t, []byte("other"))}}
		if r := g.do("POST", "/admin/leaks/github", body, bad); r.Status != 401 {
			t.Fatalf("bad signature: %d %s", r.Status, r.Body)
		}
		if r := g.get("/v1/x", plain); r.Status != 200 {
			t.Fatalf("token refused after a refused report: %d", r.Status)
		}
		h := http.Header{"Content-Type": {"application/json"}}
		signer.SetHeaders(t, h, body)
		r := g.do("POST", "/admin/leaks/github", body, h)
		if r.Status != 200 {
			t.Fatalf("report: %d %s", r.Status, r.Body)
		}
		var fb []map[string]string
		if err := json.Unmarshal(r.Body, &fb); err != nil || len(fb) != 3 ||
			fb[0]["label"] != "true_positive" || fb[1]["label"] != "false_positive" || fb[2]["label"] != "false_positive" {
			t.Fatalf("feedback %s", r.Body)
		}
		if r := g.get("/v1/x", plain); r.Status != 401 {
			t.Errorf("leaked token after the report: %d, want 401", r.Status)
		}
		leaked(id, "leak:github", "https://github.com/octo/demo/blob/main/.env")
		// Reported again: the same feedback, nothing more in the audit log.
		if r := g.do("POST", "/admin/leaks/github", body, h); r.Status != 200 || !strings.Contains(string(r.Body), "true_positive") {
			t.Errorf("repeated report: %d %s", r.Status, r.Body)
		}
		audit := g.admin("GET", "/audit?user_id=leaky", nil)
		if n := strings.Count(string(audit.Body), `"token.leaked"`); n != 1 {
			t.Errorf("%d token.leaked events after two reports, want 1: %s", n, audit.Body)
		}
	})

	t.Run("GitLab", func(t *testing.T) {
		id, plain := live("gitlab")
		if r := g.do("GET", "/admin/leaks/gitlab/v1/revocable_token_types", nil, http.Header{"Authorization": {testGitLabToken}}); r.Status != 200 ||
			strings.TrimSpace(string(r.Body)) != `{"types":["armgate_api_token"]}` {
			t.Errorf("types: %d %s", r.Status, r.Body)
		}
		body := []byte(fmt.Sprintf(`[{"type":"armgate_api_token","token":%q,"location":"https://gitlab.example.com/g/p/-/blob/1/ci.yml"}]`, plain))
		if r := g.do("POST", "/admin/leaks/gitlab/v1/revoke_tokens", body, http.Header{"Authorization": {"wrong-" + testGitLabToken}}); r.Status != 401 {
			t.Errorf("wrong GitLab token: %d", r.Status)
		}
		if r := g.do("POST", "/admin/leaks/gitlab/v1/revoke_tokens", body, http.Header{"Authorization": {testGitLabToken}}); r.Status != 204 {
			t.Fatalf("revoke_tokens: %d %s", r.Status, r.Body)
		}
		if r := g.get("/v1/x", plain); r.Status != 401 {
			t.Errorf("leaked token after the GitLab report: %d, want 401", r.Status)
		}
		leaked(id, "leak:gitlab", "https://gitlab.example.com/g/p/-/blob/1/ci.yml")
	})

	t.Run("ByHand", func(t *testing.T) {
		id, plain := live("by hand")
		r := g.admin("POST", "/tokens/revoke-leaked", map[string]any{"tokens": []string{plain, "not-a-token"}, "url": "https://chat.example.com/p/1"})
		if r.Status != 200 || !strings.Contains(string(r.Body), `"result":"revoked"`) || !strings.Contains(string(r.Body), `"result":"malformed"`) {
			t.Fatalf("revoke-leaked: %d %s", r.Status, r.Body)
		}
		if r := g.get("/v1/x", plain); r.Status != 401 {
			t.Errorf("leaked token after revoke-leaked: %d, want 401", r.Status)
		}
		leaked(id, "leak:admin", "https://chat.example.com/p/1")
	})

	t.Run("NoTokenInLogs", func(t *testing.T) {
		for _, name := range []string{"caddy.log", "access.log"} {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range secrets {
				if strings.Contains(string(b), s) {
					t.Errorf("%s holds a reported token", name)
				}
			}
		}
	})
}
