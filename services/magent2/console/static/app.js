// magent2 console: the gateway's public HTTP API in a page (no build step, no dependencies).
// Every URL is relative to this page (…/ui/), so a path prefix added by an Ingress is kept.
"use strict";

const API = new URL("../", document.baseURI);
const $ = (id) => document.getElementById(id);
const state = {
  token: sessionStorage.getItem("magent2.token") || "",
  conversation: null,      // the open conversation's id
  agent: null,             // who the next message goes to
  cursor: "0-0",           // the last event shown; the stream resumes after it
  stream: null,            // AbortController of the open stream
  running: false,          // a reply of the open conversation is running
  reply: null,             // {body, text} of the agent message being streamed
  tools: new Map(),        // tool_call_id -> <details>
  approvals: new Map(),    // call_id -> approval card
  agents: [],
};

// -- the API ------------------------------------------------------------------------------------
class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options = { ...options, method: options.method || "POST", body: JSON.stringify(options.json) };
  }
  const response = await fetch(new URL(path, API), { ...options, headers });
  if (response.status === 401) {
    askToken(Boolean(state.token));
    throw new Unauthorized("a bearer token is needed");
  }
  return response;
}

async function getJSON(path) {
  const response = await api(path);
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function askToken(refused) {
  const dialog = $("token-dialog");
  $("token-error").hidden = !refused;
  if (!dialog.open) dialog.showModal();
  $("token").focus();
}

$("token-form").addEventListener("submit", () => {
  state.token = $("token").value.trim();
  sessionStorage.setItem("magent2.token", state.token);
  refreshLists();
  if (state.conversation) follow(state.conversation);
});

// -- markdown (escaped first: agent text never becomes HTML) -------------------------------------
function escapeHTML(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function inline(text) {
  return text
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>")
    .replace(/\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g, '<a href="$2" rel="noopener noreferrer" target="_blank">$1</a>');
}

function markdown(source) {
  const out = [];
  const blocks = escapeHTML(source).split(/```/);
  blocks.forEach((block, i) => {
    if (i % 2 === 1) {
      out.push(`<pre><code>${block.replace(/^[\w-]*\n/, "")}</code></pre>`);
      return;
    }
    let list = null;
    for (const line of block.split("\n")) {
      const item = line.match(/^\s*(?:[-*]|\d+\.)\s+(.*)$/);
      const heading = line.match(/^(#{1,4})\s+(.*)$/);
      if (item) {
        if (!list) { list = []; }
        list.push(`<li>${inline(item[1])}</li>`);
        continue;
      }
      if (list) { out.push(`<ul>${list.join("")}</ul>`); list = null; }
      if (heading) out.push(`<h${heading[1].length + 2}>${inline(heading[2])}</h${heading[1].length + 2}>`);
      else if (line.trim()) out.push(`<p>${inline(line)}</p>`);
    }
    if (list) out.push(`<ul>${list.join("")}</ul>`);
  });
  return out.join("");
}

// -- the conversation -----------------------------------------------------------------------------
function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function append(node) {
  const box = $("messages");
  const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  box.append(node);
  if (atEnd) box.scrollTop = box.scrollHeight;
}

function startReply(agent) {
  const message = element("div", "message agent");
  message.append(element("div", "who", agent));
  const body = element("div", "body");
  message.append(body);
  append(message);
  state.reply = { body, text: "", pending: false };
}

function renderReply() {
  const reply = state.reply;
  if (!reply || reply.pending) return;
  reply.pending = true;
  requestAnimationFrame(() => {
    reply.pending = false;
    reply.body.innerHTML = markdown(reply.text);
    const box = $("messages");
    box.scrollTop = box.scrollHeight;
  });
}

function setRunning(running) {
  state.running = running;
  $("stop").disabled = !running;
}

const show = {
  user_message(e) {
    const message = element("div", e.sender.startsWith("user:") ? "message user" : "message relay");
    message.append(element("div", "who", `${e.sender} → ${e.recipient}`), element("div", "body", e.content));
    append(message);
    setRunning(true);
  },
  run_started(e) { startReply(e.agent); setRunning(true); },
  token(e) {
    if (!state.reply) startReply("agent");
    state.reply.text += e.text;
    renderReply();
  },
  tool_step(e) {
    const id = e.tool_call_id || e.name;
    let card = state.tools.get(id);
    if (!card || e.status === "start") {
      card = element("details", "tool");
      const summary = element("summary");
      summary.append(element("span", "name", `⚙ ${e.name} `), element("span", "state", "running…"));
      card.append(summary, element("pre", "args", JSON.stringify(e.args || {}, null, 2)));
      state.tools.set(id, card);
      append(card);
    }
    if (e.status === "success" || e.status === "error") {
      const ok = e.status === "success";
      card.classList.add(ok ? "ok" : "failed");
      card.querySelector(".state").textContent = `${ok ? "✓" : "✗"} ${Math.round(e.duration_ms || 0)} ms`;
      card.append(element("pre", ok ? "result" : "result error", ok ? e.result_summary || "" : `error: ${e.error}`));
    }
  },
  output(e) {
    if (!state.reply) startReply("agent");
    state.reply.text = e.text;  // the final text wins over what streamed
    renderReply();
    state.reply = null;
    setRunning(false);
  },
  error(e) {
    append(element("div", "notice bad", `error: ${e.message}${e.retryable ? " (retryable)" : ""}`));
    state.reply = null;
    setRunning(false);
  },
  cancelled(e) {
    append(element("div", "notice", `■ stopped: ${e.reason || "cancelled"}`));
    state.reply = null;
    setRunning(false);
  },
  approval_required(e) {
    if (state.reply && !state.reply.text) {  // the run paused before it said anything
      state.reply.body.parentElement.remove();
      state.reply = null;
    }
    const card = element("div", "approval");
    card.append(element("div", "", `${e.tool} waits for your approval`), element("pre", "", JSON.stringify(e.arguments || {}, null, 2)));
    const choices = element("div", "choices");
    for (const [decision, label] of [["approve", "Approve"], ["reject", "Reject"]]) {
      const button = element("button", decision, label);
      button.type = "button";
      button.addEventListener("click", () => decide(e, decision, card));
      choices.append(button);
    }
    card.append(choices, element("div", "muted outcome", `expires ${new Date(e.expires_at).toLocaleString()}`));
    state.approvals.set(e.call_id, card);
    append(card);
    choices.querySelector("button.approve").focus();
  },
  approval_resolved(e) {
    const card = state.approvals.get(e.call_id);
    if (card) {
      card.querySelectorAll("button").forEach((b) => { b.disabled = true; });
      card.querySelector(".outcome").textContent = `${e.decision}d by ${e.by}${e.reason ? `: ${e.reason}` : ""}`;
    }
  },
};

async function decide(request, decision, card) {
  card.querySelectorAll("button").forEach((b) => { b.disabled = true; });
  const response = await api(`conversations/${encodeURIComponent(request.conversation_id)}/approvals/${encodeURIComponent(request.call_id)}`,
    { json: { decision, reason: "decided in the console" } });
  if (!response.ok) card.querySelector(".outcome").textContent = `decision: ${(await response.json()).detail}`;
}

// The stream: fetch() rather than EventSource, so it can carry the bearer token. When the
// connection drops it resumes after the last cursor shown: nothing is lost or shown twice.
async function follow(conversation) {
  if (state.stream) state.stream.abort();
  const controller = new AbortController();
  state.stream = controller;
  let delay = 250;
  while (!controller.signal.aborted) {
    try {
      const response = await api(`stream/${encodeURIComponent(conversation)}?last_id=${encodeURIComponent(state.cursor)}`,
        { signal: controller.signal, headers: { Accept: "text/event-stream" } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      $("stream-state").textContent = "";
      delay = 250;
      await readEvents(response.body, controller.signal);
    } catch (error) {
      if (controller.signal.aborted || error instanceof Unauthorized) return;
    }
    $("stream-state").textContent = "reconnecting…";
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 3000);
  }
}

async function readEvents(body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  while (!signal.aborted) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let id = null; let data = "";
      for (const line of frame.split("\n")) {
        if (line.startsWith("id: ")) id = line.slice(4);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (!data || signal.aborted) continue;
      const event = JSON.parse(data);
      if (id) state.cursor = id;
      (show[event.event] || (() => {}))(event);
    }
  }
}

function open(conversation, agent) {
  state.conversation = conversation;
  state.agent = agent || state.agent;
  state.cursor = "0-0";
  state.reply = null;
  state.tools.clear();
  state.approvals.clear();
  setRunning(false);
  $("messages").replaceChildren();
  $("title").textContent = conversation;
  describeWhere();
  follow(conversation);
  refreshGraph();
  markCurrent();
}

function newConversation(agent) {
  const id = `web-${Math.random().toString(36).slice(2, 10)}`;
  open(id, agent);
  $("input").focus();
}

function describeWhere() {
  $("where").textContent = state.agent ? `talking to ${state.agent} in ${state.conversation}` : "no agent yet";
  $("input").placeholder = state.agent
    ? `Message ${state.agent} — Enter sends, Shift+Enter for a new line`
    : "No agent yet: start a worker";
}

async function send(text) {
  const response = await api("send", {
    json: {
      id: crypto.randomUUID(),
      conversation_id: state.conversation,
      sender: "user:console",
      recipient: `agent:${state.agent}`,
      content: text,
    },
  });
  if (response.status !== 202) {
    const detail = (await response.json()).detail;
    append(element("div", "notice bad", `not sent: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`));
    return false;
  }
  refreshLists();
  return true;
}

async function stop() {
  const response = await api(`conversations/${encodeURIComponent(state.conversation)}/cancel`,
    { json: { agent: state.agent, reason: "stopped in the console" } });
  if (response.status !== 202) append(element("div", "notice", `stop: ${(await response.json()).detail}`));
}

// -- the lists and the graph ----------------------------------------------------------------------
function listButton(name, facts, onClick) {
  const item = element("li");
  const button = element("button");
  button.type = "button";
  button.append(name, facts);
  button.addEventListener("click", onClick);
  item.append(button);
  return item;
}

function renderAgents(agents) {
  const list = $("agents");
  list.replaceChildren(...agents.map((a) => {
    const name = element("span", "name");
    name.append(element("span", a.workers_alive ? "dot alive" : "dot"), a.name);
    const facts = element("span", "facts",
      `${a.workers_alive} worker(s) · backlog ${a.backlog} · running ${a.in_flight}` +
      (a.awaiting_approval ? ` · ${a.awaiting_approval} awaiting approval` : ""));
    const item = listButton(name, facts, () => { newConversation(a.name); closeMenu(); });
    item.dataset.agent = a.name;
    return item;
  }));
  if (!agents.length) list.replaceChildren(element("li", "muted", "no agents yet"));
}

function renderConversations(conversations) {
  const list = $("conversations");
  list.replaceChildren(...conversations.map((c) => {
    const facts = element("span", "facts");
    facts.append(`${c.agents.join(", ")} · ${c.messages} msg · `, element("span", `status-${c.status}`, c.status.replace("_", " ")));
    const item = listButton(element("span", "name", c.id), facts, () => { open(c.id, c.agents[0]); closeMenu(); });
    item.dataset.conversation = c.id;
    return item;
  }));
  if (!conversations.length) list.replaceChildren(element("li", "muted", "none yet"));
  markCurrent();
}

function markCurrent() {
  for (const button of document.querySelectorAll("#conversations button")) {
    button.setAttribute("aria-current", String(button.parentElement.dataset.conversation === state.conversation));
  }
}

async function refreshGraph() {
  if ($("graph").hidden || !state.conversation) return;
  const response = await api(`graph/${encodeURIComponent(state.conversation)}`).catch(() => null);
  const body = $("graph-body");
  if (!response || !response.ok) { body.textContent = "no messages yet"; return; }
  const graph = await response.json();
  body.replaceChildren(...graph.edges.map((edge) => {
    const row = element("div", "edge");
    row.append(element("span", "", `${edge.from} → ${edge.to}`), element("span", "count", `${edge.messages} message(s)`));
    return row;
  }));
  const children = graph.conversations.slice(1);
  if (children.length) body.append(element("p", "muted", `child conversations: ${children.join(", ")}`));
}

async function refreshLists() {
  const health = $("health");
  try {
    const [agents, conversations] = await Promise.all([getJSON("agents"), getJSON("conversations?limit=50")]);
    state.agents = agents.agents;
    renderAgents(agents.agents);
    renderConversations(conversations.conversations);
    health.textContent = "gateway ok";
    health.className = "health ok";
    if (!state.agent && state.agents.length) { state.agent = state.agents[0].name; describeWhere(); }
    refreshGraph();
  } catch (error) {
    if (error instanceof Unauthorized) return;
    health.textContent = "gateway unreachable";
    health.className = "health down";
  }
}

// -- wiring -----------------------------------------------------------------------------------------
function closeMenu() {
  $("sidebar").classList.remove("open");
  $("menu").setAttribute("aria-expanded", "false");
}

$("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("input").value.trim();
  if (!text || !state.agent) return;
  $("input").value = "";
  if (!(await send(text))) $("input").value = text;
});
$("input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("composer").requestSubmit(); }
});
$("stop").addEventListener("click", stop);
$("new").addEventListener("click", () => newConversation(state.agent));
$("refresh").addEventListener("click", refreshLists);
$("graph-toggle").addEventListener("click", () => {
  const graph = $("graph");
  graph.hidden = !graph.hidden;
  $("graph-toggle").setAttribute("aria-expanded", String(!graph.hidden));
  refreshGraph();
});
$("menu").addEventListener("click", () => {
  const open = $("sidebar").classList.toggle("open");
  $("menu").setAttribute("aria-expanded", String(open));
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && state.running && !$("token-dialog").open) stop();
  if (event.altKey && event.key.toLowerCase() === "n") { event.preventDefault(); $("new").click(); }
  if (event.altKey && event.key.toLowerCase() === "g") { event.preventDefault(); $("graph-toggle").click(); }
});

const opened = new URLSearchParams(location.hash.slice(1));
newConversation(opened.get("agent"));
if (opened.get("conversation")) open(opened.get("conversation"), opened.get("agent"));
refreshLists();
setInterval(refreshLists, 3000);
