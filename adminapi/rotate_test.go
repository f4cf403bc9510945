package adminapi

import (
	"context"
	"errors"

	"github.com/armgate/armgate/token"
)

// tokDBDown is a well-formed token whose lookup fails: the fake store's
// database is down for introspection.
var tokDBDown = func() string {
	t, err := token.Generate()
	if err != nil {
		panic(err)
	}
	return t
}()

func (s *fakeStore) LookupCredential(context.Context, token.Hash) (token.Credential, error) {
	s.calls = append(s.calls, "lookup")
	return token.Credential{}, errors.New("connection refused")
}
