//go:build race

package tests

// raceFlags are the build flags of this test binary that the Caddy binary
// for the process tests is built with too: with -race, the Caddy packages
// compiled for the tests are reused instead of compiled again without it,
// and the separate processes are race-checked as well.
var raceFlags = []string{"-race"}
