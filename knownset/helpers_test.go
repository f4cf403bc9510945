package knownset

import "encoding/binary"

// Test-only helpers: the gateway asks Absent and Refuse, never these.

// PrefixOf is Prefix for a hash held as a byte slice; it returns false for
// a slice shorter than eight bytes.
func PrefixOf(b []byte) (uint64, bool) {
	if len(b) < 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}

// Contains reports whether prefix p may belong to an existing token,
// whether or not the set is current.
func (s *Set) Contains(p uint64) bool { return s.tab.Load().contains(key(p)) }
