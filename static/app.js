// memtype-explorer page script: collects inputs, calls the JSON API, draws the answers.
//
// No memory-typing or register rule lives here. Everything that decides a type (EPT memtype,
// IPAT, effective type, guest expectation, relation, page size, zap ranges, era diff, the
// MTRR lane's default type) comes from /api/v1, and so does the permalink (POST
// /api/v1/permalink: app/permalink.py is the only encoder). The register editors keep the raw
// MSR values as the truth and ask app/pages.py for the rest: /page/registers reads raw values
// into what the editors show (PAT entries, E/FE/default type, fixed sub-ranges, each pair's
// start, size, type and V), /page/pat-value, /page/mtrr-deftype, /page/mtrr-pair and
// /page/mtrr-pair-fields write fields back into raw values, /page/msr-value reads one MTRR
// MSR, /page/diff-state opens a diff group. The MSR list and type names come in the page's
// initial state. What this file does on its own is drawing (the map bar's scale, sizes as
// text), and reusing answers the server gave for the exact same request (PARTS, per part; the
// idle prefetch of the states one click away and of the presets, prefetchNeighbours).

const API = (document.body.dataset.api || "/api/v1").replace(/\/$/, "");
const PAGE = (document.body.dataset.page || "/page").replace(/\/$/, "");  // app/pages.py helpers
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

// The form is never submitted: every control is live (no inline onsubmit: the CSP allows none).
$("#controls")?.addEventListener("submit", (ev) => ev.preventDefault());

let INITIAL = {};
try { INITIAL = JSON.parse($("#initial-state").textContent || "{}") || {}; } catch { INITIAL = {}; }

// -- encodings (architectural register layouts from app.x86, not rules) ---------------------

const REG = INITIAL.registers || {};
const TYPE_NAMES = REG.types || {};       // encoding -> SDM name
const MTRR_CODES = REG.mtrr_codes || [];  // encodings an MTRR type field accepts
const FIXED_MSRS = (REG.fixed_msrs || []).map((f) => [f.msr, f.name, f.start, f.unit]);
const MTRR_MSRS = REG.mtrr_msrs || [];    // [{msr, name}]: every MTRR MSR, MTRRdefType first
// Short labels of the diffs' dimensions (app/pages.py DIM_SHORT); which dimensions a diff
// has, and their order, come from its answer (diffDims).
const DIM_SHORT = INITIAL.dim_short || {};

const HEX_RE = /^0x[0-9a-f]{1,16}$/i;
const parseHex = (s) => (typeof s === "string" && HEX_RE.test(s.trim()) ? BigInt(s.trim()) : null);
const hex = (v, width = 0) => "0x" + BigInt(v).toString(16).padStart(width, "0");
const typeClass = (t) => (t == null ? "t-none" : t === "UC-" ? "t-UCm" : `t-${t}`);

function fmtSize(n) {
  const units = [["T", 2 ** 40], ["G", 2 ** 30], ["M", 2 ** 20], ["K", 2 ** 10]];
  for (const [u, m] of units) {
    if (n >= m) {
      const v = n / m;
      return (Number.isInteger(v) ? v : v.toFixed(1)) + u;
    }
  }
  return `${n}B`;
}
function fmtAddr(n) {
  // Axis labels: round sizes as 640K / 2G / 64T, anything else in hex.
  if (n === 0) return "0";
  for (const [u, m] of [["T", 2 ** 40], ["G", 2 ** 30], ["M", 2 ** 20], ["K", 2 ** 10]]) {
    if (n % m === 0 && (n / m < 1024 || u === "T") && (u !== "M" || n < 2 ** 30) && (u !== "K" || n < 2 ** 20)) return `${n / m}${u}`;
  }
  return "0x" + n.toString(16);
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k === "style") e.style.cssText = v;  // CSSOM, which the CSP allows (a style attribute it would not)
    else if (k.startsWith("on")) { e.addEventListener(k.slice(2), v); LISTENED.add(e); }
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}
// fill(parent, ...children): replaceChildren() for a redraw. The nodes already there are kept
// where the new ones equal them, and only differing attributes and texts are written, so
// the browser restyles and lays out what changed, not the whole panel (issue 13 "Speed").
// A node with listeners from el() (LISTENED) is always put in as it is.
const LISTENED = new WeakSet();
function fill(parent, ...kids) {
  morphChildren(parent, kids.flat().filter((c) => c != null && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
}
function morphChildren(parent, nodes) {
  const old = parent.childNodes;
  let i = 0;
  for (const n of nodes) {
    const o = old[i++];
    if (!o) parent.append(n);
    else if (o.nodeType !== n.nodeType || o.nodeName !== n.nodeName || LISTENED.has(n) || LISTENED.has(o)) parent.replaceChild(n, o);
    else if (n.nodeType !== 1) { if (o.nodeValue !== n.nodeValue) o.nodeValue = n.nodeValue; }
    else if (!o.isEqualNode(n)) {
      for (const at of Array.from(o.attributes)) if (!n.hasAttribute(at.name)) o.removeAttribute(at.name);
      for (const at of n.attributes) {
        if (o.getAttribute(at.name) === at.value) continue;
        if (at.name === "style") o.style.cssText = n.style.cssText;  // CSSOM: the CSP allows it
        else o.setAttribute(at.name, at.value);
      }
      morphChildren(o, Array.from(n.childNodes));
    }
  }
  while (old.length > i) parent.lastChild.remove();
}
const GLOSSARY = REG.glossary || {};     // abbreviation -> expansion (prose, for <abbr title>)
const abbr = (short, text = short) => (GLOSSARY[short] ? el("abbr", { title: GLOSSARY[short] }, text) : text);
const typeChip = (t, extra = "") => el(t != null && GLOSSARY[t] ? "abbr" : "span",
  { class: `t ${typeClass(t)}`, title: extra || (t != null && GLOSSARY[t]) || null }, t == null ? "undefined" : t);
const badge = (rel, title) => el("span", { class: `badge ${rel}`, title, "data-relation": rel }, rel);
// Two meanings of "weaker" share one screen, so they get different words. Era against era
// (the diff) keeps weaker/stronger; the effective type against the guest's bare-metal
// expectation says looser/stricter than expected (same API value, different reference).
const EXPECT_WORDS = { weaker: "looser than expected", stronger: "stricter than expected", same: "as expected", incomparable: "not comparable" };
const expectWords = (rel) => EXPECT_WORDS[rel] || rel;
const expBadge = (rel, title) => el("span", { class: `badge ${rel}`, title, "data-relation": rel }, expectWords(rel));
// The diff's classification is B relative to A; the page reads A against B (as the summary).
const AGAINST = { weaker: "stronger", stronger: "weaker", same: "same", incomparable: "incomparable" };

// -- page-level data -----------------------------------------------------------------------

const DEFAULT_KERNEL = INITIAL.initial?.default_kernel || "v6.16";
let PRESETS = [];          // the template's presets (GET /api/v1/presets as a fallback)
let memoryMap = null;      // passed through from the permalink (the page has no map editor)
let view = "resolve";
const diffCache = new Map();
let inflight = null;
let seq = 0;
let last = {};             // last successful responses
let defTypeRaw = "0x0";    // MTRRdefType as the registers hold it (E, FE, type are views of it)

// -- controls <-> state -------------------------------------------------------------------

const ctl = {
  kernel: $("#kernel"), kver: $("#kernel-version"), vs: $("#vs"),
  ncdma: $("#ncdma"), cdnw: $("#cdnw_quirk"), patq: $("#pat_quirk"), snoop: $("#selfsnoop"), gmtrr: $("#guest_mtrr"),
  maxphy: $("#maxphyaddr"),
  cd: $("#cr0_cd"), nw: $("#cr0_nw"), pg: $("#cr0_pg"),
  gpa: $("#gpa"), mmio: $("#mmio"),
  patRaw: $("#pat-raw"), pats: Array.from({ length: 8 }, (_, i) => $(`#pat${i}`)),
  mE: $("#mtrr-e"), mFE: $("#mtrr-fe"), mDef: $("#mtrr-deftype"),
  pati: $("#pati"),
  evKind: $("#event-kind"), evBool: $("#event-bool"), evNw: $("#event-nw"), evMsr: $("#event-msr"), evValue: $("#event-value"),
};

// Fixed-range MSR rows.
function buildFixedRows() {
  const tb = $("#fixed-table tbody");
  FIXED_MSRS.forEach(([msr, name, start, unit], slot) => {
    const inp = el("input", { type: "text", class: "hex", id: `fixed${slot}`, "data-fixed": slot, spellcheck: "false",
      "aria-label": `${name} (MSR ${hex(msr)}) value` });
    const chips = el("div", { class: "chips", id: `fixed-chips${slot}` });
    tb.append(el("tr", {},
      el("td", { class: "name", title: `MSR ${hex(msr)}: ${hex(start)}-${hex(start + 8 * unit)}, ${fmtSize(unit)} each` },
        name, el("br"), el("span", { class: "muted" }, `${hex(start)}+8x${fmtSize(unit)}`)),
      el("td", {}, inp, chips, el("span", { class: "err", "data-err": `vcpu.mtrr.fixed[${slot}]` })),
    ));
  });
}
function drawFixedChips(slot, view) {
  // view: the server's reading of this MSR (/page/registers): ok, and 8 sub-ranges with
  // their type (null for a code MTRRs do not accept)
  const box = $(`#fixed-chips${slot}`);
  fill(box, ...(view.ok ? view.chips : Array(8).fill(null)).map((c) => {
    const name = c == null ? "?" : c.type ?? `r${c.code}`;
    return el("span", { class: `chip ${c && c.type ? typeClass(c.type) : "t-none"}`,
      title: c ? `${c.start}-${c.end}: ${name}` : "malformed value" }, name);
  }));
  $(`#fixed${slot}`).setAttribute("aria-invalid", view.ok ? "false" : "true");
}

// Variable-range rows: each keeps raw PHYSBASE/PHYSMASK; start/size/type/V are the server's
// views of them (drawVarRow), and an edit of a view asks the server for the raw pair.
function addVarRow(base = 0n, mask = 0n, baseText = null, maskText = null) {
  const box = $("#var-rows");
  const row = el("div", { class: "var-row" });
  const idx = el("span", { class: "idx" });
  const start = el("input", { type: "text", class: "hex v-start", spellcheck: "false", "aria-label": "range start" });
  const size = el("input", { type: "text", class: "hex v-size", spellcheck: "false", "aria-label": "range size" });
  const type = el("select", { class: "mono v-type", "aria-label": "range type" },
    MTRR_CODES.map((c) => el("option", { value: String(c) }, TYPE_NAMES[c])));
  const valid = el("input", { type: "checkbox", class: "v-valid", "aria-label": "valid (PHYSMASK.V)" });
  const rm = el("button", { type: "button", class: "small v-rm", "aria-label": "remove range" }, "\u00d7");
  const rawBase = el("input", { type: "text", class: "hex v-base", spellcheck: "false", "aria-label": "PHYSBASE raw" });
  const rawMask = el("input", { type: "text", class: "hex v-mask", spellcheck: "false", "aria-label": "PHYSMASK raw" });
  const sizeNote = el("span", { class: "muted v-note" });
  const err = el("span", { class: "err v-err" });
  row.append(
    el("div", { class: "line" }, idx, el("label", {}, "start ", start), el("label", {}, "size ", size)),
    el("div", { class: "line" }, el("label", {}, "type ", type), el("label", { title: "PHYSMASK.V (bit 11)" }, valid, " valid"), sizeNote, rm),
    el("div", { class: "line raw" }, el("label", { title: "IA32_MTRR_PHYSBASEn, raw" }, "base ", rawBase),
      el("label", { title: "IA32_MTRR_PHYSMASKn, raw" }, "mask ", rawMask)),
    err,
  );
  rawBase.value = baseText ?? hex(base);
  rawMask.value = maskText ?? hex(mask);
  // start/size: the server writes PHYSBASE/PHYSMASK (or refuses a range no pair covers);
  // type and V: the server sets those fields in the raw values
  start.addEventListener("change", async () => { await pairFromRange(row); changed(); });
  size.addEventListener("change", async () => { await pairFromRange(row); changed(); });
  type.addEventListener("change", async () => { await pairFields(row); changed(); });
  valid.addEventListener("change", async () => { await pairFields(row); changed(); });
  rawBase.addEventListener("change", () => { delete row.dataset.refused; changed(); });
  rawMask.addEventListener("change", () => { delete row.dataset.refused; changed(); });
  rm.addEventListener("click", () => { row.remove(); renumberVars(); changed(); });
  box.append(row);
  renumberVars();
  return row;
}
function resetVarRow(row, baseText, maskText) {
  // a row as addVarRow builds it for these raw values: the views empty until the server's
  // reading of the pair is drawn (drawVarRow), no refusal, no marks
  delete row.dataset.refused;
  $(".v-base", row).value = baseText;
  $(".v-mask", row).value = maskText;
  for (const sel of [".v-start", ".v-size"]) $(sel, row).value = "";
  const type = $(".v-type", row);
  type.selectedIndex = 0;
  $(".v-valid", row).checked = false;
  setText($(".v-note", row), "");
  setText($(".v-err", row), "");
  for (const sel of [".v-start", ".v-size", ".v-base", ".v-mask"]) $(sel, row).removeAttribute("aria-invalid");
}
function renumberVars() {
  regsGen++;
  $$("#var-rows .var-row").forEach((row, n) => {
    $(".idx", row).textContent = `#${n}`;
    $(".v-err", row).dataset.err = `vcpu.mtrr.variable[${n}]`;
    $(".v-base", row).setAttribute("aria-label", `PHYSBASE${n} raw`);
    $(".v-mask", row).setAttribute("aria-label", `PHYSMASK${n} raw`);
    $(".v-start", row).setAttribute("aria-label", `variable range ${n} start`);
    $(".v-size", row).setAttribute("aria-label", `variable range ${n} size`);
    $(".v-type", row).setAttribute("aria-label", `variable range ${n} type`);
    $(".v-valid", row).setAttribute("aria-label", `variable range ${n} valid`);
  });
  $("#var-add").disabled = $$("#var-rows .var-row").length >= 8;
}
function drawVarRow(row, v) {
  // v: the server's reading of the raw pair (/page/registers: app.x86.mtrr)
  $(".v-base", row).setAttribute("aria-invalid", v.base_ok ? "false" : "true");
  $(".v-mask", row).setAttribute("aria-invalid", v.mask_ok ? "false" : "true");
  if (v.base_ok) {
    $(".v-start", row).value = v.start;
    if (v.type_ok) $(".v-type", row).value = String(v.type);
  }
  if (v.mask_ok) {
    $(".v-valid", row).checked = v.valid;
    $(".v-size", row).value = v.size ?? "";
    $(".v-note", row).textContent = v.note || fmtSize(Number(BigInt(v.size)));
  }
  $(".v-size", row).setAttribute("aria-invalid", "false");
}
function pairError(row, e) {
  const items = e.problem?.errors || [];
  const msg = items.length ? items.map((it) => `${locKey(it.loc)}: ${it.msg}${it.rule ? ` (${it.rule})` : ""}`).join("; ") : e.message;
  row.dataset.refused = msg;
}
async function pairFields(row) {
  // The type select and the V box -> PHYSBASE.Type and PHYSMASK.V in the raw pair, written by
  // the server (POST /page/mtrr-pair-fields: app.x86.mtrr.with_fields); the address bits stay.
  const idx = $$("#var-rows .var-row").indexOf(row);
  const body = { index: Math.max(idx, 0), base: $(".v-base", row).value.trim(), mask: $(".v-mask", row).value.trim(),
    type: Number($(".v-type", row).value), valid: $(".v-valid", row).checked };
  try {
    const pair = await api(`${PAGE}/mtrr-pair-fields`, body, undefined, false, true);
    delete row.dataset.refused;
    $(".v-base", row).value = pair.base;
    $(".v-mask", row).value = pair.mask;
  } catch (e) {
    // a malformed raw value: resolve names it at the raw field; the view waits for it
    if (!(e.problem?.errors || []).every((it) => it.loc?.[1] === "base" || it.loc?.[1] === "mask")) pairError(row, e);
  }
}
async function pairFromRange(row) {
  // The range as start + size -> the PHYSBASE/PHYSMASK pair, written by the server
  // (POST /page/mtrr-pair: app.x86.mtrr.range_to_pair). A range no single pair covers (an
  // unaligned start, a size that is no power of two) is refused with the rule; the row keeps
  // the refusal until it is fixed, and every panel waits (stale).
  const idx = $$("#var-rows .var-row").indexOf(row);
  const startText = $(".v-start", row).value.trim(), sizeText = $(".v-size", row).value.trim();
  const mp = Number.parseInt(ctl.maxphy.value, 10);
  const body = { index: Math.max(idx, 0), start: startText, size: sizeText, type: Number($(".v-type", row).value),
    valid: $(".v-valid", row).checked, ...(Number.isInteger(mp) ? { maxphyaddr: mp } : {}) };
  try {
    const pair = await api(`${PAGE}/mtrr-pair`, body, undefined, false, true);
    delete row.dataset.refused;
    $(".v-base", row).value = pair.base;
    $(".v-mask", row).value = pair.mask;
    $(".v-start", row).setAttribute("aria-invalid", "false");
  } catch (e) {
    const items = e.problem?.errors || [];
    if (items.length && items.every((it) => it.loc?.[1] === "maxphyaddr")) return;  // resolve names MAXPHYADDR itself
    pairError(row, e);
    $(".v-start", row).setAttribute("aria-invalid", "true");
  }
}

// The raw registers are the truth; the PAT entry selects, E/FE/default type, the fixed chips
// and each pair's start/size/type/V are drawn from the server's reading of them
// (drawRegisters, after every update), and an edit of one of those views asks the server
// for the raw value (patFromSelects, defTypeFromFields, pairFields, pairFromRange).
function setPatRaw(v) {
  ctl.patRaw.value = hex(v, 16);
}
function syncPatFromRaw() {
  // the raw text is the value; its entries are drawn from the server's reading (drawRegisters)
}
async function patFromSelects() {
  // the 8 entry selects -> IA32_PAT, written by the server (POST /page/pat-value: app.x86.pat)
  try {
    const a = await api(`${PAGE}/pat-value`, { entries: ctl.pats.map((s) => Number(s.value)) }, undefined, false, true);
    ctl.patRaw.value = a.value;
  } catch (e) {
    showProblem(e, "vcpu.pat", () => "vcpu.pat");
  }
}

function defTypeValue() {
  return defTypeRaw;
}
async function defTypeFromFields() {
  // E, FE and the default type -> MTRRdefType, written by the server: the page's initial
  // data holds its value for every combination the editor offers (REG.def_type_values);
  // anything else is asked (POST /page/mtrr-deftype), which names what it refuses
  const known = (REG.def_type_values || {})[`${Number(ctl.mE.checked)}${Number(ctl.mFE.checked)}${Number(ctl.mDef.value)}`];
  if (known) { defTypeRaw = known; return; }
  try {
    const a = await api(`${PAGE}/mtrr-deftype`, { enabled: ctl.mE.checked, fixed_enabled: ctl.mFE.checked,
      type: Number(ctl.mDef.value) }, undefined, false, true);
    defTypeRaw = a.value;
  } catch (e) {
    showProblem(e, "vcpu.mtrr.def_type", () => "vcpu.mtrr.def_type");
  }
}
function registersBody() {
  return { maxphyaddr: ctl.maxphy.value.trim(), pat: ctl.patRaw.value.trim(), mtrr: readMtrr() };
}
function drawRegisters(v) {
  // The server's reading of the raw registers (POST /page/registers) into the editors' views.
  if (!v) return;
  ctl.patRaw.setAttribute("aria-invalid", v.pat.ok ? "false" : "true");
  v.pat.entries.forEach((e, i) => {
    if (e.ok) ctl.pats[i].value = String(e.code);
    ctl.pats[i].setAttribute("aria-invalid", e.ok ? "false" : "true");
  });
  const d = v.def_type;
  if (d.ok) {
    ctl.mE.checked = d.enabled;
    ctl.mFE.checked = d.fixed_enabled;
    if (d.type_ok) ctl.mDef.value = String(d.type);
  }
  v.fixed.forEach((f, slot) => drawFixedChips(slot, f));
  $$("#var-rows .var-row").forEach((row, n) => { if (v.variable[n] && !row.dataset.refused) drawVarRow(row, v.variable[n]); });
}
// The register views are drawn again only when their answer or the editors changed: any
// edit inside the PAT and MTRR editors, or rebuilt range rows (renumberVars), bumps regsGen.
let regsGen = 0;
let regsDrawn = { answer: null, gen: -1 };
["#fs-pat", "#fs-mtrr"].forEach((sel) => ["input", "change"].forEach((type) =>
  $(sel)?.addEventListener(type, () => { regsGen++; }, true)));
function drawRegistersOnce(v) {
  if (v && v === regsDrawn.answer && regsGen === regsDrawn.gen) return;
  drawRegisters(v);
  regsDrawn = { answer: v, gen: regsGen };
}
let regsLast = { key: null, answer: null };
async function registersFor(body, signal) {
  // the server's reading of these raw values; the same values as last time are not asked
  // again (a CR0.CD toggle redraws the editors from the answer it already has)
  const key = JSON.stringify(body);
  if (regsLast.key === key) return regsLast.answer;
  const answer = await api(`${PAGE}/registers`, body, signal, false, true);
  regsLast = { key, answer };
  return answer;
}
async function refreshRegisters() {
  try { drawRegisters(await registersFor(registersBody())); } catch { /* update() shows it */ }
}
function setMtrr(m) {
  defTypeRaw = String(m.def_type ?? "0x0");
  $("#deftype-hex").textContent = defTypeRaw;
  const fixed = m.fixed || Array(11).fill("0x0");
  fixed.forEach((f, slot) => {
    const v = parseHex(String(f));
    $(`#fixed${slot}`).value = v == null ? String(f) : hex(v, 16);
  });
  // the range rows already there are written again in place (a preset switch patches the
  // editor instead of rebuilding it: resetVarRow), the missing ones added, the rest removed
  const rows = $$("#var-rows .var-row");
  (m.variable || []).forEach((p, n) => {
    const b = parseHex(String(p.base)); const k = parseHex(String(p.mask));
    const baseText = b == null ? String(p.base) : hex(b), maskText = k == null ? String(p.mask) : hex(k);
    if (rows[n]) resetVarRow(rows[n], baseText, maskText);
    else addVarRow(b ?? 0n, k ?? 0n, b == null ? String(p.base) : null, k == null ? String(p.mask) : null);
  });
  rows.slice((m.variable || []).length).forEach((row) => row.remove());
  renumberVars();
}
function readMtrr() {
  return {
    def_type: hex(defTypeValue()),
    fixed: FIXED_MSRS.map((_, slot) => $(`#fixed${slot}`).value.trim()),
    variable: $$("#var-rows .var-row").map((row) => ({ base: $(".v-base", row).value.trim(), mask: $(".v-mask", row).value.trim() })),
  };
}

// The VM's and vCPU's checkboxes and number inputs: the rows of app/knobs.py the template
// drew (INITIAL.knobs); `name` is the API field, `control` the element id.
const KNOB_CONTROLS = (INITIAL.knobs || []).filter((k) => ["vm", "vcpu"].includes(k.owner) && k.control
  && (["bool", "dec"].includes(k.kind) || k.choices?.length));
const knobInputs = (kind) => KNOB_CONTROLS.filter((k) => k.kind === kind).map((k) => $(`#${k.control}`));

function readKnobs(owner) {
  const out = {};
  for (const k of KNOB_CONTROLS.filter((r) => r.owner === owner)) {
    const c = $(`#${k.control}`);
    const t = c.value.trim();
    if (k.choices?.length) { if (t !== k.default) out[k.name] = t; continue; }  // vendor, type: left out at the default
    out[k.name] = k.kind === "bool" ? c.checked : /^\d+$/.test(t) ? Number(t) : t;  // the server names a bad number
  }
  return out;
}
function readState() {
  const vm = readKnobs("vm");
  if (memoryMap) vm.memory_map = memoryMap;
  const scenario = {
    // a typed version wins over the Era list: the server resolves it to its era (kernel_info)
    kernel: ctl.kver.value.trim() || ctl.kernel.value,
    vm,
    vcpu: { ...readKnobs("vcpu"), pat: ctl.patRaw.value.trim(), mtrr: readMtrr() },
  };
  if (SYS.view?.xen) scenario.xen = readXen();  // the Xen facts, with a Xen kernel only
  if (SYS.view?.amd) {  // AMD's host side, with vendor amd only, and only where it is not the default
    const amd = readAmd();
    if (Object.keys(amd).length) scenario.amd = amd;
  }
  const gpa = ctl.gpa.value.trim() || "0x0";
  const mmio = ctl.mmio.value === "auto" ? null : ctl.mmio.value === "mmio";
  const priv = SYS.view?.private && $("#private").checked ? true : null;  // a TD's private GPA
  const side = vsSide();  // the Compare choice: an era, or another system (vs, vendor, type)
  // the map's own inputs, where the system takes them (a TD's private ranges, Xen's frames)
  const rows = (f, on) => (on && f ? readMapRows(f) : []);
  return { scenario, gpa, mmio, private: priv, vs: side ? side.vs : null, vsSide: side, event: readEvent(),
    pati: Number(ctl.pati.value), privateRanges: rows(MAP_INPUTS.private_ranges, SYS.view?.private),
    xenFrames: rows(MAP_INPUTS.xen_frames, SYS.view?.xen) };
}
function resolveBody(st, kernel = null) {
  const b = { ...st.scenario, gpa: st.gpa };
  if (kernel) b.kernel = kernel;
  if (st.mmio != null) b.mmio = st.mmio;
  if (st.private) b.private = true;
  return b;
}

function writeState(s) {
  // s: {kernel, vs, view, scenario: a full resolve body as the server writes it
  // (app.permalink.scenario_json: every member present), event, pati}
  const sc = s.scenario;
  const vm = sc.vm;
  const vcpu = sc.vcpu;
  const kernel = sc.kernel || DEFAULT_KERNEL;
  // an era id selects the Era list; anything else is a version the server resolves (the
  // list follows its answer: drawResult)
  const isEra = Array.from(ctl.kernel.options).some((o) => o.value === kernel);
  if (isEra) ctl.kernel.value = kernel;
  ctl.kver.value = isEra ? "" : kernel;
  writeCompare(s.vs, s.vs_vendor, s.vs_type);
  for (const k of KNOB_CONTROLS) {
    const v = (k.owner === "vm" ? vm : vcpu)[k.name] ?? k.default;
    if (k.kind === "bool") $(`#${k.control}`).checked = Boolean(v); else $(`#${k.control}`).value = String(v);
  }
  memoryMap = vm.memory_map || sc.memory_map || null;
  const pat = parseHex(String(vcpu.pat));
  if (pat != null) setPatRaw(pat); else { ctl.patRaw.value = String(vcpu.pat); syncPatFromRaw(); }
  setMtrr(vcpu.mtrr || { def_type: "0x0" });
  const g = parseHex(String(sc.gpa ?? "0x0"));
  ctl.gpa.value = g == null ? String(sc.gpa) : hex(g);
  ctl.mmio.value = sc.mmio == null ? "auto" : sc.mmio ? "mmio" : "ram";
  ctl.pati.value = String(s.pati ?? 0);
  writeEvent(s.event || null);
  writeXen(sc.xen || null);
  writeAmd(sc.amd || null);
  $("#private").checked = Boolean(sc.private);
  writeMapRows(MAP_INPUTS.private_ranges, s.private_ranges);
  writeMapRows(MAP_INPUTS.xen_frames, s.xen_frames);
  if (s.view) view = s.view;
}

// -- zap event controls -------------------------------------------------------------------

function buildMsrOptions() {
  // the MTRR MSRs and their names, from app.x86.mtrr (the page's initial state)
  ctl.evMsr.replaceChildren(...MTRR_MSRS.map((m) => el("option", { value: m.msr }, `${m.msr} ${m.name}`)));
}
async function fillCurrentMsr() {
  // the chosen MSR's value in the editors' state (POST /page/msr-value: MtrrState.read_msr)
  try {
    const a = await api(`${PAGE}/msr-value`, { msr: ctl.evMsr.value, mtrr: readMtrr() }, undefined, false, true);
    ctl.evValue.value = a.value;
  } catch (e) {
    showProblem(e, "event");
  }
}
function showEventFields() {
  const k = ctl.evKind.value;
  $$("[data-ev]").forEach((e) => { e.hidden = !e.dataset.ev.split(" ").includes(k); });
}
function readEvent() {
  const k = ctl.evKind.value;
  if (!k) return null;
  if (k === "cr0_cd" || k === "noncoherent_dma") {
    const ev = { kind: k, value: ctl.evBool.value === "1" };
    if (k === "cr0_cd" && ctl.evNw.value !== "") ev.cr0_nw = ctl.evNw.value === "1";
    return ev;
  }
  if (k === "mtrr_write") return { kind: k, msr: ctl.evMsr.value, value: ctl.evValue.value.trim() };
  return { kind: k, value: ctl.evValue.value.trim() };
}
function writeEvent(ev) {
  ctl.evKind.value = ev ? ev.kind : "";
  if (ev) {
    if (ev.kind === "cr0_cd" || ev.kind === "noncoherent_dma") ctl.evBool.value = ev.value ? "1" : "0";
    ctl.evNw.value = ev.cr0_nw == null ? "" : ev.cr0_nw ? "1" : "0";
    if (ev.kind === "mtrr_write") {
      const m = parseHex(String(ev.msr));
      ctl.evMsr.value = m == null ? (MTRR_MSRS[0]?.msr ?? "") : hex(m);
    }
    if (ev.kind === "mtrr_write" || ev.kind === "pat_write") ctl.evValue.value = String(ev.value);
  }
  showEventFields();
}
function defaultEvent(kind) {
  // Sensible starting values: toggle the current bit, or rewrite the current register.
  if (kind === "cr0_cd") ctl.evBool.value = ctl.cd.checked ? "0" : "1";
  if (kind === "noncoherent_dma") ctl.evBool.value = ctl.ncdma.checked ? "0" : "1";
  if (kind === "pat_write") ctl.evValue.value = ctl.patRaw.value.trim();
  return kind === "mtrr_write" ? fillCurrentMsr() : Promise.resolve();
}

// -- permalink (written by the server: POST /api/v1/permalink) -----------------------------

function permalinkBody(st) {
  // The page's whole state; the server encodes it with app/permalink.py (st.view: the view
  // a state the prefetch foresees will show, presetState).
  const b = { ...resolveBody(st), view: st.view ?? view, pati: st.pati };
  if (st.vs) Object.assign(b, { vs: st.vs }, compareLinkParts(st.vsSide));
  // the map's own inputs (the link keeps them; the server checks them as the map does)
  if (st.privateRanges?.length) b.private_ranges = st.privateRanges;
  if (b.xen && st.xenFrames?.length) b.xen = { ...b.xen, frames: st.xenFrames };
  if (st.event) b.event = st.event;
  return b;
}

// -- API --------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}
async function api(path, body, signal, text = false, page = false, headers = {}) {
  const init = body === undefined ? { signal } : {
    method: "POST", signal, body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", Accept: text ? "text/plain" : "application/json", ...headers },
  };
  const r = await fetch((page ? "" : API) + path + (text ? (path.includes("?") ? "&" : "?") + "format=text" : ""), init);
  if (!r.ok) {
    let problem = null;
    try { problem = await r.json(); } catch { problem = { detail: `HTTP ${r.status}` }; }
    throw new ApiError(r.status, problem);
  }
  return text ? r.text() : r.json();
}

// one part's answer ({status, body}) as Promise.allSettled would settle it
const settled = (p) => (p.status === 200 ? { status: "fulfilled", value: p.body }
  : { status: "rejected", reason: new ApiError(p.status, p.body) });
async function batch(parts, signal) {
  // parts: {key: [endpoint name, body, body text] or null} -> {key: a settled result
  // ({status: "fulfilled", value} or {status: "rejected", reason: ApiError})}, as
  // Promise.allSettled gives; one POST /page/batch (app/page_batch.py) answers every part
  // with its endpoint's own answer. A failed batch (abort, network, 4xx/5xx of the batch)
  // rejects every part. A prefetch batch in flight for the very same body is awaited
  // instead (batchAnswer); the parts already answered never get here (updateParts: PARTS).
  const keys = Object.keys(parts).filter((k) => parts[k]);
  const out = {};
  if (!keys.length) { stopPrefetch(); return out; }
  try {
    const answer = await batchAnswer(batchBody(parts), signal);
    keys.forEach((k, i) => { out[k] = settled(answer.parts[i]); });
  } catch (e) {
    keys.forEach((k) => { out[k] = { status: "rejected", reason: e }; });
  }
  return out;
}

// -- answers the server already gave, and the prefetch of the states one click away ---------
// Each part's answer is a pure function of its endpoint and body (the server's results are
// deterministic), so an answer is reused only for the byte-identical part body it answered
// (PARTS, an LRU keyed by endpoint and canonical body: partKey); nothing is derived
// from it. A part, not a whole batch, is the unit: the states a person comes back to (a
// preset chosen again, Back, a knob flipped back) and the neighbours that share parts (a
// knob's flip at a new address asks no map: the map's body has no address) are answered
// from what is here, and only the parts never answered are asked. When the page is idle
// after a redraw, the parts of the states one click away (each visible boolean control of
// the knob table flipped: KNOB_CONTROLS, from the page's initial data; then each preset:
// presetState) are asked ahead, one batch in flight at a time and at most PREFETCH_MAX of
// each kind per idle period, each marked with the PREFETCH_HEADER request header. Any input stops the prefetch; a change aborts the batch in
// flight unless it is the very batch that change needs, which it then awaits.
// `window.__memtypePrefetch = false` (the bench's cold case, the browser tests) turns off
// both the prefetch and the reuse: every update asks the server.

const PARTS = new Map();         // partKey -> {status, body} the server answered, oldest first
const PARTS_MAX = 512;           // the neighbours of a few dozen states and every preset (~6 KB a resolve, ~14 KB a diff)
const PREFETCH_MAX = 16;         // neighbour states (and presets) asked per idle period
const PREFETCH_HEADER = "X-Memtype-Prefetch";
let prefetchRun = null;          // {stop: bool, idle, timer}: the current prefetch pass
let prefetchPending = null;      // {key, ctrl, promise}: the one prefetch batch in flight
const reuseOn = () => window.__memtypePrefetch !== false;

function batchBody(parts) {
  // JSON.stringify({parts: [{name, body}, ...]}), from each part's own body text
  const keys = Object.keys(parts).filter((k) => parts[k]);
  return `{"parts":[${keys.map((k) => `{"name":${JSON.stringify(parts[k][0])},"body":${parts[k][2] ?? JSON.stringify(parts[k][1])}}`).join(",")}]}`;
}
function canonical(v) {
  // JSON text with every object's members in sorted order (and undefined members left out,
  // as JSON.stringify leaves them): equal bodies give equal text whatever built them
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? "null" : canonical(x))).join(",")}]`;
  if (v && typeof v === "object") {
    return `{${Object.keys(v).sort().filter((k) => v[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}
// a part's key in PARTS and partLast: its endpoint and its body, in canonical JSON (the
// server's result cache keys a request the same way: app/api/cache.py); the key of a body
// text met before is looked up (the prefetch keys the same bodies after every redraw)
const PART_KEYS = new Map();     // "name|body text" -> partKey
function partKey(name, body, text = JSON.stringify(body)) {
  const t = `${name}|${text}`;
  let key = PART_KEYS.get(t);
  if (key === undefined) {
    if (PART_KEYS.size >= 2 * PARTS_MAX) PART_KEYS.clear();
    key = `${name}|${canonical(body)}`;
    PART_KEYS.set(t, key);
  }
  return key;
}
function rememberPart(key, part) {
  PARTS.delete(key);
  PARTS.set(key, part);
  while (PARTS.size > PARTS_MAX) PARTS.delete(PARTS.keys().next().value);
}
async function postBatch(key, signal, prefetch = false) {
  // One POST /page/batch with the body text `key` -> its answer; each part's answer worth
  // keeping (not failed on the server's side: 429/5xx may pass) is remembered under its key.
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  if (prefetch) headers[PREFETCH_HEADER] = "1";
  const r = await fetch(`${PAGE}/batch`, { method: "POST", signal, body: key, headers });
  if (!r.ok) {
    let problem = null;
    try { problem = await r.json(); } catch { problem = { detail: `HTTP ${r.status}` }; }
    throw new ApiError(r.status, problem);
  }
  const answer = await r.json();
  if (reuseOn()) {
    // the part keys of the body sent (partKey: its member order aside)
    JSON.parse(key).parts.forEach((q, i) => {
      const p = answer.parts[i];
      if (p && p.status < 429) rememberPart(partKey(q.name, q.body), p);
    });
  }
  return answer;
}
async function batchAnswer(key, signal) {
  // The answer for the body text `key`: the prefetch batch in flight for it, or a new
  // request (aborting a prefetch batch for another body first).
  stopPrefetch();
  const pending = prefetchPending;
  if (pending && pending.key === key) {
    const answer = await pending.promise.catch(() => null);
    if (signal?.aborted) throw new DOMException("aborted", "AbortError");
    if (answer) return answer;
  } else if (pending) {
    pending.ctrl.abort();
  }
  return postBatch(key, signal);
}
function stopPrefetch() {
  // No new prefetch batch starts; the one in flight finishes (batchAnswer aborts it if unneeded).
  if (!prefetchRun) return;
  prefetchRun.stop = true;
  if (prefetchRun.idle != null) cancelIdleCallback(prefetchRun.idle);
  clearTimeout(prefetchRun.timer);
  prefetchRun = null;
}
function schedulePrefetch() {
  // After a redraw: prefetch the neighbours once the page is idle.
  stopPrefetch();
  if (!reuseOn()) return;
  const run = { stop: false, idle: null, timer: null };
  prefetchRun = run;
  const go = () => { if (!run.stop) prefetchNeighbours(run); };
  if (window.requestIdleCallback) run.idle = requestIdleCallback(go, { timeout: 300 });
  else run.timer = setTimeout(go, 50);
}
const recentFlips = [];          // control ids of the boolean knobs, the last changed first
function neighbourStates() {
  // The states one click away: each visible, enabled boolean knob control flipped, the
  // controls changed most recently first (a person toggling CD back and forth is met first).
  const base = JSON.stringify(readState());
  const rank = (k) => { const i = recentFlips.indexOf(k.control); return i < 0 ? recentFlips.length : i; };
  const bools = KNOB_CONTROLS.filter((k) => k.kind === "bool");
  bools.sort((x, y) => rank(x) - rank(y));  // stable: the table's order among the others
  return bools.filter((k) => {
    const c = $(`#${k.control}`);
    return c && !c.disabled && !c.closest("[hidden]");
  }).map((k) => {
    const st = JSON.parse(base);
    const owner = k.owner === "vm" ? st.scenario.vm : st.scenario.vcpu;
    owner[k.name] = !owner[k.name];
    return st;
  });
}
// A preset is one choice away as well: its state is foreseen from the preset itself (what
// loadPreset writes into the controls and readState reads back), for plain KVM on Intel
// only (another system fixes controls and adds facts, which only the controls apply). A
// state foreseen wrong costs nothing but the prefetch: PARTS answers only the exact bodies,
// and the click asks what it does not hold (tests/browser/test_page_prefetch.py checks
// that every preset is foreseen right).
const plainSystem = (v) => Boolean(v) && (!v.system || v.system === "kvm-intel") && !v.xen && !v.amd && !v.private
  && !(v.fixed || []).length;
function presetSysBody(p) {
  const vm = p.request.vm || {};
  return { kernel: p.request.kernel, vendor: vm.vendor || "intel", type: vm.type || "default" };  // as sysBody
}
function presetState(p) {
  // readState() after loadPreset(p), or null where it cannot be foreseen
  const { gpa, mmio, private: priv, memory_map: topMap, ...sc } = JSON.parse(JSON.stringify(p.request));
  if (priv || !sc.vm || !sc.vcpu) return null;
  const map = sc.vm.memory_map || topMap || null;  // writeState: memoryMap; readState puts it in vm
  delete sc.vm.memory_map;
  if (map) sc.vm.memory_map = map;
  const c = p.compare ? compareOption(p.compare) : null;
  const side = c ? sideOf(Array.from(ctl.vs.options).find((o) => o.value === c.value)) : null;
  let event = null;
  if (p.event) {
    event = { ...p.event };
    if (event.cr0_nw == null) delete event.cr0_nw;
  }
  const vcpu = sc.vcpu;
  return { scenario: sc, gpa: gpa ?? "0x0", mmio: mmio ?? null, private: null, vs: side ? side.vs : null, vsSide: side,
    event, pati: 0, view: p.event ? "zap" : "resolve",
    regs: { maxphyaddr: String(sc.vm.maxphyaddr ?? ctl.maxphy.value.trim()), pat: vcpu.pat, mtrr: vcpu.mtrr } };
}
async function prefetchState(st) {
  // the parts of `st` not answered yet, in one prefetch batch; false when there were none.
  // The parts already here are kept as recently used: a state one click away keeps its
  // answers in PARTS ahead of those of states left behind.
  const { parts, keys, known } = updateParts(st);
  for (const [slot, part] of Object.entries(known)) rememberPart(keys[slot], part);
  if (!Object.values(parts).some(Boolean)) return false;  // every part answered already
  const key = batchBody(parts);
  const ctrl = new AbortController();
  const pending = { key, ctrl, promise: postBatch(key, ctrl.signal, true) };
  prefetchPending = pending;
  try { await pending.promise; } catch { /* aborted or refused: the click will ask itself */ }
  if (prefetchPending === pending) prefetchPending = null;
  return true;
}
async function prefetchNeighbours(run) {
  let asked = 0;
  for (const st of neighbourStates()) {
    if (run.stop || asked >= PREFETCH_MAX) break;
    if (await prefetchState(st)) asked += 1;
  }
  asked = 0;
  for (const p of plainSystem(SYS.view) ? PRESETS : []) {
    if (run.stop || asked >= PREFETCH_MAX) break;
    const st = presetState(p);
    let sys = null;
    try { sys = st && await systemView(presetSysBody(p), undefined, true); } catch { sys = null; }
    if (run.stop) break;
    if (plainSystem(sys) && await prefetchState(st)) asked += 1;
  }
  if (prefetchRun === run) prefetchRun = null;
}
for (const type of ["pointerdown", "keydown", "input"]) window.addEventListener(type, () => stopPrefetch(), true);
// An address is asked while it is typed: each keystroke in the address box asks, as one
// prefetch batch, the parts of the state with the address as it now reads (nothing is
// drawn), so when Enter or leaving the box commits it (the change event) its answers are
// in PARTS already or awaited in flight (batchAnswer: the same body). One such batch at a
// time: a newer keystroke aborts the one before. A text the server refuses is answered
// with its 422, kept like any answer; the page still draws nothing before the change.
let typedPending = null;
function prefetchTyped() {
  if (!reuseOn()) return;
  if (typedPending && typedPending === prefetchPending) {
    typedPending.ctrl.abort();
    prefetchPending = null;
  }
  const before = prefetchPending;
  let st;
  try { st = readState(); } catch { return; }  // a state the page cannot read yet: the change reports it
  prefetchState(st).catch(() => {});
  typedPending = prefetchPending !== before ? prefetchPending : null;
}
function noteFlip(id) {
  if (!KNOB_CONTROLS.some((k) => k.kind === "bool" && k.control === id)) return;
  const i = recentFlips.indexOf(id);
  if (i >= 0) recentFlips.splice(i, 1);
  recentFlips.unshift(id);
}
window.addEventListener("change", (e) => noteFlip(e.target?.id), true);

// -- errors next to the controls --------------------------------------------------------

function locKey(loc) {
  let out = "";
  for (const p of loc || []) {
    if (p === "body" && !out) continue;
    if (typeof p === "number") out += `[${p}]`;
    else out += (out ? "." : "") + p;
  }
  return out;
}
function clearErrors() {
  $$("[data-err]").forEach((e) => { e.textContent = ""; });
  $$("[aria-invalid='true'][data-api-invalid]").forEach((e) => { e.removeAttribute("data-api-invalid"); e.setAttribute("aria-invalid", "false"); });
}
function errorSlot(key) {
  let k = key;
  while (k) {
    const slot = $(`[data-err="${CSS.escape(k)}"]`);
    if (slot) return slot;
    const cut = Math.max(k.lastIndexOf("."), k.lastIndexOf("["));
    if (cut <= 0) break;
    k = k.slice(0, cut);
  }
  return null;
}
function showProblem(err, fallbackKey = null, remap = null) {
  const problem = err instanceof ApiError ? err.problem : { detail: String(err) };
  const items = problem?.errors?.length ? problem.errors : [{ loc: [], msg: problem?.detail || String(err) }];
  const placed = [];
  for (const it of items) {
    let key = locKey(it.loc);
    if (remap) key = remap(key);
    const slot = (key && errorSlot(key)) || (fallbackKey && errorSlot(fallbackKey));
    const msg = `${key ? key + ": " : ""}${it.msg}${it.rule ? ` (${it.rule})` : ""}`;
    if (slot) {
      if (!slot.textContent.includes(msg)) slot.textContent = slot.textContent ? `${slot.textContent}; ${msg}` : msg;
      placed.push(slot);
    } else setStatus(msg, true);
  }
  return placed;
}
function setStatus(text, error = false) {
  const s = $("#status");
  s.textContent = text;
  s.classList.toggle("error", error);
}

// -- the update cycle --------------------------------------------------------------------

// Every input change: mark it, recompute from the controls, redraw when the answers are in.
// Text fields commit on change (Enter or leaving the field), so there is no debouncing here;
// the history is debounced (HISTORY_MS) so a burst of edits is one Back step.
function changed() {
  performance.mark("toggle");
  update();
}

// -- history and links ------------------------------------------------------------------------
// Each edit is a history entry: pushState with the page's own state (what writeState() takes),
// so Back/Forward restore it without asking the server to decode; edits within HISTORY_MS of
// the previous one replace the entry instead of adding one. The address bar's query and the
// link always come from the server (POST /api/v1/permalink).

const HISTORY_MS = Number(document.body.dataset.historyMs || 400);
let historyTimer = null;
let historyStarted = false;
let restoring = false;
let link = { query: null, url: null, valid: false, why: "" };

function snapshot(st) {
  return { scenario: resolveBody(st), vs: st.vs, ...compareLinkParts(st.vsSide), event: st.event, view, pati: st.pati,
    private_ranges: st.privateRanges, xen_frames: st.xenFrames };
}
function commitHistory(query, st) {
  const entry = { page: snapshot(st) };
  const url = `${location.pathname}?${query}`;
  const same = location.search.replace(/^\?/, "") === query;
  if (!historyStarted || restoring || same || historyTimer) history.replaceState(entry, "", url);
  else history.pushState(entry, "", url);
  if (historyStarted && !restoring && !same) {
    clearTimeout(historyTimer);
    historyTimer = setTimeout(() => { historyTimer = null; }, HISTORY_MS);
  }
  historyStarted = true;
  restoring = false;
}
window.addEventListener("popstate", (ev) => {
  const s = ev.state && ev.state.page;
  if (!s) { location.reload(); return; }  // an entry this page did not write: let the server decode it
  clearTimeout(historyTimer);
  historyTimer = null;
  restoring = true;
  writeState(s);
  changed();
});

function setLink(answer, why = "") {
  link = answer ? { query: answer.query, url: answer.url, valid: true, why: "" } : { ...link, valid: false, why };
  const b = $("#copy-link");
  setIf(b, "disabled", !link.valid);
  setIf(b, "title", link.valid ? "Copy the permalink (l)" : `No link while the state is invalid: ${why || "fix the marked field"}`);
  setIf(b.dataset, "valid", link.valid ? "1" : "0");
}
async function copyLink() {
  if (!link.valid) { setStatus(`no link to copy: ${link.why || "the state is invalid"}; fix the marked field first`, true); return; }
  let short = null;
  try { short = (await api(`${PAGE}/link?${link.query}`, undefined, undefined, false, true)).short; } catch { short = null; }
  const text = short ? `${short}\n${link.url}` : link.url;
  await copyOut(text, short ? "permalink: the short form (first line) survives mail wrapping; the second is the readable one"
    : "permalink");
}

// -- stale panels --------------------------------------------------------------------------------
const PANELS = ["#p-result", "#p-eff", "#p-map", "#p-zap", "#p-compare"];
function setStale(sel, on, why = "waiting for a valid state") {
  const p = $(sel);
  if (!p) return;
  if (p.classList.contains("stale-out") !== on) p.classList.toggle("stale-out", on);
  let tag = $(".stale-tag", p);
  if (!tag) {
    tag = el("span", { class: "stale-tag", "data-testid": "stale" });
    $("header", p).append(tag);
  }
  setIf(tag, "hidden", !on);
  setText(tag, on ? `stale: ${why}` : "");
}

// The last answer of each part (slot of updateParts) and the body text it answered: a part
// whose body is byte for byte the one last answered is not asked again (its answer is a pure
// function of the body, as for the register views), so a new address asks no map or zap
// and the panels drawn from an unchanged answer are left as they are (drawnWith). With the
// reuse on, any part answered before (PARTS) is not asked either.
const partLast = new Map();      // slot -> {key: partKey, value}
const REUSED_SLOTS = new Set(["a", "b", "map", "bmap", "zap", "bzap"]);
function updateParts(st) {
  // Every answer of this update in one round trip (POST /page/batch: each part is served by
  // its own endpoint, unchanged); the register views, the era diff and any part answered
  // last time for the same body only when not cached. parts[slot]: [endpoint, body, body
  // text], or null where the answer is already here; known[slot]: the answer kept in PARTS.
  const body = resolveBody(st);
  const regsBody = st.regs ?? registersBody();  // st.regs: the editors' raw values a preset writes
  const regsKey = JSON.stringify(regsBody);
  const bst = st.vs ? compareState(st) : null;  // the Compare side's request state
  const diffReq = st.vs ? diffBody(st) : null;
  const diffKey = diffReq ? JSON.stringify(diffReq) : null;
  const side = st.vs && sideOpen();
  const wanted = {
    // the permalink rides along; the address bar is written after the frame is painted
    link: ["permalink", permalinkBody(st)],
    regs: regsLast.key === regsKey ? null : ["registers", regsBody, regsKey],
    a: ["resolve", body],
    map: ["map", mapBody(st)],
    b: st.vs ? ["resolve", resolveBody(bst, st.vs)] : null,
    zap: st.event ? ["zap", zapBody(st)] : null,
    diff: st.vs && !diffCache.has(diffKey) ? ["diff", diffReq] : null,
    // the compare era's map and zap, side by side with the main era's in the compare panel
    // (asked only while that section is open)
    bmap: side ? ["map", mapBody(bst, st.vs)] : null,
    bzap: side && st.event ? ["zap", zapBody(bst, st.vs)] : null,
  };
  const parts = {};
  const keys = {};
  const known = {};
  for (const [slot, p] of Object.entries(wanted)) {
    if (!p) { parts[slot] = null; continue; }
    const text = p[2] ?? JSON.stringify(p[1]);
    keys[slot] = partKey(p[0], p[1], text);
    const kept = REUSED_SLOTS.has(slot) && partLast.get(slot)?.key === keys[slot] ? null
      : reuseOn() ? PARTS.get(keys[slot]) : undefined;
    if (kept) known[slot] = kept;
    parts[slot] = kept !== undefined ? null : [p[0], p[1], text];
  }
  return { parts, keys, known, regsKey, diffKey };
}
async function update() {
  const my = ++seq;
  if (inflight) inflight.abort();
  const ctrl = new AbortController();
  inflight = ctrl;
  document.body.dataset.busy = "1";
  if (sysKey() !== SYS.key) {  // the system follows Era, vendor and type (POST /page/system, cached)
    try { await loadSystem(ctrl.signal); } catch (e) { if (e.name === "AbortError") return; SYS = { key: sysKey(), view: {} }; }
    if (my !== seq) return;
  }
  if (!(await loadCompareSystem(ctrl.signal))) return;  // another system as Compare: what it fixes
  if (my !== seq) return;
  const st = readState();
  setText("#deftype-hex", hex(defTypeValue()));
  syncSwap();
  // A variable range the server refused (start/size no single pair covers): the controls no
  // longer say what the registers hold, so nothing is asked and every panel is stale.
  const refused = $$("#var-rows .var-row[data-refused]");
  if (refused.length) {
    clearErrors();
    setStatus("");
    refused.forEach((row) => { $(".v-err", row).textContent = row.dataset.refused; });
    PANELS.forEach((p) => setStale(p, true, "a variable range above is refused"));
    setLink(null, "a variable range is refused");
    await finishRedraw(my);
    document.body.dataset.busy = "0";
    document.body.dataset.ready = "1";
    if (inflight === ctrl) inflight = null;
    return;
  }
  const { parts, keys, known, regsKey, diffKey } = updateParts(st);
  const res = await batch(parts, ctrl.signal);
  if (my !== seq) return;  // a newer change superseded this one
  if (Object.values(res).some((r) => r.status === "rejected" && r.reason?.name === "AbortError")) return;
  for (const [slot, part] of Object.entries(known)) {  // answered before: kept in PARTS
    rememberPart(keys[slot], part);
    res[slot] = settled(part);
  }
  const cached = (v) => ({ status: "fulfilled", value: v });
  for (const slot of REUSED_SLOTS) {
    if (!keys[slot]) continue;
    if (res[slot]?.status === "fulfilled") partLast.set(slot, { key: keys[slot], value: res[slot].value });
    else if (res[slot]) partLast.delete(slot);
    else res[slot] = cached(partLast.get(slot).value);
  }
  if (res.regs?.status === "fulfilled") regsLast = { key: regsKey, answer: res.regs.value };
  else if (!res.regs) res.regs = cached(regsLast.answer);
  if (res.diff?.status === "fulfilled") diffCache.set(diffKey, res.diff.value);
  else if (!res.diff && diffKey) res.diff = cached(diffCache.get(diffKey));

  clearErrors();
  setStatus("");
  try {
    draw(st, res);
  } catch (e) {
    console.warn("draw failed", e);  // never crash the page; keep the last drawing
    setStatus(`could not draw: ${e.message}`, true);
  }
  // The link and the active preset are drawn with the answers (the same frame); the address
  // bar is written after the frame is painted: the history API lays the page out again (it
  // saves the scroll position), which would otherwise sit between the answers and the screen.
  const linkAnswer = res.link.status === "fulfilled" ? res.link.value : null;
  if (linkAnswer) {
    setLink(linkAnswer);
    showActivePreset(linkAnswer.query);
  } else if (res.link.reason?.name !== "AbortError") {
    const it = res.link.reason?.problem?.errors?.[0];
    setLink(null, it ? `${locKey(it.loc)}: ${it.msg}` : res.link.reason?.message);
  }
  await finishRedraw(my);
  if (my !== seq) return;  // a newer change owns the address bar (and the busy flag) now
  if (linkAnswer) commitHistory(linkAnswer.query, st);
  document.body.dataset.busy = "0";
  document.body.dataset.ready = "1";
  if (inflight === ctrl) inflight = null;
  schedulePrefetch();
}
function afterPaint() {
  // Resolves once the frame with this task's DOM writes is rendered: a task posted from
  // requestAnimationFrame runs after that frame's style, layout and paint. A hidden page
  // renders no frames, so it resolves at once there.
  return new Promise((resolve) => {
    if (document.visibilityState === "hidden") { setTimeout(resolve, 0); return; }
    requestAnimationFrame(() => {
      const ch = new MessageChannel();
      ch.port1.onmessage = () => resolve();
      ch.port2.postMessage(null);
    });
  });
}
async function finishRedraw(my = seq) {
  // "toggle" (changed()) -> "redrawn": the frame showing the new answers is painted.
  await afterPaint();
  performance.mark("redrawn");
  if (my === seq) {
    try {
      const m = performance.measure("toggle->redrawn", "toggle", "redrawn");
      window.__lastRedrawMs = m.duration;
    } catch { /* no toggle mark yet */ }
    performance.clearMarks("toggle");
  }
  window.__redrawnAt = performance.now();
  window.__redrawCount = (window.__redrawCount || 0) + 1;
  performance.clearMarks("redrawn");
  performance.clearMeasures("toggle->redrawn");
}

function draw(st, res) {
  const ok = (k) => res[k] && res[k].status === "fulfilled" ? res[k].value : null;
  const fail = (k) => res[k] && res[k].status === "rejected" ? res[k].reason : null;
  drawRegistersOnce(ok("regs"));
  if (SYS.view) applySystemOnce(SYS.view);  // with the editors as the registers now read (E, type)

  // The memory map says whether the address lies in a memslot: in a hole (and is_mmio not
  // forced) KVM maps nothing, so no EPT entry is shown (the map's runs are the server's).
  const map = mapView(ok("map"));
  const a = ok("a");
  const gap = map && st.mmio == null ? runAt(map, st.gpa) : null;
  const hole = !!(gap && gap.kind === "unmapped");
  if (a && isSystem(a)) { last.a = a; drawSystemResult(a, st); drawEffective({ pat: systemRows(a) }, st); }
  else if (a) { last.a = a; resetSystemPanels(); drawResult(a, st, hole ? gap : null); drawEffective(a, st, hole); }
  else if (fail("a")) showProblem(fail("a"), "vcpu");
  setStale("#p-result", !a);
  setStale("#p-eff", !a);

  if (map) last.map = map;
  else if (fail("map") && !fail("a")) {
    // a system's map refusal belongs to the map panel (its own error slot), not the control
    // (the map's own inputs keep their key: their rows have slots)
    const own = (k) => (k && errorSlot(k)?.closest("[data-map-input]") ? k : "pat_index");
    if (isSystem(a)) showProblem(fail("map"), "pat_index", own); else showProblem(fail("map"), "vcpu");
  }
  setStale("#p-map", !map);

  const zap = zapView(ok("zap"));
  if (st.event) {
    if (zap) last.zap = zap;
    else if (fail("zap")) {
      // scenario errors are already shown by resolve; add only what is the event's own
      const err = fail("zap");
      const own = (err.problem?.errors || []).filter((e) => e.loc?.[1] === "event" || !fail("a"));
      if (own.length || !(err.problem?.errors || []).length) {
        showProblem(own.length ? new ApiError(err.status, { ...err.problem, errors: own }) : err, "event");
      }
    }
  } else last.zap = null;
  setStale("#p-zap", !!st.event && !zap);
  drawZap(st.event ? (zap || null) : null);
  drawZapNotes(st.event ? zap : null);

  if (last.map) drawMap(last.map, resView(a || last.a), st, st.event ? zap : null);

  drawCompare(st, a, ok("b"), fail("a") ? null : fail("b"), ok("diff"), fail("diff"), hole);
  drawCompareMaps(st, map, mapView(ok("bmap")), resView(a), resView(ok("b")), zap, zapView(ok("bzap")));
  setStale("#p-compare", !!st.vs && !a);
}

const sideOpen = () => $("#cmp-side-details").open;
function drawCompareMaps(st, mapA, mapB, a, b, zapA, zapB) {
  // The compare era's memory map and zap scope beside the main era's (both from the server).
  $("#cmp-side-details").hidden = !st.vs;
  const box = $("#cmp-side");
  box.hidden = !(st.vs && mapA && mapB);
  if (box.hidden) return;
  const scaleRuns = [...new Set([...mapA.runs, ...mapB.runs].flatMap((r) => [r.start, r.end]).map((v) => BigInt(v)))]
    .sort((p, q) => (p < q ? -1 : p > q ? 1 : 0))
    .reduce((acc, v, i, all) => (i ? [...acc, { start: hex(all[i - 1]), end: hex(v) }] : acc), []);
  setText("#cmp-map-a-name", st.scenario.kernel);
  setText("#cmp-map-b-name", st.vs);
  drawMap(mapA, a, st, st.event ? zapA : null, { box: $("#cmp-map-a"), scaleRuns });
  drawMap(mapB, b, st, st.event ? zapB : null, { box: $("#cmp-map-b"), scaleRuns });
  const differ = mapA.runs.length !== mapB.runs.length
    || mapA.runs.some((r, i) => JSON.stringify(r) !== JSON.stringify(mapB.runs[i]));
  setText("#cmp-map-note", differ ? "The two maps differ: compare the lanes (same address scale)."
    : "The two eras give the same map for this state.");
  const zt = $("#cmp-zap");
  zt.hidden = !st.event;
  if (!st.event) return;
  const names = [["zap calls", "zap_calls"], ["zapped pages", "zapped_pages"], ["needed pages", "needed_pages"],
    ["stale pages", "stale_pages"], ["excess pages", "excess_pages"]];
  fill($("#cmp-zap thead"), el("tr", {}, el("th", {}, "zap scope"), el("th", {}, st.scenario.kernel), el("th", {}, st.vs)));
  fill($("#cmp-zap tbody"), ...names.map(([label, k]) => {
    const va = zapA ? String(zapA.counts[k]) : "-", vb = zapB ? String(zapB.counts[k]) : "-";
    const d = zapA && zapB && va !== vb;
    return el("tr", { "data-count": label }, el("th", {}, label),
      el("td", { class: d ? "differs" : "", "data-side": "a" }, va), el("td", { class: d ? "differs" : "", "data-side": "b" }, vb));
  }));
}
function runAt(map, gpaText) {
  const g = parseHex(gpaText);
  if (g == null) return null;
  return map.runs.find((r) => BigInt(r.start) <= g && g < BigInt(r.end)) || null;
}

// -- drawing: result -----------------------------------------------------------------------

function stepItem(s) {
  const cls = s.held === true ? "taken" : s.held === false ? "notheld" : "notreached";
  const label = s.held === true ? "held: taken" : s.held === false ? "not held" : "not reached";
  return el("li", { class: cls, "data-step": s.id, "data-held": String(s.held) },
    el("span", { class: "st" }, label),
    el("span", { class: "fn" }, s.function), " ",
    el("span", { class: "cond" }, s.condition),
    el("span", { class: "res" }, s.result || ""),
    s.commit ? el("span", { class: "commit" }, `commit ${s.commit}`) : null,
  );
}

function stepH(s) {
  // stepItem as h() describes it (drawn with render)
  const cls = s.held === true ? "taken" : s.held === false ? "notheld" : "notreached";
  const label = s.held === true ? "held: taken" : s.held === false ? "not held" : "not reached";
  return h("li", { class: cls, "data-step": s.id, "data-held": String(s.held) },
    h("span", { class: "st" }, label),
    h("span", { class: "fn" }, s.function), " ",
    h("span", { class: "cond" }, s.condition),
    h("span", { class: "res" }, s.result || ""),
    s.commit ? h("span", { class: "commit" }, `commit ${s.commit}`) : null,
  );
}

function drawResult(r, st, hole = null) {
  const ki = r.kernel_info;
  const byVersion = Boolean(ki && ki.version && ctl.kver.value.trim());
  if (byVersion) ctl.kernel.value = r.kernel;  // the era the version belongs to, as the server says
  setText("#res-era", byVersion ? `${ki.asked} (${r.kernel})` : r.kernel);
  const why = $("#res-kernel-why");
  setIf(why, "hidden", !byVersion);
  setText(why, byVersion ? `Kernel ${ki.asked}: ${ki.why}` : "");
  setText("#res-gpa", r.gpa);
  setText("#res-title", `${r.era.title}`);
  // in a memslot hole KVM never calls vmx_get_mt_mask(): the path is what it would compute
  render($("#path"), [...(hole ? [h("li", { class: "hypothetical", "data-testid": "path-hypothetical" },
    "No memslot here, so KVM never builds an entry; below is what vmx_get_mt_mask() would compute for a page here.")] : []),
  ...r.path.map(stepH)]);
  $("#path").classList.toggle("is-hypothetical", !!hole);
  const mutedH = (t) => h("span", { class: "muted" }, t);
  render($("#lookups"), [
    h("dt", {}, "is_mmio"), h("dd", {}, `${r.is_mmio ? "yes" : "no"} (${r.mmio_source})`),
    h("dt", {}, "guest MTRR (SDM)"), h("dd", {}, chipH(r.guest_mtrr.type), " ", mutedH(r.guest_mtrr.reason)),
    h("dt", {}, "KVM MTRR lookup"), h("dd", {}, r.kvm_mtrr ? [chipH(r.kvm_mtrr.type), " ", mutedH(r.kvm_mtrr.reason)] : mutedH("not read by this era")),
    ...(r.mtrr_finding ? [h("dt", {}, "finding"), h("dd", {}, r.mtrr_finding)] : []),
  ]);
  const e = r.ept;
  const head = $(".ept-head");
  setIf(head, "hidden", !!hole);
  setIf($("#ept-none"), "hidden", !hole);
  if (hole) {
    // no memslot here: KVM maps no page, so there is no EPT leaf to show
    $("#ept-none").textContent = `No EPT entry: ${r.gpa} lies in ${hole.start}-${hole.end}, where the memory map has `
      + "no memslot. KVM maps no page here; choose an address in a memslot, or force is_mmio.";
    $("#ept-type").dataset.notation = "";
    $("#ept-mask").textContent = "";
    $("#ept-raw").textContent = "";
    $("#ept-page").textContent = "";
    drawBits(null);
    $("#page-sizes").replaceChildren();
    $("#ept-misconfig").textContent = "";
    return;
  }
  render($("#ept-type"), [chipH(e.memtype), ...(e.ipat ? [" | ", abbrH("IPAT")] : [" (", abbrH("IPAT"), " clear)"])]);
  setIf($("#ept-type").dataset, "notation", e.notation);
  setText("#ept-mask", e.mask);
  setText("#ept-raw", e.leaf ? e.leaf.raw : "");
  // One page size: the leaf's (the server builds it inside both the MTRR check's answer and
  // the memslot); the MTRR check's own answers are listed below as what it alone allows.
  setText("#ept-page", e.leaf ? e.leaf.page_size : r.page_size);
  setIf($("#ept-page"), "title", "the page this leaf maps: the MTRR consistency check's answer, kept inside the memslot");
  drawBits(e.leaf);
  render($("#page-sizes"), r.page_sizes.flatMap((p) => [
    h("dt", {}, `MTRR check, ${p.kernels}`),
    h("dd", {}, p.mtrr_check ? ["allows ", h("b", {}, p.page_size)] : "does not apply",
      e.leaf && p.page_size !== e.leaf.page_size ? mutedH(` (the memslot limits the leaf to ${e.leaf.page_size})`) : ""),
  ]));
  setText("#ept-misconfig", e.leaf && e.leaf.misconfig.length ? e.leaf.misconfig.join("; ") : "");
}

function drawBits(leaf, hl = ["MT", "IPAT"]) {
  // hl: the fields the entry's memory type is read from (EPT: MT and IPAT; NPT: PWT, PCD, PAT).
  // Described with h() and patched in (render); the same entry as last time is not drawn again.
  const out = $("#bitfield");
  const key = leaf ? `${leaf.raw}|${hl.join()}|${JSON.stringify(leaf.fields)}` : "";
  if (out.__bits === key) return;
  out.__bits = key;
  if (!leaf) { render(out, []); return; }
  const raw = BigInt(leaf.raw);
  const box = [];
  for (const hi of [63, 31]) {
    const nums = [], bits = [], fields = [];
    const word = Number((raw >> BigInt(hi - 31)) & 0xffffffffn);
    for (let b = hi; b > hi - 32; b--) {
      const one = (word >>> (b - hi + 31)) & 1;
      nums.push(h("span", {}, b % 4 === 0 || b === hi ? String(b) : ""));
      // MT and IPAT highlighted where the server's field list puts them
      const f = leaf.fields.find((x) => x.lo <= b && b <= x.hi);
      const cls = ["bit", one ? "one" : "", f?.name === "MT" ? "mt" : "", f?.name === "IPAT" ? "ipat" : "",
        f && hl.includes(f.name) && !["MT", "IPAT"].includes(f.name) ? "mt" : ""].join(" ");
      bits.push(h("span", { class: cls, title: `bit ${b}` }, one ? "1" : "0"));
    }
    for (const f of leaf.fields) {
      const lo = Math.max(f.lo, hi - 31), top = Math.min(f.hi, hi);
      if (lo > top) continue;
      const col = hi - top + 1;
      const width = top - lo + 1;
      const text = f.name === "MT" ? (width >= 3 ? "MT" : "M") : f.name.length * 6 <= width * 12 ? f.name : f.name[0];
      fields.push(h("span", {
        class: hl.includes(f.name) ? "hl" : "",
        style: `grid-column: ${col} / span ${width}`,
        title: `${f.name} [${f.hi}:${f.lo}] = ${f.value}: ${f.meaning}`,
      }, text));
    }
    box.push(h("div", { class: "bitnums", "aria-hidden": "true" }, nums), h("div", { class: "bits" }, bits),
      h("div", { class: "fields" }, fields));
  }
  const mt = leaf.fields.find((f) => f.name === "MT");
  const ip = leaf.fields.find((f) => f.name === "IPAT");
  const sel = hl.includes("MT") ? [] : leaf.fields.filter((f) => hl.includes(f.name));
  if (sel.length) {
    box.push(h("p", { class: "note bit-legend" }, ...sel.flatMap((f, i) => [i ? "; " : "",
      h("b", {}, `${f.name} (bit ${f.lo}) = ${f.value}`), `: ${f.meaning}`]), ". Hover a field for its meaning."));
  }
  if (mt && ip && hl.includes("MT")) {
    box.push(h("p", { class: "note bit-legend" },
      h("b", {}, `MT (bits ${mt.hi}:${mt.lo}) = ${mt.value.toString(2).padStart(mt.hi - mt.lo + 1, "0")}b = ${mt.value}`),
      `: ${mt.meaning}; `,
      h("b", {}, `IPAT (bit ${ip.lo}) = ${ip.value}`), `: ${ip.meaning}. Hover a field for its meaning.`));
  }
  render(out, box);
}

function drawEffective(r, st, hole = false) {
  const tb = $("#eff-table tbody");
  if (hole) {
    tb.replaceChildren(el("tr", {}, el("td", { colspan: "6", class: "muted" },
      "no memslot at this address: no EPT entry, so no effective type (the guest's own lookup is in the result above)")));
    return;
  }
  render(tb, r.pat.map((p) => h("tr", { class: p.index === st.pati ? "maprow" : "", "data-pat-index": String(p.index) },
    h("td", { class: "mono" }, `PA${p.index}`),
    h("td", { class: "mono", title: `PTE bits ${p.pte_bits}` }, p.pte_flags),
    h("td", {}, chipH(p.pat_type), p.pat_type_used !== p.pat_type ? [" \u2192 ", chipH(p.pat_type_used)] : null),
    h("td", { class: "effective" }, chipH(p.effective)),
    h("td", { class: "expected", title: p.expected_reason }, chipH(p.guest_expected), " ", h("small", {}, p.expected_reason)),
    h("td", { class: "rel", title: p.relation_reason }, expBadgeH(p.relation, p.relation_reason),
      p.relation === "weaker" ? " danger" : p.relation === "stronger" ? " cost" : "",
      h("small", {}, p.relation_reason)),
  )));
}

// -- systems (issue 14): KVM on Intel or AMD, TDX VMs, Xen ------------------------------------
// Which system the Era/vendor/type name, the panels' titles for it, and which controls it
// fixes (with the rule) come from POST /page/system, which asks resolve itself; the answers
// are drawn from their own fields (svm: the NPT entry, host side, gPAT, hardware CR0; tdx:
// private/shared; xen: the EMT and its path). No rule is decided here.

const XEN_FIELDS = INITIAL.xen_fields || [];
let SYS = { key: null, view: null };
const sysBody = () => ({ kernel: ctl.kver.value.trim() || ctl.kernel.value, vendor: $("#vendor")?.value || "intel",
  type: $("#vmtype")?.value || "default" });
const sysKey = () => JSON.stringify(sysBody());
const SYS_VIEWS = new Map();  // sysKey() -> the server's view: a pure function of the body, kept
async function systemView(body, signal, prefetch = false) {
  // POST /page/system for `body`, kept by its text (a pure function of it: the page's own
  // system, a Compare side's, a preset's ahead); the prefetch's marked with PREFETCH_HEADER
  const key = JSON.stringify(body);
  let view = SYS_VIEWS.get(key);
  if (view === undefined) {
    view = await api(`${PAGE}/system`, body, signal, false, true, prefetch ? { [PREFETCH_HEADER]: "1" } : {});
    if (!SYS_VIEWS.has(key)) SYS_VIEWS.set(key, view);
  }
  return view;
}
async function loadSystem(signal) {
  const view = await systemView(sysBody(), signal);
  SYS = { key: sysKey(), view };
  applySystemOnce(view);
}
const asControl = (id, v) => (id === "mmio" ? (v == null ? "auto" : v ? "mmio" : "ram") : typeof v === "boolean" ? v : String(v));
const controlNow = (c) => (c.type === "checkbox" ? c.checked : c.value);
const atFixed = (f) => Object.entries(f.controls).every(([id, v]) => { const c = $(`#${id}`); return !c || controlNow(c) === asControl(id, v); });
function setIf(node, prop, value) {
  // A property written only when it changes: an equal write still dirties style and layout.
  if (node[prop] !== value) node[prop] = value;
}
// A text written only when it changes: textContent = (even the same text) puts in a new text
// node, which the browser lays out again (issue 13 "Speed").
const setText = (sel, text) => setIf(typeof sel === "string" ? $(sel) : sel, "textContent", text);
function applySystem(v) {
  // Re-enable what the last system fixed, then disable what this one fixes, where the control
  // already holds the fixed value (a refused value stays editable: the 422 names it there).
  $$("[data-sys-fixed]").forEach((c) => {
    c.disabled = false;
    c.title = c.dataset.sysTitle || "";
    c.removeAttribute("data-sys-fixed");
  });
  const fixed = v.fixed || [];
  const off = fixed.filter((f) => !atFixed(f));
  for (const f of fixed.filter(atFixed)) {
    for (const id of Object.keys(f.controls)) {
      const c = $(`#${id}`);
      if (!c) continue;
      c.dataset.sysTitle = c.title || "";
      c.dataset.sysFixed = f.param;
      c.disabled = true;
      c.title = `fixed: ${f.reason}`;
    }
  }
  const label = (f) => {
    const k = (INITIAL.knobs || []).find((r) => r.param === f.param);
    return k?.label || f.param;
  };
  // one line per reason (Xen refuses every KVM setting for the same one)
  const groups = new Map();
  for (const f of fixed) {
    const k = `${atFixed(f)}|${f.reason}`;
    if (!groups.has(k)) groups.set(k, { on: atFixed(f), reason: f.reason, items: [] });
    groups.get(k).items.push(f);
  }
  fill($("#sys-fixed"), ...[...groups.values()].map((g) => el("li", { "data-params": g.items.map((f) => f.param).join(" "),
    class: g.on ? "" : "off" }, el("b", {}, g.items.map(label).join(", ")), g.on ? ": fixed. " : ": must be the fixed value. ", g.reason)));
  const btn = $("#sys-apply");
  setIf(btn, "hidden", !off.length);
  setIf(btn, "textContent", `Set the ${off.length} fixed value${off.length === 1 ? "" : "s"}`);
  const p = v.panels || {};
  setIf($("#sys-title"), "textContent", v.system ? p.title || v.system : "");
  setIf($("#fs-xen"), "hidden", !v.xen);
  setIf($("#fs-amd"), "hidden", !v.amd);
  setIf($("#private-wrap"), "hidden", !v.private);
  setIf($("#map-private_ranges"), "hidden", !v.private);
  setIf($("#path-title"), "textContent", p.path || "vmx_get_mt_mask()");
  const intel = !v.system || v.system === "kvm-intel";
  fill($("#entry-title"), ...(intel ? [abbr("EPT"), " leaf entry"] : [p.entry]));
  setIf($("#eff-hint"), "hidden", !intel);
  setIf($("#eff-hint-sys"), "hidden", intel);
  setIf($("#eff-hint-sys"), "textContent", intel ? "" : p.eff || "");
  if (document.body.dataset.system !== (v.system || "")) document.body.dataset.system = v.system || "";
}
let systemApplied = { view: null, at: null };
function applySystemOnce(v) {
  // applySystem again only for a new system view or when a control it fixes changed (which
  // of its fixed values the controls hold): a KVM-on-Intel toggle fixes nothing, so it
  // touches none of the system's labels, lists or controls
  const at = (v.fixed || []).map((f) => (atFixed(f) ? "1" : "0")).join("");
  if (systemApplied.view === v && systemApplied.at === at) return;
  applySystem(v);
  systemApplied = { view: v, at };
}
async function setFixedValues() {
  // The values the system fixes (the server's), written into their controls on request.
  for (const f of (SYS.view?.fixed || []).filter((x) => !atFixed(x))) {
    for (const [id, v] of Object.entries(f.controls)) {
      const c = $(`#${id}`);
      if (c.type === "checkbox") c.checked = Boolean(v); else c.value = asControl(id, v);
    }
    if (f.param === "deftype") await defTypeFromFields();
  }
  SYS.key = null;  // re-applied with the new values
  changed();
}
// A frame number as the API takes it (a JSON integer): hex text read as a number, anything
// else sent as typed, so the 422 names the field (no silent fix-up).
const frameValue = (text) => { const v = parseHex(text); return v != null && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : text; };
function readXen() {
  const out = {};
  for (const f of XEN_FIELDS) {
    const c = $(`#xen-${f.name}`);
    if (!c) continue;
    if (f.kind === "ranges") {  // pinned: the rows, as PinnedRangeIn takes them
      const rows = readPinned(f);
      if (rows.length) out[f.name] = rows;
      continue;
    }
    const v = f.kind === "bool" ? c.checked : f.kind === "choice" ? f.choices[c.selectedIndex] ?? f.default
      : c.value.trim() ? frameValue(c.value.trim()) : null;
    if (v !== f.default && v !== null) out[f.name] = v;  // the defaults left out (the link then omits them)
  }
  return out;
}
// -- Xen pinned cache attributes (XEN_DOMCTL_pin_mem_cacheattr): one row per gfn range ---------
// The row's fields are what the API's PinnedRangeIn takes (first gfn, last gfn, type; the
// types and the most rows from the server's field row); every rule (empty range, overlap,
// UC without passthrough in 4.21) is the server's 422, shown at the row.
const pinnedRows = (f) => $$(`#xen-${f.name}-rows .pin-row`);
function readPinned(f) {
  return pinnedRows(f).map((row) => ({ start: frameValue($(".pin-start", row).value.trim()),
    end: frameValue($(".pin-end", row).value.trim()), type: $(".pin-type", row).value }));
}
function addPinnedRow(f, r = null) {
  const box = $(`#xen-${f.name}-rows`);
  const start = el("input", { type: "text", class: "hex pin-start", spellcheck: "false" });
  const end = el("input", { type: "text", class: "hex pin-end", spellcheck: "false" });
  const type = el("select", { class: "mono pin-type" }, f.types.map((t) => el("option", { value: t }, t)));
  const rm = el("button", { type: "button", class: "small pin-rm" }, "\u00d7");
  const row = el("div", { class: "pin-row var-row" },
    el("div", { class: "line" }, el("span", { class: "idx" }), el("label", {}, "first ", start), el("label", {}, "last ", end)),
    el("div", { class: "line" }, el("label", {}, "type ", type), rm),
    el("span", { class: "err pin-err" }));
  const gfn = (v) => (typeof v === "number" ? hex(v) : String(v ?? ""));
  start.value = gfn(r?.start);
  end.value = gfn(r?.end);
  type.value = r?.type ?? "WB";
  [start, end, type].forEach((c) => c.addEventListener("change", () => changed()));
  rm.addEventListener("click", () => { row.remove(); renumberPinned(f); changed(); });
  box.append(row);
  renumberPinned(f);
  return row;
}
function renumberPinned(f) {
  pinnedRows(f).forEach((row, n) => {
    $(".idx", row).textContent = `#${n}`;
    $(".pin-err", row).dataset.err = `xen.${f.name}[${n}]`;
    $(".pin-start", row).setAttribute("aria-label", `pinned range ${n} first gfn`);
    $(".pin-end", row).setAttribute("aria-label", `pinned range ${n} last gfn`);
    $(".pin-type", row).setAttribute("aria-label", `pinned range ${n} type`);
    $(".pin-rm", row).setAttribute("aria-label", `remove pinned range ${n}`);
  });
  const add = $(`#xen-${f.name}-add`);
  if (add) add.disabled = pinnedRows(f).length >= f.max;
}
function wirePinned() {
  for (const f of XEN_FIELDS.filter((x) => x.kind === "ranges")) {
    $(`#xen-${f.name}-add`)?.addEventListener("click", () => {
      // a new range: the frame under study (the server's gfn in the last Xen answer), WB
      const g = last.a?.system === "xen" ? last.a.gfn : "0x0";
      const row = addPinnedRow(f, { start: g, end: g, type: "WB" });
      changed();
      $(".pin-start", row).focus();
    });
  }
}
// -- the map's own inputs (POST /api/v1/map takes them, resolve does not) ---------------------
// A TD's private GPA ranges (private_ranges) and Xen's per-frame facts (xen.frames): rows of
// a GPA range [start, end) as typed, and for frames the p2m type (empty: the memory map
// range's) and the flags, all from the server's field rows (INITIAL.map_inputs). Every rule
// (alignment, overlap, MMIO, the most rows) is the map's 422, shown at the row.
const MAP_INPUTS = INITIAL.map_inputs || {};
const mapRows = (f) => $$(`#map-${f.name}-rows .map-row`);
function readMapRows(f) {
  return mapRows(f).map((row) => {
    const out = { start: $(".mr-start", row).value.trim(), end: $(".mr-end", row).value.trim() };
    const p2m = $(".mr-p2m", row);
    if (p2m?.value) out.p2m_type = p2m.value;
    for (const fl of f.flags || []) if ($(`.mr-${fl.name}`, row).checked) out[fl.name] = true;
    return out;
  });
}
function addMapRow(f, r = {}) {
  const text = (cls, v) => el("input", { type: "text", class: `hex ${cls}`, spellcheck: "false", value: v == null ? "" : String(v) });
  const start = text("mr-start", r.start), end = text("mr-end", r.end);
  const rm = el("button", { type: "button", class: "small mr-rm" }, "\u00d7");
  const extra = [];
  if (f.p2m_types) {
    const sel = el("select", { class: "mono mr-p2m", title: f.p2m_label },
      el("option", { value: "" }, "by range"), f.p2m_types.map((t) => el("option", { value: t }, t)));
    sel.value = r.p2m_type || "";
    extra.push(el("label", {}, "p2m ", sel));
  }
  for (const fl of f.flags || []) {
    extra.push(el("label", { title: fl.label }, el("input", { type: "checkbox", class: `mr-${fl.name}`, checked: Boolean(r[fl.name]) }), ` ${fl.name}`));
  }
  const row = el("div", { class: "map-row var-row" },
    el("div", { class: "line" }, el("span", { class: "idx" }), el("label", {}, "start ", start), el("label", {}, "end ", end),
      extra.length ? null : rm),
    extra.length ? el("div", { class: "line" }, extra, rm) : null,
    el("span", { class: "err mr-err" }));
  $$("input, select", row).forEach((c) => c.addEventListener("change", () => changed()));
  rm.addEventListener("click", () => { row.remove(); renumberMapRows(f); changed(); });
  $(`#map-${f.name}-rows`).append(row);
  renumberMapRows(f);
  return row;
}
function renumberMapRows(f) {
  const what = f.what;  // the core's name of one row (app.kvm.tdx.PRIVATE_RANGE, app.xen.map.FRAME_RANGE)
  mapRows(f).forEach((row, n) => {
    $(".idx", row).textContent = `#${n}`;
    $(".mr-err", row).dataset.err = `${f.api}[${n}]`;
    $(".mr-start", row).setAttribute("aria-label", `${what} ${n} start`);
    $(".mr-end", row).setAttribute("aria-label", `${what} ${n} end`);
    $(".mr-p2m", row)?.setAttribute("aria-label", `${what} ${n} p2m type`);
    $(".mr-rm", row).setAttribute("aria-label", `remove ${what} ${n}`);
  });
  const add = $(`#map-${f.name}-add`);
  if (add) add.disabled = mapRows(f).length >= f.max;
}
function writeMapRows(f, rows) {
  if (!f || !$(`#map-${f.name}-rows`)) return;
  $(`#map-${f.name}-rows`).replaceChildren();
  (rows || []).forEach((r) => addMapRow(f, r));
  renumberMapRows(f);
}
function wireMapRows() {
  for (const f of Object.values(MAP_INPUTS)) {
    $(`#map-${f.name}-add`)?.addEventListener("click", () => {
      // a new row: the memory map's run under study (the server's start and end)
      const run = last.map ? runAt(last.map, ctl.gpa.value.trim() || "0x0") : null;
      const row = addMapRow(f, { start: run?.start ?? "", end: run?.end ?? "" });
      changed();
      $(".mr-start", row).focus();
    });
  }
}
// AMD's host side (the API's `amd`: the knob rows of owner amd, INITIAL.amd_fields): the text
// and the choice as typed, empty = the default (left out of the body and the link)
const AMD_FIELDS = INITIAL.amd_fields || [];
function readAmd() {
  const out = {};
  for (const f of AMD_FIELDS) {
    const v = $(`#amd-${f.name}`)?.value.trim();
    if (v) out[f.name] = v;
  }
  return out;
}
function writeAmd(x) {
  for (const f of AMD_FIELDS) {
    const c = $(`#amd-${f.name}`);
    if (c) c.value = x && x[f.name] != null ? String(x[f.name]) : "";
  }
}
function writeXen(x) {
  for (const f of XEN_FIELDS) {
    const c = $(`#xen-${f.name}`);
    if (!c) continue;
    const v = x && f.name in x ? x[f.name] : f.default;
    if (f.kind === "ranges") {
      $(`#xen-${f.name}-rows`).replaceChildren();
      (v || []).forEach((r) => addPinnedRow(f, r));
      renumberPinned(f);
      continue;
    }
    if (f.kind === "bool") c.checked = Boolean(v);
    else if (f.kind === "choice") c.selectedIndex = Math.max(0, f.choices.findIndex((o) => String(o) === String(v)));
    else c.value = v == null ? "" : String(v);
  }
}
function wireSystem() {
  ["#vendor", "#vmtype", "#private"].forEach((s) => $(s)?.addEventListener("change", () => changed()));
  $$("[data-xen]").forEach((c) => c.addEventListener("change", () => changed()));
  $$("[data-amd]").forEach((c) => c.addEventListener("change", () => changed()));
  $("#sys-apply").addEventListener("click", setFixedValues);
  wirePinned();
  wireMapRows();
}
const isSystem = (r) => Boolean(r && r.system && r.system !== "kvm-intel");

function kv(label, ...value) {
  return [el("dt", {}, label), el("dd", {}, ...value)];
}
const muted = (t) => el("span", { class: "muted" }, t);
const yes = (b) => (b ? "1" : "0");
const headParts = (show) => ["#ept-mask", "#ept-raw", "#ept-page"].forEach((s) => { $(s).parentElement.hidden = !show; });
let systemPanelsDrawn = true;  // drawSystemResult wrote the shared result panels (until reset)
function resetSystemPanels() {
  // the KVM-on-Intel answer's panels: nothing to undo when no other system drew them last
  if (!systemPanelsDrawn) return;
  systemPanelsDrawn = false;
  headParts(true);
  $("#sys-out").hidden = true;
  $("#sys-out").replaceChildren();
}
function drawSystemResult(r, st) {
  // One answer of app.kvm.svm, app.kvm.tdx or app.xen in the result panels.
  systemPanelsDrawn = true;
  const ki = r.kernel_info;
  const era = r.system === "xen" ? `${r.version.id} (${r.version.releases})` : ki?.label || r.kernel;
  $("#res-era").textContent = era;
  $("#res-kernel-why").hidden = true;
  $("#res-gpa").textContent = r.gpa;
  $("#res-title").textContent = SYS.view?.panels?.title || r.system;
  $("#path").classList.remove("is-hypothetical");
  $("#path").replaceChildren(...r.path.map(stepItem));
  const head = $(".ept-head");
  head.hidden = false;
  headParts(r.system !== "kvm-tdx");  // a TD's answer has no leaf: no mask, raw value or page
  $("#ept-none").hidden = true;
  $("#page-sizes").replaceChildren();
  $("#ept-misconfig").textContent = "";
  const out = $("#sys-out");
  const extra = [];
  let lookups = [...kv("is_mmio", `${r.is_mmio ? "yes" : "no"} (${r.mmio_source})`)];
  if (r.system === "kvm-amd") {
    const n = r.npt;
    $("#ept-type").replaceChildren(typeChip(r.host.type), " ", muted(`host side (host PAT entry ${n.host_pat_index})`));
    $("#ept-type").dataset.notation = "";
    $("#ept-mask").textContent = n.memtype == null ? "none" : n.memtype;
    $("#ept-raw").textContent = n.raw;
    $("#ept-page").textContent = n.page_size;
    drawBits({ raw: n.raw, fields: n.fields }, ["PWT", "PCD", "PAT"]);
    lookups = lookups.concat(
      kv("host side", `host PAT entry ${r.host.pat_index} `, typeChip(r.host.pat_type), " x host MTRR ", typeChip(r.host.mtrr),
        " = ", typeChip(r.host.type)),
      kv("gPAT (VMCB g_pat)", el("span", { class: "mono", "data-testid": "gpat" }, r.gpat.value), " ",
        muted(`${r.gpat.follows_guest ? "follows the guest's PAT" : "keeps its reset value"}: ${r.gpat.why}`)),
      kv("hardware CR0", el("span", { "data-testid": "hw-cr0" }, `guest CD=${yes(r.cr0.guest_cd)} NW=${yes(r.cr0.guest_nw)}`
        + ` \u2192 CPU CD=${yes(r.cr0.hw_cd)} NW=${yes(r.cr0.hw_nw)}`), " ", muted(r.cr0.why)),
    );
  } else if (r.system === "kvm-tdx") {
    const e = r.ept;
    $("#ept-type").replaceChildren(typeChip(e.memtype), ...(e.ipat ? [" | ", abbr("IPAT")] : [" (", abbr("IPAT"), " clear)"]));
    $("#ept-type").dataset.notation = e.notation;
    $("#ept-mask").textContent = "";
    $("#ept-raw").textContent = "";
    $("#ept-page").textContent = "";
    drawBits(null);
    lookups = lookups.concat(
      kv("GPA", el("b", { "data-testid": "tdx-gpa" }, r.private ? "private" : "shared"), " ",
        muted(e.secure_ept ? "Secure EPT, built by the TDX module" : "the normal EPT, built by KVM")),
      kv("EPT", el("span", { class: "mono" }, e.notation), " ", muted(e.why)),
      ...(r.tdx_fixed.length ? kv("fixed by the TDX module", r.tdx_fixed.join(", ")) : []),
    );
  } else if (r.system === "xen") {
    const e = r.ept;
    $("#ept-type").replaceChildren(typeChip(e.memtype), ...(e.ipat ? [" | ", abbr("IPAT")] : [" (", abbr("IPAT"), " clear)"]));
    $("#ept-type").dataset.notation = e.notation;
    $("#ept-mask").textContent = e.mask;
    $("#ept-raw").textContent = e.leaf ? e.leaf.raw : "";
    $("#ept-page").textContent = e.leaf ? e.leaf.page_size : "";
    drawBits(e.leaf);
    $("#ept-misconfig").textContent = e.leaf && e.leaf.misconfig.length ? e.leaf.misconfig.join("; ") : "";
    lookups = [
      ...kv("gfn / mfn", el("span", { class: "mono" }, `${r.gfn} / ${r.mfn}`), ` order ${r.order}`),
      ...kv("EMT", el("span", { "data-testid": "xen-emt" }, `field ${e.emt_field}`), e.split ? " (split: the range mixes types)" : ""),
      ...kv("guest MTRR (SDM)", typeChip(r.guest_mtrr.type), " ", muted(r.guest_mtrr.reason)),
      ...kv("Xen MTRR lookup", r.xen_mtrr ? [typeChip(r.xen_mtrr.type), " ", muted(r.xen_mtrr.reason)] : muted("not read")),
      ...(r.mtrr_finding ? kv("finding", r.mtrr_finding) : []),
      ...kv("CR0.CD", `hardware CR0.CD=${yes(r.cr0_cd.hw_cr0_cd)}, vmx_handle_cd ${r.cr0_cd.handle_cd ? "on" : "off"}, cache mode `,
        el("b", {}, r.cr0_cd.cache_mode), ", VMCS PAT ", el("span", { class: "mono" }, r.cr0_cd.vmcs_pat)),
    ];
    extra.push(el("h3", {}, "CR0.CD: ", el("span", { class: "mono" }, "vmx_handle_cd()")),
      el("ol", { class: "path", id: "xen-cd-path" }, r.cr0_cd.path.map(stepItem)));
  }
  $("#lookups").replaceChildren(...lookups);
  if (r.notes?.length) extra.push(el("h3", {}, "Notes"), el("ul", { class: "notes", "data-testid": "sys-notes" }, r.notes.map((t) => el("li", {}, t))));
  out.replaceChildren(...extra);
  out.hidden = !extra.length;
}
function systemRows(r) {
  // Each answer's per-PAT-entry rows in the table's columns (the PTE bits of an entry, where
  // the answer does not repeat them, from the page's register encodings).
  const ent = REG.pat_entries || [];
  return r.pat.map((p) => ({
    index: p.index,
    pte_flags: p.pte_flags ?? ent[p.index]?.flags ?? "",
    pte_bits: p.pte_bits ?? ent[p.index]?.bits ?? "",
    pat_type: p.pat_type ?? p.guest_pat_type,
    pat_type_used: p.pat_type_used ?? p.gpat_type ?? p.pat_type,
    effective: p.effective,
    guest_expected: p.guest_expected,
    expected_reason: p.expected_reason ?? "",
    relation: p.relation,
    relation_reason: p.relation_reason ?? "",
  }));
}
function mapBody(st, kernel = null) {
  // The map request: the scenario and the PAT entry; of the Xen facts only the domain's
  // (XenMapIn, marked `map` by the server), and those only where changed from the default.
  const b = { ...st.scenario, pat_index: st.pati };
  if (kernel) b.kernel = kernel;
  if (b.xen) {
    b.xen = Object.fromEntries(XEN_FIELDS.filter((f) => f.map && f.name in st.scenario.xen && st.scenario.xen[f.name] !== f.default)
      .map((f) => [f.name, st.scenario.xen[f.name]]));
    if (st.xenFrames?.length) b.xen.frames = st.xenFrames;  // the map's own (XenMapIn.frames)
  }
  if (st.privateRanges?.length) b.private_ranges = st.privateRanges;  // a TD's (MapRequest.private_ranges)
  return b;
}
function zapBody(st, kernel = null) {
  // The zap request: the scenario and the event; Xen's domain facts and frames, as for the
  // map (a TD's private ranges are the map's only)
  const { pat_index: _, ...b } = mapBody({ ...st, privateRanges: null }, kernel);
  return { ...b, event: st.event };
}
function mapView(m) {
  // An AMD map run has no EPT entry but an NPT one (npt: the host PAT entry it selects and
  // the host type): the map's EPT column and tooltips show that instead.
  if (!m || m.system !== "kvm-amd") return m;
  return { ...m, runs: m.runs.map((r) => (r.npt && !r.ept
    ? { ...r, ept: { notation: `NPT host PAT entry ${r.npt.host_pat_index} (${r.npt.host_type})`, mask: `gPAT ${r.npt.gpat_type}` } } : r)) };
}
const resView = (r) => (isSystem(r) ? { ...r, pat: systemRows(r) } : r);
function zapView(z) {
  // AMD's answer lists the zapped ranges over memslots as `zapped_mapped`; Xen zaps nothing
  // but invalidates (EMT 7, recomputed on the next access): its `invalidated` ranges take
  // the zapped lists' place, and its counts are drawn by drawZapNotes
  if (!z) return z;
  if (z.system === "xen") {
    return { ...z, zapped: z.invalidated || [],
      counts: { ...z.counts, zap_calls: 0, zapped_pages: z.counts.invalidated_pages } };
  }
  return z.zapped ? z : { ...z, zapped: z.zapped_mapped || [] };
}
function drawZapNotes(z) {
  const xen = z?.system === "xen";
  setText("#zap-zapped-h", xen ? "invalidated" : "zapped");
  if (xen) {
    const c = z.counts;
    const count = (name, v, cls = "") => el("span", { class: `count ${cls} ${v ? "nz" : ""}`, "data-count": name }, `${name} `, el("b", {}, String(v)));
    $("#zap-counts").replaceChildren(
      el("span", { class: "count", "data-testid": "xen-ept-text" }, el("b", {}, z.ept.text)),
      count("invalidated pages", c.invalidated_pages), count("needed pages", c.needed_pages),
      count("stale pages", c.stale_pages, "stale"), count("excess pages", c.excess_pages, "excess"),
    );
    $("#zap-desc").textContent = `${z.version.id}: ${z.event.description}`;
  }
  const notes = [...(xen && z.ept.scope ? [z.ept.scope] : []), ...(z?.notes || [])];
  const box = $("#zap-notes");
  if (!box) return;
  render(box, notes.map((t) => h("li", {}, t)));
  setIf(box, "hidden", !notes.length);
}

// -- drawing: memory map ------------------------------------------------------------------

function mapScale(runs) {
  // One segment per run, width ~ log2(size in pages) with a floor, so 4K..1M runs stay
  // visible next to multi-terabyte holes. x() is linear inside a segment.
  const segs = [];
  let total = 0;
  for (const r of runs) {
    const s = Number(BigInt(r.start)), e = Number(BigInt(r.end));
    const w = Math.max(3, Math.log2(Math.max(1, (e - s) / 4096)) + 1);
    segs.push({ s, e, x0: total, w, run: r });
    total += w;
  }
  segs.forEach((g) => { g.x0 = (g.x0 / total) * 100; g.w = (g.w / total) * 100; });
  const x = (addr) => {
    for (const g of segs) {
      if (addr >= g.s && addr <= g.e) return g.x0 + g.w * ((addr - g.s) / (g.e - g.s));
    }
    return addr <= 0 ? 0 : 100;
  };
  return { segs, x };
}

// -- drawing in place ------------------------------------------------------------------------
// The map and its tables are redrawn on every toggle. Rebuilding them made the browser
// restyle and lay out every node again; instead h() describes the children and render()
// patches them into the element, reusing the nodes already there and writing only the
// attributes and texts that differ (a toggle changes a few classes and labels).

const h = (tag, attrs = {}, ...children) => ({ tag, attrs, children: children.flat() });
// typeChip, abbr and expBadge as h() describes them
const chipH = (t, extra = "") => h(t != null && GLOSSARY[t] ? "abbr" : "span",
  { class: `t ${typeClass(t)}`, title: extra || (t != null && GLOSSARY[t]) || null }, t == null ? "undefined" : t);
const abbrH = (short, text = short) => (GLOSSARY[short] ? h("abbr", { title: GLOSSARY[short] }, text) : text);
const expBadgeH = (rel, title) => h("span", { class: `badge ${rel}`, title, "data-relation": rel }, expectWords(rel));
function specOf(node) {
  // an element built by el() (typeChip, expBadge, abbr) as h() would describe it
  if (node.nodeType !== 1) return node.textContent;
  const attrs = {};
  for (const at of node.attributes) attrs[at.name] = at.value;
  return { tag: node.localName, attrs, children: Array.from(node.childNodes, specOf) };
}
function patchAttrs(e, attrs) {
  // attrs as el() takes them (class, style via the CSSOM, true = present), events aside
  const want = new Map();
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false || k === "style") continue;
    want.set(k, v === true ? "" : String(v));
  }
  for (const at of Array.from(e.attributes)) {
    if (at.name !== "style" && !want.has(at.name)) e.removeAttribute(at.name);
  }
  for (const [k, v] of want) if (e.getAttribute(k) !== v) e.setAttribute(k, v);
  const css = attrs.style || "";
  if ((e.__css ?? "") !== css) { e.style.cssText = css; e.__css = css; }  // CSSOM: the CSP allows it
}
function render(parent, kids) {
  const old = parent.childNodes;
  let i = 0;
  for (let k of kids) {
    if (k == null || k === false) continue;
    if (k instanceof Node) k = specOf(k);
    const o = old[i++];
    if (typeof k !== "object") {
      const t = String(k);
      if (o && o.nodeType === 3) { if (o.data !== t) o.data = t; } else if (o) parent.replaceChild(document.createTextNode(t), o);
      else parent.append(t);
      continue;
    }
    let e = o;
    if (!o || o.nodeType !== 1 || o.localName !== k.tag) {
      e = document.createElement(k.tag);
      if (o) parent.replaceChild(e, o); else parent.append(e);
    }
    patchAttrs(e, k.attrs);
    render(e, k.children);
  }
  while (old.length > i) parent.lastChild.remove();
}

function lane(name, cls = "", attrs = {}, segs = []) {
  return h("div", { class: `lane ${cls}`, ...attrs }, h("span", { class: "lname" }, name), segs);
}
function bar(x0, x1, cls, text, title, tag = "div", attrs = {}) {
  const w = Math.max(x1 - x0, 0.25);
  return h(tag, { class: `seg ${cls}`, style: `left:${x0}%;width:${w}%`, title, ...attrs }, text ?? []);
}

// The lanes' width (for thinning the axis labels), kept by a ResizeObserver: a redraw never
// reads layout (a read after the writes would force the browser to lay the page out twice).
const mapWidths = new WeakMap();
const mapSizes = typeof ResizeObserver === "function"
  ? new ResizeObserver((entries) => { for (const en of entries) mapWidths.set(en.target, en.contentRect.width); }) : null;
function mapWidth(box) {
  if (!mapWidths.has(box)) {
    mapWidths.set(box, box.clientWidth - 64);  // once per box, at its first drawing
    mapSizes?.observe(box);
  }
  return Math.max(1, mapWidths.get(box));
}
// One click handler per map (not one per segment): a click on a run of the main lane
// studies the address under the pointer (the run's start for a keyboard click).
const mapClickBoxes = new WeakSet();
function mapClicks(box) {
  if (mapClickBoxes.has(box)) return;
  mapClickBoxes.add(box);
  box.addEventListener("click", (ev) => {
    const b = ev.target instanceof Element ? ev.target.closest(".lane.main .seg") : null;
    if (!b || !box.contains(b)) return;
    const s = Number(BigInt(b.dataset.start)), e = Number(BigInt(b.dataset.end));
    const rect = b.getBoundingClientRect();
    const frac = ev.detail === 0 || rect.width === 0 ? 0 : Math.min(1, Math.max(0, (ev.clientX - rect.left) / rect.width));
    const addr = Math.floor((s + frac * (e - s)) / 4096) * 4096;
    ctl.gpa.value = hex(BigInt(Math.min(addr, e - 4096)));
    changed();
  });
}

// What the map's answer says of a run besides its memslot: a TD's private GPAs, Xen's p2m
// type and per-frame flags (the answer's members, as the API names them)
const runFacts = (r) => [r.private ? "private (Secure EPT)" : "", r.p2m_type || "", r.mmio_ro ? "mmio_ro" : "",
  r.special ? "special page" : ""].filter(Boolean).join(", ");
function drawMap(map, res, st, zap, opt = {}) {
  // opt.box: draw the lanes elsewhere (the compare panel), on the scale of opt.scaleRuns
  // (both eras' run boundaries, so the two maps line up); the legend and tables are the main map's.
  const box = opt.box || $("#map");
  mapClicks(box);
  let { segs, x } = mapScale(opt.scaleRuns || map.runs);
  if (opt.scaleRuns) {
    segs = map.runs.map((r) => {
      const s = Number(BigInt(r.start)), e = Number(BigInt(r.end));
      return { s, e, x0: x(s), w: x(e) - x(s), run: r };
    });
  }

  // the MTRR lane: the server's default range under the programmed ranges (map.mtrr: E and
  // the type where no range applies, app.kvm.memmap.mtrr_default)
  const dflt = map.mtrr.default;
  const mt = lane("MTRR", "", { "data-enabled": map.mtrr.enabled ? "1" : "0" }, [
    bar(0, 100, `${typeClass(dflt.type)} mtrr-default`,
      map.mtrr.enabled ? `default ${dflt.type}` : `MTRRs disabled (E=0): guest expects ${dflt.type}`,
      map.mtrr.enabled ? `MTRRdefType default type ${dflt.type} wherever no range applies (${dflt.start}-${dflt.end})`
        : `MTRRdefType.E=0: ${dflt.type} everywhere, whatever the ranges hold`),
    ...(map.mtrr.enabled ? map.mtrr_ranges : []).map((r) => {
      const x0 = x(Number(BigInt(r.start))), x1 = x(Number(BigInt(r.end)));
      return bar(x0, x1, `${typeClass(r.type)} mtrr-src-${r.source.split(" ")[0]}`, x1 - x0 > 2.5 ? r.type : "",
        `MTRR ${r.type} ${r.start}-${r.end} (${r.source})`);
    }),
  ]);

  const patType = res && res.pat && res.pat[map.pat_index] ? res.pat[map.pat_index].pat_type : "";
  const main = lane(`PA${map.pat_index} ${patType}`, "main", {}, segs.map((g) => {
    const r = g.run;
    const mapped = r.kind !== "unmapped";
    const title = mapped
      ? `${r.start}-${r.end} ${r.kind.toUpperCase()} (${r.label}): EPT ${r.ept.notation} ${r.ept.mask}, effective ${r.effective}, guest expects ${r.expected ?? "undefined"} (${expectWords(r.relation)}), page ${r.page_size}${runFacts(r) ? `, ${runFacts(r)}` : ""}`
      : `${r.start}-${r.end}: no memslot, no EPT leaf`;
    const label = mapped && g.w > 2.2
      ? h("span", {}, r.effective + (r.relation === "weaker" ? " \u25B2" : r.relation === "stronger" ? " \u25BC" : "")) : null;
    return bar(g.x0, g.x0 + g.w, mapped ? typeClass(r.effective) : "unmapped", label, title, "button",
      { type: "button", "data-start": r.start, "data-end": r.end, "aria-label": title });
  }));

  const kind = lane("memslot", "", {}, segs.map((g) => bar(g.x0, g.x0 + g.w, `kind-${g.run.kind}`,
    g.w > 2.2 && g.run.kind !== "unmapped" ? g.run.kind.toUpperCase() : "", `${g.run.kind}: ${g.run.label}`)));
  const page = lane("page", "", {}, segs.filter((g) => g.run.page_size).map((g) => bar(g.x0, g.x0 + g.w,
    `pg pg-${g.run.page_size}`, g.w > 1.6 ? g.run.page_size : "", `largest page here: ${g.run.page_size}`)));

  const zapLanes = !zap ? [] : [["zapped", "z-zapped", zap.zapped], ["needed", "z-needed", zap.needed],
    ["stale", "z-stale", zap.stale], ["excess", "z-excess", zap.excess]].map(([name, cls, list]) => lane(name, "zap",
    { "data-zap-lane": name }, list.length ? list.map((r) => {
      const x0 = x(Number(BigInt(r.start))), x1 = x(Number(BigInt(r.end)));
      return bar(x0, x1, `z ${cls}`, x1 - x0 > 4 ? name : "", `${name} ${r.start}-${r.end} (${r.pages} pages)`);
    }) : [h("span", { class: "empty" }, "none")]));

  // axis: run boundaries, thinned so labels do not collide (about 6.5 px per character)
  const ticks = [];
  const widthPx = mapWidth(box);
  let lastX = -1e9, lastLen = 0;
  const pts = [...segs.map((g) => [g.x0, g.s]), [100, segs.length ? segs[segs.length - 1].e : 0]];
  pts.forEach(([px, addr], i) => {
    const label = fmtAddr(addr);
    const need = ((lastLen + label.length) / 2) * 6.5 + 6;
    const isLast = i === pts.length - 1;
    if ((px - lastX) / 100 * widthPx < need && !isLast) return;
    if (isLast && (px - lastX) / 100 * widthPx < need) ticks.pop();
    ticks.push(h("span", { style: `left:${px}%` }, label));
    lastX = px; lastLen = label.length;
  });
  const axis = h("div", { class: "axis", "aria-hidden": "true" }, ticks);

  const g = parseHex(st.gpa);
  const overlay = g == null ? null : h("div", { class: "overlay", "aria-hidden": "true" },
    h("div", { class: "marker", style: `left:${x(Number(g))}%`, title: `address under study ${hex(g)}` }));
  render(box, [mt, main, kind, page, ...zapLanes, axis, overlay]);

  if (opt.box) return;

  // legend (the same every time: drawn once)
  const legend = $("#legend");
  if (!legend.childElementCount) {
    render(legend, [
      ...["WB", "WT", "WP", "WC", "UC-", "UC"].map((t) => h("span", {}, h("span", { class: `sw ${typeClass(t)}` }), abbrH(t))),
      h("span", {}, h("span", { class: "sw unmapped seg", style: "position:static;display:inline-block" }), "no memslot"),
      h("span", { class: "muted" }, "\u25B2 looser than the guest expects, \u25BC stricter; marker = address under study"),
    ]);
  }

  // runs table
  setText("#runs-count", String(map.runs.length));
  const here = g == null ? -1 : map.runs.findIndex((r) => Number(BigInt(r.start)) <= Number(g) && Number(g) < Number(BigInt(r.end)));
  render($("#runs-table tbody"), map.runs.map((r, i) => h("tr", { class: i === here ? "here" : "", "data-start": r.start },
    h("td", { class: "range" }, `${r.start}-${r.end}`, h("br"), h("span", { class: "muted" }, fmtSize(Number(BigInt(r.end) - BigInt(r.start))))),
    h("td", {}, r.kind === "unmapped" ? h("span", { class: "muted" }, "none") : `${r.kind.toUpperCase()}: ${r.label}`,
      runFacts(r) ? [h("br"), h("span", { class: "run-facts", "data-testid": "run-facts" }, runFacts(r))] : null),
    h("td", {}, r.kind === "unmapped" ? "" : chipH(r.guest_mtrr)),
    h("td", {}, r.kvm_mtrr ? chipH(r.kvm_mtrr) : ""),
    h("td", { class: "mono" }, r.ept ? `${r.ept.notation} ${r.ept.mask}` : ""),
    h("td", {}, r.effective ? chipH(r.effective) : ""),
    h("td", {}, r.kind === "unmapped" ? "" : chipH(r.expected)),
    h("td", {}, r.relation ? expBadgeH(r.relation) : ""),
    h("td", {}, r.page_size),
  )));
  // the MTRR ranges: drawn again only when they change (a CR0.CD toggle keeps them)
  const mtb = $("#mtrr-ranges-table tbody");
  const mkey = JSON.stringify([map.mtrr, map.mtrr_ranges]);
  if (mtb.__key === mkey) return;
  mtb.__key = mkey;
  const mrow = (r, src) => h("tr", { "data-source": r.source },
    h("td", { class: "range" }, `${r.start}-${r.end}`), h("td", {}, chipH(r.type)), h("td", {}, src));
  render(mtb, [...map.mtrr_ranges.map((r) => mrow(r, r.source)),
    mrow(map.mtrr.default, map.mtrr.enabled ? "default type (where no range above applies)" : "MTRRs disabled (E=0): everywhere")]);
}

// -- drawing: zap ---------------------------------------------------------------------------

function drawZap(z) {
  setIf($("#zap-out"), "hidden", !z);
  if (!z) return;
  setText("#zap-desc", `${z.kernel}: ${z.event.description}`);
  const c = z.counts;
  const count = (name, v, cls = "") => h("span", { class: `count ${cls} ${v ? "nz" : ""}`, "data-count": name }, `${name} `, h("b", {}, String(v)));
  render($("#zap-counts"), [
    count("zap calls", c.zap_calls), count("zapped pages", c.zapped_pages), count("needed pages", c.needed_pages),
    count("stale pages", c.stale_pages, "stale"), count("excess pages", c.excess_pages, "excess"),
  ]);
  const li = (r) => h("li", { "data-start": r.start, "data-end": r.end }, `${r.start}-${r.end} (${r.pages} p)`);
  render($("#zap-zapped"), z.zapped.map(li));
  render($("#zap-needed"), z.needed.map(li));
  render($("#zap-stale"), z.stale.map(li));
  render($("#zap-excess"), z.excess.map(li));
  render($("#zap-path"), z.path.map(stepH));
}

// -- the Compare choice: an era, or another system (issue 14) ---------------------------------
// The list's options are the server's (app/pages.py compare_sides): each names what the API
// and the link take (vs, vendor, type) and its system. A side other than KVM on Intel is
// asked with the values its system fixes (its POST /page/system view, the server's, listed in
// the compare panel) and, for Xen, the Xen facts; an Intel era beside an Intel main era is
// asked with the main state as it is (the plain path: nothing else runs for it).

const COMPARE = INITIAL.compare || [];
const DIFF_TYPES = COMPARE.some((o) => o.type !== "default");  // the diff takes a_type/b_type
const VS_SYS = new Map();        // compare side key -> its POST /page/system view
function vsSide() {
  return sideOf(ctl.vs.selectedOptions[0]);
}
function sideOf(o) {
  // a Compare option as the Compare side it chooses (null: none)
  if (!o || !o.value) return null;
  return { value: o.value, vs: o.dataset.vs, vendor: o.dataset.vendor, type: o.dataset.type, system: o.dataset.system };
}
const compareOption = (vs, vendor, type) => COMPARE.find((o) => o.vs === vs && o.vendor === (vendor || "intel")
  && o.type === (type || "default")) || null;
function writeCompare(vs, vendor, type) {
  const o = vs ? compareOption(vs, vendor, type) : null;
  ctl.vs.value = o ? o.value : "";
}
function compareLinkParts(side) {
  // the link's and history's members for the Compare choice besides vs (vs_vendor, vs_type)
  const out = {};
  if (side && side.vendor !== "intel") out.vs_vendor = side.vendor;
  if (side && side.type !== "default") out.vs_type = side.type;
  return out;
}
const sideKey = (side) => JSON.stringify({ kernel: side.vs, vendor: side.vendor, type: side.type });
const mainPlain = () => !SYS.view?.system || SYS.view.system === "kvm-intel";
// A side's name in the panel's sentences: an Intel era by its id, another system by its id
const sideLabel = (side) => (side.system === "kvm-intel" || side.system === "xen" ? side.vs : `${side.system} ${side.vs}`);
async function loadCompareSystem(signal) {
  // What a Compare side fixes and which members it takes (POST /page/system, cached here and
  // on the server), for every side but an Intel era beside an Intel era; false when aborted.
  const side = vsSide();
  if (!side || (side.system === "kvm-intel" && mainPlain()) || VS_SYS.has(sideKey(side))) return true;
  try {
    VS_SYS.set(sideKey(side), await systemView({ kernel: side.vs, vendor: side.vendor, type: side.type }, signal));
  } catch (e) {
    if (e.name === "AbortError") return false;
    VS_SYS.set(sideKey(side), { fixed: [] });
  }
  return true;
}
function compareState(st) {
  // The Compare side's request state: the main scenario under its vendor and type, with the
  // values its system fixes set (each listed in `applied`), and without the members its
  // system does not take (its POST /page/system view says which: the Xen facts, AMD's host
  // side, a TD's private GPA), as readState leaves them out for the main side.
  const side = st.vsSide;
  if (!side || (side.system === "kvm-intel" && mainPlain())) return st;
  const sc = JSON.parse(JSON.stringify(st.scenario));
  delete sc.vm.vendor;
  delete sc.vm.type;
  if (side.vendor !== "intel") sc.vm.vendor = side.vendor;
  if (side.type !== "default") sc.vm.type = side.type;
  const view = VS_SYS.get(sideKey(side));
  if (!view?.xen) delete sc.xen;
  if (!view?.amd) delete sc.amd;
  const priv = view?.private ? st.private : null;
  let mmio = st.mmio;
  const applied = [];
  for (const f of view?.fixed || []) {
    if (f.api === "vm.vendor" || f.api === "vm.type") continue;
    const path = f.api.split(".");
    if (path.length === 1 && path[0] === "mmio") {
      if (mmio !== f.value) { mmio = f.value; applied.push(f); }
      continue;
    }
    let at = sc;
    for (const p of path.slice(0, -1)) at = at[p] ??= {};
    const leaf = path[path.length - 1];
    if (JSON.stringify(at[leaf] ?? null) === JSON.stringify(f.value)) continue;
    if (f.value == null) delete at[leaf]; else at[leaf] = f.value;
    applied.push(f);
  }
  return { ...st, scenario: sc, mmio, private: priv, privateRanges: view?.private ? st.privateRanges : null,
    xenFrames: view?.xen ? st.xenFrames : null, applied };
}
function diffBody(st) {
  // POST /api/v1/diff for the two sides: two Intel eras give the era diff, any other pair the
  // cross-system diff (the server decides which)
  const b = { a: st.scenario.kernel, b: st.vs, limit: 0 };
  const vm = st.scenario.vm || {};
  if (vm.vendor && vm.vendor !== "intel") b.a_vendor = vm.vendor;
  if (st.vsSide.vendor !== "intel") b.b_vendor = st.vsSide.vendor;
  if (DIFF_TYPES && vm.type && vm.type !== "default") b.a_type = vm.type;
  if (DIFF_TYPES && st.vsSide.type !== "default") b.b_type = st.vsSide.type;
  if (st.scenario.amd && (b.a_vendor === "amd" || b.b_vendor === "amd")) b.amd = st.scenario.amd;  // one host
  return b;
}

// -- drawing: compare and diff -----------------------------------------------------------------

function eraCell(era) {
  return el("div", {},
    el("span", { class: "era" }, era.id), " ", el("span", { class: "muted" }, era.kernels), el("br"),
    el("span", {}, era.title),
    el("ul", { class: "commits" }, era.commits.map((c) => el("li", { title: c.subject }, `${c.sha} ${c.subject}`))),
  );
}
function systemCell(r, title) {
  // a system's answer as a column heading: its kernel or release and the system's name
  const name = r.system === "xen" ? `${r.version.id} (${r.version.releases})` : r.kernel_info?.label || r.kernel;
  return el("div", {}, el("span", { class: "era" }, name), el("br"), el("span", {}, title || r.system));
}
function answerCell(r, title) {
  return isSystem(r) ? systemCell(r, title) : eraCell(r.era);
}
// The diff's own names for its sides and dimensions: the era diff names eras (id), the
// cross-system diff sides (system, asked, era) and its dimensions (diff.dimensions).
const diffSideName = (s) => (s.id ? s.id : s.system === "kvm-intel" ? s.era : s.system === "xen" ? s.asked : `${s.system} ${s.asked}`);
const diffDims = (diff) => (diff.dimensions ? diff.dimensions.filter((d) => d.in_space).map((d) => d.name)
  : Object.keys(diff.groups?.[0]?.pattern || {}));
function drawCompare(st, a, b, bErr, diff, diffErr, hole = false) {
  const out = $("#cmp-out");
  if (!st.vs) {
    out.hidden = true;
    $("#cmp-refused").hidden = true;
    $("#cmp-hint").textContent = 'choose "Compare" above to see two eras or systems side by side and their diff';
    return;
  }
  out.hidden = false;
  const plain = st.vsSide.system === "kvm-intel" && mainPlain();
  const bName = plain ? st.vs : sideLabel(st.vsSide);
  $("#cmp-hint").textContent = `${st.scenario.kernel} vs ${bName} at ${st.gpa}`;
  // bErr only when the main era accepted the same scenario: the compare era refuses this
  // VM (an era rule, not a mistake in the inputs), so it is said plainly, not as an error.
  const refusal = $("#cmp-refused");
  refusal.hidden = !bErr;
  if (bErr) {
    const items = bErr.problem?.errors?.length ? bErr.problem.errors : [{ loc: [], msg: bErr.message }];
    refusal.replaceChildren(el("b", {}, `${bName} cannot run this VM`), ": ",
      ...items.flatMap((it, i) => [i ? "; " : "", it.msg, it.rule ? ` (${it.rule})` : ""]),
      `. Only ${st.scenario.kernel} is shown for this address; the diff below covers every state.`);
  }
  const thead = $("#cmp-table thead"), tbody = $("#cmp-table tbody");
  if (plain) {
    fill(thead, el("tr", {}, el("th", {}, ""),
      el("th", { "data-side": "a" }, a ? eraCell(a.era) : st.scenario.kernel),
      el("th", { "data-side": "b" }, b ? eraCell(b.era) : st.vs)));
    fill(tbody, ...compareRows(a, b, bErr, hole));
  } else {
    const vsView = VS_SYS.get(sideKey(st.vsSide));
    fill(thead, el("tr", {}, el("th", {}, ""),
      el("th", { "data-side": "a" }, a ? answerCell(a, SYS.view?.panels?.title) : st.scenario.kernel),
      el("th", { "data-side": "b" }, b ? answerCell(b, vsView?.panels?.title) : bName)));
    fill(tbody, ...systemCompareRows(a, b, bErr, hole, compareState(st).applied || []));
  }
  drawDiff(st, diff, diffErr);
}
function compareRows(a, b, bErr, hole, extra = null) {
  // The rows both answers share: entry, branch taken, MTRR lookup, page size, each PAT
  // entry's effective type (extra(add): rows a system pair adds after the path)
  const rows = [];
  const taken = (r) => { const s = r.path.find((x) => x.held === true); return s ? `${s.id}: ${s.result}` : ""; };
  const add = (label, fa, fb, render = (v) => v, attrs = {}) => {
    const va = a ? fa(a) : "(error)", vb = b ? fb(b) : bErr ? "(refuses this VM)" : "(error)";
    const bText = bErr ? (rows.length ? "" : "refuses this VM (see above)") : "-";
    const differs = a && b && va !== "-" && vb !== "-" && JSON.stringify(va) !== JSON.stringify(vb);  // "-": no such field
    rows.push(el("tr", attrs, el("th", {}, label),
      el("td", { class: differs ? "differs" : "", "data-side": "a" }, a ? render(va) : "-"),
      el("td", { class: differs ? "differs" : "", "data-side": "b" }, b ? render(vb) : bText)));
  };
  const ept = (r) => (hole ? "no EPT entry (no memslot)" : r.npt ? `NPT: host PAT entry ${r.npt.host_pat_index} (${r.host.type})`
    : `${r.ept.notation} ${r.ept.mask ?? ""}`.trim());
  const amd = (a && a.npt) || (b && b.npt);
  add(amd ? "EPT / NPT entry" : "EPT entry", ept, ept, (v) => el("span", { class: "mono" }, v), { "data-row": "entry" });
  if (extra) extra(add);
  add("branch taken", taken, taken);
  add(extra ? "MTRR lookup (KVM, Xen)" : "KVM MTRR lookup", (r) => r.kvm_mtrr_type ?? r.xen_mtrr?.type ?? "not read",
    (r) => r.kvm_mtrr_type ?? r.xen_mtrr?.type ?? "not read");
  const page = (r) => (hole ? "-" : r.npt ? r.npt.page_size : r.ept?.leaf ? r.ept.leaf.page_size : r.page_size ?? "-");
  add("page size", page, page);
  for (let i = 0; !hole && i < 8; i++) {
    const f = (r) => [r.pat[i].effective, r.pat[i].relation];
    add(`PA${i} (${a ? a.pat[i].pat_type ?? a.pat[i].guest_pat_type : ""}) effective`, f, f, ([t, rel]) => [typeChip(t), " ", expBadge(rel)],
      { "data-pat-index": String(i) });
  }
  return rows;
}
function systemCompareRows(a, b, bErr, hole, applied) {
  // Another system beside the main one: the same rows, plus each side's decision path (the
  // EMT path for Xen) and the CPU's CR0.CD where the answer has one; then which values the
  // Compare side was asked with because its system fixes them (the server's list).
  const path = (r) => r.path.filter((s) => s.held != null).map((s) => [s.id, s.held]);
  const cr0 = (r) => (r.cr0 ? `CPU CD=${yes(r.cr0.hw_cd)} NW=${yes(r.cr0.hw_nw)}`
    : r.cr0_cd ? `CPU CD=${yes(r.cr0_cd.hw_cr0_cd)}, vmx_handle_cd ${r.cr0_cd.handle_cd ? "on" : "off"} (${r.cr0_cd.cache_mode})` : "-");
  const rows = compareRows(a, b, bErr, hole, (add) => {
    add("decision path", path, path, (steps) => el("ol", { class: "path cmp-path" }, steps.map(([id, held]) =>
      el("li", { class: held ? "taken" : "notheld", "data-step": id }, held ? id : `${id} (not held)`))), { "data-row": "path" });
    add("hardware CR0.CD", cr0, cr0, (v) => v, { "data-row": "cr0" });
  });
  if (applied.length) {
    const byReason = new Map();  // one line per reason (Xen refuses every KVM setting for the same one)
    for (const f of applied) byReason.set(f.reason, [...(byReason.get(f.reason) || []), f]);
    rows.push(el("tr", { "data-row": "applied" }, el("th", {}, "asked with"), el("td", { "data-side": "a" }, "-"),
      el("td", { "data-side": "b", "data-testid": "cmp-applied" }, [...byReason].flatMap(([reason, fs], i) => [i ? "; " : "",
        el("b", { class: "mono" }, fs.map((f) => `${f.api}=${f.value == null ? "auto" : String(f.value)}`).join(", ")),
        `: fixed (${reason})`]))));
  }
  return rows;
}
function drawDiff(st, diff, diffErr) {
  // The diff's summary and groups, for the era diff and the cross-system diff alike: the
  // dimensions, side names and counts are the answer's (diffDims, diffSideName).
  const sum = $("#diff-summary");
  const gt = $("#groups-table tbody");
  const sys = $("#cmp-sys");
  if (diffErr) {
    showProblem(diffErr, "compare", () => "compare");
    sum.textContent = ""; gt.replaceChildren(); gt.__diff = null; sys.hidden = true;
    return;
  }
  if (!diff) return;
  const nameA = diffSideName(diff.a), nameB = diffSideName(diff.b);
  const skipped = Object.values(diff.skipped || {}).reduce((x, y) => x + y, 0);
  const compared = diff.total_states - skipped;
  const c = diff.counts;
  const entryOnly = c.ept_only ?? c.entry_only;
  fill(sum,
    "Over the whole state space: ",
    el("b", { "data-testid": "diff-differ" }, String(c.differ)), ` of ${compared} states differ between `,
    el("b", {}, nameA), " and ", el("b", {}, nameB), ", ",
    // The API counts B (compare era) relative to A (main era); the sentence reads A against B,
    // so B's "weaker" states are states where A is stronger, and the reverse.
    el("span", { "data-testid": "diff-direction" }, `${nameA} against ${nameB}: ${c.stronger} weaker, ${c.weaker} stronger`), ", ",
    el("b", {}, String(c.incomparable)), " incomparable, ",
    diff.entries_comparable === false ? "entries not compared (an NPT entry holds no memory type)"
      : [el("b", {}, String(entryOnly)), ` differ in the ${diff.dimensions ? "entry" : "EPT entry"} only`],
    skipped ? el("span", { class: "muted" }, ` (${skipped} states skipped: ${Object.keys(diff.skipped).join("; ")})`) : "",
  );
  $("#groups-rel").textContent = `${nameA} against ${nameB}`;
  setIf($("#groups-entry"), "textContent", diff.dimensions ? "entry A \u2192 B" : "EPT A \u2192 B");
  if (diff.dimensions) drawDiffDims(diff, nameA, nameB); else sys.hidden = true;
  // the same diff (cached per pair) has its rows drawn already (their listeners too)
  if (gt.__diff === diff && gt.childElementCount === (diff.groups || []).length) return;
  gt.__diff = diff;
  const names = diffDims(diff);
  gt.replaceChildren(...(diff.groups || []).map((g) => {
    const dims = names.filter((d) => g.pattern[d] !== "*");
    const short = (d) => DIM_SHORT[d] || d;
    const pat = dims.map((d) => `${short(d)}=${fmtDim(g.pattern[d])}`).join(" ") || "every state";
    const patCell = dims.length ? dims.flatMap((d, i) => [i ? " " : "", abbr(short(d)), `=${fmtDim(g.pattern[d])}`]) : ["every state"];
    const ea = g.ept_a ? g.ept_a.notation : g.entry_a, eb = g.ept_b ? g.ept_b.notation : g.entry_b;
    const tr = el("tr", { tabindex: "0", role: "button", "aria-label": `load state ${pat}` },
      el("td", { class: "pattern" }, patCell),
      el("td", { class: "num" }, String(g.count)),
      el("td", { class: "mono" }, `${ea} \u2192 ${eb}`),
      el("td", {}, typeChip(g.effective_a), " \u2192 ", typeChip(g.effective_b)),
      el("td", {}, el("span", { class: `badge era ${AGAINST[g.classification] || g.classification}`, "data-classification": g.classification,
        title: `${nameA} against ${nameB} (the API's B-vs-A classification: ${g.classification})` }, AGAINST[g.classification] || g.classification)),
    );
    const open = () => openDiffGroup(g.pattern, diff);
    tr.addEventListener("click", open);
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(); } });
    return tr;
  }));
}
function drawDiffDims(diff, nameA, nameB) {
  // The cross-system diff's dimensions with each side's status (read / not read / absent),
  // what only one side has, what is not compared and how the shared ones map: all its answer's.
  $("#cmp-sys").hidden = false;
  $("#dims-a").textContent = nameA;
  $("#dims-b").textContent = nameB;
  const st = (v, one) => el("span", { class: `dim-st st-${v.replace(" ", "-")}`, "data-status": v },
    v === "fixed" && one !== undefined ? `fixed: ${fmtDim(one)}` : v);  // fixed: the one value the system allows
  fill($("#dims-table tbody"), ...diff.dimensions.map((d) => el("tr", { "data-dim": d.name },
    el("th", { title: d.meaning }, el("span", { class: "mono" }, d.name), el("br"), el("small", { class: "muted" }, d.meaning)),
    el("td", { "data-side": "a" }, st(d.a, d.fixed_a)), el("td", { "data-side": "b" }, st(d.b, d.fixed_b)),
    el("td", {}, d.in_space ? "yes" : "no"))));
  const list = (xs) => (xs.length ? xs.flatMap((x, i) => [i ? ", " : "", el("span", { class: "mono" }, x)]) : [muted("none")]);
  fill($("#cmp-only"), ...kv(`only ${nameA}`, ...list(diff.only_a)), ...kv(`only ${nameB}`, ...list(diff.only_b)));
  fill($("#cmp-not-compared"), ...diff.not_compared.map((t) => el("li", {}, t)));
  fill($("#cmp-mapping"), ...diff.mapping.map((t) => el("li", {}, t)));
}
const fmtDim = (v) => (v === true ? "1" : v === false ? "0" : String(v));

async function openDiffGroup(pattern, diff = null) {
  // The controls moved into one concrete state of the group ('*' keeps the current value),
  // built by the server (POST /page/diff-state: app.analysis.apply_pattern, the construction
  // of state_scenario) and written back like a permalink's state. A dimension the main side
  // lacks (the cross-system diff's status for A: absent) is not sent: the controls have
  // nothing to hold it in. One A has but does not read is sent (it is still part of A's
  // state, and the group's value), unless A's system fixes what it would set: the server
  // leaves those out and says why (`unapplied`, from POST /page/system's fixed values).
  // Both are listed under the table.
  const st = readState();
  const kept = (diff?.dimensions || []).filter((d) => d.a === "absent" && pattern[d.name] != null && pattern[d.name] !== "*");
  const sent = Object.fromEntries(Object.entries(pattern).filter(([k]) => !kept.some((d) => d.name === k)));
  let scenario;
  try {
    scenario = await api(`${PAGE}/diff-state`, { scenario: resolveBody(st), pattern: sent }, undefined, false, true);
  } catch (e) {
    showProblem(e, "compare", () => "compare");
    return;
  }
  const notes = [...kept.map((d) => `${d.name}=${fmtDim(pattern[d.name])}: ${diffSideName(diff.a)} lacks it`),
    ...(scenario.unapplied || []).map((u) => `${u.dimension}=${fmtDim(u.value)}: ${u.why}`)];
  delete scenario.unapplied;
  writeState({ scenario, vs: st.vs, ...compareLinkParts(st.vsSide), event: st.event, pati: st.pati, view: "resolve",
    private_ranges: st.privateRanges, xen_frames: st.xenFrames });  // the map's own inputs stay
  view = "resolve";
  const note = $("#cmp-unapplied");
  note.hidden = !notes.length;
  note.textContent = notes.length ? `Loaded the group's state except ${notes.join("; ")} (the controls keep their value).` : "";
  changed();
  $("#p-result").scrollIntoView({ behavior: "instant", block: "start" });
}

// -- presets ---------------------------------------------------------------------------------

const MTRR_PRESET_LABELS = { ovmf: "OVMF", "ovmf-linux": "OVMF+Linux", seabios: "SeaBIOS" };
function buildPresets() {
  const box = $("#mtrr-presets");
  for (const p of PRESETS) {
    if (!(p.name in MTRR_PRESET_LABELS)) continue;
    const m = p.request.vcpu.mtrr;
    box.append(el("button", { type: "button", class: "small", "data-mtrr-preset": p.name, title: p.description,
      onclick: async () => { setMtrr(m); await refreshRegisters(); await fixMasksForMaxphy(); changed(); } }, MTRR_PRESET_LABELS[p.name]));
  }
  const sel = $("#preset");
  if (sel) {
    sel.append(...PRESETS.map((p) => el("option", { value: p.name, title: p.description }, `${p.name}: ${p.title}`)));
  }
}
async function fixMasksForMaxphy() {
  // Presets are written for MAXPHYADDR 46: each range the editor shows as start + size is
  // written again by the server for the current MAXPHYADDR (masks with holes stay as they are).
  await Promise.all($$("#var-rows .var-row").filter((row) => $(".v-size", row).value).map(pairFromRange));
}
// Which preset the page shows: the address bar's query (view and pati aside) equal to a
// preset's own permalink query (both written by app.permalink on the server).
const normQuery = (q) => q.split("&").filter((kv) => !/^(view|pati)=/.test(kv)).join("&");
let lastPreset = null;
function showActivePreset(query) {
  const p = PRESETS.find((x) => x.query != null && normQuery(x.query) === normQuery(query));
  const name = $("#preset-active");
  const desc = $("#preset-desc");
  if (p) {
    lastPreset = p;
    setText(name, p.name);
    setIf(name, "title", p.title);
    setText(desc, p.title);
    setText("#preset-about", p.description);
    setIf(document.body.dataset, "preset", p.name);
  } else {
    setText(name, lastPreset ? `custom (edited from ${lastPreset.name})` : "custom");
    setIf(name, "title", "");
    setText(desc, lastPreset ? `Changed from: ${lastPreset.title}. Choose a preset above to start again.`
      : "This state is no preset; choose one above for a guided starting point.");
    setText("#preset-about", "");
    setIf(document.body.dataset, "preset", "");
  }
}

function loadPreset(name) {
  const p = PRESETS.find((x) => x.name === name);
  if (!p) return;
  writeState({ scenario: p.request, vs: p.compare, event: p.event, pati: 0, view: p.event ? "zap" : "resolve" });
  changed();
}

// -- exports -----------------------------------------------------------------------------------

async function copyOut(text, note) {
  $("#export-note").textContent = note;
  $("#export-text").textContent = text;
  const dlg = $("#export");
  if (!dlg.open) dlg.showModal();
  try {
    await navigator.clipboard.writeText(text);
    $("#export-note").textContent = `${note} (copied to the clipboard)`;
  } catch {
    $("#export-note").textContent = `${note} (select and copy: the clipboard is not available here)`;
  }
}
async function exportText(kind) {
  const st = readState();
  try {
    let text;
    if (kind === "zap") {
      if (!st.event) { setStatus("choose a zap event first", true); return; }
      text = await api("/zap", zapBody(st), undefined, true);
    } else if (kind === "diff") {
      if (!st.vs) { setStatus('choose "Compare with" first', true); return; }
      text = await api("/diff", { ...diffBody(st), limit: 500 }, undefined, true);
    } else if (kind === "all") {
      // the whole view: the server's 72-column renderings, one after the other
      const parts = [api("/resolve", resolveBody(st), undefined, true)];
      const bst = st.vs ? compareState(st) : null, bName = st.vs ? sideLabel(st.vsSide) : "";
      if (st.vs) parts.push(api("/resolve", resolveBody(bst, st.vs), undefined, true).catch(() => `${bName} cannot run this VM: no ${bName} result.`));
      if (st.event) parts.push(api("/zap", zapBody(st), undefined, true));
      if (st.vs && st.event) parts.push(api("/zap", zapBody(bst, st.vs), undefined, true).catch(() => `${bName} cannot run this VM: no ${bName} zap.`));
      if (st.vs) parts.push(api("/diff", { ...diffBody(st), limit: 500 }, undefined, true).catch((e) => `No diff: ${e.message}`));
      text = (await Promise.all(parts)).map((t) => t.replace(/\n+$/, "")).join("\n\n") + "\n";
    } else {
      text = await api("/resolve", resolveBody(st), undefined, true);
    }
    await copyOut(text, `72-column text (${kind === "all" ? "the whole view: result, compare era, zap, diff" : kind})`);
  } catch (e) {
    showProblem(e, "vcpu");
  }
}

// -- wiring --------------------------------------------------------------------------------

function wire() {
  const immediate = [ctl.vs, ...knobInputs("bool"), ...knobInputs("dec").filter((c) => c !== ctl.maxphy), ctl.mmio,
    ctl.pati, ctl.evBool, ctl.evNw];
  immediate.forEach((c) => c.addEventListener("change", () => changed()));
  // choosing an era drops a typed version; a typed version is asked when it is complete
  ctl.kernel.addEventListener("change", () => { ctl.kver.value = ""; changed(); });
  ctl.kver.addEventListener("change", () => changed());
  [ctl.mE, ctl.mFE, ctl.mDef].forEach((c) => c.addEventListener("change", async () => { await defTypeFromFields(); changed(); }));
  ctl.maxphy.addEventListener("change", async () => { await fixMasksForMaxphy(); changed(); });
  ctl.gpa.addEventListener("change", () => changed());
  ctl.gpa.addEventListener("input", prefetchTyped);
  ctl.pats.forEach((s) => s.addEventListener("change", async () => { await patFromSelects(); changed(); }));
  ctl.patRaw.addEventListener("change", () => { syncPatFromRaw(); changed(); });
  $$("[data-pat-preset]").forEach((b) => b.addEventListener("click", () => { setPatRaw(BigInt(b.dataset.patPreset)); changed(); }));
  $('[data-mtrr-preset="none"]').addEventListener("click", () => { setMtrr({ def_type: "0x0" }); changed(); });
  FIXED_MSRS.forEach((_, slot) => $(`#fixed${slot}`).addEventListener("change", () => changed()));
  // the var rows' own inputs call changed() themselves (start/size after the server's answer)
  $("#var-add").addEventListener("click", async () => {
    const row = addVarRow(0n, 0n);
    // a fresh range: 1 GiB at 0xc0000000, UC, valid (edit to taste)
    $(".v-start", row).value = "0xc0000000"; $(".v-size", row).value = "0x40000000"; $(".v-type", row).value = "0";
    $(".v-valid", row).checked = true;
    await pairFromRange(row);
    changed();
    $(".v-start", row).focus();
  });
  ctl.evKind.addEventListener("change", async () => {
    showEventFields();
    await defaultEvent(ctl.evKind.value);
    if (ctl.evKind.value) view = "zap"; else if (view === "zap") view = "resolve";
    changed();
  });
  ctl.evMsr.addEventListener("change", async () => { await fillCurrentMsr(); changed(); });
  ctl.evValue.addEventListener("change", () => changed());
  $("#event-current").addEventListener("click", async () => {
    if (ctl.evKind.value === "pat_write") ctl.evValue.value = ctl.patRaw.value.trim();
    else await fillCurrentMsr();
    changed();
  });

  $("#copy-link").addEventListener("click", copyLink);
  $("#copy-json").addEventListener("click", () => copyOut(JSON.stringify(resolveBody(readState()), null, 2), "POST /api/v1/resolve body"));
  $("#copy-text").addEventListener("click", () => exportText("all"));
  $("#copy-zap-text").addEventListener("click", () => exportText("zap"));
  $("#copy-diff-text").addEventListener("click", () => exportText("diff"));
  $("#help-btn").addEventListener("click", () => $("#help").showModal());
  $("#notice-close").addEventListener("click", () => { $("#notice").hidden = true; });
  $("#cmp-side-details").addEventListener("toggle", () => { if (sideOpen() && ctl.vs.value) changed(); });
  // the note of what a loaded diff group could not set goes with the next edit
  document.addEventListener("change", () => { $("#cmp-unapplied").hidden = true; }, true);
  $("#swap-eras").addEventListener("click", swapEras);
  $("#cmp-swap").addEventListener("click", swapEras);
  const presetSel = $("#preset");
  if (presetSel) presetSel.addEventListener("change", () => { loadPreset(presetSel.value); presetSel.value = ""; });

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    if (t instanceof HTMLInputElement && t.type !== "checkbox") return;
    if (t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement) return;
    if ($("dialog[open]") && e.key !== "?") return;
    const toggle = (c) => { c.checked = !c.checked; noteFlip(c.id); changed(); };
    const cycle = (d) => {
      const opts = Array.from(ctl.kernel.options).map((o) => o.value);
      ctl.kernel.value = opts[(opts.indexOf(ctl.kernel.value) + d + opts.length) % opts.length];
      ctl.kver.value = "";
      changed();
    };
    const keys = {
      "?": () => { const h = $("#help"); if (h.open) h.close(); else h.showModal(); },
      c: () => toggle(ctl.cd), n: () => toggle(ctl.ncdma), q: () => toggle(ctl.cdnw),
      k: () => ctl.kernel.focus(), a: () => { ctl.gpa.focus(); ctl.gpa.select(); },
      "[": () => cycle(-1), "]": () => cycle(1),
      l: () => copyLink(), t: () => $("#copy-text").click(), s: () => swapEras(),
    };
    if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
  });
}

function showDropped(list) {
  // The link's unreadable parameters (app.permalink.decode_report), said once: everything
  // else in the link is what the page shows.
  const box = $("#notice");
  if (!list.length) { box.hidden = true; return; }
  $("#notice-text").textContent = `This link had ${list.length} parameter${list.length > 1 ? "s" : ""} the page could not read: `
    + `${list.length > 1 ? "they were" : "it was"} dropped (the default is shown instead); every other parameter is as linked.`;
  $("#notice-list").replaceChildren(...list.map((d) => el("li", { "data-param": d.param },
    el("b", { class: "mono" }, `${d.param}=${d.value}`), `: ${d.message}${d.rule ? ` (${d.rule})` : ""}`)));
  box.hidden = false;
}

function swapEras() {
  // Era <-> Compare: the diff then reads the other way round (B against A). Another system
  // swaps with its vendor and type (the vendor and VM type selects follow).
  const side = vsSide();
  if (!side) { setStatus('choose a "Compare" era to swap with', true); return; }
  const vendor = $("#vendor")?.value || "intel", type = $("#vmtype")?.value || "default";
  const back = compareOption(ctl.kernel.value, vendor, type);
  if (!back) { setStatus(`the Compare list has no ${ctl.kernel.value} (vendor ${vendor}, type ${type}) to swap to`, true); return; }
  ctl.kernel.value = side.vs;
  ctl.kver.value = "";
  if ($("#vendor")) $("#vendor").value = side.vendor;
  if ($("#vmtype")) $("#vmtype").value = side.type;
  ctl.vs.value = back.value;
  changed();
}
function syncSwap() {
  const off = !ctl.vs.value;
  setIf($("#swap-eras"), "disabled", off);
  setIf($("#cmp-swap"), "disabled", off);
}

function fitHeader() {
  document.documentElement.style.setProperty("--top-h", `${$(".top").offsetHeight}px`);
}

async function init() {
  fitHeader();
  window.addEventListener("resize", fitHeader);
  buildFixedRows();
  buildMsrOptions();
  wire();
  wireSystem();
  const init = INITIAL.initial || {};  // the permalink as app.permalink decoded it
  writeState({
    scenario: init.scenario,
    vs: init.vs || null,
    vs_vendor: init.vs_vendor,
    vs_type: init.vs_type,
    event: init.event || null,
    view: init.view || "resolve",
    pati: init.pati || 0,
    private_ranges: init.private_ranges,
    xen_frames: init.xen_frames,
  });
  PRESETS = INITIAL.presets || [];
  if (!PRESETS.length) {
    try { PRESETS = await api("/presets"); } catch (e) { setStatus(`could not load presets: ${e.message}`, true); }
  }
  buildPresets();
  await update();
  const e = INITIAL.error;
  if (e) setStatus(`permalink parameter ${e.field}: ${e.message}${e.rule ? ` (${e.rule})` : ""}; showing the defaults`, true);
  showDropped(INITIAL.dropped || []);
  if (view === "zap") $("#p-zap").scrollIntoView({ block: "start" });
  if (view === "diff") $("#p-compare").scrollIntoView({ block: "start" });
}

init();
