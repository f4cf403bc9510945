package limiter

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"time"
)

// Names is a Limiter that counts per name (a user id, say) instead of per
// client address: the same sliding window, budget and bounded memory. Each
// name is counted under a 128-bit keyed hash of it, with keys chosen at
// random per Names, so no two names share a budget by chance (nor by
// choice: the keys are secret).
type Names struct {
	l      *Limiter
	k1, k2 maphash.Seed
}

// NewNames returns a Names for cfg (zero values take the defaults;
// MaxClients bounds the names tracked) that reads the time from now
// (time.Now when nil).
func NewNames(cfg Config, now func() time.Time) *Names {
	return &Names{l: New(cfg, now), k1: maphash.MakeSeed(), k2: maphash.MakeSeed()}
}

// Take counts one event of name and reports true, unless name is blocked:
// then it counts nothing and reports false and for how many more whole
// seconds (at least 1) the block lasts. The event that reaches the budget
// is still taken; the next one is refused. Check and count are one step,
// so concurrent events never overshoot the budget.
func (n *Names) Take(name string) (retryAfter int, ok bool) {
	t := n.l.now().UnixNano()
	until, counted := n.l.fail(n.key(name), t)
	if counted {
		return 0, true
	}
	return retrySeconds(until - t), false
}

// key is the address-shaped key a name is counted under. Limiter's own
// keys are addresses, IPv6 ones reduced to a /64, but this key never goes
// through Key: all 128 bits count.
func (n *Names) key(name string) netip.Addr {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], maphash.String(n.k1, name))
	binary.LittleEndian.PutUint64(b[8:], maphash.String(n.k2, name))
	return netip.AddrFrom16(b)
}
