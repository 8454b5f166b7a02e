// The console's access to the gateway's API: the token (sessionStorage,
// sent as a bearer header, never in a URL or a cookie), JSON calls and the
// event stream read with fetch (EventSource cannot send headers).

const TOKEN_KEY = "ocpptw.adminToken";

export class Unauthorized extends Error {}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(extra = {}) {
  const h = { Accept: "application/json", ...extra };
  const t = token();
  if (t) h.Authorization = "Bearer " + t;
  return h;
}

export function path(...segments) {
  return "/api/v1/" + segments.map(encodeURIComponent).join("/");
}

// GET or POST JSON; resolves {status, body}; throws Unauthorized on 401.
export async function call(url, { method = "GET", body, signal } = {}) {
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }), signal,
                 credentials: "omit", cache: "no-store" };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(url, init);
  if (response.status === 401) throw new Unauthorized("a valid token is required");
  let parsed = null;
  const text = await response.text();
  try { parsed = text ? JSON.parse(text) : null; } catch { parsed = { error: { code: "NotJson", description: text.slice(0, 300) } }; }
  return { status: response.status, body: parsed };
}

// Read the Server-Sent Events stream; calls onEvent(kind, data) and
// onState(connected). Reconnects with a growing pause; returns stop().
export function openStream(query, onEvent, onState, onUnauthorized) {
  let stopped = false;
  let controller = null;
  let pause = 1000;
  async function run() {
    while (!stopped) {
      controller = new AbortController();
      try {
        const url = path("stream") + (query ? "?" + new URLSearchParams(query) : "");
        const response = await fetch(url, { headers: headers({ Accept: "text/event-stream" }), signal: controller.signal,
                                            credentials: "omit", cache: "no-store" });
        if (response.status === 401) { onState(false); onUnauthorized(); return; }
        if (!response.ok || !response.body) throw new Error("stream answered " + response.status);
        onState(true);
        pause = 1000;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(buffer.slice(end).match(/^\r?\n\r?\n/)[0].length + end);
            dispatch(block);
          }
        }
      } catch (error) {
        if (stopped) return;
      }
      onState(false);
      if (stopped) return;
      await new Promise((resolve) => setTimeout(resolve, pause));
      pause = Math.min(pause * 2, 15000);
    }
  }
  function dispatch(block) {
    let kind = "message";
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") kind = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return;
    try { onEvent(kind, JSON.parse(data.join("\n"))); } catch (error) { console.warn("bad stream event", error); }
  }
  run();
  return () => { stopped = true; if (controller) controller.abort(); };
}

// What an HTTP status of the command API means, in words.
export function explain(status, body) {
  const error = (body && body.error) || {};
  const said = error.description ? ` (${error.description})` : "";
  switch (status) {
    case 400: return `The gateway did not send it: the payload or the action is not valid for this charger's OCPP version${said}. Check the marked fields.`;
    case 403: return `The gateway refused the request: without a token the API answers only on this machine${said}.`;
    case 404: return `The charger is not connected, so nothing was sent${said}. It may have gone offline.`;
    case 502: return `The charger answered with an error: ${error.code || "CALLERROR"}${error.description ? " — " + error.description : ""}.`;
    case 503: return `The gateway cannot serve this now${said}.`;
    case 504: return `The charger did not answer in time${said}. It may still act on the command.`;
    default: return `Unexpected answer ${status}${said}.`;
  }
}
