package admincli

import (
	"context"
	"fmt"
	"net/url"
	"strconv"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/storage"
)

// UserPut creates or updates a user (PUT /users/{id}); nil fields are left
// as they are.
func (r *Runner) UserPut(ctx context.Context, id string, email, displayName *string) error {
	if err := userID(id); err != nil {
		return err
	}
	patch, err := request.User{Email: email, DisplayName: displayName}.Patch()
	if err != nil {
		return usage(err)
	}
	u, _, err := r.Store.UpsertUser(ctx, Actor, id, adminapi.PatchToStore(patch))
	if err != nil {
		return err
	}
	return r.printUsers(u)
}

// UserGet shows a user.
func (r *Runner) UserGet(ctx context.Context, id string) error {
	if err := userID(id); err != nil {
		return err
	}
	u, err := r.Store.GetUser(ctx, id)
	if err != nil {
		return storeErr(err, fmt.Sprintf("user %q", id))
	}
	return r.printUsers(u)
}

// UserList lists users a page at a time. limit is the raw --limit value,
// nil for the default.
func (r *Runner) UserList(ctx context.Context, status string, limit *string, cursor string) error {
	status, err := adminapi.ParseUserStatus(status)
	if err != nil {
		return usage(err)
	}
	n, err := pageLimit(limit)
	if err != nil {
		return err
	}
	after, err := adminapi.DecodeCursor(cursor)
	if err != nil {
		return usage(err)
	}
	users, more, err := r.Store.ListUsers(ctx, status, after, n)
	if err != nil {
		return err
	}
	page := adminapi.UsersPageJSON(users, more, r.Limits.MaxPerUser)
	if r.JSON {
		return r.printJSON(page)
	}
	if err := r.printUsers(users...); err != nil {
		return err
	}
	if page.NextCursor != nil {
		_, err = fmt.Fprintf(r.Out, "more: --cursor %s\n", *page.NextCursor)
	}
	return err
}

// UserSetActive deactivates (active false) or reactivates a user; both
// are idempotent.
func (r *Runner) UserSetActive(ctx context.Context, id string, active bool) error {
	if err := userID(id); err != nil {
		return err
	}
	u, _, err := r.Store.SetUserActive(ctx, Actor, id, active)
	if err != nil {
		return storeErr(err, fmt.Sprintf("user %q", id))
	}
	return r.printUsers(u)
}

// printUsers prints one user as the API's user JSON, or users as a table.
func (r *Runner) printUsers(users ...storage.User) error {
	if r.JSON && len(users) == 1 {
		return r.printJSON(adminapi.UserJSON(users[0], r.Limits.MaxPerUser))
	}
	t := newTable(r.Out, "ID", "EMAIL", "DISPLAY NAME", "STATUS", "TOKENS", "CREATED")
	for _, u := range users {
		t.row(u.ID, str(u.Email), str(u.DisplayName), string(u.Status),
			strconv.Itoa(u.TokenCount)+" of "+strconv.Itoa(r.Limits.MaxPerUser), stamp(&u.CreatedAt))
	}
	return t.flush()
}

// pageLimit checks a raw --limit value (nil: the default) by the API's
// rule for the limit query parameter.
func pageLimit(limit *string) (int, error) {
	q := url.Values{}
	if limit != nil {
		q.Set("limit", *limit)
	}
	n, err := adminapi.ParseLimit(q)
	if err != nil {
		return 0, usage(err)
	}
	return n, nil
}
