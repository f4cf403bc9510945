// armgate "My API Tokens": the signed-in person's own API tokens, on top of
// the self-service JSON API beside this page (one level up from /ui/, under
// whatever prefix the site mounts it). Plain JavaScript, no build step, no
// dependencies; it runs under a strict Content-Security-Policy, so it never
// uses inline scripts, inline styles or innerHTML with data.
//
// The site's own sign-in (basic auth, a cookie, a sign-in proxy) identifies
// the person; this page keeps no credential. A new token's plaintext lives
// only in the show-once dialog's DOM while that dialog is open.
"use strict";

(() => {
  const DEFAULT_MAX_TOKENS = 10;

  const { $, ApiError, request, enc, sentence, el, show, setText, dateFmt, showError, showNotice, confirmAction } = armgate;

  // ---- API

  // api calls the self-service API with a URL relative to this page
  // ("../tokens"), so it follows any mount prefix, and resolves to the
  // decoded JSON (null for 204); errors reject with an ApiError.
  const api = async (method, path, body) =>
    (await request("../" + path, method, body, { credentials: "same-origin" })).data;

  // explain turns an API error into plain words.
  function explain(err, ctx = {}) {
    if (!(err instanceof ApiError)) {
      return "Something went wrong in this page: " + (err && err.message ? err.message : String(err));
    }
    const said = err.apiMessage ? " The gateway says: " + sentence(err.apiMessage) : "";
    switch (err.code) {
      case "network":
        return "Could not reach the gateway. Check the network connection and try again.";
      case "token_limit_reached": {
        const n = maxTokens();
        return `You have ${n} of ${n} tokens; delete one first. Revoked tokens count until they are deleted or expire.`;
      }
      case "name_taken":
        return `You already have a token named “${ctx.name || ""}”. Choose another name (a name is free again once its token is deleted).`;
      case "token_expired":
        return "This token has expired, so it can no longer be re-approved. Create a new token instead.";
      case "token_not_active":
        if (/already rotated/.test(err.apiMessage || "")) {
          return "This token was already rotated; use its successor (the list has been refreshed).";
        }
        return "Only an active token can be rotated. Re-approve it first, or create a new token.";
      case "token_leaked":
        return "This token was revoked because it leaked: its value is public, so it can never be re-approved. Create a new token instead.";
      case "rotation_pending":
        return "This token replaced another one that still works until its grace ends. Rotate it again after that.";
      case "user_deactivated":
        return "Your account is deactivated, so your tokens cannot be used or re-approved. Ask an administrator.";
      case "not_found":
        return "This token no longer exists; it may have been deleted meanwhile. The list has been refreshed.";
      case "invalid_request":
        return "The gateway did not accept this. " + sentence(err.apiMessage || "The request is invalid.");
      case "unauthorized":
        return "You are not signed in any more. Reload the page to sign in again.";
      case "forbidden":
        return err.apiMessage ? sentence(err.apiMessage) : "You cannot manage API tokens here. Ask an administrator.";
      case "unavailable":
        return "The token database is unreachable right now. Wait a few seconds, then reload and try again.";
    }
    switch (err.status) {
      case 502:
      case 503:
      case 504:
        return "The gateway is unavailable right now. Wait a few seconds, then reload and try again.";
    }
    return `The gateway answered with an unexpected error (HTTP ${err.status}${err.code ? ", " + err.code : ""}).` + said;
  }

  // ---- the token list

  let me = null; // the user JSON
  let max = DEFAULT_MAX_TOKENS;
  let tokens = [];
  let loadSeq = 0; // drops answers that arrive after a newer load

  const maxTokens = () => max;

  async function load() {
    const seq = ++loadSeq;
    try {
      const data = await api("GET", "tokens");
      if (seq !== loadSeq) return;
      me = data.user || null;
      max = Number.isInteger(data.max_tokens) && data.max_tokens > 0 ? data.max_tokens : DEFAULT_MAX_TOKENS;
      tokens = data.tokens || [];
      render();
    } catch (err) {
      if (seq !== loadSeq) return;
      $("token-usage").textContent = "";
      showError(explain(err));
    }
  }

  // inUse counts the tokens the limit counts (the user's token_count when
  // the API gives it).
  function inUse() {
    if (me && Number.isInteger(me.token_count)) return me.token_count;
    const now = Date.now();
    return tokens.filter((t) => !t.rotated_to && new Date(t.expires_at).getTime() > now).length;
  }

  function render() {
    if (me) {
      const who = me.display_name ? `${me.display_name} (${me.id})` : me.id;
      setText($("whoami"), "Signed in as " + who);
    }
    const n = inUse();
    const usage = $("token-usage");
    usage.textContent = `${n} of ${max} tokens` + (n >= max ? " (limit reached: delete one to create another)" : "");
    usage.classList.toggle("usage-full", n >= max);
    $("create-token").disabled = false;
    $("tokens-body").replaceChildren(...tokens.map(tokenRow));
    show($("tokens-empty"), tokens.length === 0);
    armgate.loadUsage((id) => api("GET", "tokens/" + enc(id) + "/usage?days=30"), tokens);
  }

  function tokenRow(t) {
    const expired = new Date(t.expires_at).getTime() <= Date.now();
    const rotated = !!t.rotated_to;
    const actions = [];
    const act = (label, cls, fn) => armgate.tokenButton(t, label, cls, fn);
    if (t.status === "active" && !rotated) actions.push(act("Rotate", "", () => confirmRotate(t)));
    if (t.status === "active" || t.status === "deactivated") actions.push(act("Revoke", "btn-link-danger", () => confirmRevoke(t)));
    // A user lifts only their own revocation or the token's logout; an
    // administrator's (or a leak report's) is theirs to lift.
    const ownRevocation = me && (t.revoked_by === "user:" + me.id || t.revoked_by === "token:" + t.id);
    if (t.status === "revoked" && !expired && ownRevocation) actions.push(act("Re-approve", "", () => confirmReapprove(t)));
    actions.push(act("Delete", "btn-link-danger", () => confirmDelete(t)));
    let statusSub = null;
    if (armgate.leaked(t)) statusSub = armgate.leakSub(t);
    else if (t.status === "revoked" && !ownRevocation)
      statusSub = el("span", { class: "sub", text: "Revoked by an administrator" + (t.revoked_reason ? ": " + t.revoked_reason : "") + ". Only an administrator can re-approve it." });
    else if (t.status === "revoked" && t.revoked_reason) statusSub = el("span", { class: "sub", text: "Reason: " + t.revoked_reason });
    else if (t.status === "deactivated") statusSub = el("span", { class: "sub", text: "Your account is deactivated" });
    else if (rotated && t.status === "active") statusSub = el("span", { class: "sub", text: "Rotated: works until " + dateFmt.format(new Date(t.expires_at)) });
    else if (rotated) statusSub = el("span", { class: "sub", text: "Rotated" });
    const scopes = t.scopes || [];
    return armgate.tokenRow(t, { attrs: { "data-rotated": rotated ? "true" : null }, showScopes: scopes.length > 0, statusSub, actions, limits: openLimits });
  }

  // openLimits lowers token t's quota or narrows its allow-list; the
  // gateway refuses anything else, in words shown in the dialog.
  function openLimits(t) {
    armgate.openLimits(t, {
      note: "You can lower this token's quota and narrow where it may be used from. Only an administrator can raise, remove or widen them.",
      explain,
      save: async (body) => {
        try {
          await api("PATCH", "tokens/" + enc(t.id), body);
        } catch (err) {
          if (err.code === "not_found") load();
          throw err;
        }
        showNotice(`Limits of “${t.name}” changed.`);
        await load();
      },
    });
  }

  // ---- confirmations

  function confirmRevoke(t) {
    const exp = dateFmt.format(new Date(t.expires_at));
    confirmAction({
      title: `Revoke “${t.name}”?`,
      text:
        `Requests with ${t.hint} are refused at once. ` +
        `You can re-approve it any time before it expires (${exp}). It still counts toward your ${max} tokens until you delete it.`,
      ok: "Revoke token",
      reason: true,
      run: async () => {
        const reason = $("confirm-reason").value.trim();
        await api("POST", "tokens/" + enc(t.id) + "/revoke", reason ? { reason } : {});
        showNotice(`Token “${t.name}” revoked. It is refused from now on.`);
        await load();
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
        await api("POST", "tokens/" + enc(t.id) + "/reapprove");
        showNotice(`Token “${t.name}” re-approved.`);
        await load();
      },
    });
  }

  function confirmDelete(t) {
    confirmAction({
      title: `Delete “${t.name}”?`,
      text:
        `Requests with ${t.hint} are refused at once, and the token cannot be restored. ` +
        "Deleting frees one of your token slots and the token's name.",
      ok: "Delete token",
      run: async () => {
        await api("DELETE", "tokens/" + enc(t.id));
        showNotice(`Token “${t.name}” deleted.`);
        await load();
      },
    });
  }

  function confirmRotate(t) {
    confirmAction({
      title: `Rotate “${t.name}”?`,
      text:
        "You get a new token with the same name, shown once. " +
        `The old one (${t.hint}) keeps working for the time you choose, so you can replace it where it is used.`,
      ok: "Rotate token",
      danger: false,
      grace: true,
      run: async () => {
        const created = await api("POST", "tokens/" + enc(t.id) + "/rotate", { grace: $("confirm-grace").value });
        // The old token's end is its new expires_at; load never throws.
        await load();
        const old = tokens.find((x) => x.id === (created.rotated_from || t.id));
        $("dlg-confirm").close();
        showOnce(created, old || { expires_at: null, hint: t.hint });
      },
    });
  }

  // ---- create a token and show it once

  function openCreateToken() {
    $("create-token-form").reset();
    setText($("create-token-error"), "");
    $("dlg-create-token").showModal();
    $("token-name").focus();
  }

  async function createToken(e) {
    e.preventDefault();
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
      const created = await api("POST", "tokens", { name, expires_in: $("token-lifetime").value });
      $("dlg-create-token").close();
      showOnce(created, null);
      load();
    } catch (err) {
      setText($("create-token-error"), explain(err, { name }));
      if (err.code === "token_limit_reached") load();
    } finally {
      btn.disabled = false;
    }
  }

  // showOnce shows the new token once; old is the rotated token, whose end
  // it states.
  function showOnce(created, old) {
    $("show-token-title").textContent = old ? "Your rotated API token" : "Your new API token";
    armgate.showOnce(created, old);
  }

  // ---- wiring

  function init() {
    $("create-token").addEventListener("click", openCreateToken);
    $("create-token-form").addEventListener("submit", createToken);
    armgate.wireConfirm((err) => {
      setText($("confirm-error"), explain(err));
      if (err.code === "not_found" || err.code === "token_expired" || err.code === "token_not_active") load();
    });

    armgate.wireDialogs(() => $("create-token").focus());
    load();
  }

  armgate.onReady(init);
})();
