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
  }

  load(overview) {
    this.chargers = new Map(overview.chargers.map((c) => [c.chargePointId, c]));
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
    const rows = shown.map((c) => {
      const state = c.online ? "online" : "offline";
      return el("tr", { "data-charger": c.chargePointId },
        el("th", { scope: "row" }, el("a", { href: "#/chargers/" + encodeURIComponent(c.chargePointId), text: c.chargePointId })),
        el("td", { text: c.ocppVersion || "–" }),
        el("td", {}, el("span", { class: `state ${state}`, text: state })),
        el("td", {}, when(c.connectedAt)),
        el("td", {}, when(c.lastSeen)),
        el("td", { title: connectorText(c.connectors) }, (c.connectors || []).length
          ? c.connectors.map((k) => el("span", { class: `connector ${k.status}`, text: `${k.evseId !== undefined ? k.evseId + "/" : ""}${k.connectorId}: ${k.status}` }))
          : "–"));
    });
    this.rows.replaceChildren(...rows);
    document.getElementById("fleet-empty").hidden = all.length > 0;
  }

  refreshOutbox(outbox) { this.outbox = outbox; this.soon(); }
}
