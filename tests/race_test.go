//go:build race

package tests

// raceEnabled: this test binary runs with the race detector, and so does
// the Caddy of the process tests (see buildCaddy).
const raceEnabled = true
