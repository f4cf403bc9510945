package adminapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/leaks"
	"github.com/armgate/armgate/leaks/ghkeys"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// The leak report routes: GitHub secret scanning and GitLab's token
// revocation API authenticate themselves (a signature, a pre-shared token)
// and need no admin credential; POST /tokens/revoke-leaked is an admin
// call. All three revoke through one store operation with reason "leaked".

// Leak sources, the metric label of each route and the actor's suffix.
const (
	LeakSourceGitHub = "github"
	LeakSourceGitLab = "gitlab"
	LeakSourceAdmin  = "admin"
)

// Results of a leak report, for LeakOptions.Report.
const (
	LeakReportAccepted     = "accepted"
	LeakReportUnauthorized = "unauthorized"
	LeakReportInvalid      = "invalid"
	LeakReportUnavailable  = "unavailable"
)

// LeakStore is the store operation the leak routes use.
type LeakStore interface {
	RevokeLeaked(ctx context.Context, actor string, leaks []storage.Leak) (map[token.Hash]storage.LeakOutcome, storage.Invalidation, error)
}

// LeakOptions configure the leak report routes.
type LeakOptions struct {
	// Store revokes leaked tokens; nil turns every leak route off (404).
	Store LeakStore
	// GitHubKeys verifies GitHub's signatures; nil turns POST
	// /leaks/github off (404).
	GitHubKeys *ghkeys.KeySource
	// GitLabToken is the pre-shared token GitLab sends in Authorization;
	// empty turns the /leaks/gitlab/ routes off (404).
	GitLabToken string
	// GitLabTypes are the token types answered to GitLab and accepted
	// from it; empty means leaks.GitLabTokenType alone.
	GitLabTypes []string
	// Tokens, if set, counts the tokens of accepted reports by source
	// and label (true_positive, false_positive).
	Tokens func(source, label string, n int)
	// Report, if set, counts reports by source and result (accepted,
	// unauthorized, invalid, unavailable).
	Report func(source, result string)
}

const (
	githubLeaksPattern     = "POST /leaks/github"
	gitlabTypesPattern     = "GET /leaks/gitlab/v1/revocable_token_types"
	gitlabRevokePattern    = "POST /leaks/gitlab/v1/revoke_tokens"
	revokeLeakedPattern    = "POST /tokens/revoke-leaked"
	gitlabChallenge        = `Bearer realm="armgate leak reports"`
	leakReportNotAvailable = "leak reports are not configured here (see the leaks option of the armgate global option)"
)

// leakRoutes registers the leak routes on m and returns those that
// authenticate themselves.
func (h *handler) leakRoutes(m *patternMux) []string {
	m.Handle(githubLeaksPattern, http.HandlerFunc(h.githubLeaks))
	m.Handle(gitlabTypesPattern, http.HandlerFunc(h.gitlabTypes))
	m.Handle(gitlabRevokePattern, http.HandlerFunc(h.gitlabRevoke))
	m.Handle(revokeLeakedPattern, h.call(h.revokeLeaked))
	return []string{githubLeaksPattern, gitlabTypesPattern, gitlabRevokePattern}
}

func (h *handler) leakReport(source, result string) {
	if h.leaks.Report != nil {
		h.leaks.Report(source, result)
	}
}

// leakContext bounds a report's work, as call does for admin calls.
func (h *handler) leakContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), h.timeout)
}

// readReport reads a report's raw body, at most leaks.MaxBodyBytes; it
// answers 413 itself.
func readReport(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.ContentLength > leaks.MaxBodyBytes {
		WriteError(w, leakTooLarge)
		return nil, false
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, leaks.MaxBodyBytes+1))
	if err != nil {
		WriteError(w, badRequest("reading the report: %v", err))
		return nil, false
	}
	if len(b) > leaks.MaxBodyBytes {
		WriteError(w, leakTooLarge)
		return nil, false
	}
	return b, true
}

var leakTooLarge = &Error{Status: http.StatusRequestEntityTooLarge, Code: "request_too_large",
	Message: "the report exceeds 1 MiB; send at most 1000 tokens per report"}

// reportError answers a report that does not parse: 413 for too many
// tokens, else 400.
func reportError(w http.ResponseWriter, err error) {
	if errors.Is(err, leaks.ErrTooMany) {
		WriteError(w, &Error{Status: http.StatusRequestEntityTooLarge, Code: "request_too_large", Message: err.Error()})
		return
	}
	WriteError(w, badRequest("%v", err))
}

// githubLeaks receives a GitHub secret scanning report, verifies its
// signature, revokes the armgate tokens it names that exist, and answers
// GitHub's feedback: true_positive or false_positive per token.
func (h *handler) githubLeaks(w http.ResponseWriter, r *http.Request) {
	if h.leaks.Store == nil || h.leaks.GitHubKeys == nil {
		WriteError(w, &Error{Status: http.StatusNotFound, Code: "not_found", Message: "GitHub " + leakReportNotAvailable})
		return
	}
	body, ok := readReport(w, r)
	if !ok {
		h.leakReport(LeakSourceGitHub, LeakReportInvalid)
		return
	}
	ctx, cancel := h.leakContext(r)
	defer cancel()
	err := h.leaks.GitHubKeys.Verify(ctx, r.Header.Get("Github-Public-Key-Identifier"),
		r.Header.Get("Github-Public-Key-Signature"), body)
	if ghkeys.IsRefusal(err) {
		h.leakReport(LeakSourceGitHub, LeakReportUnauthorized)
		h.refuse(w, r, http.StatusUnauthorized, "", "unauthorized", err.Error())
		return
	} else if err != nil {
		h.leakReport(LeakSourceGitHub, LeakReportUnavailable)
		h.unavailable(w, r, err)
		return
	}
	// From here on the report is GitHub's: never 429, never 401.
	items, err := leaks.ParseGitHub(body)
	if err != nil {
		h.leakReport(LeakSourceGitHub, LeakReportInvalid)
		reportError(w, err)
		return
	}
	out, err := h.revokeItems(ctx, LeakSourceGitHub, "", items)
	if err != nil {
		h.leakReport(LeakSourceGitHub, LeakReportUnavailable)
		h.unavailable(w, r, err)
		return
	}
	h.leakReport(LeakSourceGitHub, LeakReportAccepted)
	WriteJSON(w, http.StatusOK, leaks.GitHubFeedback(items, found(out)))
}

func found(out map[token.Hash]storage.LeakOutcome) func(token.Hash) bool {
	return func(h token.Hash) bool { _, ok := out[h]; return ok }
}

// revokeItems revokes the armgate tokens among items as leaked by source.
// Items that are not armgate tokens (shape, checksum) are never looked up.
// It applies the invalidation locally and counts the tokens by label.
// reportedBy is the admin's actor for a report made by hand.
func (h *handler) revokeItems(ctx context.Context, source, reportedBy string, items []leaks.Item) (map[token.Hash]storage.LeakOutcome, error) {
	ls := make([]storage.Leak, 0, len(items))
	for _, it := range items {
		if it.Valid {
			ls = append(ls, storage.Leak{Hash: it.Hash, URL: it.URL, FoundIn: it.Source, ReportedBy: reportedBy})
		}
	}
	out := map[token.Hash]storage.LeakOutcome{}
	if len(ls) > 0 {
		var inv storage.Invalidation
		var err error
		if out, inv, err = h.leaks.Store.RevokeLeaked(ctx, storage.LeakActorPrefix+source, ls); err != nil {
			return nil, err
		}
		h.invalidate(inv)
	}
	if h.leaks.Tokens != nil {
		n := map[string]int{}
		for _, it := range items {
			n[leaks.Label(it, found(out))]++
		}
		for label, c := range n {
			h.leaks.Tokens(source, label, c)
		}
	}
	return out, nil
}

// gitlabAuth checks GitLab's pre-shared token (Authorization: <token>,
// "Bearer " optional), or answers 404 when GitLab reports are off and 401
// when the token is wrong.
func (h *handler) gitlabAuth(w http.ResponseWriter, r *http.Request) bool {
	if h.leaks.Store == nil || h.leaks.GitLabToken == "" {
		WriteError(w, &Error{Status: http.StatusNotFound, Code: "not_found", Message: "GitLab " + leakReportNotAvailable})
		return false
	}
	v := r.Header.Values("Authorization")
	var got string
	if len(v) == 1 {
		got = strings.TrimSpace(v[0])
		if len(got) > 7 && strings.EqualFold(got[:7], "bearer ") {
			got = strings.TrimSpace(got[7:])
		}
	}
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(h.leaks.GitLabToken))
	if got == "" || subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
		h.leakReport(LeakSourceGitLab, LeakReportUnauthorized)
		h.refuse(w, r, http.StatusUnauthorized, gitlabChallenge, "unauthorized",
			"GitLab's token revocation calls need the configured token in Authorization")
		return false
	}
	return true
}

func (h *handler) gitlabTypeList() []string {
	if len(h.leaks.GitLabTypes) > 0 {
		return h.leaks.GitLabTypes
	}
	return []string{leaks.GitLabTokenType}
}

// GitLabTypes is the answer of GET /leaks/gitlab/v1/revocable_token_types.
type GitLabTypes struct {
	Types []string `json:"types"`
}

func (h *handler) gitlabTypes(w http.ResponseWriter, r *http.Request) {
	if !h.gitlabAuth(w, r) {
		return
	}
	WriteJSON(w, http.StatusOK, GitLabTypes{Types: h.gitlabTypeList()})
}

// gitlabRevoke receives GitLab's revoke_tokens: it revokes the armgate
// tokens it names that exist and answers 204, also for tokens it does not
// know (GitLab only learns that the report was taken).
func (h *handler) gitlabRevoke(w http.ResponseWriter, r *http.Request) {
	if !h.gitlabAuth(w, r) {
		return
	}
	body, ok := readReport(w, r)
	if !ok {
		h.leakReport(LeakSourceGitLab, LeakReportInvalid)
		return
	}
	items, err := leaks.ParseGitLab(body, h.gitlabTypeList())
	if err != nil {
		h.leakReport(LeakSourceGitLab, LeakReportInvalid)
		reportError(w, err)
		return
	}
	ctx, cancel := h.leakContext(r)
	defer cancel()
	if _, err := h.revokeItems(ctx, LeakSourceGitLab, "", items); err != nil {
		h.leakReport(LeakSourceGitLab, LeakReportUnavailable)
		h.unavailable(w, r, err)
		return
	}
	h.leakReport(LeakSourceGitLab, LeakReportAccepted)
	noContent(w)
}

// RevokeLeakedRequest is the body of POST /tokens/revoke-leaked.
type RevokeLeakedRequest struct {
	Tokens []string `json:"tokens"`
	URL    string   `json:"url"`
}

// Items validates the body and returns its items: 1 to 1000 tokens, and
// an optional URL (or other note of where they were found) of at most 2048
// bytes without control or format characters.
func (b RevokeLeakedRequest) Items() ([]leaks.Item, error) {
	if len(b.Tokens) == 0 {
		return nil, badRequest("tokens must list at least one token")
	}
	if len(b.Tokens) > leaks.MaxTokens {
		return nil, badRequest("tokens may list at most %d tokens per call", leaks.MaxTokens)
	}
	switch {
	case !utf8.ValidString(b.URL):
		return nil, badRequest("url must be valid UTF-8")
	case len(b.URL) > leaks.MaxURLLen:
		return nil, badRequest("url is longer than %d bytes", leaks.MaxURLLen)
	case strings.IndexFunc(b.URL, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) >= 0:
		return nil, badRequest("url may not contain control or format characters")
	}
	return leaks.Tokens(b.Tokens, b.URL)
}

// Leak results of POST /tokens/revoke-leaked, per token.
const (
	LeakRevoked       = "revoked"        // revoked as leaked by this call
	LeakAlreadyLeaked = "already_leaked" // revoked as leaked before
	LeakNotFound      = "not_found"      // an armgate token that does not exist
	LeakMalformed     = "malformed"      // not an armgate token (shape, checksum)
)

// LeakResult is the outcome for one submitted token. Hint is empty for a
// string that is not an armgate token: it may be another secret.
type LeakResult struct {
	Hint      string  `json:"hint"`
	TokenHash string  `json:"token_hash"`
	Result    string  `json:"result"`
	TokenID   *string `json:"token_id"`
}

// RevokedLeaks is the answer of POST /tokens/revoke-leaked: one result per
// submitted token, in order, and how many this call revoked.
type RevokedLeaks struct {
	Results []LeakResult `json:"results"`
	Revoked int          `json:"revoked"`
}

// LeakResults builds the answer for items from the store's outcome.
func LeakResults(items []leaks.Item, out map[token.Hash]storage.LeakOutcome) RevokedLeaks {
	res := RevokedLeaks{Results: make([]LeakResult, len(items))}
	counted := map[token.Hash]bool{}
	for i, it := range items {
		r := LeakResult{Hint: it.Hint(), TokenHash: it.HashHex(), Result: LeakMalformed}
		if it.Valid {
			r.Result = LeakNotFound
			if o, ok := out[it.Hash]; ok {
				id := o.TokenID
				r.TokenID = &id
				r.Result = LeakAlreadyLeaked
				if o.Revoked {
					r.Result = LeakRevoked
					if !counted[it.Hash] {
						counted[it.Hash] = true
						res.Revoked++
					}
				}
			}
		}
		res.Results[i] = r
	}
	return res
}

// revokeLeaked is the admin's POST /tokens/revoke-leaked: revoke the given
// tokens as leaked (actor leak:admin), whatever their state, and answer
// per token.
func (h *handler) revokeLeaked(w http.ResponseWriter, r *http.Request) error {
	if h.leaks.Store == nil {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "leak reports are not available on this instance"}
	}
	var body RevokeLeakedRequest
	if err := request.Decode(r.Body, &body); err != nil {
		return err
	}
	items, err := body.Items()
	if err != nil {
		return err
	}
	out, err := h.revokeItems(r.Context(), LeakSourceAdmin, actor(r), items)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, LeakResults(items, out))
	return nil
}
