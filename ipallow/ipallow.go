// Package ipallow matches client addresses against a token's allow-list of
// CIDR prefixes, IPv4 and IPv6, without allocating. An IPv4 address and its
// IPv4-mapped IPv6 form (::ffff:192.0.2.1) are the same address here.
package ipallow

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// Max is the most prefixes a list may hold.
const Max = 32

// entryLen is the encoded size of one prefix: the 16-byte address (IPv4 in
// its IPv4-mapped form) and the prefix length in that 128-bit space.
const entryLen = 17

// List is an allow-list, immutable and comparable. Its encoding is a
// string so that a cache can keep it inside a pointer-free object and hand
// it out without copying. The zero List is empty: it allows every address.
type List struct{ enc string }

// New returns the list of prefixes, masked and normalised. It refuses more
// than Max prefixes and invalid ones.
func New(prefixes []netip.Prefix) (List, error) {
	if len(prefixes) > Max {
		return List{}, fmt.Errorf("at most %d prefixes, got %d", Max, len(prefixes))
	}
	var b strings.Builder
	b.Grow(len(prefixes) * entryLen)
	for _, p := range prefixes {
		if !p.IsValid() {
			return List{}, fmt.Errorf("invalid prefix %v", p)
		}
		p = normalize(p)
		a := p.Addr().As16()
		b.Write(a[:])
		bits := p.Bits()
		if p.Addr().Is4() {
			bits += 96
		}
		b.WriteByte(byte(bits))
	}
	return List{enc: b.String()}, nil
}

// normalize masks p and turns an IPv4-mapped IPv6 prefix of at least /96
// into its IPv4 form.
func normalize(p netip.Prefix) netip.Prefix {
	a := p.Addr().WithZone("")
	if a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	} else {
		p = netip.PrefixFrom(a, p.Bits())
	}
	return p.Masked()
}

// Parse reads CIDRs ("192.0.2.0/24", "2001:db8::/32"); a bare address is
// its own /32 or /128.
func Parse(cidrs []string) (List, error) {
	ps := make([]netip.Prefix, 0, len(cidrs))
	for _, s := range cidrs {
		p, err := ParsePrefix(s)
		if err != nil {
			return List{}, err
		}
		ps = append(ps, p)
	}
	return New(ps)
}

// ParsePrefix reads one CIDR or bare address.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR", s)
	}
	return p, nil
}

// FromEncoded returns the list whose Encoded form is enc; it reports false
// for a string that is not one.
func FromEncoded(enc string) (List, bool) {
	if len(enc)%entryLen != 0 || len(enc)/entryLen > Max {
		return List{}, false
	}
	for i := entryLen - 1; i < len(enc); i += entryLen {
		if enc[i] > 128 {
			return List{}, false
		}
	}
	return List{enc: enc}, true
}

// Encoded returns the list's encoding, for FromEncoded.
func (l List) Encoded() string { return l.enc }

// Empty reports whether the list holds no prefix (every address passes).
func (l List) Empty() bool { return l.enc == "" }

// Len returns the number of prefixes.
func (l List) Len() int { return len(l.enc) / entryLen }

// Allows reports whether a is in the list; an empty list allows every
// address, an invalid address passes no non-empty list.
func (l List) Allows(a netip.Addr) bool {
	if l.enc == "" {
		return true
	}
	if !a.IsValid() {
		return false
	}
	b := a.As16() // IPv4 in its mapped form, zone dropped
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	for i := 0; i+entryLen <= len(l.enc); i += entryLen {
		e := l.enc[i : i+entryLen]
		phi, plo := be64(e[:8]), be64(e[8:16])
		mhi, mlo := masks(e[16])
		if hi&mhi == phi && lo&mlo == plo {
			return true
		}
	}
	return false
}

func be64(s string) uint64 {
	_ = s[7]
	return uint64(s[0])<<56 | uint64(s[1])<<48 | uint64(s[2])<<40 | uint64(s[3])<<32 |
		uint64(s[4])<<24 | uint64(s[5])<<16 | uint64(s[6])<<8 | uint64(s[7])
}

// masks returns the high and low halves of the mask of a /bits prefix.
func masks(bits byte) (hi, lo uint64) {
	switch {
	case bits == 0:
		return 0, 0
	case bits <= 64:
		return ^uint64(0) << (64 - bits), 0
	default:
		return ^uint64(0), ^uint64(0) << (128 - uint(bits))
	}
}

// Prefixes returns the list's prefixes, IPv4 ones in IPv4 form.
func (l List) Prefixes() []netip.Prefix {
	ps := make([]netip.Prefix, 0, l.Len())
	for i := 0; i+entryLen <= len(l.enc); i += entryLen {
		a := netip.AddrFrom16([16]byte([]byte(l.enc[i : i+16])))
		bits := int(l.enc[i+16])
		if a.Is4In6() && bits >= 96 {
			a, bits = a.Unmap(), bits-96
		}
		ps = append(ps, netip.PrefixFrom(a, bits))
	}
	return ps
}

// Strings returns the list's prefixes in CIDR notation.
func (l List) Strings() []string {
	ps := l.Prefixes()
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return s
}
