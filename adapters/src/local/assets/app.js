// The local chat page. Messages arrive as server-sent events; their `html` is rendered and
// escaped by the bot, everything else is placed with textContent.
"use strict";

const state = {
  people: [],
  person: null,
  channels: new Map(),
  channel: "deployments",
  messages: new Map(),
  unread: new Map(),
  command: "/erlmcp",
  history: [],
  source: null,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
  init.credentials = "same-origin";
  const r = await fetch(path, init);
  if (!r.ok) {
    let why = r.status + " " + r.statusText;
    try { why = (await r.json()).error || why; } catch (_) { /* not JSON */ }
    const err = new Error(why);
    err.status = r.status;
    throw err;
  }
  return r.status === 204 || r.status === 202 ? null : r.json();
}

function setStatus(text, down) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("down", !!down);
}

// ---- people ----------------------------------------------------------------------------

function fillPeople() {
  const sel = $("person");
  sel.replaceChildren();
  for (const p of state.people) {
    const label = p.name + (p.roles.length ? " — " + p.roles.join(", ") : " — no role");
    sel.append(el("option", { value: p.name, text: label }));
  }
  const wanted = new URLSearchParams(location.search).get("as") || sessionStorage.getItem("erlmcp-as");
  const first = state.people.find((p) => p.name === wanted) || state.people[0];
  if (first) choosePerson(first.name);
  sel.addEventListener("change", () => choosePerson(sel.value));
}

function choosePerson(name) {
  state.person = name;
  $("person").value = name;
  sessionStorage.setItem("erlmcp-as", name);
  const p = state.people.find((x) => x.name === name);
  $("roles").textContent = p && p.roles.length ? "roles: " + p.roles.join(", ") : "no role";
  renderLog();
}

// ---- channels --------------------------------------------------------------------------

function upsertChannel(c) {
  state.channels.set(c.id, c);
  renderChannels();
  if (c.id === state.channel) renderHead();
}

function renderChannels() {
  const ul = $("channel-list");
  ul.replaceChildren();
  for (const c of state.channels.values()) {
    const unread = state.unread.get(c.id) || 0;
    const b = el("button", { type: "button", "data-channel": c.id },
      el("span", { text: "#" + c.id }),
      unread ? el("span", { class: "badge", text: String(unread), "aria-label": unread + " unread" }) : null);
    if (c.id === state.channel) b.setAttribute("aria-current", "true");
    b.addEventListener("click", () => chooseChannel(c.id));
    ul.append(el("li", {}, b));
  }
}

function chooseChannel(id) {
  state.channel = id;
  state.unread.delete(id);
  renderChannels();
  renderHead();
  renderLog();
  $("composer-text").focus();
}

function renderHead() {
  const c = state.channels.get(state.channel);
  $("channel-name").textContent = "#" + state.channel;
  $("channel-topic").textContent = c ? c.topic : "";
  $("composer-label").textContent = "Message #" + state.channel;
}

// ---- messages --------------------------------------------------------------------------

function visible(m) {
  return !m.only_for || m.only_for === state.person;
}

function messageEl(m) {
  const classes = ["msg", m.tone];
  if (m.only_for) classes.push("private");
  const head = el("div", { class: "msg-head" },
    el("span", { class: "msg-from", text: m.from }),
    el("span", { class: "msg-at", text: m.at + " UTC" }),
    m.only_for ? el("span", { class: "msg-private", text: "only visible to " + m.only_for }) : null,
    m.edits ? el("span", { class: "msg-edited", text: "(updated)" }) : null);
  const body = el("div", { class: "msg-body" });
  body.innerHTML = m.html; // rendered and escaped by the bot
  const art = el("article", { class: classes.join(" "), id: "m" + m.id, "data-id": String(m.id), "aria-label": "message from " + m.from }, head, body);
  if (m.progress) {
    const { done, total } = m.progress;
    const label = done + " of " + total + " updated";
    art.append(el("div", { class: "progress" },
      el("progress", { max: String(total), value: String(done), "aria-label": "rollout progress: " + label }),
      el("span", { text: label })));
  }
  if (m.request && !m.only_for) {
    const approve = el("button", { type: "button", class: "approve", text: "Approve", "aria-label": "Approve " + m.request });
    const deny = el("button", { type: "button", class: "deny", text: "Deny", "aria-label": "Deny " + m.request });
    approve.addEventListener("click", () => vote(m, "approve", approve, deny));
    deny.addEventListener("click", () => vote(m, "deny", approve, deny));
    art.append(el("div", { class: "actions", role: "group", "aria-label": "Vote on " + m.request }, approve, deny));
  }
  art.append(el("div", { class: "thread", "data-thread": String(m.id) }));
  return art;
}

function placeMessage(m) {
  const log = $("log");
  const old = document.getElementById("m" + m.id);
  if (m.channel !== state.channel || !visible(m)) {
    if (old) old.remove();
    return;
  }
  const fresh = messageEl(m);
  if (old) {
    // Keep the replies already shown under it.
    const replies = old.querySelector(":scope > .thread");
    fresh.querySelector(":scope > .thread").replaceWith(replies);
    old.replaceWith(fresh);
    return;
  }
  const parent = m.thread ? log.querySelector('[data-thread="' + m.thread + '"]') : null;
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  (parent || log).append(fresh);
  const empty = log.querySelector(".empty");
  if (empty) empty.remove();
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function renderLog() {
  const log = $("log");
  log.replaceChildren();
  const shown = [...state.messages.values()].filter((m) => m.channel === state.channel && visible(m));
  if (!shown.length) log.append(el("p", { class: "empty", text: "No messages yet. Try /erlmcp help." }));
  for (const m of shown) placeMessage(m);
  log.scrollTop = log.scrollHeight;
}

function onMessage(m, live) {
  const known = state.messages.has(m.id);
  state.messages.set(m.id, m);
  if (!state.channels.has(m.channel)) upsertChannel({ id: m.channel, topic: "", incident: false, members: [] });
  if (m.channel === state.channel) {
    placeMessage(m);
  } else if (live && !known && visible(m)) {
    state.unread.set(m.channel, (state.unread.get(m.channel) || 0) + 1);
    renderChannels();
  }
}

function onEvent(ev) {
  let data;
  try { data = JSON.parse(ev.data); } catch (_) { return; }
  if (data.type === "snapshot") {
    state.channels = new Map(data.channels.map((c) => [c.id, c]));
    state.messages = new Map(data.messages.map((m) => [m.id, m]));
    if (!state.channels.has(state.channel)) state.channel = "deployments";
    renderChannels();
    renderHead();
    renderLog();
  } else if (data.type === "channel") {
    upsertChannel(data.channel);
  } else if (data.type === "message") {
    onMessage(data.message, true);
  }
}

// ---- acting ----------------------------------------------------------------------------

async function vote(m, action, ...buttons) {
  for (const b of buttons) b.disabled = true;
  try {
    await api("/local/actions", { as: state.person, message: m.id, request: m.request, action });
  } catch (e) {
    $("composer-error").textContent = "Could not " + action + " " + m.request + ": " + e.message;
    for (const b of buttons) b.disabled = false;
  }
}

async function send(ev) {
  ev.preventDefault();
  const input = $("composer-text");
  const text = input.value.trim();
  if (!text) return;
  $("composer-error").textContent = "";
  try {
    await api("/local/messages", { as: state.person, channel: state.channel, text });
    state.history.push(text);
    input.value = "";
  } catch (e) {
    $("composer-error").textContent = "Not sent: " + e.message;
  }
}

function recall(ev) {
  if (ev.key === "ArrowUp" && !ev.target.value && state.history.length) {
    ev.target.value = state.history[state.history.length - 1];
    ev.preventDefault();
  }
}

// ---- start -----------------------------------------------------------------------------

function connect() {
  const source = new EventSource("/local/events");
  state.source = source;
  source.onopen = () => setStatus("live");
  source.onmessage = onEvent;
  // The browser reconnects by itself and sends the last event id it saw.
  source.onerror = () => setStatus("connection lost; reconnecting…", true);
}

async function start() {
  const info = await api("/local/info");
  if (info.needs_token && !info.admitted) {
    await askToken();
  }
  const dir = await api("/local/directory");
  state.people = dir.people;
  state.command = dir.command;
  for (const c of dir.channels) state.channels.set(c.id, c);
  $("composer-text").placeholder = dir.command + " help";
  fillPeople();
  renderChannels();
  renderHead();
  $("composer").addEventListener("submit", send);
  $("composer-text").addEventListener("keydown", recall);
  connect();
  document.body.dataset.ready = "true";
}

function askToken() {
  return new Promise((resolve) => {
    const dialog = $("token-dialog");
    $("notice").textContent = "This chat is reachable beyond this machine; it asks for its access token.";
    $("token-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await api("/local/session", { token: $("token").value });
        dialog.close();
        resolve();
      } catch (e) {
        $("token-error").textContent = e.status === 401 ? "That is not the token." : e.message;
      }
    });
    dialog.showModal();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  start().catch((e) => setStatus("cannot open the chat: " + e.message, true));
});
