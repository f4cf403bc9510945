package storage

import (
	"reflect"
	"testing"
)

// TestNotificationPayload pins the NOTIFY payload of an invalidation:
// instances of different versions read each other's during a rolling
// upgrade, so its names and its omissions must not change.
func TestNotificationPayload(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		inv  Invalidation
		want string
	}{
		{"full", Invalidation{Hashes: [][]byte{{1, 2}}, All: true, Created: [][]byte{{3}}, Deleted: [][]byte{{4}, {5}}, Rescan: true},
			`{"h":["AQI="],"all":true,"c":["Aw=="],"d":["BA==","BQ=="],"rescan":true}`},
		{"hashes only", Invalidation{Hashes: [][]byte{{0xff}}}, `{"h":["/w=="]}`},
		{"empty", Invalidation{}, `{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := encodeInvalidation(tc.inv)
			if err != nil || string(b) != tc.want {
				t.Fatalf("payload %s (%v), want %s", b, err, tc.want)
			}
			back, err := decodeInvalidation(b)
			if err != nil || !reflect.DeepEqual(back, tc.inv) {
				t.Errorf("read back %+v (%v), want %+v", back, err, tc.inv)
			}
		})
	}
}
