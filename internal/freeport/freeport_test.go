package freeport

import (
	"fmt"
	"net"
	"testing"
)

func TestLoopback(t *testing.T) {
	p, err := Loopback()
	if err != nil {
		t.Fatal(err)
	}
	if p < low || p >= high {
		t.Fatalf("port %d outside [%d, %d)", p, low, high)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		t.Fatalf("the port is not free: %v", err)
	}
	l.Close()
}
