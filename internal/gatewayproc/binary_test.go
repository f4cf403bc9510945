package gatewayproc

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

func TestModuleRoot(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "caddybin", "main.go")); err != nil {
		t.Errorf("module root %s holds no internal/caddybin: %v", root, err)
	}
}

// TestSweep: the build directories of processes that are gone are removed;
// those of live processes, and other names, are kept.
func TestSweep(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	dead := strconv.Itoa(gone.Process.Pid) + "-x"
	live := strconv.Itoa(os.Getppid()) + "-x"
	own := strconv.Itoa(os.Getpid()) + "-x"
	for _, d := range []string{dead, live, own, "unrelated"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sweep(base)
	for d, want := range map[string]bool{dead: false, live: true, own: true, "unrelated": true} {
		_, err := os.Stat(filepath.Join(base, d))
		if got := err == nil; got != want {
			t.Errorf("%s: exists %v, want %v", d, got, want)
		}
	}
}

// TestBinaryFromEnvironment: a prebuilt binary named in the environment is
// used as it is, without a build.
func TestBinaryFromEnvironment(t *testing.T) {
	t.Setenv(EnvBinary, "/nonexistent/caddy")
	for _, race := range []bool{false, true} {
		if got, err := Binary(race); err != nil || got != "/nonexistent/caddy" {
			t.Errorf("Binary(%v) = %q, %v", race, got, err)
		}
	}
}
