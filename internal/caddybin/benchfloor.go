//go:build armgate_benchfloor

package main

// The load benchmark's floor handler (configuration F); only the
// benchmark's build sets this tag.
import _ "github.com/armgate/armgate/bench/floor"
