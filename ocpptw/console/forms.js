// Forms generated from an action's request JSON schema: every property a
// labelled field, required ones marked, enums as choices, nested objects as
// fieldsets (optional ones behind a checkbox), arrays with add/remove.
// build() returns {node, read}; read() gives the payload or throws
// FieldError naming the field.

import { el } from "./format.js";

export class FieldError extends Error {
  constructor(message, input) { super(message); this.input = input; }
}

let counter = 0;
const fresh = (name) => `f${++counter}-${String(name).replace(/[^A-Za-z0-9_-]/g, "")}`;

function resolve(schema, root) {
  if (schema && schema.$ref && schema.$ref.startsWith("#/")) {
    let target = root;
    for (const part of schema.$ref.slice(2).split("/")) target = target && target[part];
    return resolve(target || {}, root);
  }
  return schema || {};
}

function typeOf(schema) {
  const t = schema.type;
  if (Array.isArray(t)) return t.find((x) => x !== "null") || "string";
  if (t) return t;
  if (schema.properties) return "object";
  if (schema.enum) return "string";
  return "string";
}

function hint(schema) {
  const bits = [];
  if (schema.format === "date-time") bits.push("date-time, e.g. 2026-12-04T10:00:00Z");
  if (schema.maxLength) bits.push(`at most ${schema.maxLength} characters`);
  if (schema.minimum !== undefined) bits.push(`≥ ${schema.minimum}`);
  if (schema.maximum !== undefined) bits.push(`≤ ${schema.maximum}`);
  if (schema.multipleOf) bits.push(`multiple of ${schema.multipleOf}`);
  return bits.join("; ");
}

function labelFor(id, name, required, schema) {
  const h = hint(schema);
  return el("label", { for: id }, name, required ? el("span", { class: "req", text: "(required)" }) : null,
            h ? el("span", { class: "desc", text: h }) : null);
}

// One field for `schema` called `name`; `path` names it in messages.
function field(name, schema, required, root, path) {
  schema = resolve(schema, root);
  const type = typeOf(schema);
  if (type === "object") return objectField(name, schema, required, root, path);
  if (type === "array") return arrayField(name, schema, required, root, path);
  const id = fresh(path);
  let input;
  if (schema.enum) {
    input = el("select", { id, name: path, required });
    if (!required) input.append(el("option", { value: "", text: "— not set —" }));
    else input.append(el("option", { value: "", text: "— choose —", disabled: true, selected: true }));
    for (const value of schema.enum) input.append(el("option", { value, text: value }));
  } else if (type === "boolean") {
    input = el("select", { id, name: path, required });
    input.append(el("option", { value: "", text: required ? "— choose —" : "— not set —" }),
                 el("option", { value: "true", text: "true" }), el("option", { value: "false", text: "false" }));
  } else if (type === "integer" || type === "number") {
    input = el("input", { id, name: path, type: "number", required, step: type === "integer" ? "1" : "any",
                          min: schema.minimum, max: schema.maximum, inputmode: type === "integer" ? "numeric" : "decimal" });
  } else {
    input = el("input", { id, name: path, type: "text", required, maxlength: schema.maxLength, autocomplete: "off",
                          spellcheck: "false",
                          placeholder: schema.format === "date-time" ? "2026-12-04T10:00:00Z" : undefined });
  }
  const node = el("div", { class: "field" }, labelFor(id, name, required, schema), input);
  function read() {
    const raw = input.value.trim();
    if (raw === "") {
      if (required) throw new FieldError(`${path} is required`, input);
      return undefined;
    }
    if (schema.enum) return raw;
    if (type === "boolean") return raw === "true";
    if (type === "integer" || type === "number") {
      const value = Number(raw);
      if (!Number.isFinite(value) || (type === "integer" && !Number.isInteger(value))) {
        throw new FieldError(`${path} must be ${type === "integer" ? "a whole number" : "a number"}`, input);
      }
      return value;
    }
    return raw;
  }
  return { node, read, focus: () => input.focus() };
}

function objectField(name, schema, required, root, path) {
  const props = schema.properties || {};
  const needed = new Set(schema.required || []);
  const children = Object.entries(props).map(([key, sub]) => [key, field(key, sub, needed.has(key), root, path ? `${path}.${key}` : key)]);
  if (!path) {  // the payload itself
    const node = el("div", {}, children.map(([, c]) => c.node));
    if (!children.length) node.append(el("p", { class: "hint", text: "This action has no fields." }));
    return { node, read: () => readObject(children), focus: () => children[0] && children[0][1].focus() };
  }
  const box = el("fieldset", {}, el("legend", {}, name, required ? el("span", { class: "req", text: "(required)" }) : null));
  let include = null;
  if (!required) {
    const id = fresh(path + "-include");
    include = el("input", { type: "checkbox", id });
    box.append(el("div", { class: "field" }, include, " ", el("label", { for: id, class: "inline", text: `include ${name}` })));
  }
  const inner = el("div", {}, children.map(([, c]) => c.node));
  box.append(inner);
  const sync = () => { for (const x of inner.querySelectorAll("input,select,button")) x.disabled = include && !include.checked; };
  if (include) { include.addEventListener("change", sync); sync(); }
  return {
    node: box,
    read() {
      if (include && !include.checked) return undefined;
      return readObject(children);
    },
    focus: () => (include || (children[0] && children[0][1])).focus(),
  };
}

function readObject(children) {
  const out = {};
  for (const [key, child] of children) {
    const value = child.read();
    if (value !== undefined) out[key] = value;
  }
  return out;
}

function arrayField(name, schema, required, root, path) {
  const itemSchema = resolve(schema.items || {}, root);
  const min = schema.minItems || 0;
  const items = [];
  const list = el("div", {});
  const add = el("button", { type: "button", text: `Add ${name} item` });
  const box = el("fieldset", {}, el("legend", {}, name, required ? el("span", { class: "req", text: "(required)" }) : null,
                 el("span", { class: "desc", text: [min ? `at least ${min}` : "", schema.maxItems ? `at most ${schema.maxItems}` : ""].filter(Boolean).join(", ") })),
                 list, add);
  function addItem() {
    if (schema.maxItems && items.length >= schema.maxItems) return;
    const index = items.length;
    const child = field(`${name}[${index}]`, itemSchema, true, root, `${path}[${index}]`);
    const remove = el("button", { type: "button", text: "Remove", "aria-label": `Remove ${name} item ${index + 1}` });
    const wrap = el("div", { class: "array-item" }, child.node, remove);
    const entry = { child, wrap };
    remove.addEventListener("click", () => {
      items.splice(items.indexOf(entry), 1);
      wrap.remove();
      add.focus();
    });
    items.push(entry);
    list.append(wrap);
    return child;
  }
  add.addEventListener("click", () => { const c = addItem(); if (c) c.focus(); });
  for (let i = 0; i < Math.max(min, required ? 1 : 0); i++) addItem();
  return {
    node: box,
    read() {
      const values = items.map((e) => e.child.read()).filter((v) => v !== undefined);
      if (!values.length && !required) return undefined;
      if (values.length < min) throw new FieldError(`${path} needs at least ${min} item(s)`, add);
      return values;
    },
    focus: () => add.focus(),
  };
}

export function build(schema) {
  return field("", schema, true, schema, "");
}
