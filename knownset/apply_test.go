package knownset_test

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/armgate/armgate/knownset"
)

// recorder is a knownset.Changer that records calls.
type recorder struct{ calls []string }

func (r *recorder) Add(p uint64)    { r.calls = append(r.calls, fmt.Sprintf("add %x", p)) }
func (r *recorder) Remove(p uint64) { r.calls = append(r.calls, fmt.Sprintf("remove %x", p)) }
func (r *recorder) Rescan()         { r.calls = append(r.calls, "rescan") }

func TestApply(t *testing.T) {
	t.Parallel()
	a := bytes.Repeat([]byte{0xaa}, 32)
	b := bytes.Repeat([]byte{0x0b}, 32)
	for _, tc := range []struct {
		name             string
		created, deleted [][]byte
		rescan           bool
		want             []string
	}{
		{"created", [][]byte{a}, nil, false, []string{"add aaaaaaaaaaaaaaaa"}},
		{"deleted", nil, [][]byte{b}, false, []string{"remove b0b0b0b0b0b0b0b"}},
		{"both", [][]byte{a}, [][]byte{b}, false,
			[]string{"add aaaaaaaaaaaaaaaa", "remove b0b0b0b0b0b0b0b"}},
		{"rescan", [][]byte{a}, nil, true, []string{"rescan"}},
		{"invalidation only", nil, nil, false, nil},
		{"short hash ignored", [][]byte{{1, 2}}, nil, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r recorder
			knownset.Apply(&r, tc.created, tc.deleted, tc.rescan)
			if !slices.Equal(r.calls, tc.want) {
				t.Errorf("calls %q, want %q", r.calls, tc.want)
			}
		})
	}
}
