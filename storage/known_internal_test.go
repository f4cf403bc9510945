package storage

import (
	"testing"
)

func hashes(n int) [][]byte {
	hs := make([][]byte, n)
	for i := range hs {
		hs[i] = make([]byte, 32)
		hs[i][0] = byte(i)
	}
	return hs
}

// TestBounded: a notification stays under PostgreSQL's 8000-byte payload
// limit; what does not fit turns into Rescan (creations, deletions) or All
// (invalidations), never into a silent loss.
func TestBounded(t *testing.T) {
	for _, tc := range []struct {
		name        string
		in          Invalidation
		all, rescan bool
		created     int
	}{
		{"small", Invalidation{Hashes: hashes(3), Created: hashes(2)}, false, false, 2},
		{"many invalidations", Invalidation{Hashes: hashes(150)}, true, false, 0},
		{"many creations", Invalidation{Created: hashes(150)}, false, true, 0},
		{"together too many", Invalidation{Hashes: hashes(60), Deleted: hashes(60)}, true, false, 0},
		{"invalidations give way first", Invalidation{Hashes: hashes(90), Created: hashes(20)}, true, false, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in.bounded()
			if got.All != tc.all || got.Rescan != tc.rescan || len(got.Created) != tc.created {
				t.Errorf("all %v rescan %v created %d, want %v %v %d", got.All, got.Rescan, len(got.Created), tc.all, tc.rescan, tc.created)
			}
			if got.All && len(got.Hashes) != 0 || got.Rescan && len(got.Created)+len(got.Deleted) != 0 {
				t.Errorf("kept lists beside All/Rescan: %+v", got)
			}
			payload, err := encodeInvalidation(got)
			if err != nil || len(payload) >= 8000 {
				t.Errorf("payload of %d bytes: %v", len(payload), err)
			}
		})
	}
	if !(Invalidation{}).empty() || (Invalidation{Created: hashes(1)}).empty() || (Invalidation{Rescan: true}).empty() {
		t.Error("empty() is wrong")
	}
}
