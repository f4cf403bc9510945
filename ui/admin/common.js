// armgate screens: what the admin screen and the self-service screen share
// (API calls, DOM helpers, dates, banners, the show-once token dialog).
// Loaded before each screen's app.js; it defines the one global `armgate`.
// Plain JavaScript under the same strict Content-Security-Policy: no inline
// scripts or styles, no innerHTML with data, no storage.
"use strict";

const armgate = (() => {
  const $ = (id) => document.getElementById(id);

  // ---- API

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message || code || "HTTP " + status);
      this.status = status;
      this.code = code || "";
      this.apiMessage = message || "";
      this.handled = false;
    }
  }

  // request sends a JSON API call (body, if any, as JSON) and resolves to
  // {status, data} (data null for 204); an error answer or a network
  // failure rejects with an ApiError. init carries the screen's headers and
  // credentials mode.
  async function request(url, method, body, init) {
    init = Object.assign({ method, cache: "no-store", redirect: "error", referrerPolicy: "no-referrer" }, init);
    init.headers = Object.assign({ Accept: "application/json" }, init.headers);
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(url, init);
    } catch {
      throw new ApiError(0, "network", "");
    }
    let data = null;
    const text = res.status === 204 ? "" : await res.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!res.ok) throw new ApiError(res.status, data && data.error, data && data.message);
    return { status: res.status, data };
  }

  // sentence makes an API message a sentence: capital first, full stop last.
  const sentence = (s) => {
    s = String(s).trim();
    if (!s) return s;
    s = s[0].toUpperCase() + s.slice(1);
    return /[.!?]$/.test(s) ? s : s + ".";
  };

  // ---- DOM helpers

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  // cell wraps its content in one element, so that the stacked layout of a
  // narrow window keeps it in one grid column beside the label.
  const cell = (label, props, ...children) =>
    el("td", Object.assign({ "data-label": label }, props), el("div", { class: "cv" }, ...children));
  const show = (node, on) => {
    node.hidden = !on;
  };
  function setText(node, text) {
    node.textContent = text || "";
    node.hidden = !text;
  }

  // ---- dates

  const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  const dayFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
  const relFmt = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

  function relative(d) {
    const s = (d.getTime() - Date.now()) / 1000;
    const a = Math.abs(s);
    if (a < 60) return relFmt.format(Math.round(s), "second");
    if (a < 3600) return relFmt.format(Math.round(s / 60), "minute");
    if (a < 86400) return relFmt.format(Math.round(s / 3600), "hour");
    if (a < 86400 * 60) return relFmt.format(Math.round(s / 86400), "day");
    if (a < 86400 * 730) return relFmt.format(Math.round(s / (86400 * 30.44)), "month");
    return relFmt.format(Math.round(s / (86400 * 365.25)), "year");
  }

  // when renders a timestamp (the exact time is in its tooltip); opts.day
  // shows the date only, opts.rel adds "in 3 months" underneath.
  function when(iso, empty, opts = {}) {
    if (!iso) return el("span", { class: "muted", text: empty || "—" });
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return document.createTextNode(iso);
    const t = el("time", { datetime: iso, title: dateFmt.format(d) + " (" + d.toISOString() + ")", text: (opts.day ? dayFmt : dateFmt).format(d) });
    return opts.rel ? [t, el("span", { class: "sub", text: relative(d) })] : t;
  }

  const STATUS_LABEL = { active: "Active", revoked: "Revoked", deactivated: "Deactivated", expired: "Expired", leaked: "Leaked" };
  const badge = (status) =>
    el("span", { class: "badge badge-" + (STATUS_LABEL[status] ? status : "deactivated"), text: STATUS_LABEL[status] || status });

  // ---- a token's row

  // leaked reports whether a leak report revoked t; such a token is never
  // re-approved.
  const leaked = (t) => typeof t.revoked_by === "string" && t.revoked_by.startsWith("leak:");
  // leakSub says where a leaked token was found; only an http(s) URL is a
  // link.
  function leakSub(t) {
    const url = t.leak_url || "";
    const where = /^https?:\/\//i.test(url)
      ? el("a", { href: url, rel: "noopener noreferrer nofollow", target: "_blank", text: url })
      : url || "a place the report did not name";
    return el("span", { class: "sub leak-url", "data-leak-url": url }, "Found at ", where);
  }

  // tokenButton is an action button of token t's row.
  const tokenButton = (t, label, cls, fn) =>
    el("button", { type: "button", class: "btn btn-small " + cls, "aria-label": `${label} token ${t.name}`, text: label, onclick: fn });

  // tokenRow is token t's table row: attrs adds to its data- attributes,
  // showScopes shows its scopes under the name, statusSub goes under the
  // status and actions into the last cell; limits, if given, is what the
  // row's "Change limits" button calls with t.
  function tokenRow(t, { attrs, showScopes, statusSub, actions, limits }) {
    return el(
      "tr",
      Object.assign({ "data-token-id": t.id, "data-token-name": t.name, "data-status": t.status }, attrs),
      cell("Name", { class: "id-cell" }, t.name, showScopes ? el("span", { class: "sub", text: "Scopes: " + t.scopes.join(", ") }) : null),
      cell("Token", null, el("code", { text: t.hint })),
      cell("Status", null, badge(leaked(t) ? "leaked" : t.status), statusSub),
      cell("Created", null, when(t.created_at, "", { day: true })),
      cell("Expires", null, when(t.expires_at, "", { day: true, rel: true })),
      cell("Last used", null, when(t.last_used_at, "Never", { rel: true })),
      cell("Limits and usage", { class: "usage-cell" }, controls(t, limits), el("div", { class: "usage-chart", "data-usage-for": t.id })),
      cell("Actions", { class: "cell-actions" }, el("div", { class: "row-actions" }, actions))
    );
  }

  // ---- quota, allow-list and usage

  // controls says what limits token t: its quota (else the configured
  // default or the user's, which the gateway applies) and its allow-list;
  // with limits, a button to change them (not on an expired token).
  function controls(t, limits) {
    const q = t.rate_limit
      ? `${t.rate_limit.requests.toLocaleString()} per ${t.rate_limit.window}`
      : "default";
    const ips = t.allowed_ips && t.allowed_ips.length ? t.allowed_ips.join(", ") : "anywhere";
    return el(
      "div",
      { class: "controls" },
      el("span", { class: "sub quota", "data-quota": t.rate_limit ? `${t.rate_limit.requests}/${t.rate_limit.window}` : "" }, "Quota: " + q),
      el("span", { class: "sub allowed-ips", "data-allowed-ips": (t.allowed_ips || []).join(" ") }, "From: " + ips),
      limits && t.status !== "expired"
        ? el("button", { type: "button", class: "btn btn-small btn-limits", "aria-label": `Change limits of token ${t.name}`, text: "Change limits", onclick: () => limits(t) })
        : null
    );
  }

  // ---- changing a token's quota and allow-list

  const WINDOWS = [["1s", "second"], ["1m", "minute"], ["1h", "hour"], ["24h", "24 hours"]];
  let limitsDlg = null;
  let limitsRun = null;

  // limitsDialog builds the dialog both screens change limits in, once, the
  // first time it is needed.
  function limitsDialog() {
    if (limitsDlg) return limitsDlg;
    const help = (id, text) => el("p", { id, class: "help", text });
    limitsDlg = el(
      "dialog",
      { id: "dlg-limits", "aria-labelledby": "limits-title", "aria-describedby": "limits-note" },
      el(
        "form",
        { id: "limits-form", novalidate: true },
        el("h2", { id: "limits-title" }),
        el("p", { id: "limits-note", class: "muted" }),
        el(
          "div",
          { class: "field" },
          el("label", { for: "limits-requests", text: "Quota" }),
          el(
            "div",
            { class: "limit-row" },
            el("input", { id: "limits-requests", inputmode: "numeric", autocomplete: "off", spellcheck: "false", "aria-describedby": "limits-requests-help", placeholder: "none" }),
            el("span", { class: "muted", text: "requests per" }),
            el("select", { id: "limits-window", "aria-label": "Quota window" })
          ),
          help("limits-requests-help", "Empty: no quota of its own (the configured default, if any, applies).")
        ),
        el(
          "div",
          { class: "field" },
          el("label", { for: "limits-ips", text: "Allowed from" }),
          el("textarea", { id: "limits-ips", rows: "3", autocomplete: "off", spellcheck: "false", "aria-describedby": "limits-ips-help", placeholder: "anywhere" }),
          help("limits-ips-help", "Addresses or CIDRs, IPv4 or IPv6, one per line (at most 32). Empty: anywhere.")
        ),
        el("p", { id: "limits-error", class: "field-error", role: "alert", hidden: true }),
        el(
          "div",
          { class: "actions" },
          el("button", { type: "button", class: "btn", text: "Cancel", onclick: () => limitsDlg.close() }),
          el("button", { type: "submit", id: "limits-save", class: "btn btn-primary", text: "Save limits" })
        )
      )
    );
    limitsDlg.addEventListener("close", () => {
      limitsRun = null;
    });
    limitsDlg.querySelector("form").addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!limitsRun) return;
      const btn = $("limits-save");
      btn.disabled = true;
      setText($("limits-error"), "");
      try {
        await limitsRun();
      } finally {
        btn.disabled = false;
      }
    });
    document.body.append(limitsDlg);
    return limitsDlg;
  }

  const sameList = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

  // openLimits asks for token t's new quota and allow-list: note says who
  // may change what, save(body) sends the PATCH body (only what changed;
  // null or [] removes a control) and explain words what it threw, which
  // is shown in the dialog.
  function openLimits(t, { note, save, explain }) {
    const dlg = limitsDialog();
    const rl = t.rate_limit;
    const cur = t.allowed_ips || [];
    $("limits-title").textContent = `Limits of “${t.name}”`;
    $("limits-note").textContent = note;
    $("limits-requests").value = rl ? String(rl.requests) : "";
    const win = $("limits-window");
    const windows = WINDOWS.slice();
    if (rl && !windows.some(([w]) => w === rl.window)) windows.push([rl.window, rl.window]);
    win.replaceChildren(...windows.map(([w, label]) => el("option", { value: w, text: label })));
    win.value = rl ? rl.window : "1h";
    $("limits-ips").value = cur.join("\n");
    setText($("limits-error"), "");
    limitsRun = async () => {
      const body = {};
      const n = $("limits-requests").value.trim().replace(/[ ,_]/g, "");
      if (n === "") {
        if (rl) body.rate_limit = null;
      } else if (!/^[0-9]{1,18}$/.test(n)) {
        setText($("limits-error"), "The quota is a whole number of requests, or empty for none.");
        $("limits-requests").focus();
        return;
      } else if (!rl || rl.requests !== Number(n) || rl.window !== win.value) {
        body.rate_limit = { requests: Number(n), window: win.value };
      }
      const ips = $("limits-ips").value.split(/[\s,]+/).filter(Boolean);
      if (!sameList(ips, cur)) body.allowed_ips = ips;
      if (Object.keys(body).length === 0) {
        dlg.close();
        return;
      }
      try {
        await save(body);
        dlg.close();
      } catch (err) {
        if (err && err.handled) return;
        setText($("limits-error"), explain(err));
      }
    };
    dlg.showModal();
    $("limits-requests").focus();
  }

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    for (const c of children) e.append(c);
    return e;
  }

  // usageChart draws the days of a usage answer as a bar chart in inline
  // SVG: one bar per UTC day, oldest on the left, allowed requests below
  // and refused ones (quota, then allow-list) stacked on top; each bar's
  // tooltip gives the day's numbers. Drawn here, nothing fetched.
  function usageChart(u) {
    const days = (u && u.days) || [];
    const W = 4, GAP = 1, H = 36;
    const total = (d) => d.allowed + d.quota_refused + d.ip_refused;
    const peak = Math.max(1, ...days.map(total));
    const sum = (k) => days.reduce((n, d) => n + d[k], 0);
    const label = `Last ${days.length} days: ${sum("allowed").toLocaleString()} allowed, ` +
      `${sum("quota_refused").toLocaleString()} over quota, ${sum("ip_refused").toLocaleString()} from other addresses`;
    const chart = svg("svg", {
      class: "bars", role: "img", "aria-label": label,
      width: days.length * (W + GAP), height: H, viewBox: `0 0 ${days.length * (W + GAP)} ${H}`,
    });
    days.forEach((d, i) => {
      const g = svg("g", { "data-day": d.day }, svg("title", {}, `${d.day}: ${d.allowed} allowed, ${d.quota_refused} over quota, ${d.ip_refused} from other addresses`));
      // background slot, so that empty days show as days
      g.append(svg("rect", { x: i * (W + GAP), y: 0, width: W, height: H, class: "bar-slot" }));
      let y = H;
      for (const [k, cls] of [["allowed", "bar-allowed"], ["quota_refused", "bar-quota"], ["ip_refused", "bar-ip"]]) {
        if (!d[k]) continue;
        const h = Math.max(1, Math.round((d[k] / peak) * H));
        y -= h;
        g.append(svg("rect", { x: i * (W + GAP), y: Math.max(0, y), width: W, height: h, class: cls }));
      }
      chart.append(g);
    });
    const last = u && u.last_ip ? " · last from " + u.last_ip : "";
    return [chart, el("span", { class: "sub usage-sum", text: `${sum("allowed").toLocaleString()} allowed in ${days.length} days${last}` })];
  }

  // loadUsage fills each token row's chart with what usageOf(id) resolves
  // to (the screen's GET tokens/{id}/usage); a failure leaves a note.
  async function loadUsage(usageOf, tokens) {
    await Promise.all(tokens.map(async (t) => {
      const box = document.querySelector(`[data-usage-for="${CSS.escape(t.id)}"]`);
      if (!box) return;
      try {
        const u = await usageOf(t.id);
        box.replaceChildren(...usageChart(u));
        box.dataset.loaded = "true";
      } catch {
        box.replaceChildren(el("span", { class: "sub muted", text: "Usage unavailable" }));
      }
    }));
  }

  // ---- banners

  let noticeTimer = 0;
  function showError(msg) {
    setText($("banner"), msg);
    if (msg) $("notice").hidden = true;
  }
  function showNotice(msg) {
    clearTimeout(noticeTimer);
    setText($("notice"), msg);
    if (msg) {
      $("banner").hidden = true;
      noticeTimer = setTimeout(() => setText($("notice"), ""), 8000);
    }
  }

  // ---- the confirmation dialog

  let confirmRun = null;

  // confirmAction asks first, then runs the change with the dialog still
  // open, so that an error shows where the person is looking. run gets the
  // reason typed in, if asked for; grace asks for a grace period (a field
  // only the self-service screen has).
  function confirmAction({ title, text, ok, danger = true, reason = false, grace = false, run }) {
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    const okBtn = $("confirm-ok");
    okBtn.textContent = ok;
    okBtn.className = "btn " + (danger ? "btn-danger" : "btn-primary");
    show($("confirm-reason-field"), reason);
    $("confirm-reason").value = "";
    const graceField = $("confirm-grace-field");
    if (graceField) {
      show(graceField, grace);
      $("confirm-grace").value = "24h";
    }
    setText($("confirm-error"), "");
    confirmRun = run;
    $("dlg-confirm").showModal();
    (reason ? $("confirm-reason") : grace ? $("confirm-grace") : okBtn).focus();
  }

  // wireConfirm sets up the confirmation dialog; onError gets what the
  // change threw, with the dialog still open.
  function wireConfirm(onError) {
    $("confirm-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!confirmRun) return;
      const okBtn = $("confirm-ok");
      okBtn.disabled = true;
      setText($("confirm-error"), "");
      try {
        await confirmRun($("confirm-reason").value.trim());
        confirmRun = null;
        $("dlg-confirm").close();
      } catch (err) {
        onError(err);
      } finally {
        okBtn.disabled = false;
      }
    });
    $("dlg-confirm").addEventListener("close", () => {
      confirmRun = null;
    });
  }

  // ---- the show-once dialog of a new token

  let copied = false;
  let escWarned = false;

  // showOnce puts the plaintext into the dialog, and nowhere else; the
  // dialog's close handler removes it. The screen fills in its own fields
  // of the dialog first. old, after a rotation, is the rotated token: the
  // dialog says until when it keeps working.
  function showOnce(created, old) {
    const oldNote = $("show-token-old");
    if (old && old.expires_at) {
      const end = new Date(old.expires_at);
      oldNote.textContent =
        end.getTime() <= Date.now()
          ? `The old token (${old.hint}) has stopped working.`
          : `The old token (${old.hint}) keeps working until ${dateFmt.format(end)} (${relative(end)}). Replace it before then.`;
      oldNote.hidden = false;
    } else {
      setText(oldNote, old ? `The old token (${old.hint}) stops working soon.` : "");
    }
    copied = false;
    escWarned = false;
    $("token-value").textContent = created.token;
    $("show-token-name").textContent = created.name;
    $("show-token-expires").textContent = dateFmt.format(new Date(created.expires_at));
    $("copy-status").textContent = "";
    $("dlg-show-token").showModal();
    $("copy-token").focus();
  }

  function forgetShownToken() {
    $("token-value").textContent = "";
    $("copy-status").textContent = "";
    const sel = window.getSelection();
    if (sel) sel.removeAllRanges();
    copied = false;
  }

  async function copyToken() {
    const box = $("token-value");
    const text = box.textContent;
    if (!text) return;
    let ok = false;
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(text);
        ok = true;
      } catch {
        ok = false;
      }
    }
    if (!ok) {
      const range = document.createRange();
      range.selectNodeContents(box);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      try {
        ok = document.execCommand("copy");
      } catch {
        ok = false;
      }
    }
    copied = ok;
    $("copy-status").textContent = ok
      ? "Copied to the clipboard."
      : "This browser blocked copying. The token is selected: press Ctrl+C (⌘C on a Mac) to copy it.";
  }

  // wireDialogs sets up the show-once dialog (afterClose runs once the
  // plaintext is gone) and every dialog's [data-close] buttons.
  function wireDialogs(afterClose) {
    const shown = $("dlg-show-token");
    $("copy-token").addEventListener("click", copyToken);
    $("show-token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      forgetShownToken(); // before the asynchronous close event
      shown.close();
    });
    shown.addEventListener("cancel", (e) => {
      // One Escape that would lose an uncopied token is caught, once.
      if (!copied && !escWarned) {
        e.preventDefault();
        escWarned = true;
        $("copy-status").textContent =
          "The token is not copied yet and cannot be shown again. Press Escape again or the close button to discard it.";
      }
    });
    shown.addEventListener("close", () => {
      forgetShownToken();
      afterClose();
    });

    for (const b of document.querySelectorAll("dialog [data-close]")) {
      b.addEventListener("click", () => b.closest("dialog").close());
    }
  }

  // onReady runs init once the document is parsed.
  function onReady(init) {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
    else init();
  }

  return Object.freeze({
    $,
    ApiError,
    request,
    enc: encodeURIComponent,
    sentence,
    el,
    cell,
    show,
    setText,
    dateFmt,
    relative,
    when,
    badge,
    leaked,
    leakSub,
    tokenButton,
    tokenRow,
    openLimits,
    usageChart,
    loadUsage,
    showError,
    showNotice,
    confirmAction,
    wireConfirm,
    showOnce,
    wireDialogs,
    onReady,
  });
})();
