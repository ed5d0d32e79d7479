// The chat page: plain DOM, no framework, no build step. Every value shown is
// put in the page as text (never as HTML): replies come from a model.
"use strict";

const POLL_MS = 700;
const state = { config: null, business: "", users: [], open: new Set(), panes: new Map(), drawer: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function newUser() {
  return "whatsapp:+1555" + String(Math.floor(Math.random() * 1e7)).padStart(7, "0");
}

function shortNumber(address) {
  return address.replace(/^whatsapp:/, "");
}

function clock(seconds) {
  if (seconds === null || seconds === undefined) return "";
  return new Date(seconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function saveUsers() {
  localStorage.setItem("simulator.users", JSON.stringify(state.users));
}

// Sidebar

function renderBusinesses() {
  const select = document.getElementById("business");
  select.replaceChildren(
    ...state.config.businesses.map((b) => el("option", { value: b.address, text: `${b.name} (${shortNumber(b.address)})` }))
  );
  state.business = state.config.businesses.length ? state.config.businesses[0].address : "";
  select.value = state.business;
  select.addEventListener("change", () => {
    state.business = select.value;
    for (const pane of state.panes.values()) pane.reset();
  });
}

function renderUsers() {
  const list = document.getElementById("users");
  list.replaceChildren(
    ...state.users.map((user) => {
      const box = el("input", { type: "checkbox", "data-testid": "open-user", "data-user": user });
      box.checked = state.open.has(user);
      box.addEventListener("change", () => (box.checked ? openPane(user) : closePane(user)));
      const label = el("label", { text: shortNumber(user) });
      label.addEventListener("click", () => box.click());
      return el("li", { "data-testid": "user", "data-user": user }, box, el("div", { class: "avatar", text: user.slice(-2) }), label);
    })
  );
}

function addUser(open = true) {
  const user = newUser();
  state.users.push(user);
  saveUsers();
  if (open) openPane(user);
  renderUsers();
  return user;
}

// Chat panes

class Pane {
  constructor(user) {
    this.user = user;
    this.signature = "";
    this.root = document.getElementById("pane-template").content.firstElementChild.cloneNode(true);
    this.root.dataset.user = user;
    this.list = this.root.querySelector(".messages");
    this.status = this.root.querySelector(".subtitle");
    this.input = this.root.querySelector(".text");
    this.replyTo = null;
    this.banner = this.root.querySelector(".reply-banner");
    this.root.querySelector(".cancel-reply").addEventListener("click", () => this.setReply(null));
    this.sheet = this.root.querySelector(".list-sheet");
    this.sheet.querySelector(".sheet-close").addEventListener("click", () => this.closeList());
    this.root.querySelector(".as").textContent = `as ${shortNumber(user)}`;
    this.root.querySelector(".close").addEventListener("click", () => closePane(user));
    this.root.querySelector(".composer").addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    const file = this.root.querySelector("input[type=file]");
    file.addEventListener("change", () => {
      if (file.files.length) this.send(file.files[0]);
      file.value = "";
    });
    this.setUpRecorder(this.root.querySelector(".mic"));
    this.header();
  }

  header() {
    const business = state.config.businesses.find((b) => b.address === state.business);
    const name = business ? business.name : shortNumber(state.business);
    this.root.querySelector(".title").textContent = name;
    this.root.querySelector(".avatar").textContent = name.slice(0, 1).toUpperCase();
  }

  reset() {
    this.signature = "";
    this.header();
    this.refresh();
  }

  setUpRecorder(button) {
    if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.MediaRecorder)) {
      button.hidden = true;
      return;
    }
    let recorder = null;
    button.addEventListener("click", async () => {
      if (recorder) {
        recorder.stop();
        return;
      }
      let stream;
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      } catch (error) {
        this.status.textContent = `microphone unavailable: ${error.message}`;
        return;
      }
      const chunks = [];
      recorder = new MediaRecorder(stream);
      recorder.addEventListener("dataavailable", (event) => chunks.push(event.data));
      recorder.addEventListener("stop", () => {
        stream.getTracks().forEach((track) => track.stop());
        const type = (recorder.mimeType || "audio/webm").split(";")[0];
        recorder = null;
        button.classList.remove("recording");
        this.send(new File(chunks, `voice-note.${type.split("/")[1]}`, { type }));
      });
      recorder.start();
      button.classList.add("recording");
      this.status.textContent = "recording… press the microphone again to send";
    });
  }

  // Swipe-reply: the next message quotes this one, as WhatsApp's reply does.
  setReply(message) {
    this.replyTo = message;
    this.banner.hidden = !message;
    this.banner.querySelector(".quoted-text").textContent = message ? (message.body || "a message") : "";
    if (message) this.input.focus();
  }

  async send(file) {
    const text = this.input.value;
    if (!text.trim() && !file) return;
    const form = new FormData();
    form.append("user", this.user);
    form.append("business", state.business);
    form.append("body", text);
    if (file) form.append("file", file, file.name);
    if (this.replyTo) form.append("replied_sid", this.replyTo.sid);
    this.setReply(null);
    this.input.value = "";
    try {
      await api("/api/send", { method: "POST", body: form });
    } catch (error) {
      this.status.textContent = `not sent: ${error.message}`;
    }
    this.refresh();
  }

  async refresh() {
    let chat;
    try {
      chat = await api(`/api/chat?user=${encodeURIComponent(this.user)}&business=${encodeURIComponent(state.business)}`);
    } catch (error) {
      this.status.textContent = `stack unreachable: ${error.message}`;
      return;
    }
    const signature = JSON.stringify(chat);
    if (signature === this.signature) return;
    this.signature = signature;
    this.bySid = new Map(chat.messages.map((m) => [m.sid, m]));
    this.status.textContent = chat.typing ? "typing…" : "online";
    this.status.classList.toggle("typing", chat.typing);
    const nearBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    this.list.replaceChildren(...chat.messages.map((m) => this.bubble(m)));
    if (chat.typing) {
      this.list.append(el("li", { class: "typing-bubble", "data-testid": "typing" }, el("span"), el("span"), el("span")));
    }
    if (nearBottom || chat.typing) this.list.scrollTop = this.list.scrollHeight;
  }

  bubble(m) {
    const mine = m.direction === "in";
    const attrs = {
      class: `msg ${mine ? "mine" : "theirs"}`,
      "data-testid": "message",
      "data-direction": mine ? "user" : "bot",
      "data-sid": m.sid,
      title: "Open this message's trip",
    };
    const item = el("li", attrs);
    if (m.replied_sid) {
      const quoted = this.bySid.get(m.replied_sid);
      item.append(el("div", { class: "quote", "data-testid": "quote", "data-quoted-sid": m.replied_sid,
        text: quoted ? (quoted.body || "a message") : "a message no longer shown" }));
    }
    if (m.tap) item.dataset.tap = m.tap;
    if (m.media) {
      item.dataset.media = m.content_type;
      if (m.content_type.startsWith("image/")) item.append(el("img", { src: m.media, alt: "image", "data-testid": "image" }));
      else if (m.content_type.startsWith("audio/")) item.append(el("audio", { src: m.media, controls: "", "data-testid": "audio" }));
      else item.append(el("div", { text: `[${m.content_type}]` }));
    }
    if (m.body) item.append(el("span", { class: "body", "data-testid": "body", text: m.body }));
    const meta = el("span", { class: "meta" }, el("span", { text: clock(m.at) }));
    meta.append(el("button", { type: "button", class: "reply-to", "data-testid": "reply-to", title: "Reply to this message",
      text: "↩", onclick: (event) => { event.stopPropagation(); this.setReply(m); } }));
    if (mine) {
      if (m.webhook_status === 200) meta.append(el("span", { class: "ticks", text: "✓", title: "accepted by the webhook" }));
      else meta.append(el("span", { class: "refused", "data-testid": "refused", text: `refused ${m.webhook_status}` }));
    } else {
      const names = ["queued", "sent", "delivered", "read"];
      const marks = ["◷", "✓", "✓✓", "✓✓"];
      item.dataset.ticks = names[m.ticks];
      meta.append(el("span", {
        class: `ticks${m.ticks === 3 ? " read" : ""}`, "data-testid": "ticks", "data-status": names[m.ticks],
        title: names[m.ticks], text: marks[m.ticks],
      }));
    }
    item.append(meta);
    if (!mine) this.choices(item, m);
    const tripSid = mine ? m.sid : m.in_reply_to;
    item.addEventListener("click", () => {
      if (tripSid) openTrip(tripSid, this.user);
    });
    return item;
  }

  // WhatsApp's interactive messages: quick-reply buttons under the text, or a list behind a button.
  choices(item, m) {
    const types = m.types || {};
    const reply = types["twilio/quick-reply"];
    const picker = types["twilio/list-picker"];
    if (reply) {
      item.dataset.choices = "buttons";
      item.append(el("div", { class: "buttons" }, ...reply.actions.map((a) => el("button", {
        type: "button", class: "choice", "data-testid": "quick-reply", "data-choice-id": a.id, text: a.title,
        onclick: (event) => { event.stopPropagation(); this.tap(m.sid, a.id); },
      }))));
    } else if (picker) {
      item.dataset.choices = "list";
      item.append(el("div", { class: "buttons" }, el("button", {
        type: "button", class: "choice", "data-testid": "list-open", text: `☰ ${picker.button}`,
        onclick: (event) => { event.stopPropagation(); this.openList(m.sid, picker); },
      })));
    }
  }

  openList(sid, picker) {
    const rows = this.sheet.querySelector(".sheet-rows");
    const send = this.sheet.querySelector(".sheet-send");
    let chosen = null;
    this.sheet.querySelector(".sheet-title").textContent = picker.button;
    rows.replaceChildren(...picker.items.map((row) => {
      const radio = el("input", { type: "radio", name: `row-${this.user}`, value: row.id });
      const label = el("label", { class: "row", "data-testid": "list-row", "data-choice-id": row.id },
        el("span", { class: "row-text" }, el("span", { class: "row-title", text: row.item }),
          el("span", { class: "row-description", text: row.description || "" })), radio);
      radio.addEventListener("change", () => { chosen = row.id; send.disabled = false; });
      return label;
    }));
    send.disabled = true;
    send.onclick = () => {
      if (chosen) this.tap(sid, chosen);
      this.closeList();
    };
    this.sheet.hidden = false;
  }

  closeList() {
    this.sheet.hidden = true;
  }

  async tap(sid, choiceId) {
    const form = new FormData();
    form.append("user", this.user);
    form.append("business", state.business);
    form.append("message_sid", sid);
    form.append("choice_id", choiceId);
    try {
      await api("/api/tap", { method: "POST", body: form });
    } catch (error) {
      this.status.textContent = `not sent: ${error.message}`;
    }
    this.refresh();
  }
}

function openPane(user) {
  if (state.panes.has(user)) return;
  const pane = new Pane(user);
  state.panes.set(user, pane);
  state.open.add(user);
  document.getElementById("panes").append(pane.root);
  pane.refresh();
  renderUsers();
}

function closePane(user) {
  const pane = state.panes.get(user);
  if (pane) pane.root.remove();
  state.panes.delete(user);
  state.open.delete(user);
  renderUsers();
}

// What the model was given from the business's documents (chunk ids), when it has any.
function knowledgeLine(entry) {
  if (!entry.knowledgeVersion) return el("p", { class: "hint", "data-testid": "trip-knowledge", text: "no knowledge used" });
  const chunks = (entry.knowledgeChunks || []).join(", ");
  const text = entry.knowledgeUnknown ? "knowledge: nothing close enough, the unknown reply went (no model call)"
    : `knowledge: ${chunks || "nothing close enough"} (version ${entry.knowledgeVersion.slice(0, 12)})`;
  return el("p", { "data-testid": "trip-knowledge", text });
}

// Drawers: a message's trip, failures, dead letters, hand-off

function openDrawer(title, render) {
  const show = () => render().catch((error) => drawerBody(el("p", { class: "refused", text: `could not load: ${error.message}` })));
  state.drawer = show;
  document.getElementById("drawer-title").textContent = title;
  document.getElementById("drawer").hidden = false;
  show();
}

function drawerBody(...children) {
  document.getElementById("drawer-body").replaceChildren(...children);
}

function table(testid, headers, rows) {
  return el("table", { "data-testid": testid },
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { text: h })))),
    el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) =>
      c instanceof Node ? el("td", {}, c) : el("td", { class: c === "—" ? "missing" : "", text: String(c) }))))));
}

function openTrip(sid, user) {
  openDrawer(`Trip of ${sid}`, async () => {
    const query = `user=${encodeURIComponent(user)}&business=${encodeURIComponent(state.business)}`;
    const trip = await api(`/api/trip/${encodeURIComponent(sid)}?${query}`);
    const stages = table("trip-stages", ["stage", "what happened", "at", "+ms"],
      trip.stages.map((s) => [s.stage, s.what, s.at ? clock(s.at) : "—", s.ms === null ? "—" : s.ms]));
    const entry = trip.firestore.entry;
    const tasks = trip.tasks.length
      ? table("trip-tasks", ["task", "attempts", "HTTP status per attempt", "outcome"],
        trip.tasks.map((t) => [t.name, t.attempts, t.statuses.join(", ") || "—", t.outcome]))
      : el("p", { class: "hint", "data-testid": "trip-tasks", text: "no send task (yet)" });
    const failure = trip.failure
      ? el("pre", { "data-testid": "trip-failure", text: JSON.stringify(trip.failure, null, 2) })
      : el("p", { class: "hint", "data-testid": "trip-failure", text: "no failure record" });
    const events = table("trip-events", ["at", "function", "event", "status", "reason"],
      trip.events.map((e) => [clock(e.at), e.step, e.event, e.status || "—", e.reason || "—"]));
    const tools = trip.tools.length
      ? table("trip-tools", ["tool", "effect", "status", "ms", "HTTP", "Idempotency-Key"],
        trip.tools.map((t) => [t.tool, t.effect, t.reason ? `${t.status} (${t.reason})` : t.status, t.tool_ms ?? "—",
          t.http_status ?? "—", t.key]))
      : el("p", { class: "hint", "data-testid": "trip-tools", text: "no tool called" });
    const sends = table("trip-twilio", ["Twilio sid", "accepted", "status callbacks"],
      trip.twilio.map((s) => [s.sid, clock(s.at), s.callbacks.map((c) => `${c.status} (${c.http_status})`).join(" → ") || "—"]));
    drawerBody(
      el("h3", { text: "Stages" }), stages,
      el("h3", { text: "Firestore: the message's entry" }),
      el("p", {}, el("span", { class: "badge", "data-testid": "trip-state", text: entry.status || "no entry" }),
        el("span", { class: "hint", text: ` conversation ${trip.firestore.conversation}…, lastSeq ${trip.firestore.lastSeq ?? "—"}, doneSeq ${trip.firestore.doneSeq ?? "—"}` })),
      knowledgeLine(entry),
      el("pre", { "data-testid": "trip-firestore", text: JSON.stringify(entry, null, 2) }),
      el("h3", { text: "Business tools" }), tools,
      el("h3", { text: "Cloud Tasks" }), tasks,
      el("h3", { text: "Failure record" }), failure,
      el("h3", { text: "Twilio" }), sends,
      el("h3", { text: "Log events" }), events,
    );
  });
}

function failureRows(rows, withReplay) {
  return rows.map((r) => {
    const cells = [r.at ? r.at.replace("T", " ").slice(0, 19) : "—", r.status, r.stage || "—", r.sender || "—", r.sid, r.reason || "—"];
    if (withReplay) {
      cells.push(el("span", { class: "row-actions" },
        el("button", { type: "button", "data-testid": "replay", text: "Replay", onclick: () => runOps("replay", [r.sid]) })));
    }
    return cells;
  });
}

async function runOps(command, args) {
  const output = document.getElementById("ops-output");
  if (output) output.textContent = `running ${command} ${args.join(" ")}…`;
  const result = await api(`/api/ops/${command}`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ args }),
  });
  const again = document.getElementById("ops-output");
  if (again) again.textContent = result.output || `(exit ${result.code})`;
}

function openFailures() {
  openDrawer("Failures", async () => {
    const rows = await api("/api/failures");
    drawerBody(
      el("p", { class: "hint", text: "Failed, fallback and dead-lettered messages, newest first (make failures)." }),
      rows.length ? table("failures-table", ["when (UTC)", "status", "stage", "sender", "message", "reason"], failureRows(rows, false))
        : el("p", { "data-testid": "failures-table", text: "no failed or dead-lettered messages" }),
    );
  });
}

function openDeadLetters() {
  openDrawer("Dead letters", async () => {
    const rows = (await api("/api/failures")).filter((r) => r.status === "dead_lettered");
    drawerBody(
      el("p", { class: "hint", text: "Messages Pub/Sub gave up on. Replay answers them after all, in order (make replay)." }),
      el("div", { class: "drawer-actions" },
        el("button", { type: "button", "data-testid": "replay-all", text: "Replay all waiting", onclick: () => runOps("replay", []) })),
      rows.length ? table("dead-letters-table", ["when (UTC)", "status", "stage", "sender", "message", "reason", ""], failureRows(rows, true))
        : el("p", { "data-testid": "dead-letters-table", text: "no dead letters recorded" }),
      el("h3", { text: "Output" }),
      el("pre", { id: "ops-output", "data-testid": "ops-output", text: "" }),
    );
  });
}

function openHandoff() {
  // make admin's pause, reply and resume for one user at the selected business: the inbox's own steps.
  openDrawer("Hand-off", async () => {
    const user = el("select", { "data-testid": "handoff-user" },
      ...state.users.map((u) => el("option", { value: u, text: u })));
    const preferred = state.users.find((u) => state.open.has(u));
    if (preferred) user.value = preferred;
    const text = el("input", { "data-testid": "handoff-text", placeholder: "a person's reply" });
    const run = (verb, ...rest) => runOps("handoff", [verb, "--business", state.business, user.value, ...rest]);
    const button = (testid, label, onclick) => el("button", { type: "button", "data-testid": testid, text: label, onclick });
    drawerBody(
      el("p", { class: "hint", text: "A person takes over this user's conversation, answers and hands back (make admin)." }),
      el("div", { class: "drawer-actions" }, user,
        button("handoff-pause", "Take over", () => run("pause")),
        button("handoff-resume", "Hand back", () => run("resume")),
        button("handoff-show", "Show", () => run("show"))),
      el("div", { class: "drawer-actions" }, text,
        button("handoff-reply", "Reply as a person", () => text.value.trim() && run("reply", "--", text.value))),
      el("pre", { id: "ops-output", "data-testid": "ops-output", text: "" }),
    );
  });
}

// Start-up

async function main() {
  state.config = await api("/api/config");
  document.getElementById("stack-note").textContent =
    `local stack${state.config.offline_model ? " · offline model" : ""}`;
  renderBusinesses();
  try {
    state.users = JSON.parse(localStorage.getItem("simulator.users") || "[]").filter((u) => typeof u === "string");
  } catch (error) {
    state.users = [];
  }
  if (!state.users.length) addUser(false);
  openPane(state.users[0]);
  document.getElementById("new-user").addEventListener("click", () => addUser(true));
  document.getElementById("drawer-close").addEventListener("click", () => {
    document.getElementById("drawer").hidden = true;
    state.drawer = null;
  });
  document.getElementById("drawer-refresh").addEventListener("click", () => state.drawer && state.drawer());
  const drawers = { failures: openFailures, "dead-letters": openDeadLetters, handoff: openHandoff };
  for (const button of document.querySelectorAll("[data-drawer]")) {
    button.addEventListener("click", () => drawers[button.dataset.drawer]());
  }
  setInterval(() => state.panes.forEach((pane) => pane.refresh()), POLL_MS);
}

main();
