// armgate admin screen: users, their API tokens, and the audit log, on top of
// the admin API (see the README). Plain JavaScript, no build step, no
// dependencies; it runs under a strict Content-Security-Policy, so it never
// uses inline scripts, inline styles or innerHTML with data.
//
// The admin credential lives in sessionStorage (this tab only) and is sent as
// a Bearer header; there are no cookies. A new token's plaintext lives only
// in the show-once dialog's DOM while that dialog is open.
"use strict";

(() => {
  const STORAGE_KEY = "armgate.admin.credential";
  const DEFAULT_MAX_TOKENS = 10; // max_tokens_per_user defaults to 10
  const USER_ID = /^[A-Za-z0-9._@-]{1,128}$/;
  const USERS_PAGE = 200;
  const AUDIT_LIMIT = 200;
  const USER_AUDIT_LIMIT = 50;

  const { $, ApiError, enc, sentence, el, cell, show, setText, dateFmt, when, badge, showError, showNotice, confirmAction } = armgate;

  // The API is the parent of /ui/ under whatever prefix the site mounts
  // armgate_admin (e.g. /admin/ui/ → /admin).
  const apiBase = (() => {
    const p = location.pathname;
    const i = p.lastIndexOf("/ui/");
    return i >= 0 ? p.slice(0, i) : p.replace(/\/ui$/, "");
  })();

  // ---- credential (sessionStorage only; memory when storage is disabled)

  let memoryCredential = "";

  function credential() {
    try {
      return sessionStorage.getItem(STORAGE_KEY) || "";
    } catch {
      return "";
    }
  }
  function setCredential(v) {
    try {
      sessionStorage.setItem(STORAGE_KEY, v);
    } catch {
      // Storage disabled: the tab still works until it reloads.
    }
    memoryCredential = v;
  }
  function clearCredential() {
    memoryCredential = "";
    try {
      sessionStorage.removeItem(STORAGE_KEY);
    } catch {
      // nothing stored
    }
  }
  const currentCredential = () => credential() || memoryCredential;

  // ---- API

  // request calls the admin API and resolves to {status, data}; API errors
  // reject with an ApiError. A 401 outside sign-in ends the session.
  async function request(method, path, body, opts = {}) {
    const key = opts.key !== undefined ? opts.key : currentCredential();
    const init = { credentials: "omit", headers: key ? { Authorization: "Bearer " + key } : {} };
    try {
      return await armgate.request(apiBase + path, method, body, init);
    } catch (err) {
      if (err.status === 401 && !opts.signin) {
        err.handled = true;
        sessionEnded();
      }
      throw err;
    }
  }
  const api = async (method, path, body, opts) => (await request(method, path, body, opts)).data;

  // explain turns an API error into plain words for the person at the screen.
  function explain(err, ctx = {}) {
    if (!(err instanceof ApiError)) {
      return "Something went wrong in this page: " + (err && err.message ? err.message : String(err));
    }
    const said = err.apiMessage ? " The gateway says: " + sentence(err.apiMessage) : "";
    switch (err.code) {
      case "network":
        return "Could not reach the gateway. Check the network connection and try again.";
      case "token_limit_reached": {
        const n = ctx.max || DEFAULT_MAX_TOKENS;
        return `This user already has ${n} tokens, the maximum per license. Delete or let one expire first.`;
      }
      case "name_taken":
        return `This user already has a token named “${ctx.name || ""}”. Choose another name (a name is free again once its token is deleted).`;
      case "user_deactivated":
        return ctx.action === "reapprove"
          ? "This token's user is deactivated, so the token cannot be re-approved now. Reactivate the user first."
          : `User “${ctx.user || ""}” is deactivated, so no new token can be created. Reactivate the user first.`;
      case "token_expired":
        return "This token has expired, so it can no longer be re-approved. Create a new token instead.";
      case "token_not_active":
        return /already rotated/.test(err.apiMessage || "")
          ? sentence(err.apiMessage) + " Rotate its successor instead."
          : "Only an active token can be rotated. Re-approve it first, or create a new token.";
      case "token_leaked":
        return "This token was revoked because it leaked: its value is public, so it can never be re-approved. Create a new token instead.";
      case "rotation_pending":
        return "This token replaced another one that still works until its grace ends. Rotate it again after that.";
      case "not_found":
        return ctx.notFound || "It no longer exists; someone may have deleted it meanwhile. The page has been refreshed.";
      case "invalid_request":
        return "The gateway did not accept this. " + sentence(err.apiMessage || "The request is invalid.");
      case "request_too_large":
        return "That is too much text for one request (over 64 KiB). Shorten it and try again.";
      case "forbidden":
        return "This token is valid but lacks the admin scope, so it cannot manage users and tokens. Sign in with the admin key or a token that has the admin scope.";
      case "unauthorized":
        return "This admin key or token was not accepted. Check it and try again." + said;
      case "unavailable":
        return "The token database is unreachable right now, so the gateway could not finish this. Wait a few seconds, then reload and try again.";
    }
    switch (err.status) {
      case 503:
        return "The gateway is unavailable right now. Wait a few seconds, then reload and try again.";
      case 502:
      case 504:
        return "The gateway did not answer in time. Try again in a moment.";
    }
    return `The gateway answered with an unexpected error (HTTP ${err.status}${err.code ? ", " + err.code : ""}).` + said;
  }

  const maxTokens = (u) =>
    u && Number.isInteger(u.max_tokens_per_user) && u.max_tokens_per_user > 0 ? u.max_tokens_per_user : DEFAULT_MAX_TOKENS;

  function report(err, ctx) {
    if (err && err.handled) return;
    showError(explain(err, ctx));
  }

  // ---- views and routing

  const VIEWS = ["signin", "users", "user", "audit"];
  let navSeq = 0; // drops answers that arrive after the person moved on

  function showView(name) {
    for (const v of VIEWS) show($("view-" + v), v === name);
    const signedIn = name !== "signin";
    show($("nav"), signedIn);
    show($("signout"), signedIn);
    for (const [id, view] of [["nav-users", "users"], ["nav-audit", "audit"]]) {
      const a = $(id);
      if (view === name || (view === "users" && name === "user")) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
  }

  function route(focus = true) {
    const seq = ++navSeq;
    showError("");
    if (!currentCredential()) {
      showSignin();
      return;
    }
    const h = location.hash.replace(/^#/, "");
    const m = /^\/users\/(.+)$/.exec(h);
    if (h === "/audit") {
      showAudit(seq, focus);
    } else if (m) {
      let id = "";
      try {
        id = decodeURIComponent(m[1]);
      } catch {
        id = m[1];
      }
      showUser(id, seq, focus);
    } else {
      showUsers(seq, focus);
    }
  }

  function focusHeading(id) {
    const h = $(id);
    if (h) h.focus({ preventScroll: false });
  }

  // ---- sign-in

  function showSignin(msg) {
    showView("signin");
    document.title = "Sign in · armgate admin";
    setText($("signin-error"), msg || "");
    $("signin-key").focus();
  }

  function sessionEnded() {
    clearCredential();
    for (const d of document.querySelectorAll("dialog[open]")) {
      if (d.id !== "dlg-show-token") d.close();
    }
    navSeq++;
    showSignin(
      "Your sign-in is no longer accepted: the admin key may have changed, or the admin token was revoked or expired. Sign in again."
    );
  }

  async function signIn(e) {
    e.preventDefault();
    const input = $("signin-key");
    const key = input.value.trim();
    if (!key) {
      setText($("signin-error"), "Enter the admin key or an admin token.");
      input.focus();
      return;
    }
    const btn = $("signin-submit");
    btn.disabled = true;
    setText($("signin-error"), "");
    try {
      await api("GET", "/users?limit=1", undefined, { key, signin: true });
      setCredential(key);
      input.value = "";
      showNotice("");
      route();
    } catch (err) {
      let msg = explain(err);
      if (err.status === 401) {
        msg = "That admin key or token was not accepted. Check it and try again.";
        if (/expired|revoked|deactivated/i.test(err.apiMessage)) msg += " The gateway says: " + sentence(err.apiMessage);
      }
      setText($("signin-error"), msg);
      input.focus();
      input.select();
    } finally {
      btn.disabled = false;
    }
  }

  function signOut() {
    clearCredential();
    navSeq++;
    users = [];
    currentUser = null;
    history.replaceState(null, "", location.pathname + location.search);
    showSignin();
    showNotice("Signed out. The admin key was removed from this tab.");
  }

  // ---- users

  let users = [];
  let usersCursor = null;

  async function showUsers(seq, focus) {
    showView("users");
    document.title = "Users · armgate admin";
    if (focus) focusHeading("users-title");
    await loadUsers(seq, true);
  }

  async function loadUsers(seq, reset) {
    const status = $("user-status").value;
    let q = "/users?limit=" + USERS_PAGE;
    if (status) q += "&status=" + enc(status);
    if (!reset && usersCursor) q += "&cursor=" + enc(usersCursor);
    if (reset) setText($("users-empty"), "Loading users…");
    $("users-more").disabled = true;
    try {
      const page = await api("GET", q);
      if (seq !== navSeq) return;
      users = (reset ? [] : users).concat(page.users || []);
      usersCursor = page.next_cursor || null;
      renderUsers();
    } catch (err) {
      if (seq !== navSeq) return;
      setText($("users-empty"), "");
      report(err);
    } finally {
      $("users-more").disabled = false;
    }
  }

  function renderUsers() {
    const term = $("user-search").value.trim().toLowerCase();
    const shown = term ? users.filter((u) => u.id.toLowerCase().startsWith(term)) : users;
    $("users-body").replaceChildren(...shown.map(userRow));
    let empty = "";
    if (shown.length === 0) {
      if (term) empty = `No user id starts with “${$("user-search").value.trim()}”.` + (usersCursor ? " Load more users to search further." : "");
      else if ($("user-status").value) empty = "No users with this status.";
      else empty = "No users yet. Add one with Add user.";
    }
    setText($("users-empty"), empty);
    show($("users-more"), !!usersCursor);
  }

  function userRow(u) {
    const max = maxTokens(u);
    const name = u.display_name || "";
    const active = u.status === "active";
    return el(
      "tr",
      { "data-user-id": u.id },
      cell("User ID", { class: "id-cell" }, el("a", { href: "#/users/" + enc(u.id), text: u.id })),
      cell("Name", null, name ? name : el("span", { class: "muted", text: "—" }), u.email ? el("span", { class: "sub", text: u.email }) : null),
      cell("Status", null, badge(u.status)),
      cell("Tokens", { class: "num" }, `${u.token_count} of ${max}`),
      cell(
        "Actions",
        { class: "cell-actions" },
        el(
          "div",
          { class: "row-actions" },
          el("a", { class: "btn btn-small", href: "#/users/" + enc(u.id), "aria-label": "API tokens of " + u.id, text: "API tokens" }),
          el("button", {
            type: "button",
            class: "btn btn-small" + (active ? " btn-link-danger" : ""),
            "aria-label": (active ? "Deactivate " : "Reactivate ") + u.id,
            text: active ? "Deactivate" : "Reactivate",
            onclick: () => confirmUserToggle(u, () => loadUsers(navSeq, true)),
          })
        )
      )
    );
  }

  // ---- add user

  function openAddUser() {
    $("add-user-form").reset();
    setText($("add-user-error"), "");
    $("dlg-add-user").showModal();
    $("add-user-id").focus();
  }

  async function addUser(e) {
    e.preventDefault();
    const id = $("add-user-id").value.trim();
    const name = $("add-user-name").value.trim();
    const email = $("add-user-email").value.trim();
    const fail = (msg, field) => {
      setText($("add-user-error"), msg);
      if (field) field.focus();
    };
    if (!USER_ID.test(id)) {
      return fail("The user id must be 1 to 128 characters: letters, digits, and . _ @ - only.", $("add-user-id"));
    }
    if (id === "." || id === "..") {
      return fail(`“${id}” cannot be a user id here: it would be read as part of the URL path.`, $("add-user-id"));
    }
    const btn = $("add-user-submit");
    btn.disabled = true;
    setText($("add-user-error"), "");
    try {
      // PUT is an upsert; adding must not silently overwrite someone.
      try {
        await api("GET", "/users/" + enc(id));
        return fail(`A user with id “${id}” already exists. Open it from the list to manage their tokens.`, $("add-user-id"));
      } catch (err) {
        if (err.code !== "not_found") throw err;
      }
      const body = {};
      if (name) body.display_name = name;
      if (email) body.email = email;
      await api("PUT", "/users/" + enc(id), body);
      $("dlg-add-user").close();
      location.hash = "#/users/" + enc(id);
      showNotice(`User “${id}” added. Create their first API token with Create API Token.`);
    } catch (err) {
      if (!err.handled) fail(explain(err));
    } finally {
      btn.disabled = false;
    }
  }

  // ---- confirmations

  function confirmUserToggle(u, after) {
    const active = u.status === "active";
    const n = u.token_count;
    const count = n > 0 ? ` (${n} token${n === 1 ? "" : "s"})` : "";
    if (active) {
      confirmAction({
        title: `Deactivate ${u.id}?`,
        text:
          `All of this user's API tokens${count} stop working at once, on every gateway. ` +
          "Reactivating the user later brings back the tokens that were not revoked on their own and have not expired.",
        ok: "Deactivate user",
        run: async () => {
          await withCtx(api("POST", "/users/" + enc(u.id) + "/deactivate"), { notFound: `User “${u.id}” no longer exists.` });
          showNotice(`User “${u.id}” deactivated. All of their tokens are refused from now on.`);
          await after();
        },
      });
    } else {
      confirmAction({
        title: `Reactivate ${u.id}?`,
        text:
          "Their tokens that were switched off by the deactivation work again at once. " +
          "Tokens revoked on their own stay revoked, and expired tokens stay expired.",
        ok: "Reactivate user",
        danger: false,
        run: async () => {
          await withCtx(api("POST", "/users/" + enc(u.id) + "/reactivate"), { notFound: `User “${u.id}” no longer exists.` });
          showNotice(`User “${u.id}” reactivated.`);
          await after();
        },
      });
    }
  }

  async function withCtx(p, ctx) {
    try {
      return await p;
    } catch (err) {
      err.ctx = ctx;
      throw err;
    }
  }

  // ---- one user and their tokens

  let currentUser = null;
  let currentTokens = [];

  async function showUser(id, seq, focus) {
    showView("user");
    document.title = id + " · API Tokens · armgate admin";
    if (!currentUser || currentUser.id !== id) {
      currentUser = null;
      currentTokens = [];
      $("user-title").textContent = id;
      $("user-sub").textContent = "";
      $("token-usage").textContent = "";
      $("tokens-body").replaceChildren();
      $("user-audit-body").replaceChildren();
      show($("tokens-empty"), false);
      show($("user-audit-empty"), false);
      show($("user-deactivated-note"), false);
      show($("toggle-user"), false);
      $("create-token").disabled = true; // until the user is loaded
    }
    if (focus) focusHeading("user-title");
    await loadUser(id, seq);
  }

  async function loadUser(id, seq) {
    const base = "/users/" + enc(id);
    const [u, t, a] = await Promise.allSettled([
      api("GET", base),
      api("GET", base + "/tokens"),
      api("GET", "/audit?user_id=" + enc(id) + "&limit=" + USER_AUDIT_LIMIT),
    ]);
    if (seq !== navSeq) return;
    if (u.status === "rejected") {
      report(u.reason, { notFound: `There is no user “${id}”. Add the user first, or check the id.` });
      return;
    }
    currentUser = u.value;
    currentTokens = t.status === "fulfilled" ? t.value.tokens || [] : [];
    renderUser();
    if (t.status === "rejected") report(t.reason);
    if (a.status === "fulfilled") renderAudit($("user-audit-body"), $("user-audit-empty"), a.value.events || []);
    else report(a.reason);
  }

  const reloadUser = () => (currentUser ? loadUser(currentUser.id, navSeq) : Promise.resolve());

  function renderUser() {
    const u = currentUser;
    const max = maxTokens(u);
    $("user-title").textContent = u.id;
    const sub = [u.display_name, u.email].filter(Boolean).join(" · ");
    $("user-sub").replaceChildren(
      badge(u.status),
      " ",
      sub ? sub + " · " : "",
      "added ",
      when(u.created_at)
    );
    const active = u.status === "active";
    const toggle = $("toggle-user");
    toggle.textContent = active ? "Deactivate user" : "Reactivate user";
    toggle.className = "btn" + (active ? " btn-link-danger" : " btn-primary");
    show(toggle, true);
    show($("user-deactivated-note"), !active);
    $("create-token").disabled = false;

    const usage = $("token-usage");
    usage.textContent = `${u.token_count} of ${max} tokens` + (u.token_count >= max ? " (limit reached)" : "");
    usage.classList.toggle("usage-full", u.token_count >= max);

    $("tokens-body").replaceChildren(...currentTokens.map(tokenRow));
    show($("tokens-empty"), currentTokens.length === 0);
    armgate.loadUsage((id) => api("GET", "/tokens/" + enc(id) + "/usage?days=30"), currentTokens);
  }

  function tokenRow(t) {
    const expired = new Date(t.expires_at).getTime() <= Date.now();
    const actions = [];
    const act = (label, cls, fn) => armgate.tokenButton(t, label, cls, fn);
    const rotated = !!t.rotated_to;
    if (t.status === "active" && !rotated) actions.push(act("Rotate", "", () => confirmRotate(t)));
    if (t.status === "active" || t.status === "deactivated") actions.push(act("Revoke", "btn-link-danger", () => confirmRevoke(t)));
    if (t.status === "revoked" && !expired && !armgate.leaked(t)) actions.push(act("Re-approve", "", () => confirmReapprove(t)));
    actions.push(act("Delete", "btn-link-danger", () => confirmDelete(t)));
    const scopes = (t.scopes || []).filter((s) => s !== "api");
    const successor = rotated ? currentTokens.find((x) => x.id === t.rotated_to) : null;
    const rotatedTo = rotated ? "Rotated to " + (successor ? `“${successor.name}” (${successor.hint})` : t.rotated_to.slice(0, 8) + "…") : "";
    const statusSub = armgate.leaked(t)
      ? armgate.leakSub(t)
      : t.status === "revoked" && t.revoked_reason
        ? el("span", { class: "sub", text: "Reason: " + t.revoked_reason + (rotated ? ". " + rotatedTo : "") })
        : rotated && t.status === "active"
          ? el("span", { class: "sub", text: `${rotatedTo}; works until ${dateFmt.format(new Date(t.expires_at))}` })
          : rotated
            ? el("span", { class: "sub", text: rotatedTo })
            : t.status === "deactivated"
              ? el("span", { class: "sub", text: "User deactivated" })
              : null;
    return armgate.tokenRow(t, { attrs: { "data-rotated": rotated ? "true" : null }, showScopes: scopes.length > 0, statusSub, actions, limits: openLimits });
  }

  // openLimits sets, changes or removes token t's quota and allow-list.
  function openLimits(t) {
    armgate.openLimits(t, {
      note: "Set, raise, lower or remove this token's own quota and allow-list. The user can only lower or narrow them.",
      explain: (err) => explain(err, err.ctx),
      save: async (body) => {
        try {
          await withCtx(api("PATCH", "/tokens/" + enc(t.id), body), {});
        } catch (err) {
          if (err.code === "not_found") reloadUser();
          throw err;
        }
        showNotice(`Limits of “${t.name}” changed.`);
        await reloadUser();
      },
    });
  }

  function confirmRevoke(t) {
    const exp = dateFmt.format(new Date(t.expires_at));
    confirmAction({
      title: `Revoke “${t.name}”?`,
      text:
        `Requests with ${t.hint} are refused at once, on every gateway. ` +
        `You can re-approve it any time before it expires (${exp}).`,
      ok: "Revoke token",
      reason: true,
      run: async (reason) => {
        await withCtx(api("POST", "/tokens/" + enc(t.id) + "/revoke", reason ? { reason } : {}), {});
        showNotice(`Token “${t.name}” revoked. The gateway refuses it from now on.`);
        await reloadUser();
      },
    });
  }

  function confirmRotate(t) {
    confirmAction({
      title: `Rotate “${t.name}”?`,
      text:
        "The user gets a new token with the same name and scopes, shown once here. " +
        `The old one (${t.hint}) keeps working for the time you choose, so it can be replaced where it is used.`,
      ok: "Rotate token",
      danger: false,
      grace: true,
      run: async () => {
        const created = await withCtx(api("POST", "/tokens/" + enc(t.id) + "/rotate", { grace: $("confirm-grace").value }), {});
        $("dlg-confirm").close();
        // The old token's end is its new expires_at.
        await reloadUser();
        const old = currentTokens.find((x) => x.id === (created.rotated_from || t.id));
        showOnce(created, old || { expires_at: null, hint: t.hint });
      },
    });
  }

  function confirmReapprove(t) {
    const exp = dateFmt.format(new Date(t.expires_at));
    confirmAction({
      title: `Re-approve “${t.name}”?`,
      text: `Requests with ${t.hint} are accepted again until it expires (${exp}).`,
      ok: "Re-approve token",
      danger: false,
      run: async () => {
        try {
          await withCtx(api("POST", "/tokens/" + enc(t.id) + "/reapprove"), { action: "reapprove" });
        } catch (err) {
          if (err.code === "token_expired" || err.code === "not_found") reloadUser();
          throw err;
        }
        showNotice(`Token “${t.name}” re-approved.`);
        await reloadUser();
      },
    });
  }

  function confirmDelete(t) {
    confirmAction({
      title: `Delete “${t.name}”?`,
      text:
        `Requests with ${t.hint} are refused at once, and the token cannot be restored. ` +
        "Deleting frees one of the user's token slots and the token's name.",
      ok: "Delete token",
      run: async () => {
        await withCtx(api("DELETE", "/tokens/" + enc(t.id)), {});
        showNotice(`Token “${t.name}” deleted.`);
        await reloadUser();
      },
    });
  }

  // ---- create token and show it once

  function openCreateToken() {
    if (!currentUser) return;
    $("create-token-form").reset();
    $("create-token-user").textContent = currentUser.id;
    setText($("create-token-error"), "");
    $("dlg-create-token").showModal();
    $("token-name").focus();
  }

  async function createToken(e) {
    e.preventDefault();
    const u = currentUser;
    if (!u) return;
    const name = $("token-name").value.trim();
    if (!name) {
      setText($("create-token-error"), "Give the token a name, e.g. what it is for.");
      $("token-name").focus();
      return;
    }
    const btn = $("create-token-submit");
    btn.disabled = true;
    setText($("create-token-error"), "");
    try {
      const created = await api("POST", "/users/" + enc(u.id) + "/tokens", {
        name,
        expires_in: $("token-lifetime").value,
        scopes: $("token-scope").value.split(" "),
      });
      $("dlg-create-token").close();
      showOnce(created);
      reloadUser();
    } catch (err) {
      if (err.handled) return;
      setText($("create-token-error"), explain(err, { name, user: u.id, max: maxTokens(u) }));
      if (err.code === "token_limit_reached" || err.code === "user_deactivated") reloadUser();
    } finally {
      btn.disabled = false;
    }
  }

  // showOnce shows a new token once; old is the token it replaces after a
  // rotation.
  function showOnce(created, old) {
    $("show-token-title").textContent = old ? "Rotated API token" : "New API token";
    $("show-token-user").textContent = created.user_id;
    armgate.showOnce(created, old);
  }

  // ---- audit

  const ACTIONS = {
    "user.create": "User added",
    "user.update": "User updated",
    "user.deactivate": "User deactivated",
    "user.reactivate": "User reactivated",
    "token.create": "Token created",
    "token.revoke": "Token revoked",
    "token.leaked": "Token revoked as leaked",
    "token.reapprove": "Token re-approved",
    "token.delete": "Token deleted",
    "token.logout": "Token logged out",
    "token.rotate": "Token rotated",
    "token.update": "Token limits changed",
    "token.purge": "Token removed (retention)",
  };

  function tokenLabel(id) {
    const t = currentTokens.find((x) => x.id === id);
    return t ? `token “${t.name}”` : "token " + id.slice(0, 8) + "…";
  }

  // LEAK_SOURCES words the reporters of leaked tokens (actor leak:<source>).
  const LEAK_SOURCES = { github: "GitHub secret scanning", gitlab: "GitLab secret detection", admin: "an administrator" };

  // actorLabel words who made a change: an admin key, an admin-scope token,
  // a token's holder logging it out, a user through self-service, the
  // command line, armgate itself (retention) or a leak report.
  function actorLabel(a, ev) {
    if (a === "admin_key") return "Admin key";
    if (a === "cli") return "Command line";
    if (a === "system") return "armgate (retention)";
    if (a === "unknown") return "Unknown (before actors were recorded)";
    if (a.startsWith("leak:")) return "Leak report from " + (LEAK_SOURCES[a.slice(5)] || a.slice(5));
    if (a.startsWith("user:")) return `${a.slice(5)} (self-service)`;
    if (a.startsWith("token:")) {
      const id = a.slice(6);
      if (ev && ev.action === "token.logout" && ev.target === id) return "The token's holder (logout)";
      return "Admin " + tokenLabel(id);
    }
    return a;
  }

  const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

  function detailValue(v) {
    if (Array.isArray(v)) return v.map(detailValue).join(", ");
    if (v !== null && typeof v === "object") return JSON.stringify(v);
    if (typeof v === "string" && ISO_TIME.test(v)) return dateFmt.format(new Date(v));
    return String(v);
  }

  function detailText(d) {
    if (!d || typeof d !== "object") return "";
    return Object.entries(d)
      .map(([k, v]) => `${k.replace(/_/g, " ")}: ${detailValue(v)}`)
      .join("; ");
  }

  function renderAudit(body, empty, events) {
    body.replaceChildren(
      ...events.map((ev) => {
        const isToken = ev.action.startsWith("token.");
        return el(
          "tr",
          null,
          cell("When", null, when(ev.at)),
          cell("Who", { title: ev.actor }, actorLabel(ev.actor, ev)),
          cell("Action", null, ACTIONS[ev.action] || ev.action),
          cell(
            "Target",
            { title: ev.target },
            isToken ? tokenLabel(ev.target) : el("a", { href: "#/users/" + enc(ev.target), text: ev.target })
          ),
          cell("Details", { class: "detail" }, detailText(ev.detail))
        );
      })
    );
    show(empty, events.length === 0);
  }

  async function showAudit(seq, focus) {
    showView("audit");
    document.title = "Audit log · armgate admin";
    if (focus) focusHeading("audit-title");
    try {
      const a = await api("GET", "/audit?limit=" + AUDIT_LIMIT);
      if (seq !== navSeq) return;
      renderAudit($("audit-body"), $("audit-empty"), a.events || []);
    } catch (err) {
      if (seq === navSeq) report(err);
    }
  }

  // ---- wiring

  function init() {
    $("signin-form").addEventListener("submit", signIn);
    $("signout").addEventListener("click", signOut);
    $("add-user").addEventListener("click", openAddUser);
    $("add-user-form").addEventListener("submit", addUser);
    $("user-search").addEventListener("input", renderUsers);
    $("user-status").addEventListener("change", () => loadUsers(navSeq, true));
    $("users-more").addEventListener("click", () => loadUsers(navSeq, false));
    $("toggle-user").addEventListener("click", () => {
      if (currentUser) confirmUserToggle(currentUser, reloadUser);
    });
    $("create-token").addEventListener("click", openCreateToken);
    $("create-token-form").addEventListener("submit", createToken);
    armgate.wireConfirm((err) => {
      if (!err.handled) setText($("confirm-error"), explain(err, err.ctx));
    });

    armgate.wireDialogs(() => {
      if (!$("view-user").hidden) $("create-token").focus();
    });
    window.addEventListener("hashchange", () => route(true));
    route(false);
  }

  armgate.onReady(init);
})();
