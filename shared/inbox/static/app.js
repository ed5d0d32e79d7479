// The inbox page: plain DOM, no framework, no build step. Everything shown is put
// in the page as text (never as HTML): messages come from customers and a model.
"use strict";

const REASONS = {
  handoff: "asked for a person",
  paused: "bot paused",
  failed: "a message failed",
  unknown: "bot had no answer",
};
const WHO = { customer: "Customer", bot: "Assistant", person: "Person", business: "Business" };
const TICKS = { sent: "✓", delivered: "✓✓", read: "✓✓", failed: "✗ not delivered" };
const state = {
  me: null, business: "", items: new Map(), cursor: "", openId: "", open: null, query: "", timer: null, loading: 0,
  // The reply being written: its key names it, so a double click or a retried request sends it once.
  draftKey: "", sending: false,
};

function newKey() {
  return crypto.randomUUID ? crypto.randomUUID() : Array.from(crypto.getRandomValues(new Uint8Array(16)),
    (b) => b.toString(16).padStart(2, "0")).join("");
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

class SignedOut extends Error {}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (options.method && options.method !== "GET" && state.me) headers["X-CSRF-Token"] = state.me.csrf;
  const response = await fetch(path, { credentials: "same-origin", ...options, headers });
  const body = response.status === 204 ? {} : await response.json();
  if (response.status === 401) throw new SignedOut(body.error || "signed out");
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

// Times

function parse(iso) {
  return iso ? new Date(iso) : null;
}

function clock(iso) {
  const at = parse(iso);
  if (!at) return "";
  const today = new Date().toDateString() === at.toDateString();
  return today ? at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : at.toLocaleDateString([], { day: "numeric", month: "short" }) + " " + at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function span(seconds) {
  seconds = Math.max(0, Math.floor(seconds));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  return hours < 48 ? `${hours} h ${minutes % 60} min` : `${Math.floor(hours / 24)} days`;
}

function refreshTimers() {
  for (const node of document.querySelectorAll("[data-since]")) {
    const since = parse(node.dataset.since);
    if (since) node.textContent = `${node.dataset.label || ""}${span((Date.now() - since) / 1000)}`;
  }
}

// Sign-in

function showSignIn(signin, error) {
  document.getElementById("app").hidden = true;
  document.getElementById("signin").hidden = false;
  if (error && error !== "sign in") document.getElementById("signin-note").textContent = error;
  if (!signin || !signin.client_id) {
    document.getElementById("signin-note").textContent = "Sign-in is not configured for this deployment (INBOX_OAUTH_CLIENT_ID).";
    return;
  }
  const script = el("script", { src: signin.script_url, async: "" });
  script.addEventListener("load", () => {
    google.accounts.id.initialize({ client_id: signin.client_id, ux_mode: "redirect", login_uri: signin.login_uri });
    google.accounts.id.renderButton(document.getElementById("gsi-button"),
      { type: "standard", theme: "outline", size: "large", text: "signin_with", shape: "pill" });
  });
  script.addEventListener("error", () => {
    document.getElementById("signin-note").textContent = `Could not load Google's sign-in from ${signin.script_url}.`;
  });
  document.head.append(script);
}

async function boot() {
  let me;
  try {
    const response = await fetch("/api/me", { credentials: "same-origin" });
    const body = await response.json();
    if (!response.ok) return showSignIn(body.signin, body.error);
    me = body;
  } catch (error) {
    return showSignIn(null, String(error));
  }
  state.me = me;
  document.getElementById("signin").hidden = true;
  document.getElementById("app").hidden = false;
  document.getElementById("me").textContent = me.email;
  document.getElementById("open-ops").hidden = !me.operator;
  const picker = document.getElementById("business");
  picker.replaceChildren(...me.businesses.map((b) => el("option", { value: b.address, text: b.name })));
  const wanted = new URLSearchParams(location.hash.slice(1));
  const remembered = localStorage.getItem("inbox.business");
  const choice = [wanted.get("b"), remembered].find((b) => me.businesses.some((x) => x.address === b));
  state.business = choice || (me.businesses[0] || {}).address || "";
  picker.value = state.business;
  picker.addEventListener("change", () => switchBusiness(picker.value));
  if (wanted.get("c")) state.openId = wanted.get("c");
  await load();
  if (state.openId) openConversation(state.openId);
  setInterval(refreshTimers, 1000);
}

function signedOut() {
  clearTimeout(state.timer);
  location.reload();
}

// The list

function query() {
  const params = new URLSearchParams({ business: state.business });
  if (state.query) params.set("q", state.query);
  return params;
}

async function load() {
  const ticket = ++state.loading;
  clearTimeout(state.timer);
  try {
    const body = await api(`/api/conversations?${query()}`);
    if (ticket !== state.loading) return;
    state.items = new Map(body.conversations.map((c) => [c.id, c]));
    state.cursor = body.cursor;
    renderList();
  } catch (error) {
    if (error instanceof SignedOut) return signedOut();
    console.warn(error);
  }
  schedule();
}

function schedule() {
  clearTimeout(state.timer);
  state.timer = setTimeout(poll, (state.me.pollSeconds || 3) * 1000);
}

async function poll() {
  const ticket = state.loading;
  try {
    const params = query();
    params.set("since", state.cursor);
    if (state.openId) params.set("open", state.openId);
    const body = await api(`/api/conversations?${params}`);
    if (ticket !== state.loading) return;
    let changed = false;
    for (const summary of body.conversations) {
      const known = state.items.get(summary.id);
      if (!known || known.version !== summary.version) changed = true;
      state.items.set(summary.id, summary);
    }
    state.cursor = body.cursor;
    if (changed) renderList();
    if (body.open && (!state.open || state.open.version !== body.open.version)) renderOpen(body.open);
  } catch (error) {
    if (error instanceof SignedOut) return signedOut();
    console.warn(error);
  }
  schedule();
}

function ordered() {
  const all = [...state.items.values()];
  const waiting = all.filter((c) => c.needsPerson).sort((a, b) => a.waitingSince.localeCompare(b.waitingSince));
  const rest = all.filter((c) => !c.needsPerson).sort((a, b) => (b.updatedAt || "").localeCompare(a.updatedAt || ""));
  return [waiting, rest];
}

function badges(c) {
  const found = c.reasons.map((r) => el("span", { class: "badge alert", "data-reason": r, text: REASONS[r] || r }));
  if (c.optedOut) found.push(el("span", { class: "badge muted", text: "opted out" }));
  if (!c.window.open) found.push(el("span", { class: "badge muted", text: "window closed" }));
  return found;
}

function label(c) {
  return c.name || c.number || "unknown customer";
}

function renderItem(c) {
  const preview = c.last ? `${c.last.who === "customer" ? "" : WHO[c.last.who] + ": "}${c.last.text}` : "";
  const waiting = c.needsPerson
    ? el("div", { class: "waiting", "data-testid": "waiting", "data-since": c.waitingSince, "data-label": "waiting " })
    : null;
  return el("li", {
    class: `item${c.id === state.openId ? " selected" : ""}`, "data-testid": "conversation-item", "data-id": c.id,
    onclick: () => openConversation(c.id),
  },
  el("div", { class: "avatar", text: label(c).replace(/[^\p{L}\p{N}]/gu, "").slice(0, 2).toUpperCase() || "?" }),
  el("div", { class: "main" },
    el("div", { class: "line1" }, el("span", { class: "name", "data-testid": "item-name", text: label(c) }),
      el("span", { class: "when", text: clock(c.updatedAt) })),
    el("div", { class: "preview", "data-testid": "item-number", text: c.name ? c.number : "" }),
    el("div", { class: "preview", "data-testid": "item-preview", text: preview }),
    el("div", {}, ...badges(c)), waiting));
}

function renderList() {
  const [waiting, rest] = ordered();
  document.getElementById("needs-person").replaceChildren(...waiting.map(renderItem));
  document.getElementById("recent").replaceChildren(...rest.map(renderItem));
  refreshTimers();
}

function switchBusiness(address) {
  state.business = address;
  localStorage.setItem("inbox.business", address);
  closeConversation();
  load();
}

// The open conversation

async function openConversation(id) {
  if (id !== state.openId) {
    state.draftKey = "";
    document.getElementById("reply-text").value = "";
  }
  state.openId = id;
  location.hash = new URLSearchParams({ b: state.business, c: id }).toString();
  for (const node of document.querySelectorAll(".item")) node.classList.toggle("selected", node.dataset.id === id);
  try {
    renderOpen(await api(`/api/conversations/${encodeURIComponent(id)}`));
  } catch (error) {
    if (error instanceof SignedOut) return signedOut();
    closeConversation();
    document.getElementById("empty").textContent = String(error.message || error);
  }
}

function closeConversation() {
  state.openId = "";
  state.open = null;
  document.getElementById("open").hidden = true;
  document.getElementById("empty").hidden = false;
}

function renderMessage(m) {
  const meta = el("span", { class: "meta" }, el("span", { text: clock(m.at) }));
  if (m.who === "customer") {
    if (m.state) meta.prepend(el("span", { "data-testid": "state", text: `${m.state}${m.detail ? ": " + m.detail : ""} · ` }));
  } else if (m.ticks || m.state) {
    const status = m.ticks || m.state;
    meta.append(el("span", {
      class: `ticks ${status}`, "data-testid": "ticks", "data-status": status, text: " " + (TICKS[status] || status),
    }));
  }
  return el("li", { class: `msg ${m.who}`, "data-testid": "message", "data-who": m.who, "data-sid": m.sid },
    el("div", { class: "by", text: m.detail && m.who !== "customer" ? `${WHO[m.who]} · ${m.detail}` : WHO[m.who] }),
    el("span", { "data-testid": "text", text: m.text }), meta);
}

function renderOpen(d) {
  if (d.id !== state.openId) return;
  state.open = d;
  document.getElementById("empty").hidden = true;
  document.getElementById("open").hidden = false;
  document.getElementById("conv-name").textContent = label(d);
  document.getElementById("conv-avatar").textContent = label(d).replace(/[^\p{L}\p{N}]/gu, "").slice(0, 2).toUpperCase();
  document.getElementById("conv-number").textContent = d.number;
  document.getElementById("conv-badges").replaceChildren(...badges(d));
  const waiting = document.getElementById("conv-waiting");
  waiting.replaceChildren(d.needsPerson
    ? el("span", { class: "waiting", "data-since": d.waitingSince, "data-label": "customer waiting " }) : "");
  const closes = parse(d.window.closesAt);
  document.getElementById("conv-window").replaceChildren(d.window.open
    ? el("span", { "data-testid": "window-open", text: `24-hour window open until ${clock(d.window.closesAt)}` })
    : el("span", { class: "closed", "data-testid": "window-closed",
      text: closes ? "Outside the 24-hour window: only a template can be sent" : "The customer has not written yet: only a template can be sent" }));
  renderComposer(d);
  const list = document.getElementById("history");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren(...d.history.map(renderMessage));
  if (atBottom || !list.dataset.id || list.dataset.id !== d.id) list.scrollTop = list.scrollHeight;
  list.dataset.id = d.id;
  refreshTimers();
}

// Replying, taking over, handing back

function renderComposer(d) {
  const paused = Boolean(d.pausedUntil);
  document.getElementById("take-over").hidden = paused || d.optedOut;
  document.getElementById("hand-back").hidden = !paused;
  const text = document.getElementById("reply-text");
  const note = document.getElementById("composer-note");
  const template = document.getElementById("reply-template");
  let why = "";
  if (d.optedOut) why = "The customer opted out of your messages: nothing can be sent.";
  else if (!d.window.open) {
    why = "Outside the 24-hour window: only an approved template can be sent until the customer writes again.";
  }
  note.hidden = !why;
  note.textContent = why;
  text.disabled = Boolean(why);
  document.getElementById("reply-send").disabled = Boolean(why) || state.sending;
  template.hidden = d.optedOut || d.window.open || !d.template;
}

async function sendReply(body) {
  if (state.sending || !state.openId) return;
  const id = state.openId;
  if (!state.draftKey) state.draftKey = newKey();
  state.sending = true;
  document.getElementById("reply-send").disabled = true;
  const note = document.getElementById("composer-note");
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await api(`/api/conversations/${encodeURIComponent(id)}/reply`, {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ key: state.draftKey, ...body }),
        });
        break;
      } catch (error) {
        // A lost answer (network): the same key again, which the server answers without sending twice.
        if (!(error instanceof TypeError) || attempt >= 2) throw error;
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
    state.draftKey = "";
    if (!body.template) document.getElementById("reply-text").value = "";
    if (state.openId === id) renderOpen(await api(`/api/conversations/${encodeURIComponent(id)}`));
  } catch (error) {
    if (error instanceof SignedOut) return signedOut();
    note.hidden = false;
    note.textContent = String(error.message || error);
  } finally {
    state.sending = false;
    if (state.open) renderComposer(state.open);
  }
}

async function setPaused(action) {
  const id = state.openId;
  try {
    await api(`/api/conversations/${encodeURIComponent(id)}/${action}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: "{}",
    });
    if (state.openId === id) renderOpen(await api(`/api/conversations/${encodeURIComponent(id)}`));
  } catch (error) {
    if (error instanceof SignedOut) return signedOut();
    const note = document.getElementById("composer-note");
    note.hidden = false;
    note.textContent = String(error.message || error);
  }
}

// Operations (operators only)

async function loadOps() {
  const output = document.getElementById("ops-output");
  try {
    const body = await api("/api/ops/failures");
    const dead = body.failures.filter((f) => f.status === "dead_lettered");
    document.querySelector("[data-testid=dead-letters] tbody").replaceChildren(...dead.map((f) => el("tr", { "data-sid": f.sid },
      el("td", { text: f.at.replace("T", " ").slice(0, 19) }), el("td", { text: f.sid }), el("td", { text: f.sender }),
      el("td", { text: f.reason }),
      el("td", {}, el("button", { type: "button", "data-testid": "replay", text: "Replay", onclick: () => replay([f.sid]) })))));
    document.querySelector("[data-testid=failures] tbody").replaceChildren(...body.failures.map((f) => el("tr", {},
      el("td", { text: f.at.replace("T", " ").slice(0, 19) }), el("td", { text: f.status }), el("td", { text: f.stage }),
      el("td", { text: f.sender }), el("td", { text: f.sid }), el("td", { text: f.reason }))));
  } catch (error) {
    if (error instanceof SignedOut) return signedOut();
    output.hidden = false;
    output.textContent = String(error.message || error);
  }
}

async function replay(sids) {
  const output = document.getElementById("ops-output");
  output.hidden = false;
  output.textContent = "replaying…";
  try {
    const body = await api("/api/ops/replay", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ sids }),
    });
    output.textContent = body.lines.join("\n");
  } catch (error) {
    if (error instanceof SignedOut) return signedOut();
    output.textContent = String(error.message || error);
  }
  loadOps();
}

function setUpComposer() {
  const text = document.getElementById("reply-text");
  text.addEventListener("input", () => { if (!text.value.trim()) state.draftKey = ""; });
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      document.getElementById("composer").requestSubmit();
    }
  });
  document.getElementById("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    if (text.value.trim()) sendReply({ text: text.value });
  });
  document.getElementById("reply-template").addEventListener("click", () => sendReply({ template: true }));
  document.getElementById("take-over").addEventListener("click", () => setPaused("take-over"));
  document.getElementById("hand-back").addEventListener("click", () => setPaused("hand-back"));
}

function setUp() {
  setUpComposer();
  document.getElementById("search").addEventListener("input", (event) => {
    clearTimeout(state.searchTimer);
    state.searchTimer = setTimeout(() => { state.query = event.target.value.trim(); load(); }, 300);
  });
  document.getElementById("signout").addEventListener("click", async () => {
    try { await api("/auth/signout", { method: "POST" }); } finally { location.hash = ""; location.reload(); }
  });
  document.getElementById("open-ops").addEventListener("click", () => {
    document.getElementById("ops").hidden = false;
    loadOps();
  });
  document.getElementById("ops-close").addEventListener("click", () => { document.getElementById("ops").hidden = true; });
  document.getElementById("ops-refresh").addEventListener("click", loadOps);
  document.getElementById("replay-all").addEventListener("click", () => replay([]));
  boot();
}

setUp();
