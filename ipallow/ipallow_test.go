package ipallow

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestAllows(t *testing.T) {
	l, err := Parse([]string{"192.0.2.0/24", "2001:db8:1::/48", "198.51.100.7", "::ffff:203.0.113.0/120"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"192.0.2.1", true},
		{"192.0.2.255", true},
		{"192.0.3.1", false},
		{"::ffff:192.0.2.9", true}, // IPv4-mapped form of an allowed IPv4 address
		{"2001:db8:1:ffff::1", true},
		{"2001:db8:2::1", false},
		{"198.51.100.7", true},
		{"198.51.100.8", false},
		{"203.0.113.77", true}, // a mapped IPv6 prefix allows the IPv4 addresses
		{"::1", false},
		{"fe80::1%eth0", false},
	} {
		a := netip.MustParseAddr(tt.addr)
		if got := l.Allows(a); got != tt.want {
			t.Errorf("Allows(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if l.Allows(netip.Addr{}) {
		t.Error("the invalid address passes a non-empty list")
	}
	if !(List{}).Allows(netip.MustParseAddr("192.0.2.1")) {
		t.Error("the empty list refuses")
	}
	want := []string{"192.0.2.0/24", "2001:db8:1::/48", "198.51.100.7/32", "203.0.113.0/24"}
	if got := l.Strings(); !slices.Equal(got, want) {
		t.Errorf("Strings = %q, want %q", got, want)
	}
}

func TestZeroPrefixAndV6Zero(t *testing.T) {
	all4, _ := Parse([]string{"0.0.0.0/0"})
	if !all4.Allows(netip.MustParseAddr("203.0.113.1")) || all4.Allows(netip.MustParseAddr("2001:db8::1")) {
		t.Error("0.0.0.0/0 must allow every IPv4 address and no IPv6 one")
	}
	all6, _ := Parse([]string{"::/0"})
	if !all6.Allows(netip.MustParseAddr("2001:db8::1")) || !all6.Allows(netip.MustParseAddr("203.0.113.1")) {
		t.Error("::/0 must allow every address")
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range [][]string{{"nonsense"}, {"192.0.2.0/33"}, {"2001:db8::/129"}, {"fe80::1%eth0"}, {""}} {
		if _, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) accepted", in)
		}
	}
	many := make([]string, Max+1)
	for i := range many {
		many[i] = "192.0.2.1"
	}
	if _, err := Parse(many); err == nil || !strings.Contains(err.Error(), "at most 32") {
		t.Errorf("33 prefixes: %v", err)
	}
	if _, err := Parse(many[:Max]); err != nil {
		t.Errorf("32 prefixes: %v", err)
	}
}

func TestEncodedRoundTrip(t *testing.T) {
	l, _ := Parse([]string{"10.0.0.0/8", "2001:db8::/32"})
	back, ok := FromEncoded(l.Encoded())
	if !ok || back != l {
		t.Fatalf("FromEncoded(Encoded) = %v %v", back, ok)
	}
	if _, ok := FromEncoded("short"); ok {
		t.Error("FromEncoded accepted garbage")
	}
}

func TestAllowsAllocatesNothing(t *testing.T) {
	l, _ := Parse([]string{"192.0.2.0/24", "2001:db8::/32"})
	a4, a6 := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8::1")
	if n := testing.AllocsPerRun(100, func() { l.Allows(a4); l.Allows(a6) }); n != 0 {
		t.Errorf("Allows allocates %v times", n)
	}
}

func BenchmarkAllows32(b *testing.B) {
	cidrs := make([]string, Max)
	for i := range cidrs {
		cidrs[i] = netip.AddrFrom4([4]byte{10, byte(i), 0, 0}).String() + "/16"
	}
	l, _ := Parse(cidrs)
	a := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		if l.Allows(a) {
			b.Fatal("allowed")
		}
	}
}
