package adminapi

import (
	"errors"
	"fmt"
)

// maxUserIDLen bounds user ids (ARM account ids).
const maxUserIDLen = 128

// ValidateUserID checks a user id: 1–128 of A-Za-z0-9._@-.
// The characters need no escaping in a URL path segment, so an id can be
// named in the admin API's paths; the CLI checks ids with it too.
func ValidateUserID(id string) error {
	if id == "" || len(id) > maxUserIDLen {
		return fmt.Errorf("user id must be 1 to %d characters", maxUserIDLen)
	}
	if id == "." || id == ".." {
		// Valid characters, but no URL path can name them.
		return errors.New(`user id may not be "." or ".."`)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '@' || c == '-') {
			return errors.New("user id may contain only A-Z, a-z, 0-9 and . _ @ -")
		}
	}
	return nil
}
