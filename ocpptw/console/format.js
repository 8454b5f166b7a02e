// Small helpers shared by the pages.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// "2026-12-04 16:20:05 UTC"; the raw value in a <time> element's datetime.
export function when(iso) {
  if (!iso) return el("span", { text: "–" });
  const text = String(iso).replace("T", " ").replace(/\.\d+/, "").replace(/Z$/, " UTC");
  return el("time", { datetime: iso, text });
}

export function ago(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 1) return "none waiting";
  if (seconds < 90) return Math.round(seconds) + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

export function pretty(value) {
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

export function connectorText(connectors) {
  if (!connectors || !connectors.length) return "–";
  return connectors.map((c) => `${c.evseId !== undefined ? c.evseId + "/" : ""}${c.connectorId}: ${c.status}`).join(", ");
}
