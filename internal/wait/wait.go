// Package wait is the tests' one way to wait for something: poll a
// condition until it holds, with a deadline, instead of sleeping for a fixed
// time. The deadline only guards against hangs; it is generous because the
// tests share a small machine.
package wait

import (
	"testing"
	"time"
)

// Timeout is how long For waits before it fails the test.
const Timeout = 30 * time.Second

// For polls cond until it returns true, and fails t ("timed out waiting for
// <what>") when it still returns false after Timeout. Like t.Fatal, call it
// from the test's goroutine.
func For(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !Until(Timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", Timeout, what)
	}
}

// Until polls cond until it returns true or timeout has passed, and reports
// whether it returned true: for a test that says more than For does when
// the condition never holds, or that expects it never to hold. The first
// polls follow each other closely (1 ms apart), later ones at most 20 ms
// apart, so a quick condition costs little time and a slow one little CPU.
func Until(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for pause := time.Millisecond; ; pause = min(2*pause, 20*time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
	}
}
