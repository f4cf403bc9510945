package knownset

// Test-only helper: the gateway asks Absent and Refuse, never this.

// Contains reports whether prefix p may belong to an existing token,
// whether or not the set is current.
func (s *Set) Contains(p uint64) bool { return s.tab.Load().contains(key(p)) || s.hasLocal(p) }
