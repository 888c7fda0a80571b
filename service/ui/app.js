// The visual search page: pick a task, search with an image, enroll and delete items, verify two images,
// look at each task's gallery and index. Every API error is shown beside the control that caused it.

import { apiKey, call, setApiKey, taskPath, thumbnail } from "./api.js";
import { makeDropZone, readBase64, showPreview, stem } from "./images.js";

const $ = (id) => document.getElementById(id);
const TASK_STORAGE = "ufo.task";
const ENROLL_CHUNK = 16; // items per enroll request: keeps each body far below the gateway's size limit
const VIEWS = ["search", "enroll", "verify", "status"];
const tasks = new Map(); // name → GET /v1/tasks entry
let thumbnailUrls = [];

// -- small helpers ----------------------------------------------------------------------------------

function say(element, text) {
  element.textContent = text || "";
  element.hidden = !text;
}

function element(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function fmt(value, digits = 4) {
  return typeof value === "number" ? value.toFixed(digits) : "—";
}

function currentTask() {
  return $("task").value;
}

function parseJsonObject(text, what) {
  if (!text.trim()) return null;
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`${what} is not valid JSON: ${error.message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Error(`${what} must be a JSON object such as {"person": "s29"}`);
  }
  return value;
}

/** Run `work` with `button` disabled; its error (API or local) is shown in `errorEl`, never swallowed. */
async function guarded(errorEl, button, work) {
  say(errorEl, "");
  if (button) button.disabled = true;
  try {
    await work();
  } catch (error) {
    say(errorEl, error.message || String(error));
  } finally {
    if (button) button.disabled = false;
  }
}

function requireTask() {
  const task = currentTask();
  if (!task) throw new Error("No task to work on: the task list has not loaded (see the message above).");
  return task;
}

// -- API key and tasks ------------------------------------------------------------------------------

function showKeyState() {
  const key = apiKey();
  $("key-state").textContent = key ? `using key ${key.slice(0, 12)}…` : "no key set (the server may need one)";
}

async function loadTasks() {
  const errorEl = $("global-error");
  try {
    const { tasks: list } = await call("GET", "/v1/tasks");
    say(errorEl, "");
    fillTaskSelect(list);
  } catch (error) {
    say(errorEl, `Could not load the tasks. ${error.message}`);
  }
}

function fillTaskSelect(list) {
  const select = $("task");
  const wanted = select.value || sessionStorage.getItem(TASK_STORAGE);
  tasks.clear();
  select.replaceChildren();
  for (const info of list) {
    tasks.set(info.task, info);
    select.append(element("option", { value: info.task, textContent: `${info.task} (${info.model_version})` }));
  }
  if (tasks.has(wanted)) select.value = wanted;
}

function initSettings() {
  $("api-key").value = apiKey();
  showKeyState();
  $("settings-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey($("api-key").value.trim());
    showKeyState();
    loadTasks().then(refreshVisibleStatus);
  });
  $("forget-key").addEventListener("click", () => {
    $("api-key").value = "";
    setApiKey("");
    showKeyState();
    loadTasks();
  });
  $("task").addEventListener("change", () => {
    sessionStorage.setItem(TASK_STORAGE, currentTask());
    $("search-results").hidden = true;
  });
}

// -- views ------------------------------------------------------------------------------------------

function showView() {
  const name = VIEWS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "search";
  for (const view of VIEWS) $(`view-${view}`).hidden = view !== name;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.view === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (name === "status") refreshStatus();
}

// -- search -----------------------------------------------------------------------------------------

async function runSearch(event) {
  event.preventDefault();
  await guarded($("search-error"), event.submitter, async () => {
    const task = requireTask();
    const file = $("search-file").files[0];
    if (!file) throw new Error("Choose a query image first (or drop one on the box).");
    const body = { image: await readBase64(file), k: Number($("search-k").value) || 5 };
    const filter = parseJsonObject($("search-filter").value, "The metadata filter");
    if (filter) body.filter = filter;
    const result = await call("POST", taskPath(task, "search"), body);
    renderResults(task, result, Boolean(filter));
  });
}

function renderResults(task, result, filtered) {
  for (const url of thumbnailUrls) URL.revokeObjectURL(url);
  thumbnailUrls = [];
  const { hits, threshold } = result;
  const summary = `${hits.length} result${hits.length === 1 ? "" : "s"} in ${task} (model ${result.model_version}),` +
    ` threshold ${fmt(threshold)}.`;
  say($("search-summary"), result.no_match ? `No match: no result reaches the threshold. ${summary}` : summary);
  $("search-summary").classList.toggle("no-match", result.no_match);
  const list = $("search-hits");
  list.replaceChildren();
  let lineDrawn = threshold === null || threshold === undefined;
  for (const hit of hits) {
    if (!lineDrawn && hit.score < threshold) {
      list.append(thresholdLine(threshold));
      lineDrawn = true;
    }
    list.append(hitCard(task, hit, threshold));
  }
  if (!lineDrawn) list.append(thresholdLine(threshold));
  if (hits.length === 0) {
    const why = filtered ? "the gallery has nothing that passes the filter." : "the gallery of this task is empty.";
    list.append(element("li", { className: "empty", textContent: `No results: ${why}` }));
  }
  $("search-results").hidden = false;
}

function thresholdLine(threshold) {
  return element("li", { className: "threshold", textContent: `threshold ${fmt(threshold)}: a match above, ` +
    "no match below" });
}

function metadataList(metadata) {
  const list = element("dl", { className: "meta" });
  for (const [key, value] of Object.entries(metadata || {})) {
    list.append(element("dt", { textContent: key }), element("dd", {
      textContent: typeof value === "string" ? value : JSON.stringify(value) }));
  }
  return list;
}

function hitCard(task, hit, threshold) {
  const passes = threshold === null || threshold === undefined || hit.score >= threshold;
  const img = element("img", { className: "thumb", alt: `item ${hit.id}`, width: 120, height: 120 });
  const note = element("p", { className: "thumb-note muted" });
  const remove = element("button", { type: "button", className: "delete", textContent: "Delete" });
  remove.setAttribute("aria-label", `Delete item ${hit.id}`);
  const card = element("li", { className: `hit ${passes ? "match" : "below"}` }, img, note,
    element("p", { className: "hit-id", textContent: hit.id }),
    element("p", { className: "score", textContent: `score ${fmt(hit.score)}` }),
    metadataList(hit.metadata), remove);
  card.dataset.id = hit.id;
  remove.addEventListener("click", () => deleteFromResults(task, hit.id, card, remove));
  loadThumbnail(task, hit.id, img, note);
  return card;
}

async function loadThumbnail(task, id, img, note) {
  try {
    const { url, placeholder } = await thumbnail(task, id);
    thumbnailUrls.push(url);
    img.src = url;
    if (placeholder) {
      img.alt = `item ${id}: no kept image (enrolled as an embedding)`;
      note.textContent = "no image kept";
    }
  } catch (error) {
    note.textContent = `no thumbnail: ${error.message}`;
  }
}

async function deleteFromResults(task, id, card, button) {
  if (!window.confirm(`Delete item ${id} from the ${task} gallery?`)) return;
  await guarded($("search-error"), button, async () => {
    await call("DELETE", taskPath(task, "items", id));
    card.remove();
    say($("search-summary"), `Deleted ${id} from ${task}. Search again to see the gallery without it.`);
  });
}

function initSearch() {
  const input = $("search-file");
  makeDropZone(input.closest(".drop"), input);
  input.addEventListener("change", () => showPreview($("search-query"), input.files[0], "the query image"));
  $("search-form").addEventListener("submit", runSearch);
}

// -- enroll and delete ------------------------------------------------------------------------------

function idFor(file) {
  return `${$("enroll-prefix").value.trim()}${stem(file.name)}`;
}

function listPending() {
  const files = [...$("enroll-files").files];
  const body = $("enroll-table").tBodies[0];
  body.replaceChildren();
  say($("enroll-result"), "");
  for (const file of files) {
    const img = element("img", { className: "mini", alt: `preview of ${file.name}`, width: 48, height: 48 });
    const id = element("input", { type: "text", className: "item-id", value: idFor(file), spellcheck: false });
    id.setAttribute("aria-label", `Id for ${file.name}`);
    id.addEventListener("input", () => { id.dataset.edited = "1"; });
    body.append(element("tr", {}, element("td", {}, img), element("td", { textContent: file.name }),
      element("td", {}, id)));
    showPreview(img, file, `preview of ${file.name}`);
  }
  $("enroll-table").hidden = files.length === 0;
}

function renamePending() {
  const files = [...$("enroll-files").files];
  $("enroll-table").querySelectorAll("input.item-id").forEach((input, i) => {
    if (!input.dataset.edited && files[i]) input.value = idFor(files[i]);
  });
}

function pendingItems(metadata) {
  const files = [...$("enroll-files").files];
  if (files.length === 0) throw new Error("Choose one or more images to enroll first.");
  const ids = [...$("enroll-table").querySelectorAll("input.item-id")].map((input) => input.value.trim());
  const seen = new Set();
  for (const id of ids) {
    if (!id) throw new Error("Every image needs an id: fill in the empty ones.");
    if (seen.has(id)) throw new Error(`The id ${id} is given to two images: ids must differ.`);
    seen.add(id);
  }
  return files.map((file, i) => ({ file, id: ids[i], metadata }));
}

async function runEnroll(event) {
  event.preventDefault();
  say($("enroll-result"), "");
  let done = 0;
  await guarded($("enroll-error"), event.submitter, async () => {
    const task = requireTask();
    const metadata = parseJsonObject($("enroll-metadata").value, "The metadata") || {};
    const pending = pendingItems(metadata);
    try {
      for (let start = 0; start < pending.length; start += ENROLL_CHUNK) {
        const chunk = pending.slice(start, start + ENROLL_CHUNK);
        const items = await Promise.all(chunk.map(async ({ file, id, metadata: meta }) => (
          { id, image: await readBase64(file), metadata: meta })));
        const answer = await call("POST", taskPath(task, "items"), { items });
        done += answer.count;
        say($("enroll-result"), `Enrolled ${done} of ${pending.length} into ${task} (model ${answer.model_version}).`);
      }
    } catch (error) {
      const before = done ? `Enrolled ${done} of ${pending.length}, then the gateway refused the rest. ` : "";
      throw new Error(`${before}${error.message}`);
    }
    const ids = pending.map((p) => p.id);
    const shown = ids.length > 4 ? `${ids.slice(0, 3).join(", ")}, …, ${ids[ids.length - 1]}` : ids.join(", ");
    say($("enroll-result"), `Enrolled ${done} image${done === 1 ? "" : "s"} into ${task}: ${shown}.`);
  });
}

async function runDelete(event) {
  event.preventDefault();
  say($("delete-result"), "");
  await guarded($("delete-error"), event.submitter, async () => {
    const task = requireTask();
    const id = $("delete-id").value.trim();
    if (!id) throw new Error("Give the id of the item to delete.");
    await call("DELETE", taskPath(task, "items", id));
    say($("delete-result"), `Deleted ${id} from ${task}.`);
  });
}

function initEnroll() {
  const input = $("enroll-files");
  makeDropZone(input.closest(".drop"), input);
  input.addEventListener("change", listPending);
  $("enroll-prefix").addEventListener("input", renamePending);
  $("enroll-form").addEventListener("submit", runEnroll);
  $("delete-form").addEventListener("submit", runDelete);
}

// -- verify -----------------------------------------------------------------------------------------

async function runVerify(event) {
  event.preventDefault();
  $("verify-result").hidden = true;
  await guarded($("verify-error"), event.submitter, async () => {
    const task = requireTask();
    const [a, b] = [$("verify-a").files[0], $("verify-b").files[0]];
    if (!a || !b) throw new Error("Choose two images: A and B.");
    const result = await call("POST", taskPath(task, "verify"),
      { image_a: await readBase64(a), image_b: await readBase64(b) });
    showVerdict(result);
  });
}

function showVerdict({ score, same, threshold, model_version: model }) {
  const decision = $("verify-decision");
  decision.textContent = same ? "Same identity" : "Different identities";
  decision.className = `decision ${same ? "same" : "different"}`;
  const percent = (value) => `${Math.max(0, Math.min(1, value)) * 100}%`;
  $("verify-bar").style.width = percent(score);
  $("verify-tick").style.left = percent(threshold);
  $("verify-numbers").textContent = `score ${fmt(score)} ${same ? "≥" : "<"} threshold ${fmt(threshold)}` +
    ` (model ${model})`;
  $("verify-result").hidden = false;
}

function initVerify() {
  for (const side of ["a", "b"]) {
    const input = $(`verify-${side}`);
    makeDropZone(input.closest(".drop"), input);
    input.addEventListener("change", () => showPreview($(`verify-${side}-preview`), input.files[0],
      `image ${side.toUpperCase()}`));
  }
  $("verify-form").addEventListener("submit", runVerify);
}

// -- status and rebuild -----------------------------------------------------------------------------

function when(seconds) {
  return typeof seconds === "number" ? new Date(seconds * 1000).toLocaleString() : "never";
}

function statusRow(info, index) {
  const button = element("button", { type: "button", textContent: "Rebuild" });
  button.setAttribute("aria-label", `Rebuild the ${info.task} index`);
  button.addEventListener("click", () => rebuild(info.task, button));
  const took = typeof index.built_at === "number" && typeof index.last_rebuild_seconds === "number";
  const rebuilt = took ? `${when(index.built_at)} (${fmt(index.last_rebuild_seconds, 2)} s)` : when(index.built_at);
  const cells = [info.task, index.size, index.model_version, index.type, index.version ?? `offset ${index.offset}`,
    index.detail ? `${index.state}: ${index.detail}` : index.state,
    `${index.main_size} / ${index.delta_size} / ${index.tombstones}`, fmt(info.verification_threshold), rebuilt];
  const row = element("tr", {}, ...cells.map((text, i) => element(i === 0 ? "th" : "td",
    { textContent: String(text) })), element("td", {}, button));
  row.firstChild.scope = "row";
  row.dataset.task = info.task;
  return row;
}

async function refreshStatus() {
  await guarded($("status-error"), $("status-refresh"), async () => {
    const { tasks: list } = await call("GET", "/v1/tasks");
    fillTaskSelect(list);
    const indexes = await Promise.all(list.map((info) => call("GET", taskPath(info.task, "index"))));
    $("status-table").tBodies[0].replaceChildren(...list.map((info, i) => statusRow(info, indexes[i])));
  });
}

function refreshVisibleStatus() {
  if (!$("view-status").hidden) refreshStatus();
}

async function rebuild(task, button) {
  say($("status-result"), "");
  await guarded($("status-error"), button, async () => {
    const report = await call("POST", taskPath(task, "index", "rebuild"));
    say($("status-result"), `Rebuilt the ${task} index: ${report.count} items in ${fmt(report.seconds, 2)} s ` +
      `(${report.type}).`);
  });
  if (!$("status-error").hidden) return; // keep the refusal on screen
  await refreshStatus();
}

// -- start ------------------------------------------------------------------------------------------

function start() {
  initSettings();
  initSearch();
  initEnroll();
  initVerify();
  $("status-refresh").addEventListener("click", refreshStatus);
  window.addEventListener("hashchange", showView);
  showView();
  loadTasks();
}

start();
