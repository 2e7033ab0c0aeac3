/* vramplan web calculator. Hand-written, no framework, no CDN: the page asks the REST API (the same dicts the
 * CLI prints with --json) and draws its charts as inline SVG. The page state lives in the URL query string. */
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SVGNS = "http://www.w3.org/2000/svg";
  const UNIT_BYTES = { GiB: 2 ** 30, GB: 1e9 };
  const COLORS = {
    weights: "#4c78a8", kv_cache: "#f58518", activations: "#54a24b", runtime: "#9d755d",
    gradients: "#e45756", optimizer: "#72b7b2", cuda_graphs: "#b279a2", logits: "#eeca3b",
  };
  const PALETTE = ["#ff9da6", "#bab0ac", "#8cd17d", "#86bcb6", "#d4a6c8", "#fabfd2", "#79706e", "#d37295"];
  const CAP_COLOR = "#c0392b";
  const REFERENCE_GPUS = ["rtx-4090-24gb", "h100-sxm-80gb"];
  const UPLOAD_MAX_BYTES = 256 * 1024;
  const CATEGORY_LABELS = {
    datacenter: "Data center", workstation: "Workstation", consumer: "Consumer", apple: "Apple (unified memory)",
    accelerator: "Other accelerators",
  };

  // ----- state <-> URL ----------------------------------------------------------------------------------------
  const DEFAULTS = {
    mode: "inference", model: "llama-3.1-8b", unit: "GiB",
    quantization: "", max_model_len: "8k", batch_size: "1", kv_cache_dtype: "auto", engine: "",
    gpu: "", count: "1",
    method: "lora", optimizer: "adamw", precision: "bf16-mixed", lora_rank: "", seq_len: "4k", train_batch: "1",
    zero: "", gradient_checkpointing: "", training_tokens: "100M", peft_option: "", modules_to_save: "",
  };
  const FORM_KEYS = ["quantization", "max_model_len", "batch_size", "kv_cache_dtype", "engine", "gpu", "count",
    "method", "optimizer", "precision", "lora_rank", "seq_len", "train_batch", "zero", "gradient_checkpointing",
    "training_tokens", "peft_option", "modules_to_save"];
  const state = { ...DEFAULTS };

  function readURL() {
    const q = new URLSearchParams(location.search);
    for (const key of Object.keys(DEFAULTS)) {
      if (q.has(key)) state[key] = q.get(key).slice(0, 200);
    }
    if (!["inference", "train"].includes(state.mode)) state.mode = "inference";
    if (!UNIT_BYTES[state.unit]) state.unit = "GiB";
  }

  function writeURL() {
    const q = new URLSearchParams();
    for (const [key, def] of Object.entries(DEFAULTS)) {
      if (String(state[key] ?? "") !== def) q.set(key, state[key] ?? "");
    }
    const s = q.toString();
    const url = location.pathname + (s ? "?" + s : "");
    if (url !== location.pathname + location.search) history.replaceState(null, "", url);
  }

  // ----- formatting -------------------------------------------------------------------------------------------
  function fmtSize(bytes, unit = state.unit, digits = 2) {
    if (bytes === null || bytes === undefined || Number.isNaN(bytes)) return "–";
    const v = bytes / UNIT_BYTES[unit];
    return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits }) + " " + unit;
  }
  const otherUnit = () => (state.unit === "GiB" ? "GB" : "GiB");
  function fmtCount(n) {
    if (n === null || n === undefined) return "–";
    for (const [div, s] of [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "K"]]) {
      if (Math.abs(n) >= div) return (n / div).toFixed(2) + s;
    }
    return String(n);
  }
  const fmtInt = (n) => Number(n).toLocaleString("en-US");
  function fmtTokens(n) {
    if (n >= 1 << 20 && n % (1 << 20) === 0) return n / (1 << 20) + "M";
    if (n >= 1024 && n % 1024 === 0) return n / 1024 + "k";
    return fmtInt(n);
  }
  const colorOf = (name, i) => COLORS[name] || PALETTE[i % PALETTE.length];
  const components = (memory) => Object.entries(memory || {}).filter(([k, v]) => k !== "total" && typeof v === "number");

  function niceTicks(top, count = 5) {
    if (!(top > 0)) return [0, 1];
    const raw = top / count;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
    const n = Math.ceil(top / step - 1e-9);
    return Array.from({ length: n + 1 }, (_, i) => +(i * step).toFixed(10));
  }
  const tickLabel = (v) => (Number.isInteger(v) ? fmtInt(v) : v.toFixed(1));

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function titled(node, text) {
    node.append(svg("title", {}, text));
    return node;
  }

  // ----- API --------------------------------------------------------------------------------------------------
  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (Array.isArray(v)) for (const item of v) q.append(k, item);
      else if (v !== "" && v !== null && v !== undefined && v !== false) q.set(k, v);
    }
    return q.toString();
  }
  async function api(path, params, init) {
    const url = params ? path + "?" + query(params) : path;
    try {
      const res = await fetch(url, { headers: { Accept: "application/json" }, ...(init || {}) });
      let data = null;
      try { data = await res.json(); } catch (e) { data = { error: `bad response (${res.status})` }; }
      return { ok: res.ok, status: res.status, data, url };
    } catch (e) {
      return { ok: false, status: 0, data: { error: "the server cannot be reached" }, url };
    }
  }

  // ----- catalogs ---------------------------------------------------------------------------------------------
  let MODELS = [];
  let GPUS = [];
  const UPLOADS = {};
  const gpuByKey = (key) => GPUS.find((g) => g.key === key);

  async function loadCatalogs() {
    const [models, gpus, formats, options] = await Promise.all([
      api("/api/models", { params: "true" }), api("/api/gpus"), api("/api/formats"), api("/api/options")]);
    if (models.ok) MODELS = models.data.models || [];
    if (gpus.ok) GPUS = (gpus.data.gpus || []).filter((g) => g && g.key);
    if (formats.ok) {
      const sel = $("quantization");
      const dense = el("optgroup", { label: "Precisions and quantizations" });
      const gguf = el("optgroup", { label: "llama.cpp GGUF mixes" });
      for (const f of formats.data.formats || []) {
        const isGguf = /^[A-Z0-9_]+$/.test(f.name);
        const label = isGguf ? f.name : (f.label && f.label.length <= 40 ? f.label : f.name);
        (isGguf ? gguf : dense).append(el("option", { value: f.name, text: label, title: f.label || f.name }));
      }
      sel.append(dense, gguf);
    }
    if (options.ok) {
      const engines = (options.data.inference || {}).engine || [];
      for (const e of engines) $("engine").append(el("option", { value: e, text: e }));
      const train = options.data.train || {};
      for (const key of ["method", "optimizer", "precision"]) {
        if (train[key] && train[key].length) {
          const sel = $(key);
          const labels = Object.fromEntries([...sel.options].map((o) => [o.value, o.textContent]));
          sel.replaceChildren(...train[key].map((v) => el("option", { value: v, text: labels[v] || v })));
        }
      }
      AVAILABLE = options.data.available || {};
    }
    fillGpuSelect();
  }
  let AVAILABLE = {};

  function fillGpuSelect() {
    const sel = $("gpu");
    const keep = state.gpu;
    sel.replaceChildren(el("option", { value: "", text: "any (compare below)" }));
    const groups = {};
    for (const g of GPUS) (groups[g.category] ||= []).push(g);
    for (const [cat, list] of Object.entries(groups)) {
      const og = el("optgroup", { label: CATEGORY_LABELS[cat] || cat });
      for (const g of list) {
        og.append(el("option", { value: g.key, text: `${g.name} · ${fmtSize(g.memory_total_bytes, state.unit, 1)}` }));
      }
      sel.append(og);
    }
    sel.value = keep;
    if (sel.value !== keep && keep) sel.append(el("option", { value: keep, text: keep })), (sel.value = keep);
  }

  // ----- model search -----------------------------------------------------------------------------------------
  const modelInput = $("model");
  const modelList = $("model-list");
  let matches = [];
  let active = -1;

  function searchModels(text) {
    const q = text.trim().toLowerCase();
    if (!q) return MODELS.slice(0, 12);
    const words = q.split(/\s+/);
    const scored = [];
    MODELS.forEach((m, i) => {
      const names = [m.key, m.hf_id, ...(m.aliases || [])].map((s) => String(s).toLowerCase());
      const hay = names.join(" ");
      if (!words.every((w) => hay.includes(w))) return;
      let score = i;
      if (names.some((n) => n === q)) score -= 10000;
      else if (names.some((n) => n.startsWith(q))) score -= 5000;
      scored.push([score, m]);
    });
    return scored.sort((a, b) => a[0] - b[0]).map((s) => s[1]).slice(0, 12);
  }

  function showList() {
    const text = modelInput.value.trim();
    matches = searchModels(text);
    const items = matches.map((m, i) => el("li", { role: "option", id: "opt-" + i, "data-i": i },
      el("span", {}, el("b", { text: m.key }), " ", el("span", { class: "id", text: m.hf_id })),
      el("span", { class: "n", text: m.params ? fmtCount(m.params) + (m.active_params && m.active_params !== m.params ? ` (${fmtCount(m.active_params)} active)` : "") : "" })));
    const exact = matches.some((m) => [m.key, m.hf_id].some((n) => n.toLowerCase() === text.toLowerCase()));
    if (text.includes("/") && !exact) {
      matches.push({ key: text, hub: true });
      items.push(el("li", { role: "option", class: "hub", id: "opt-" + (matches.length - 1), "data-i": matches.length - 1 },
        el("span", { text: `Use Hugging Face id ${text}` })));
    }
    if (!items.length) items.push(el("li", { class: "none", text: "no catalog model matches; paste a Hugging Face id (org/name)" }));
    modelList.replaceChildren(...items);
    active = -1;
    modelList.hidden = false;
    modelInput.setAttribute("aria-expanded", "true");
  }
  function hideList() {
    modelList.hidden = true;
    modelInput.setAttribute("aria-expanded", "false");
    modelInput.removeAttribute("aria-activedescendant");
  }
  function highlight(i) {
    const lis = modelList.querySelectorAll("li[role=option]");
    lis.forEach((li, j) => li.setAttribute("aria-selected", j === i ? "true" : "false"));
    active = i;
    if (lis[i]) {
      lis[i].scrollIntoView({ block: "nearest" });
      modelInput.setAttribute("aria-activedescendant", lis[i].id);
    }
  }
  function commitModel(value) {
    value = (value || "").trim();
    hideList();
    modelInput.value = value;
    if (value && value !== state.model) {
      state.model = value;
      schedule(0);
    }
    showModelInfo();
  }
  function showModelInfo() {
    const m = MODELS.find((x) => x.key === state.model || x.hf_id === state.model);
    const up = UPLOADS[state.model];
    let text = "";
    if (up) text = `uploaded ${up.name} · ${fmtCount(up.params)} params`;
    else if (m) text = `${m.hf_id}${m.params ? " · " + fmtCount(m.params) + " params" : ""}${m.active_params && m.active_params !== m.params ? ` (${fmtCount(m.active_params)} active)` : ""}`;
    else if (state.model.startsWith("upload:")) text = "uploaded config (kept in this server's memory)";
    else if (state.model.includes("/")) text = "Hugging Face id: read from the Hub (or its cache) by the server";
    $("model-info").textContent = text;
  }

  modelInput.addEventListener("input", showList);
  modelInput.addEventListener("focus", () => { modelInput.select(); showList(); });
  modelInput.addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      if (modelList.hidden) showList();
      const n = matches.length;
      if (!n) return;
      highlight(ev.key === "ArrowDown" ? (active + 1) % n : (active - 1 + n) % n);
    } else if (ev.key === "Enter") {
      ev.preventDefault();
      const m = matches[active] || (modelInput.value.trim() ? null : matches[0]);
      commitModel(m ? m.key : modelInput.value);
    } else if (ev.key === "Escape") {
      hideList();
      modelInput.value = state.model;
    }
  });
  modelInput.addEventListener("blur", () => {
    setTimeout(() => { if (!modelList.hidden) commitModel(modelInput.value || state.model); }, 120);
  });
  modelList.addEventListener("mousedown", (ev) => {
    const li = ev.target.closest("li[data-i]");
    if (!li) return;
    ev.preventDefault();
    commitModel(matches[+li.dataset.i].key);
  });

  // ----- upload -----------------------------------------------------------------------------------------------
  $("upload").addEventListener("change", async (ev) => {
    const file = ev.target.files && ev.target.files[0];
    ev.target.value = "";
    if (!file) return;
    const status = $("upload-status");
    if (file.size > UPLOAD_MAX_BYTES) {
      showError({ error: `${file.name} is ${fmtInt(file.size)} bytes; a config.json may be at most 256 KiB`, field: "file" });
      return;
    }
    status.textContent = "uploading…";
    const body = await file.text();
    const r = await api("/api/config", { filename: file.name }, {
      method: "POST", body, headers: { "Content-Type": "application/json", Accept: "application/json" },
    });
    if (!r.ok) {
      status.textContent = "upload refused";
      showError(r.data);
      return;
    }
    UPLOADS[r.data.id] = { name: r.data.model.name, params: r.data.model.params };
    status.textContent = `${file.name} → ${r.data.id}`;
    commitModel(r.data.id);
  });

  // ----- form -------------------------------------------------------------------------------------------------
  function syncForm() {
    modelInput.value = state.model;
    for (const key of FORM_KEYS) {
      const input = $(key);
      if (!input) continue;
      if (input.type === "checkbox") input.checked = state[key] === "true";
      else input.value = state[key];
    }
    for (const b of document.querySelectorAll("[data-mode]")) b.setAttribute("aria-selected", String(b.dataset.mode === state.mode));
    for (const b of document.querySelectorAll("[data-unit]")) b.setAttribute("aria-pressed", String(b.dataset.unit === state.unit));
    $("inference-fields").hidden = state.mode !== "inference";
    $("train-fields").hidden = state.mode !== "train";
    $("count-label").textContent = state.mode === "inference" ? "GPUs (tensor parallel)" : "GPUs (data parallel)";
    $("lora_rank").disabled = state.method === "full";
    $("peft_option").disabled = $("modules_to_save").disabled = state.method === "full";
    $("sweep-title").textContent = state.mode === "inference" ? "Memory against context length" : "Memory against sequence length";
    showModelInfo();
  }

  for (const key of FORM_KEYS) {
    const input = $(key);
    if (!input) continue;
    const read = () => { state[key] = input.type === "checkbox" ? (input.checked ? "true" : "") : input.value.trim(); };
    if (input.tagName === "SELECT" || input.type === "checkbox") {
      input.addEventListener("change", () => { read(); syncForm(); schedule(0); });
    } else {
      input.addEventListener("input", () => { read(); schedule(350); });
      input.addEventListener("change", () => { read(); schedule(0); });
    }
  }
  for (const b of document.querySelectorAll("[data-mode]")) {
    b.addEventListener("click", () => { state.mode = b.dataset.mode; syncForm(); schedule(0); });
  }
  for (const b of document.querySelectorAll("[data-unit]")) {
    b.addEventListener("click", () => {
      state.unit = b.dataset.unit;
      syncForm();
      fillGpuSelect();
      writeURL();
      renderAll();
    });
  }
  $("form").addEventListener("submit", (ev) => ev.preventDefault());
  $("share").addEventListener("click", async () => {
    writeURL();
    const b = $("share");
    try {
      await navigator.clipboard.writeText(location.href);
      b.textContent = "Link copied";
    } catch (e) {
      window.prompt("Copy this link:", location.href);
    }
    setTimeout(() => { b.textContent = "Copy link"; }, 1600);
  });

  // ----- requests ---------------------------------------------------------------------------------------------
  function inferenceParams() {
    return {
      model: state.model, quantization: state.quantization, max_model_len: state.max_model_len,
      batch_size: state.batch_size, kv_cache_dtype: state.kv_cache_dtype === "auto" ? "" : state.kv_cache_dtype,
      engine: state.engine, gpu: state.gpu, tensor_parallel_size: state.count === "1" ? "" : state.count,
    };
  }
  function trainParams() {
    return {
      model: state.model, method: state.method, optimizer: state.optimizer, precision: state.precision,
      lora_rank: state.method === "full" ? "" : state.lora_rank, seq_len: state.seq_len, batch_size: state.train_batch,
      zero: state.zero, gradient_checkpointing: state.gradient_checkpointing === "true" ? "true" : "",
      gpu: state.gpu, gpus: state.count === "1" ? "" : state.count,
      peft_option: adapterMethod() ? peftOptions() : [], modules_to_save: adapterMethod() ? state.modules_to_save : "",
    };
  }
  // "r=256 target_modules=q_proj,v_proj" -> ["r=256", "target_modules=q_proj,v_proj"] (the API checks each one)
  const peftOptions = () => state.peft_option.split(/[\s;]+/).filter(Boolean);
  const adapterMethod = () => state.method !== "full";
  const FIELD_INPUT = { tensor_parallel_size: "count", gpus: "count", file: "upload", contexts: "max_model_len",
    peft_options: "peft_option" };
  function inputFor(field) {
    if (!field) return null;
    field = String(field).split(".")[0];  // "peft_option.0": the first item of a list field
    if (field === "batch_size" && state.mode === "train") return $("train_batch");
    return $(FIELD_INPUT[field] || field);
  }

  let timer = null;
  let seq = 0;
  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(update, ms);
  }

  const last = { main: null, sweep: null, fit: null, speed: null, params: null };

  async function update() {
    const my = ++seq;
    writeURL();
    clearErrors();
    if (!state.model) return;
    document.body.classList.add("busy");
    const isInf = state.mode === "inference";
    const params = isInf ? inferenceParams() : trainParams();
    const base = isInf ? "/api/inference" : "/api/train";
    const mainP = api(base, params);
    const sweepP = api(base + "/sweep", params);
    const fitP = api("/api/fit", fitParams());
    const speedP = api("/api/speed", speedParams());
    const main = await mainP;
    if (my !== seq) return;
    document.body.classList.remove("busy");
    last.params = params;
    last.url = main.url;
    if (!main.ok) {
      showError(main.data, main.status);
      document.body.classList.add("stale");
      return;
    }
    document.body.classList.remove("stale");
    last.main = main.data;
    last.mode = state.mode;
    renderMain();
    sweepP.then((r) => { if (my === seq) { last.sweep = r; renderSweep(); } });
    fitP.then((r) => { if (my === seq) { last.fit = r; renderFit(); } });
    speedP.then((r) => { if (my === seq) { last.speed = r; renderSpeed(); } });
  }

  function fitParams() {
    const p = state.mode === "inference"
      ? { model: state.model, quantization: state.quantization, max_model_len: state.max_model_len,
          batch_size: state.batch_size, kv_cache_dtype: state.kv_cache_dtype === "auto" ? "" : state.kv_cache_dtype }
      : { model: state.model, workload: "training", method: state.method, optimizer: state.optimizer,
          precision: state.precision, lora_rank: state.method === "full" ? "" : state.lora_rank, seq_len: state.seq_len,
          gradient_checkpointing: state.gradient_checkpointing === "true" ? "true" : "", zero: state.zero };
    return p;
  }
  function speedParams() {
    const p = { model: state.model, gpu: state.gpu };
    if (state.mode === "inference") {
      Object.assign(p, { max_model_len: state.max_model_len, batch_size: state.batch_size,
        quantization: state.quantization, kv_cache_dtype: state.kv_cache_dtype === "auto" ? "" : state.kv_cache_dtype,
        tensor_parallel_size: state.count === "1" ? "" : state.count });
    } else {
      Object.assign(p, { method: state.method, seq_len: state.seq_len, training_tokens: state.training_tokens || "100M",
        gradient_checkpointing: state.gradient_checkpointing === "true" ? "true" : "" });
    }
    return p;
  }

  // ----- errors -----------------------------------------------------------------------------------------------
  function clearErrors() {
    $("error").hidden = true;
    for (const n of document.querySelectorAll("[aria-invalid=true]")) n.removeAttribute("aria-invalid");
    for (const n of document.querySelectorAll(".field .msg.dyn")) n.remove();
    $("msg-model").hidden = true;
  }
  function showError(data, status) {
    document.body.classList.remove("busy");
    const msg = (data && data.error) || `request failed (${status})`;
    const box = $("error");
    box.textContent = msg + (data && data.field ? ` (field: ${data.field})` : "");
    box.hidden = false;
    const input = inputFor(data && data.field);
    if (input && data.field === "model") {
      modelInput.setAttribute("aria-invalid", "true");
      $("msg-model").textContent = msg;
      $("msg-model").hidden = false;
    } else if (input && input.type !== "file") {
      input.setAttribute("aria-invalid", "true");
      const label = input.closest(".field");
      if (label) label.append(el("div", { class: "msg dyn", text: msg }));
    }
  }

  // ----- rendering --------------------------------------------------------------------------------------------
  function renderAll() {
    if (!last.main) return;
    renderMain();
    renderSweep();
    renderFit();
    renderSpeed();
  }

  function chosenCapacity() {
    const g = gpuByKey(state.gpu) || GPUS.find((x) => (x.aliases || []).includes(state.gpu));
    if (g) return [{ label: g.name, bytes: g.memory_total_bytes }];
    const cap = (last.main && last.main.capacity) || {};
    if (cap.gpu_memory_bytes) return [{ label: (last.main.request || {}).gpu || "GPU", bytes: cap.gpu_memory_bytes }];
    return [];
  }
  function referenceCapacities() {
    const chosen = chosenCapacity();
    if (chosen.length) return chosen;
    return REFERENCE_GPUS.map(gpuByKey).filter(Boolean).map((g) => ({ label: g.name, bytes: g.memory_total_bytes }));
  }

  function renderMain() {
    const r = last.main;
    const isInf = last.mode === "inference";
    const mem = r.memory || {};
    const total = mem.total || 0;
    const summary = $("summary");
    const m = r.model || {};
    const req = r.request || {};
    const lines = [];
    lines.push(el("div", { class: "big" }, fmtSize(total), " ", el("small", { text: `per GPU · ${fmtSize(total, otherUnit())}` })));
    const what = [];
    what.push(`${m.name}: ${fmtCount(m.params)} params` + (m.active_params && m.active_params !== m.params ? ` (${fmtCount(m.active_params)} active)` : ""));
    if (isInf) {
      const wf = r.weights_format || {};
      if (wf.name) what.push(`weights ${wf.name} (${Number(wf.bits_per_weight).toFixed(2)} bits/weight)`);
      what.push(`${fmtInt(req.max_model_len)} tokens × ${req.batch_size} sequence${req.batch_size > 1 ? "s" : ""}`);
      if (req.tensor_parallel_size > 1 || req.pipeline_parallel_size > 1) what.push(`split over ${req.tensor_parallel_size * req.pipeline_parallel_size} GPUs (TP=${req.tensor_parallel_size}, PP=${req.pipeline_parallel_size})`);
      const eng = r.engine || {};
      what.push(eng.name ? `${eng.name} ${eng.version || ""} accounting` : "plain accounting");
    } else {
      if (r.trainable_params !== undefined) what.push(`${fmtCount(r.trainable_params)} trainable`);
      for (const k of ["method", "optimizer", "precision"]) if (req[k]) what.push(String(req[k]));
    }
    lines.push(el("div", { class: "what", text: what.join(" · ") }));
    const facts = el("div", { class: "facts" });
    const caps = chosenCapacity();
    const cap = r.capacity || {};
    if (caps.length) {
      const gpuBytes = cap.gpu_memory_bytes || caps[0].bytes;
      const fits = cap.fits !== undefined ? cap.fits : total <= gpuBytes;
      facts.append(el("span", { class: "badge " + (fits ? "ok" : "bad"),
        text: fits ? `fits on ${caps[0].label} (${fmtSize(gpuBytes)})` : `does not fit ${caps[0].label} (${fmtSize(gpuBytes)}): ${fmtSize(total - gpuBytes)} over` }));
    }
    if (isInf && r.kv_bytes_per_token === 0 && !cap.kv_cache_tokens && cap.max_concurrency !== undefined) {
      // purely recurrent (Mamba): no KV cache; the state per sequence does not grow with the context
      facts.append(el("div", {}, el("span", { text: "recurrent state room: " }), `${cap.max_concurrency} sequences at any context length`));
    } else if (isInf && cap.kv_cache_tokens !== undefined) {
      facts.append(el("div", {}, el("span", { text: "KV cache room: " }), `${fmtInt(cap.kv_cache_tokens)} tokens`));
      if (cap.max_concurrency !== undefined) facts.append(el("div", {}, el("span", { text: "concurrency: " }), `${cap.max_concurrency} × ${fmtTokens(req.max_model_len)}`));
    }
    if (isInf && r.kv_bytes_per_token) facts.append(el("div", {}, el("span", { text: "KV per token: " }), `${fmtInt(r.kv_bytes_per_token)} bytes`));
    lines.push(facts);
    summary.replaceChildren(...lines);

    // stacked bar + table
    $("bar-note").textContent = `${fmtInt(total)} bytes in total`;
    drawBar($("bar"), mem, caps);
    const parts = components(mem);
    const rows = parts.map(([k, v], i) => el("tr", {},
      el("td", {}, el("span", { class: "swatch", "data-c": colorOf(k, i) }), k.replace(/_/g, " ")),
      el("td", { text: fmtSize(v), title: `${fmtInt(v)} bytes` }),
      el("td", { text: fmtSize(v, otherUnit()) }),
      el("td", { text: total ? (100 * v / total).toFixed(1) + "%" : "" })));
    rows.push(el("tr", { class: "total" }, el("td", { text: "total per GPU" }), el("td", { text: fmtSize(total) }),
      el("td", { text: fmtSize(total, otherUnit()) }), el("td", { text: "100%" })));
    $("breakdown").replaceChildren(
      el("thead", {}, el("tr", {}, el("th", { text: "component" }), el("th", { text: state.unit }), el("th", { text: otherUnit() }), el("th", { text: "share" }))),
      el("tbody", {}, ...rows));
    for (const s of document.querySelectorAll(".swatch[data-c]")) s.style.background = s.dataset.c;

    // details
    const explain = [...(r.explain || []), ...(((r.source || {}).messages) || []).map((x) => "note: " + x)];
    $("explain").replaceChildren(...explain.map((line) => el("li", { text: line })));
    $("json-link").href = last.url;
    $("cli-line").textContent = cliLine();
  }

  function cliLine() {
    const p = last.params || {};
    const cmd = ["vramplan", last.mode === "inference" ? "inference" : "train", p.model];
    for (const [k, v] of Object.entries(p)) {
      if (k === "model" || v === "" || v === undefined || v === null) continue;
      const flag = "--" + k.replace(/_/g, "-");
      cmd.push(v === "true" ? flag : `${flag} ${v}`);
    }
    return cmd.join(" ");
  }

  function chartWidth(node) {
    return Math.max(300, Math.min(1100, Math.round(node.clientWidth || node.parentNode.clientWidth || 640)));
  }

  function drawBar(node, memory, caps) {
    const W = chartWidth(node);
    const narrow = W < 480;
    const parts = components(memory);
    const total = memory.total || parts.reduce((a, [, v]) => a + v, 0);
    const div = UNIT_BYTES[state.unit];
    const ticks = niceTicks(Math.max(total, ...caps.map((c) => c.bytes), 1) / div * 1.04, narrow ? 4 : 6);
    const top = ticks[ticks.length - 1];
    const x0 = 8, x1 = W - 8;
    const barY = caps.length ? 26 : 8, barH = 40;
    const H = barY + barH + 30;
    const sx = (b) => x0 + (x1 - x0) * (b / div) / top;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": `memory breakdown, total ${fmtSize(total)}` });
    let cur = 0;
    parts.forEach(([k, v], i) => {
      if (v <= 0) return;
      const w = Math.max(sx(cur + v) - sx(cur), 0.75);
      root.append(titled(svg("rect", { x: sx(cur).toFixed(2), y: barY, width: w.toFixed(2), height: barH, fill: colorOf(k, i), "data-part": k }),
        `${k}: ${fmtSize(v)} (${fmtInt(v)} bytes)`));
      if (w > 78) {
        root.append(svg("text", { x: (sx(cur) + w / 2).toFixed(1), y: barY + barH / 2 + 4, "text-anchor": "middle", "font-size": 12, fill: "#fff", "font-weight": 600 },
          fmtSize(v)));
      }
      cur += v;
    });
    const ay = barY + barH + 4;
    root.append(svg("line", { x1: x0, y1: ay, x2: x1, y2: ay, stroke: "#c9ced8" }));
    ticks.forEach((t, i) => {
      const tx = x0 + (x1 - x0) * t / top;
      root.append(svg("line", { x1: tx, y1: ay, x2: tx, y2: ay + 4, stroke: "#8a93a6" }));
      const anchor = i === 0 ? "start" : i === ticks.length - 1 ? "end" : "middle";
      root.append(svg("text", { x: tx, y: ay + 17, "font-size": 11, fill: "#5b6475", "text-anchor": anchor },
        tickLabel(t) + (i === ticks.length - 1 ? " " + state.unit : "")));
    });
    for (const c of caps) {
      const cx = sx(c.bytes);
      root.append(svg("line", { x1: cx, y1: barY - 8, x2: cx, y2: barY + barH + 4, stroke: CAP_COLOR, "stroke-width": 2, "stroke-dasharray": "5 3" }));
      const leftSide = cx > W / 2;
      root.append(svg("text", { x: leftSide ? cx - 4 : cx + 4, y: barY - 12, "font-size": 11, fill: CAP_COLOR, "text-anchor": leftSide ? "end" : "start" },
        `${c.label}: ${fmtSize(c.bytes)}`));
    }
    node.replaceChildren(root);
  }

  function renderSweep() {
    const node = $("sweep");
    const r = last.sweep;
    if (!r) return;
    if (!r.ok) {
      node.replaceChildren(el("div", { class: "notice", text: r.status === 501 ? "Not available in this build of vramplan yet." : (r.data && r.data.error) || "no data" }));
      return;
    }
    const points = r.data.points || [];
    const chosen = last.mode === "inference" ? (r.data.request || {}).max_model_len : (r.data.request || {}).seq_len;
    drawSweep(node, points, referenceCapacities(), chosen, last.mode === "inference" ? "context length (tokens, log scale)" : "sequence length (tokens, log scale)");
  }

  function drawSweep(node, points, caps, chosen, xLabel) {
    if (!points.length) { node.replaceChildren(); return; }
    const W = chartWidth(node);
    const narrow = W < 480;
    const H = Math.round(Math.max(230, Math.min(360, W * 0.48)));
    const left = narrow ? 44 : 58, right = 14, top = 14, bottom = 44;
    const pw = W - left - right, ph = H - top - bottom;
    const div = UNIT_BYTES[state.unit];
    const names = components(points[0].memory).map(([k]) => k);
    const xs = points.map((p) => p.max_model_len ?? p.seq_len ?? p.x);
    let lo = Math.log2(Math.min(...xs)), hi = Math.log2(Math.max(...xs));
    if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
    const yTicks = niceTicks(Math.max(...points.map((p) => p.memory.total), ...caps.map((c) => c.bytes), 1) / div * 1.06, narrow ? 4 : 5);
    const yTop = yTicks[yTicks.length - 1];
    const px = (c) => left + pw * (Math.log2(c) - lo) / (hi - lo);
    const py = (b) => top + ph * (1 - (b / div) / yTop);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": "memory per GPU against length" });
    for (const t of yTicks) {
      const y = top + ph * (1 - t / yTop);
      root.append(svg("line", { x1: left, y1: y, x2: left + pw, y2: y, stroke: "#eceff3" }));
      root.append(svg("text", { x: left - 6, y: y + 4, "font-size": 11, fill: "#5b6475", "text-anchor": "end" }, tickLabel(t)));
    }
    let base = points.map(() => 0);
    names.forEach((name, i) => {
      const upper = base.map((b, j) => b + (points[j].memory[name] || 0));
      const fwd = xs.map((c, j) => `${px(c).toFixed(2)},${py(upper[j]).toFixed(2)}`).join(" ");
      const back = xs.map((c, j) => `${px(c).toFixed(2)},${py(base[j]).toFixed(2)}`).reverse().join(" ");
      root.append(titled(svg("polygon", { points: fwd + " " + back, fill: colorOf(name, i), "fill-opacity": 0.85 }), name));
      base = upper;
    });
    root.append(svg("polyline", { points: xs.map((c, j) => `${px(c).toFixed(2)},${py(points[j].memory.total).toFixed(2)}`).join(" "), fill: "none", stroke: "#1d2433", "stroke-width": 1.5 }));
    xs.forEach((c, j) => {
      root.append(titled(svg("circle", { cx: px(c).toFixed(2), cy: py(points[j].memory.total).toFixed(2), r: 3, fill: "#1d2433", "data-x": c }),
        `${fmtInt(c)} tokens: ${fmtSize(points[j].memory.total)} per GPU`));
    });
    caps.forEach((c) => {
      const y = py(c.bytes);
      root.append(svg("line", { x1: left, y1: y, x2: left + pw, y2: y, stroke: CAP_COLOR, "stroke-width": 2, "stroke-dasharray": "6 4", "data-cap": c.label }));
      root.append(svg("text", { x: left + 6, y: y - 5, "font-size": 11, fill: CAP_COLOR }, `${c.label}: ${fmtSize(c.bytes)}`));
    });
    if (chosen && chosen >= Math.min(...xs) && chosen <= Math.max(...xs)) {
      const cx = px(chosen);
      root.append(svg("line", { x1: cx, y1: top, x2: cx, y2: top + ph, stroke: "#1d2433", "stroke-dasharray": "2 3" }));
      root.append(svg("text", { x: cx + 4, y: top + 12, "font-size": 11, fill: "#1d2433" }, "chosen " + fmtTokens(chosen)));
    }
    const shown = [...new Set(xs)].sort((a, b) => a - b);
    const step = Math.max(1, Math.ceil(shown.length / (narrow ? 5 : 9)));
    shown.filter((_, i) => i % step === 0).forEach((c) => {
      root.append(svg("text", { x: px(c), y: top + ph + 17, "font-size": 11, fill: "#5b6475", "text-anchor": "middle" }, fmtTokens(c)));
    });
    root.append(svg("line", { x1: left, y1: top + ph, x2: left + pw, y2: top + ph, stroke: "#8a93a6" }));
    root.append(svg("text", { x: left + pw / 2, y: H - 8, "font-size": 12, fill: "#1d2433", "text-anchor": "middle" }, xLabel));
    root.append(svg("text", { transform: `translate(13 ${top + ph / 2}) rotate(-90)`, "font-size": 12, fill: "#1d2433", "text-anchor": "middle" }, `per GPU (${state.unit})`));
    const legend = el("div", { class: "facts legend" }, ...names.map((n, i) => el("div", {}, el("span", { class: "swatch", "data-c": colorOf(n, i) }), n.replace(/_/g, " "))));
    node.replaceChildren(root, legend);
    for (const s of legend.querySelectorAll(".swatch")) s.style.background = s.dataset.c;
  }

  // ----- fit table --------------------------------------------------------------------------------------------
  function renderFit() {
    const node = $("fit");
    const r = last.fit;
    if (!r || !last.main) return;
    if (r.ok && Array.isArray(r.data.by_gpu)) {
      node.replaceChildren(...fitView(r.data));
      return;
    }
    if (r.ok) {
      $("fit-note").textContent = "";
      node.replaceChildren(genericTable(r.data));
      return;
    }
    if (r.status !== 501) {
      $("fit-note").textContent = "";
      node.replaceChildren(el("div", { class: "notice", text: (r.data && r.data.error) || "fit is unavailable" }));
      return;
    }
    // No fit planner in this build: compare the per-GPU total with each GPU's memory.
    const total = (last.main.memory || {}).total || 0;
    const n = +state.count || 1;
    $("fit-note").textContent = `per-GPU total ${fmtSize(total)} against each GPU's memory${n > 1 ? `, ${n} GPUs each` : ""}`;
    const sorted = [...GPUS].sort((a, b) => a.memory_total_bytes - b.memory_total_bytes);
    const fitting = sorted.filter((g) => total <= g.memory_total_bytes);
    const short = sorted.filter((g) => total > g.memory_total_bytes);
    const shown = new Set([...short.slice(-2), ...fitting.slice(0, 8)].map((g) => g.key));
    if (state.gpu) shown.add(state.gpu);
    const rowFor = (g) => {
      const fits = total <= g.memory_total_bytes;
      return el("tr", { class: (fits ? "yes" : "no") + (g.key === state.gpu ? " chosen" : ""), "data-gpu": g.key },
        el("td", { text: g.name }), el("td", { text: fmtSize(g.memory_total_bytes) }),
        el("td", { text: fits ? fmtSize(g.memory_total_bytes - total) : `${fmtSize(total - g.memory_total_bytes)} short` }),
        el("td", { text: g.price_per_hour_usd ? "$" + g.price_per_hour_usd.toFixed(2) : "–" }));
    };
    const head = () => el("thead", {}, el("tr", {}, el("th", { text: "GPU" }), el("th", { text: `memory (${state.unit})` }),
      el("th", { text: `room left (${state.unit})` }), el("th", { text: "$/hour" })));
    const compact = el("table", { class: "data" }, head(), el("tbody", {}, ...sorted.filter((g) => shown.has(g.key)).map(rowFor)));
    const all = el("details", { class: "more" }, el("summary", { text: `all ${sorted.length} GPUs (${fitting.length} fit)` }),
      el("table", { class: "data" }, head(), el("tbody", {}, ...sorted.map(rowFor))));
    node.replaceChildren(compact, all);
  }

  function isSizeKey(k) { return /(_bytes|^bytes|memory)$/.test(k); }
  function cellText(k, v) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v === "number") {
      if (isSizeKey(k)) return fmtSize(v);
      if (/_per_s$/.test(k) && /flop/.test(k)) return (v / 1e12).toFixed(1) + " TFLOP/s";
      if (/bytes_per_s$/.test(k)) return (v / 1e9).toFixed(0) + " GB/s";
      if (/tokens_per_s$|_per_s$/.test(k)) return v.toLocaleString("en-US", { maximumFractionDigits: 1 }) + " tok/s";
      if (/usd/.test(k)) return "$" + v.toFixed(2);
      return Number.isInteger(v) ? fmtInt(v) : v.toLocaleString("en-US", { maximumFractionDigits: 2 });
    }
    if (typeof v === "object") return Array.isArray(v) ? v.join(", ") : "";
    return String(v);
  }
  function headerText(k) {
    let h = k.replace(/_bytes$/, "").replace(/_per_s$/, "/s").replace(/_/g, " ");
    if (isSizeKey(k)) h += ` (${state.unit})`;
    return h;
  }
  function firstRows(data) {
    if (Array.isArray(data)) return data;
    for (const v of Object.values(data || {})) if (Array.isArray(v) && v.length && typeof v[0] === "object") return v;
    return null;
  }
  function genericTable(data, limit = 20) {
    const rows = firstRows(data);
    if (!rows) return el("div", { class: "facts" }, ...Object.entries(data || {}).filter(([, v]) => typeof v !== "object" || v === null)
      .map(([k, v]) => el("div", {}, el("span", { text: headerText(k) + ": " }), cellText(k, v))));
    const keys = [];
    for (const row of rows.slice(0, 50)) for (const [k, v] of Object.entries(row)) if ((typeof v !== "object" || v === null) && !keys.includes(k)) keys.push(k);
    const body = rows.slice(0, limit).map((row) => el("tr", { class: row.fits === true ? "yes" : row.fits === false ? "no" : "" },
      ...keys.map((k) => el("td", { text: cellText(k, row[k]) }))));
    return el("table", { class: "data" }, el("thead", {}, el("tr", {}, ...keys.map((k) => el("th", { text: headerText(k) })))), el("tbody", {}, ...body));
  }

  // fit planner output: by GPU (fewest of each kind that fit), cheapest, fastest
  let fitTab = "by_gpu";
  const band = (b, digits = 0) => (b && b.expected !== undefined
    ? `${fmtNum(b.expected, digits)} (${fmtNum(b.low, digits)}–${fmtNum(b.high, digits)})` : "–");
  function fmtNum(v, digits = 0) {
    if (v === null || v === undefined) return "–";
    return Number(v).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }
  function fitView(d) {
    const note = [];
    if (d.gpus_tried) note.push(`${d.gpus_tried} GPU kinds`);
    if (d.max_gpus) note.push(`up to ${d.max_gpus} GPUs each`);
    if (d.headroom !== undefined) note.push(`${Math.round(d.headroom * 100)}% headroom kept free`);
    $("fit-note").textContent = note.join(", ");
    const tabs = el("div", { class: "units fit-tabs", role: "group", "aria-label": "order" });
    for (const [key, label] of [["by_gpu", "by GPU"], ["cheapest", "cheapest"], ["fastest", "fastest"]]) {
      const b = el("button", { type: "button", "data-fit": key, "aria-pressed": String(fitTab === key), text: label });
      b.addEventListener("click", () => { fitTab = key; renderFit(); });
      tabs.append(b);
    }
    let rows = d[fitTab] || [];
    const cap = (c) => c.gpu_memory ?? c.limit_per_gpu;
    if (fitTab === "by_gpu") rows = [...rows].sort((a, b) => (b.fits - a.fits) || ((a.count || 0) - (b.count || 0)) || (cap(a) - cap(b)));
    const hasMemory = rows.some((c) => c.gpu_memory !== undefined);
    const hasSpeed = rows.some((c) => c.decode_tokens_per_s);
    const cols = [
      ["configuration", (c) => c.label + (c.offload_layers ? ` (${c.offload_layers} layers in host RAM)` : "")],
      [`per GPU (${state.unit})`, (c) => fmtSize(c.memory_per_gpu)],
      [hasMemory ? `GPU memory (${state.unit})` : `usable per GPU (${state.unit})`, (c) => fmtSize(cap(c))],
    ];
    if (hasSpeed) cols.push(["decode tok/s per sequence", (c) => (c.fits ? band(c.decode_tokens_per_s) : "–")]);
    cols.push(["$/hour", (c) => (c.cost_per_hour_usd !== null && c.cost_per_hour_usd !== undefined ? "$" + c.cost_per_hour_usd.toFixed(2) : "–")]);
    const rowFor = (c) => el("tr", { class: (c.fits ? "yes" : "no") + (c.gpu_key === state.gpu ? " chosen" : ""), "data-gpu": c.gpu_key || "" },
      ...cols.map(([, f]) => el("td", { text: f(c) })));
    const head = () => el("thead", {}, el("tr", {}, ...cols.map(([h]) => el("th", { text: h }))));
    const out = [tabs];
    if (!d.fits) {
      out.push(el("div", { class: "notice", text: d.reason || "nothing fits" }));
      for (const sgg of d.suggestions || []) out.push(el("div", { class: "what", text: "• " + (sgg.change || sgg.label || sgg.text || JSON.stringify(sgg)) }));
    }
    const limit = 10;
    let shown = rows.slice(0, limit);
    const chosenRow = rows.find((c) => c.gpu_key === state.gpu);
    if (chosenRow && !shown.includes(chosenRow)) shown = [...shown, chosenRow];
    out.push(el("div", { class: "scroll" }, el("table", { class: "data fit" }, head(), el("tbody", {}, ...shown.map(rowFor)))));
    if (rows.length > shown.length) {
      out.push(el("details", { class: "more" }, el("summary", { text: `all ${rows.length} rows` }),
        el("div", { class: "scroll" }, el("table", { class: "data" }, head(), el("tbody", {}, ...rows.map(rowFor))))));
    }
    if ((d.explain || []).length) out.push(el("div", { class: "what small", text: d.explain[0] }));
    return out;
  }

  // ----- speed ------------------------------------------------------------------------------------------------
  function renderSpeed() {
    const node = $("speed");
    const r = last.speed;
    if (!r || !last.main) return;
    if (r.ok && r.data.decode) {
      node.replaceChildren(...speedView(r.data));
      return;
    }
    if (r.ok) {
      node.replaceChildren(genericTable(r.data));
      return;
    }
    $("speed-note").textContent = "";
    node.replaceChildren(el("div", { class: "notice", text: r.status === 501 ? "Speed estimates are not available in this build of vramplan yet." : (r.data && r.data.error) || "speed is unavailable" }));
  }
  function speedView(d) {
    const cfg = d.configuration || {};
    const dec = d.decode || {};
    const req = d.request || {};
    $("speed-note").textContent = `roofline estimate on ${cfg.label || (d.gpu || {}).name}` + (state.gpu ? "" : " (pick a GPU to change)");
    const out = [];
    if (d.warning) out.push(el("div", { class: "notice", text: d.warning }));
    const facts = el("div", { class: "facts speed-facts" });
    const fact = (label, value) => facts.append(el("div", {}, el("span", { text: label + ": " }), value));
    fact("decode", `${band(dec.tokens_per_s, 1)} tokens/s per sequence`);
    if (dec.batch > 1) fact(`throughput at batch ${dec.batch}`, `${band(dec.throughput_tokens_per_s)} tokens/s`);
    if (req.time_to_first_token_s) fact(`first token after a ${fmtInt(req.prompt_tokens)}-token prompt`, `${band(req.time_to_first_token_s, 2)} s`);
    if (req.total_seconds) fact(`whole request (+${fmtInt(req.output_tokens)} tokens out)`, `${band(req.total_seconds, 1)} s`);
    if (dec.bound) fact("bound by", dec.bound);
    if (d.training) fact(`training on ${fmtInt(d.training.tokens)} tokens`, `${band(d.training.gpu_hours, 1)} GPU-hours`);
    if (d.cost) fact("GPU price", `$${d.cost.usd_per_hour.toFixed(2)}/h (typical on-demand)`);
    out.push(facts);
    const conc = (d.concurrency || {}).by_batch || [];
    if (conc.length) {
      const priced = Boolean(d.cost);
      const head = ["concurrent sequences", "tok/s per sequence", "tok/s in total", "fits"].concat(priced ? ["$ per 1M output tokens"] : []);
      out.push(el("div", { class: "scroll" }, el("table", { class: "data" },
        el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { text: h })))),
        el("tbody", {}, ...conc.map((c) => el("tr", { class: c.fits ? "" : "no" }, el("td", { text: fmtInt(c.batch) }),
          el("td", { text: band(c.tokens_per_s, 1) }), el("td", { text: band(c.throughput_tokens_per_s) }), el("td", { text: c.fits ? "yes" : "no" }),
          ...(priced ? [el("td", { text: band(c.usd_per_million_output_tokens, 2) })] : [])))))));
    }
    out.push(el("div", { class: "what small", text: "expected (low–high) from stated bandwidth and FLOP efficiencies; see the JSON for sources" }));
    return out;
  }

  // ----- start ------------------------------------------------------------------------------------------------
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(renderAll, 150);
  });

  async function start() {
    readURL();
    syncForm();
    await loadCatalogs();
    syncForm();
    fillGpuSelect();
    await update();
    document.documentElement.dataset.ready = "1";
  }
  start();
})();
