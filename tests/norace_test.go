//go:build !race

package tests

// raceFlags: see race_test.go.
var raceFlags []string
