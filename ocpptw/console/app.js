// The console's entry point: sign-in, the router (#/ and #/chargers/ID)
// and the one event stream that keeps both pages live.

import { call, path, openStream, setToken, token, Unauthorized } from "./api.js";
import { Fleet } from "./fleet.js";
import { ChargerPage } from "./charger.js";

const sections = ["login", "fleet", "charger"];
const fleet = new Fleet();
const page = new ChargerPage(needToken);
let stopStream = null;
let pending = [];
let flushDue = false;

function show(name) {
  for (const s of sections) document.getElementById(s).hidden = s !== name;
}

function liveState(connected) {
  const state = document.getElementById("live-state");
  state.textContent = connected ? "live" : "reconnecting…";
  state.className = "live " + (connected ? "on" : "off");
}

function needToken(message) {
  if (stopStream) { stopStream(); stopStream = null; }
  show("login");
  const state = document.getElementById("live-state");
  state.textContent = "signed out";
  state.className = "live off";
  document.getElementById("login-error").textContent = message || (token() ? "That token was refused." : "");
  setToken(null);
  document.getElementById("logout").hidden = true;
  document.getElementById("token").focus();
}

// Stream events arrive in bursts; the pages repaint in batches.
function onEvent(kind, data) {
  if (kind === "charger") {
    fleet.charger(data);
    page.facts(data);
  } else if (kind === "message") {
    fleet.message(data);
    if (page.id === data.chargePointId) pending.push(data);
    if (pending.length > 400) pending = pending.slice(-200);
    if (!flushDue && pending.length) {
      flushDue = true;
      setTimeout(() => {
        flushDue = false;
        const batch = pending.slice(-200);
        pending = [];
        for (const m of batch) page.live(m);
      }, 250);
    }
  }
}

async function loadOverview() {
  const { status, body } = await call(path("overview"));
  if (status !== 200) throw new Error("overview answered " + status);
  document.getElementById("instance").textContent = body.instance || "–";
  fleet.load(body);
  return body;
}

async function route() {
  const hash = location.hash || "#/";
  const match = hash.match(/^#\/chargers\/(.+)$/);
  try {
    if (match) {
      const id = decodeURIComponent(match[1]);
      show("charger");
      document.title = id + " — ocpptw console";
      await page.open(id, fleet.chargers.get(id));
    } else {
      page.id = null;
      show("fleet");
      document.title = "Fleet — ocpptw console";
    }
    document.getElementById("main").focus({ preventScroll: true });
  } catch (error) {
    if (!(error instanceof Unauthorized)) console.error(error);
  }
}

async function start() {
  try {
    await loadOverview();
  } catch (error) {
    if (error instanceof Unauthorized) { needToken(); return; }
    document.getElementById("live-state").textContent = "gateway unreachable";
    throw error;
  }
  document.getElementById("logout").hidden = !token();
  if (stopStream) stopStream();
  stopStream = openStream(null, onEvent, (connected) => {
    liveState(connected);
    if (connected) loadOverview().catch(() => {});  // catch up on what happened while away
  }, () => needToken("The token was refused."));
  await route();
}

document.getElementById("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = document.getElementById("token").value.trim();
  if (!value) return;
  setToken(value);
  document.getElementById("token").value = "";
  document.getElementById("login-error").textContent = "";
  start();
});
document.getElementById("logout").addEventListener("click", () => { setToken(null); location.reload(); });
window.addEventListener("hashchange", route);
// the outbox figures move without events: read them every 10 s
setInterval(() => { if (!document.hidden && stopStream) loadOverview().catch(() => {}); }, 10000);
start();
