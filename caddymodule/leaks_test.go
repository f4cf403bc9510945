package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestLeaksProvision: placeholders are resolved at provision; a short
// GitLab token is refused by its length, never shown; github off and the
// key sources are what the block says.
func TestLeaksProvision(t *testing.T) {
	t.Setenv("ARMGATE_TEST_GITLAB_TOKEN", "short-secret-value")
	repl := caddy.NewReplacer()
	_, err := (&LeaksConfig{GitLabToken: "{env.ARMGATE_TEST_GITLAB_TOKEN}"}).provision(repl)
	if err == nil || strings.Contains(err.Error(), "short-secret-value") || !strings.Contains(err.Error(), "18 characters") {
		t.Errorf("short GitLab token: %v", err)
	}
	long := strings.Repeat("g", 40)
	t.Setenv("ARMGATE_TEST_GITLAB_TOKEN", long)
	r, err := (&LeaksConfig{GitLabToken: "{env.ARMGATE_TEST_GITLAB_TOKEN}", GitHubOff: true}).provision(repl)
	if err != nil || r.gitlabToken != long || r.githubKeys != nil {
		t.Errorf("github off with a GitLab token: %+v, %v", r, err)
	}
	r, err = (&LeaksConfig{}).provision(repl)
	if err != nil || r.githubKeys == nil || r.gitlabToken != "" {
		t.Errorf("empty block: %+v, %v (want GitHub on with the default keys, GitLab off)", r, err)
	}
	var none *LeaksConfig
	if r, err := none.provision(repl); err != nil || r.githubKeys != nil || r.gitlabToken != "" {
		t.Errorf("no block: %+v, %v (want everything off)", r, err)
	}
	if err := (&LeaksConfig{GitHubKeysURL: "https://x", GitHubKeysFile: "/y"}).validate(); err == nil {
		t.Error("both a key URL and a key file accepted")
	}
}
