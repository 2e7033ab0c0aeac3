/* Renders the app's own OpenAPI schema (/api/openapi.json) as a readable page, with no external assets. */
"use strict";

(() => {
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  };

  function resolve(schema, spec) {
    if (schema && schema.$ref) {
      const name = schema.$ref.split("/").pop();
      return (spec.components.schemas || {})[name] || {};
    }
    return schema || {};
  }

  function typeOf(s, spec) {
    s = resolve(s, spec);
    if (s.anyOf) return s.anyOf.map((x) => typeOf(x, spec)).filter((t) => t !== "null").join(" | ");
    if (s.enum) return s.enum.join(" | ");
    return s.type || "any";
  }

  function limits(s) {
    const out = [];
    const all = [s, ...(s.anyOf || [])];
    for (const x of all) {
      if (x.minimum !== undefined) out.push(`≥ ${x.minimum}`);
      if (x.exclusiveMinimum !== undefined) out.push(`> ${x.exclusiveMinimum}`);
      if (x.maximum !== undefined) out.push(`≤ ${x.maximum}`);
      if (x.maxLength !== undefined) out.push(`≤ ${x.maxLength} chars`);
    }
    return out.join(", ");
  }

  function paramRows(params, spec) {
    return params.map((p) => {
      const s = resolve(p.schema, spec);
      return el("tr", {}, el("td", {}, el("code", { text: p.name })), el("td", { text: typeOf(s, spec) }),
        el("td", { text: s.default !== undefined && s.default !== null ? JSON.stringify(s.default) : (p.required ? "required" : "") }),
        el("td", { text: [p.description || s.description || "", limits(s)].filter(Boolean).join("; ") }));
    });
  }

  function bodyParams(op, spec) {
    const content = ((op.requestBody || {}).content || {})["application/json"];
    if (!content) return [];
    const s = resolve(content.schema, spec);
    const required = s.required || [];
    return Object.entries(s.properties || {}).map(([name, schema]) => ({ name, schema, required: required.includes(name) }));
  }

  async function start() {
    const spec = await (await fetch("/api/openapi.json")).json();
    const root = document.getElementById("endpoints");
    for (const [path, ops] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const params = method === "get" ? (op.parameters || []) : bodyParams(op, spec);
        const card = el("section", { class: "card endpoint" },
          el("h2", {}, el("code", { text: `${method.toUpperCase()} ${path}` })),
          el("p", { text: op.summary || "" }),
          op.description ? el("p", { class: "note", text: op.description }) : null);
        if (params.length) {
          card.append(el("div", { class: "scroll" }, el("table", { class: "data" },
            el("thead", {}, el("tr", {}, el("th", { text: method === "get" ? "query parameter" : "JSON field" }),
              el("th", { text: "type" }), el("th", { text: "default" }), el("th", { text: "meaning" }))),
            el("tbody", {}, ...paramRows(params, spec)))));
        }
        root.append(card);
      }
    }
  }
  start();
})();
