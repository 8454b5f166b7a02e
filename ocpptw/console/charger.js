// The charger page: facts, commands from the schemas, live frames, sessions
// and the paged message history (each CALL shown with its answer).

import { call, path, explain, Unauthorized } from "./api.js";
import { el, when, pretty, connectorText } from "./format.js";
import { build, FieldError } from "./forms.js";

const LIVE_MAX = 100;

// The payload folded to one line; opening it shows it pretty-printed.
function payloadBlock(message, open = false) {
  if (message.payload === undefined) return null;
  const label = message.truncated ? "payload, cut (longer than the log keeps): " : "payload: ";
  const compact = typeof message.payload === "string" ? message.payload : JSON.stringify(message.payload);
  return el("details", { open }, el("summary", {}, label, el("code", { text: compact.length > 160 ? compact.slice(0, 160) + "…" : compact })),
            el("pre", { class: "mono", text: pretty(message.payload) }));
}

function frameMeta(m) {
  return el("div", { class: "meta" },
    el("span", { class: "time" }, when(m.timestamp)),
    el("span", { class: `dir ${m.direction}`, text: m.direction === "in" ? "← charger" : "→ charger" }),
    el("span", { class: `type ${m.messageType}`, text: m.messageType }),
    m.action ? el("span", { class: "action", text: m.action }) : null,
    el("span", { class: "mono", text: "id " + m.messageId }),
    m.errorCode ? el("span", { class: "type CALLERROR", text: m.errorCode + (m.errorDescription ? ": " + m.errorDescription : "") }) : null);
}

function answerNode(m) {
  return el("div", { class: "answer" }, frameMeta(m), payloadBlock(m));
}

function entryNode(m) {
  const node = el("li", { class: "frame", "data-message-id": m.messageId, "data-type": m.messageType }, frameMeta(m), payloadBlock(m));
  return node;
}

// Group a newest-first page: each CALL with its answer from the same page.
export function pair(messages) {
  const answers = new Map();
  for (const m of messages) {
    if (m.messageType !== "CALL") answers.set(m.direction + " " + m.messageId, m);
  }
  const used = new Set();
  const out = [];
  for (const m of messages) {
    if (m.messageType === "CALL") {
      const key = (m.direction === "in" ? "out" : "in") + " " + m.messageId;
      const answer = answers.get(key);
      if (answer) used.add(answer);
      out.push({ call: m, answer });
    }
  }
  return messages.filter((m) => m.messageType === "CALL" || !used.has(m))
    .map((m) => (m.messageType === "CALL" ? out.find((o) => o.call === m) : { call: m, answer: null }));
}

export class ChargerPage {
  constructor(onUnauthorized) {
    this.onUnauthorized = onUnauthorized;
    this.id = null;
    this.schemas = new Map();
    this.cursors = [];
    this.next = null;
    this.liveCalls = new Map();
    this.form = null;
    document.getElementById("command-form").addEventListener("submit", (e) => { e.preventDefault(); this.send(); });
    document.getElementById("action").addEventListener("change", () => this.showForm());
    document.getElementById("history-newest").addEventListener("click", () => this.history(null, true));
    document.getElementById("history-older").addEventListener("click", () => this.next && this.history(this.next, false));
    document.getElementById("history-limit").addEventListener("change", () => this.history(null, true));
  }

  async open(id, summary) {
    this.id = id;
    this.liveCalls = new Map();
    document.getElementById("charger-title").textContent = "Charger " + id;
    document.getElementById("frames").replaceChildren();
    document.getElementById("command-result").replaceChildren();
    document.getElementById("command-result").className = "result";
    this.facts(summary || { chargePointId: id });
    await Promise.all([this.loadForms(summary && summary.ocppVersion || "1.6"), this.history(null, true), this.sessions()]);
  }

  facts(c) {
    if (!c || c.chargePointId !== this.id) return;
    this.summary = { ...(this.summary && this.summary.chargePointId === this.id ? this.summary : {}), ...c };
    const s = this.summary;
    const state = document.getElementById("cp-state");
    state.replaceChildren(el("span", { class: `state ${s.online ? "online" : "offline"}`, text: s.online ? "online" : "offline" }));
    document.getElementById("cp-version").textContent = s.ocppVersion || "–";
    document.getElementById("cp-connected").replaceChildren(when(s.connectedAt));
    document.getElementById("cp-seen").replaceChildren(when(s.lastSeen));
    document.getElementById("cp-connectors").textContent = connectorText(s.connectors);
  }

  async guard(promise) {
    try { return await promise; } catch (error) {
      if (error instanceof Unauthorized) this.onUnauthorized();
      throw error;
    }
  }

  async loadForms(version) {
    let schemas = this.schemas.get(version);
    if (!schemas) {
      const { status, body } = await this.guard(call(path("schemas", version)));
      if (status !== 200) {
        document.getElementById("fields").replaceChildren(el("p", { class: "error", text: `No forms for OCPP ${version}: ${explain(status, body)}` }));
        return;
      }
      schemas = body.actions;
      this.schemas.set(version, schemas);
    }
    this.version = version;
    const select = document.getElementById("action");
    const previous = select.value;
    select.replaceChildren(...Object.keys(schemas).sort().map((a) => el("option", { value: a, text: a })));
    select.value = schemas[previous] ? previous : (schemas.Reset ? "Reset" : Object.keys(schemas)[0]);
    this.showForm();
  }

  showForm() {
    const action = document.getElementById("action").value;
    const schema = (this.schemas.get(this.version) || {})[action];
    if (!schema) return;
    this.form = build(schema);
    document.getElementById("fields").replaceChildren(this.form.node);
  }

  async send() {
    const result = document.getElementById("command-result");
    const action = document.getElementById("action").value;
    let payload;
    try {
      payload = this.form.read();
    } catch (error) {
      if (!(error instanceof FieldError)) throw error;
      result.className = "result failed";
      result.replaceChildren(el("h4", { text: "Not sent" }), el("p", { text: error.message }));
      if (error.input) error.input.focus();
      return;
    }
    const button = document.getElementById("send");
    button.disabled = true;
    result.className = "result";
    result.replaceChildren(el("h4", { text: `Sending ${action}…` }), el("pre", { class: "mono", text: pretty(payload) }));
    const timeout = Number(document.getElementById("call-timeout").value) || 30;
    try {
      const url = path("chargers", this.id, "commands", action) + "?timeout=" + encodeURIComponent(timeout);
      const { status, body } = await this.guard(call(url, { method: "POST", body: payload }));
      if (status === 200) {
        result.className = "result ok";
        result.replaceChildren(el("h4", { text: `${action}: the charger answered (CALLRESULT)` }),
          el("pre", { class: "mono", text: pretty(body.result) }));
      } else {
        result.className = "result failed";
        result.replaceChildren(el("h4", { text: `${action} failed: HTTP ${status}` }), el("p", { text: explain(status, body) }),
          body && body.error && body.error.details && Object.keys(body.error.details).length
            ? el("pre", { class: "mono", text: pretty(body.error.details) }) : null);
      }
    } catch (error) {
      if (!(error instanceof Unauthorized)) {
        result.className = "result failed";
        result.replaceChildren(el("h4", { text: `${action} failed` }), el("p", { text: "The gateway could not be reached: " + error.message }));
      }
    } finally {
      button.disabled = false;
    }
  }

  async sessions() {
    const box = document.getElementById("sessions");
    const { status, body } = await this.guard(call(path("chargers", this.id, "sessions")));
    if (status !== 200) { box.replaceChildren(el("p", { class: "hint", text: explain(status, body) })); return; }
    if (!body.sessions.length) { box.replaceChildren(el("p", { class: "hint", text: "No active session." })); return; }
    box.replaceChildren(el("table", { class: "sessions" },
      el("thead", {}, el("tr", {}, ["Transaction", "Connector", "idTag", "Meter start (Wh)"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, body.sessions.map((s) => el("tr", {}, el("td", { text: s.transactionId }), el("td", { text: s.connectorId }),
        el("td", { text: s.idTag }), el("td", { text: s.meterStart }))))));
  }

  async history(cursor, reset) {
    const status = document.getElementById("history-status");
    const limit = document.getElementById("history-limit").value;
    const query = new URLSearchParams({ limit });
    if (cursor) query.set("before", cursor);
    status.textContent = "loading…";
    const answer = await this.guard(call(path("chargers", this.id, "messages") + "?" + query));
    if (answer.status === 404) {
      status.textContent = "No frames: this charger has not been seen.";
      document.getElementById("history").replaceChildren();
      this.next = null;
    } else if (answer.status !== 200) {
      status.textContent = explain(answer.status, answer.body);
      return;
    } else {
      const groups = pair(answer.body.messages);
      document.getElementById("history").replaceChildren(...groups.map((g) => {
        const node = entryNode(g.call);
        if (g.answer) node.append(answerNode(g.answer));
        return node;
      }));
      this.next = answer.body.next;
      status.textContent = `${answer.body.messages.length} frames${reset ? ", newest first" : ", older page"}${this.next ? "" : " — the oldest kept"}`;
    }
    document.getElementById("history-older").disabled = !this.next;
  }

  // A frame from the stream for this charger.
  live(m) {
    if (m.chargePointId !== this.id) return;
    const list = document.getElementById("frames");
    if (m.messageType !== "CALL") {
      const callNode = this.liveCalls.get((m.direction === "in" ? "out" : "in") + " " + m.messageId);
      if (callNode) { callNode.append(answerNode(m)); this.liveCalls.delete((m.direction === "in" ? "out" : "in") + " " + m.messageId); return; }
    }
    const node = entryNode(m);
    if (m.messageType === "CALL") {
      this.liveCalls.set(m.direction + " " + m.messageId, node);
      if (this.liveCalls.size > LIVE_MAX) this.liveCalls.delete(this.liveCalls.keys().next().value);
    }
    list.prepend(node);
    while (list.children.length > LIVE_MAX) list.lastElementChild.remove();
    if (this.summary && m.direction === "in") { this.summary.lastSeen = m.timestamp; }
    // a session started or stopped: read the active sessions again (at most once a second)
    if (m.messageType === "CALLRESULT" && /^(StartTransaction|StopTransaction|TransactionEvent)$/.test(m.action || "")
        && !this.sessionsDue) {
      this.sessionsDue = setTimeout(() => { this.sessionsDue = null; this.sessions().catch(() => {}); }, 1000);
    }
  }
}
