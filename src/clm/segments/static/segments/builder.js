// The segment builder: renders the definition JSON (in #id_definition) as nested groups of
// condition rows with selects per type, writes it back on every change and asks htmx for
// the live count. No framework: plain DOM.
(function () {
  "use strict";
  const cfgNode = document.getElementById("segment-config");
  const textarea = document.getElementById("id_definition");
  const root = document.getElementById("builder");
  if (!cfgNode || !textarea || !root) return;
  const cfg = JSON.parse(cfgNode.textContent);
  const fields = Object.fromEntries(cfg.fields.map((f) => [f.name, f]));
  const TYPES = [
    ["property", "Property"], ["stage", "Lifecycle stage"], ["event", "Activity (did / did not)"],
    ["no_purchase", "No purchase in"], ["rfm_segment", "RFM segment"], ["clv_decile", "CLV decile"],
    ["p_alive", "P(alive)"], ["health", "Health score"], ["group", "Group (and / or)"],
  ];
  const TYPE_LABEL = Object.fromEntries(TYPES);
  const OP_LABEL = {
    eq: "is", ne: "is not", in: "is any of", not_in: "is none of", contains: "contains",
    gt: ">", gte: "≥", lt: "<", lte: "≤", is_set: "is set", is_not_set: "is not set",
  };
  const RANGES = { clv_decile: [1, 10, 1], p_alive: [0, 1, 0.05], health: [0, 100, 1] };
  let model;

  function parse() {
    try {
      const value = JSON.parse(textarea.value);
      return value && typeof value === "object" && Array.isArray(value.conditions)
        ? value : { op: "and", conditions: [] };
    } catch (e) {
      return null;
    }
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  function select(label, options, value, onChange, multiple) {
    const s = el("select", { "aria-label": label, multiple: multiple ? "multiple" : null,
      onchange: () => onChange(multiple ? [...s.selectedOptions].map((o) => o.value) : s.value) });
    for (const [v, text] of options) {
      const selected = multiple ? (value || []).includes(v) : String(value) === String(v);
      s.append(el("option", { value: v, selected: selected ? "selected" : null }, text));
    }
    return s;
  }

  function input(label, type, value, onChange, extra) {
    const i = el("input", { type, "aria-label": label, value: value ?? "", ...(extra || {}) });
    i.addEventListener("input", () => onChange(i.value));
    return i;
  }

  function num(v) {
    return v === "" || v === null || v === undefined ? null : Number(v);
  }

  function defaults(type) {
    switch (type) {
      case "group": return { op: "and", conditions: [] };
      case "property": return { type, field: "country", op: "in", value: [] };
      case "stage": return { type, op: "in", value: [] };
      case "event": return { type, kind: "order.completed", op: "did", count: 1, days: 30 };
      case "no_purchase": return { type, days: 90 };
      case "rfm_segment": return { type, op: "in", value: [] };
      default: return { type, min: null, max: null };
    }
  }

  function propertyValue(cond, field) {
    const t = field ? field.type : "text";
    const many = cond.op === "in" || cond.op === "not_in";
    if (cond.op === "is_set" || cond.op === "is_not_set") return [];
    if (t === "boolean") {
      return [select("Value", [["true", "yes"], ["false", "no"]], String(cond.value),
        (v) => { cond.value = v === "true"; changed(); })];
    }
    const convert = (x) => (t === "number" ? num(x.trim()) : x.trim());
    if (many) {
      const text = Array.isArray(cond.value) ? cond.value.join(", ") : "";
      return [input("Values, comma-separated", "text", text, (v) => {
        cond.value = v.split(",").map((x) => x.trim()).filter(Boolean).map(convert); changed();
      }, { placeholder: "a, b, c" })];
    }
    const type = t === "number" ? "number" : (["date", "datetime", "pdate"].includes(t) ? "date" : "text");
    return [input("Value", type, cond.value, (v) => { cond.value = convert(v); changed(); })];
  }

  function conditionParts(cond) {
    switch (cond.type) {
      case "property": {
        const field = fields[cond.field];
        const ops = cfg.ops[field ? field.type : "text"] || [];
        return [
          select("Field", cfg.fields.map((f) => [f.name, f.label]), cond.field, (v) => {
            cond.field = v;
            const allowed = cfg.ops[fields[v].type];
            if (!allowed.includes(cond.op)) cond.op = allowed[0];
            delete cond.value;
            rerender();
          }),
          select("Operator", ops.map((o) => [o, OP_LABEL[o] || o]), cond.op, (v) => {
            cond.op = v;
            if (v === "is_set" || v === "is_not_set") delete cond.value;
            else if ((v === "in" || v === "not_in") !== Array.isArray(cond.value)) delete cond.value;
            rerender();
          }),
          ...propertyValue(cond, field),
        ];
      }
      case "stage":
      case "rfm_segment": {
        const options = (cond.type === "stage" ? cfg.stages : cfg.rfm).map((s) => [s, s]);
        return [
          select("Operator", [["in", "is any of"], ["not_in", "is none of"]], cond.op,
            (v) => { cond.op = v; changed(); }),
          select("Values", options, cond.value, (v) => { cond.value = v; changed(); }, true),
        ];
      }
      case "event": {
        const parts = [
          select("Did or did not", [["did", "did"], ["did_not", "did not do"]], cond.op, (v) => {
            cond.op = v;
            if (v === "did") cond.count = cond.count || 1; else delete cond.count;
            rerender();
          }),
          input("Event kind", "text", cond.kind, (v) => { cond.kind = v.trim(); changed(); },
            { list: "segment-kinds", size: 16 }),
        ];
        if (cond.op === "did") {
          parts.push("at least", input("Times", "number", cond.count,
            (v) => { cond.count = num(v); changed(); }, { min: 1, style: "width:6rem" }), "times");
        }
        parts.push("in the last", input("Days", "number", cond.days,
          (v) => { cond.days = num(v); changed(); }, { min: 1, style: "width:6rem" }), "days");
        return parts;
      }
      case "no_purchase":
        return [input("Days", "number", cond.days, (v) => { cond.days = num(v); changed(); },
          { min: 1, style: "width:6rem" }), "days"];
      default: {
        const [lo, hi, step] = RANGES[cond.type] || [null, null, "any"];
        return ["from", input("Minimum", "number", cond.min, (v) => { cond.min = num(v); changed(); },
          { min: lo, max: hi, step, style: "width:7rem" }),
        "to", input("Maximum", "number", cond.max, (v) => { cond.max = num(v); changed(); },
          { min: lo, max: hi, step, style: "width:7rem" })];
      }
    }
  }

  function renderGroup(group, onRemove) {
    const box = el("fieldset", { class: "seg-group" });
    const head = el("div", { class: "seg-head" },
      select("Combine with", [["and", "All of these (and)"], ["or", "Any of these (or)"]], group.op,
        (v) => { group.op = v; changed(); }));
    if (onRemove) head.append(el("button", { type: "button", class: "outline secondary", onclick: onRemove }, "Remove group"));
    box.append(head);
    group.conditions.forEach((cond, i) => {
      const remove = () => { group.conditions.splice(i, 1); rerender(); };
      if (Array.isArray(cond.conditions)) { box.append(renderGroup(cond, remove)); return; }
      box.append(el("div", { class: "seg-cond" },
        el("span", { class: "badge kind" }, TYPE_LABEL[cond.type] || cond.type),
        ...conditionParts(cond),
        el("button", { type: "button", class: "outline secondary", "aria-label": "Remove condition", onclick: remove }, "×")));
    });
    box.append(select("Add a condition", [["", "+ Add a condition…"], ...TYPES], "", (v) => {
      if (v) { group.conditions.push(defaults(v)); rerender(); }
    }));
    return box;
  }

  function changed() {
    textarea.value = JSON.stringify(model, null, 1);
    document.body.dispatchEvent(new CustomEvent("segment-changed"));
  }

  function rerender() {
    root.replaceChildren(renderGroup(model, null));
    changed();
  }

  textarea.addEventListener("input", () => {
    const parsed = parse();
    if (parsed) { model = parsed; root.replaceChildren(renderGroup(model, null)); }
    document.body.dispatchEvent(new CustomEvent("segment-changed"));
  });
  root.after(el("datalist", { id: "segment-kinds" }, ...cfg.kinds.map((k) => el("option", { value: k }))));
  model = parse() || { op: "and", conditions: [] };
  root.replaceChildren(renderGroup(model, null));

  // A static list has no definition: hide the builder while "static" is chosen.
  document.querySelectorAll("input[name=kind]").forEach((r) => r.addEventListener("change", () => {
    const dynamic = document.querySelector("input[name=kind]:checked").value === "dynamic";
    document.querySelectorAll(".dynamic-only").forEach((n) => { n.hidden = !dynamic; });
  }));
})();
