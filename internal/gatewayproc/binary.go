// Package gatewayproc runs Caddy with armgate's modules as separate
// processes on loopback, for the end-to-end tests and the benchmarks: it
// builds the binary from this checkout (internal/caddybin), starts an
// instance on a Caddyfile and waits until it serves, talks to its site, its
// admin API and its metrics, reloads it and stops it by its process id.
// The database comes from internal/testpg.
package gatewayproc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// EnvBinary names a prebuilt caddybin to use instead of building one.
const EnvBinary = "ARMGATE_CADDY_BIN"

// binaries builds the binary once per process and race setting.
var binaries = map[bool]func() (string, error){
	false: sync.OnceValues(func() (string, error) { return buildTemp(false) }),
	true:  sync.OnceValues(func() (string, error) { return buildTemp(true) }),
}

// Binary returns the path of a Caddy with armgate's modules, built from
// this checkout on first use (with the race detector when race is set), or
// $ARMGATE_CADDY_BIN when that is set. Builds go to a directory named for
// the calling process under $TMPDIR/armgate-caddybin; the directories of
// processes that are gone are removed first, since a test binary has no
// exit hook.
func Binary(race bool) (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		return p, nil
	}
	return binaries[race]()
}

func buildTemp(race bool) (string, error) {
	base := filepath.Join(os.TempDir(), "armgate-caddybin")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	sweep(base)
	dir, err := os.MkdirTemp(base, strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "caddy")
	if err := Build(path, race); err != nil {
		return "", err
	}
	return path, nil
}

// Build runs `go build` of internal/caddybin to path, with -race when race
// is set and the build tags tags. It is the one place that builds the
// gateway binary for tests and benchmarks.
func Build(path string, race bool, tags ...string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	args := []string{"build"}
	if race {
		args = append(args, "-race")
	}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	cmd := exec.Command("go", append(args, "-o", path, "./internal/caddybin")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return nil
}

// moduleRoot is the nearest directory at or above the working directory
// that holds go.mod: tests run in their package's directory, commands in
// the module's.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("gatewayproc: no go.mod at or above the working directory")
		}
		dir = parent
	}
}

// sweep removes the build directories ("<pid>-<random>") of processes that
// no longer run.
func sweep(base string) {
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		pidStr, _, ok := strings.Cut(e.Name(), "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(filepath.Join(base, e.Name()))
		}
	}
}
