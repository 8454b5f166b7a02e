"use strict";
// The second peer: an OCPP 1.6J central system on ocpp-ws-io with strict
// schema validation of requests and responses (ajv) and logging off,
// answering the charger-to-server core actions that bench/peer_server.py and
// bench/raw_server.py answer, with schema-valid payloads; it stores nothing.
// Made ready and started by bench/run.py:
//
//     node bench/peers/ocpp-ws-io/server.js --port 9003 [--host 127.0.0.1]

const { OCPPServer } = require("ocpp-ws-io");

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const host = option("--host", "127.0.0.1");
const port = Number(option("--port", "9003"));
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error("server.js: --port must be a TCP port number");
  process.exit(2);
}

let lastSecond = -1;
let lastStamp = "";
function now() {
  const second = Math.floor(Date.now() / 1000);
  if (second !== lastSecond) {
    lastSecond = second;
    lastStamp = new Date(second * 1000).toISOString().replace(".000Z", "Z");
  }
  return lastStamp;
}

let nextTransaction = 1;
const ACCEPTED_TAG = { idTagInfo: { status: "Accepted" } };
const HANDLERS = {
  BootNotification: () => ({ status: "Accepted", currentTime: now(), interval: 300 }),
  Heartbeat: () => ({ currentTime: now() }),
  StatusNotification: () => ({}),
  MeterValues: () => ({}),
  Authorize: () => ACCEPTED_TAG,
  StartTransaction: () => ({ transactionId: nextTransaction++, idTagInfo: { status: "Accepted" } }),
  StopTransaction: () => ACCEPTED_TAG,
  DataTransfer: () => ({ status: "Accepted" }),
};

const server = new OCPPServer({
  protocols: ["ocpp1.6"],
  strictMode: true,
  logging: false,
  pingIntervalMs: 0,
});

server.on("client", (client) => {
  for (const [action, answer] of Object.entries(HANDLERS)) {
    client.handle(action, answer);
  }
});

server.listen(port, host).then(
  () => console.log(`ocpp-ws-io peer listening on ws://${host}:${port}/ocpp/`),
  (err) => {
    console.error(`server.js: cannot listen on ${host}:${port}: ${err.message}`);
    process.exit(1);
  },
);

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 3000).unref();
  });
}
