// Package freeport picks TCP ports on 127.0.0.1 for the servers that tests and benchmarks
// start (PostgreSQL, Caddy, stand-in upstreams).
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
)

// Ports are picked below Linux's ephemeral range (32768–60999), so that no outgoing
// connection is given the port between the pick and the server's bind.
const (
	low  = 20000
	high = 32000
)

// Loopback returns a port on 127.0.0.1 that was free a moment ago. Another process may still
// take it before the caller binds it: callers retry on "address already in use".
func Loopback() (int, error) {
	var err error
	for range 100 {
		p := low + rand.IntN(high-low)
		var l net.Listener
		if l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			l.Close()
			return p, nil
		}
	}
	return 0, errors.Join(errors.New("freeport: no free port on 127.0.0.1 after 100 tries"), err)
}
