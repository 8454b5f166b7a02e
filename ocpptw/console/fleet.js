// The fleet page: every charger this instance has held, live.

import { el, when, ago, connectorText } from "./format.js";

export class Fleet {
  constructor() {
    this.chargers = new Map();
    this.outbox = null;
    this.rows = document.getElementById("fleet-rows");
    this.search = document.getElementById("search");
    this.show = document.getElementById("show");
    this.search.addEventListener("input", () => this.render());
    this.show.addEventListener("change", () => this.render());
    document.getElementById("fleet-filters").addEventListener("submit", (e) => e.preventDefault());
    this.due = false;
    this.rowCache = new Map();
  }

  load(overview) {
    this.chargers = new Map(overview.chargers.map((c) => [c.chargePointId, c]));
    for (const id of [...this.rowCache.keys()]) if (!this.chargers.has(id)) this.rowCache.delete(id);
    this.outbox = overview.outbox;
    this.render();
  }

  charger(data) {
    const known = this.chargers.get(data.chargePointId) || {};
    this.chargers.set(data.chargePointId, { ...known, ...data });
    this.soon();
  }

  message(data) {
    const known = this.chargers.get(data.chargePointId);
    if (known && data.direction === "in") { known.lastSeen = data.timestamp; this.soon(); }
  }

  // Repaint at most twice a second, however fast events come.
  soon() {
    if (this.due) return;
    this.due = true;
    setTimeout(() => { this.due = false; this.render(); }, 500);
  }

  render() {
    const needle = this.search.value.trim().toLowerCase();
    const show = this.show.value;
    const all = [...this.chargers.values()].sort((a, b) => a.chargePointId.localeCompare(b.chargePointId));
    const online = all.filter((c) => c.online).length;
    document.getElementById("count-online").textContent = online;
    document.getElementById("count-offline").textContent = all.length - online;
    const o = this.outbox;
    document.getElementById("outbox-depth").textContent = o ? o.depth : "–";
    document.getElementById("outbox-oldest").textContent = o ? ago(o.oldestAgeSeconds) : "–";
    document.getElementById("outbox-dead").textContent = o ? o.deadLetters : "–";
    const shown = all.filter((c) => (!needle || c.chargePointId.toLowerCase().includes(needle))
      && (show === "all" || (show === "online") === Boolean(c.online)));
    // Rows are kept and updated in place: keyboard focus and scrolling stay where they are.
    const order = [];
    for (const c of shown) {
      let row = this.rowCache.get(c.chargePointId);
      if (!row) {
        row = this.makeRow(c.chargePointId);
        this.rowCache.set(c.chargePointId, row);
      }
      this.fill(row, c);
      order.push(row.tr);
    }
    const current = [...this.rows.children];
    if (current.length !== order.length || current.some((tr, i) => tr !== order[i])) {
      for (const tr of current) if (!order.includes(tr)) tr.remove();
      order.forEach((tr, i) => { if (this.rows.children[i] !== tr) this.rows.insertBefore(tr, this.rows.children[i] || null); });
    }
    document.getElementById("fleet-empty").hidden = all.length > 0;
  }

  refreshOutbox(outbox) { this.outbox = outbox; this.soon(); }

  makeRow(id) {
    const cells = { version: el("td"), state: el("span", { class: "state" }), connected: el("td"), seen: el("td"), connectors: el("td") };
    const tr = el("tr", { "data-charger": id },
      el("th", { scope: "row" }, el("a", { href: "#/chargers/" + encodeURIComponent(id), text: id })),
      cells.version, el("td", {}, cells.state), cells.connected, cells.seen, cells.connectors);
    return { tr, cells, last: {} };
  }

  fill(row, c) {
    const { cells, last } = row;
    const set = (key, value, apply) => { if (last[key] !== value) { last[key] = value; apply(value); } };
    set("version", c.ocppVersion || "–", (v) => { cells.version.textContent = v; });
    set("state", c.online ? "online" : "offline", (v) => { cells.state.textContent = v; cells.state.className = `state ${v}`; });
    set("connected", c.connectedAt, (v) => cells.connected.replaceChildren(when(v)));
    set("seen", c.lastSeen, (v) => cells.seen.replaceChildren(when(v)));
    set("connectors", JSON.stringify(c.connectors || []), () => {
      cells.connectors.title = connectorText(c.connectors);
      cells.connectors.replaceChildren(...((c.connectors || []).length
        ? c.connectors.map((k) => el("span", { class: `connector ${k.status}`, text: `${k.evseId !== undefined ? k.evseId + "/" : ""}${k.connectorId}: ${k.status}` }))
        : ["–"]));
    });
  }
}
