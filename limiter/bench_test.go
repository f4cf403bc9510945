package limiter

import (
	"net/netip"
	"testing"
	"time"
)

// BenchmarkBlockedNobody is the request path while nobody is blocked.
func BenchmarkBlockedNobody(b *testing.B) {
	l := New(Config{}, nil)
	a := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		l.Blocked(a)
	}
}

// BenchmarkBlockedOthers is the request path while another client is
// blocked: a shard lookup.
func BenchmarkBlockedOthers(b *testing.B) {
	l := New(Config{Max: 1, Window: time.Hour}, nil)
	l.Fail(netip.MustParseAddr("198.51.100.1"))
	a := netip.MustParseAddr("2001:db8::1")
	b.ReportAllocs()
	for b.Loop() {
		l.Blocked(a)
	}
}

// BenchmarkFail counts refusals of tracked and new clients.
func BenchmarkFail(b *testing.B) {
	l := New(Config{Max: 1 << 30, Window: time.Hour, MaxClients: 4096}, nil)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		l.Fail(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
		i = (i + 1) % 8192
	}
}
