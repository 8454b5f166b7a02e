"use strict";
// The three names ocpp-ws-io imports from its logger.  The bench server sets
// `logging: false`, so none of these is called on the measured path; the
// logger they build discards everything.

function createLogger() {
  const nothing = () => {};
  const logger = {
    trace: nothing,
    debug: nothing,
    info: nothing,
    warn: nothing,
    error: nothing,
    fatal: nothing,
    child: () => logger,
  };
  return logger;
}

const consoleTransport = () => ({ name: "console", write() {} });
const prettyTransport = () => ({ name: "pretty", write() {} });

module.exports = { createLogger, consoleTransport, prettyTransport };
