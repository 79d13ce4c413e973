// The operators' page: sign in with an API key, upload a file with a column mapping built from
// its header row, follow jobs live. It speaks only the public HTTP API, with the key in the
// Authorization header; every text that comes from a file or the API goes in via textContent.

const KEY_STORAGE = "bulkredeem.apiKey";
const TERMINAL = new Set(["COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED"]);
const CANCELLABLE = new Set(["QUEUED", "RUNNING"]);
const COLUMN_KEYS = [
  ["redeemedDateInMillis", "when it was redeemed (epoch milliseconds)"],
  ["redeemedAt", "the till"],
  ["mobile", "customer's mobile"],
  ["externalId", "customer's external id"],
  ["email", "customer's email"],
  ["userId", "customer's user id"],
  ["couponId", "coupon id"],
  ["couponCode", "coupon code"],
  ["billId", "bill id"],
  ["billNumber", "bill number"],
  ["details", "details"],
];
const CUSTOMER_KEY = { MOBILE: "mobile", EXTERNAL_ID: "externalId", EMAIL: "email", USER_ID: "userId" };
const COUPON_KEY = { COUPON_ID: "couponId", COUPON_CODE: "couponCode" };
const DELIMITERS = [",", ";", "\t", "|"]; // in the server's order: a tie goes to the comma
const DELIMITER_NAMES = { ",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe" };
const HEADER_BYTES = 64 * 1024; // a header row longer than this is not one
const ROW_ERRORS_SHOWN = 50;
const POLL_MS = 1000;

const $ = (id) => document.getElementById(id);

const state = {
  key: null,
  signedIn: false,
  columns: null, // {cells, delimiter, looksLikeHeader} of the chosen file
  jobsCursor: null,
  jobsRequest: 0, // the latest list request: an older answer arriving late is dropped
  watched: null, // {jobId, controller}
  lastStatus: new Map(), // jobId -> status last announced
};

// --- HTTP ----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(body?.status?.message || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.key}`, ...(options.headers || {}) };
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, { status: { message: "The service cannot be reached." } });
  }
  if (!response.ok) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    // A key revoked while signed in: back to the sign-in form, saying why.
    if (response.status === 401 && state.signedIn) signOut("Your API key was refused: sign in again.");
    throw new ApiError(response.status, body);
  }
  return response;
}

async function apiJson(path, options) {
  return (await api(path, options)).json();
}

/** Shows the API's error envelope: its message, then each field's problem. */
function showError(element, error) {
  element.replaceChildren();
  const message = document.createElement("p");
  message.className = "error-message";
  const status = error instanceof ApiError && error.status ? ` (${error.status})` : "";
  message.textContent = `${error.message}${status}`;
  element.append(message);
  const problems = error instanceof ApiError ? error.body?.errors || [] : [];
  const shown = problems.filter((p) => p && (p.field || p.message));
  if (shown.length) {
    const list = document.createElement("ul");
    for (const problem of shown) {
      const item = document.createElement("li");
      if (problem.field) {
        const field = document.createElement("code");
        field.textContent = problem.field;
        item.append(field, `: ${problem.message}`);
      } else {
        item.textContent = problem.message;
      }
      list.append(item);
    }
    element.append(list);
  }
  element.hidden = false;
}

function clearError(element) {
  element.hidden = true;
  element.replaceChildren();
}

function announce(text) {
  const announcer = $("announcer");
  // Emptied first so that the same text said twice is read twice.
  announcer.textContent = "";
  window.setTimeout(() => { announcer.textContent = text; }, 50);
}

// --- signing in ----------------------------------------------------------------------------

async function signIn(key) {
  state.key = key;
  // Any authenticated read proves the key; the series are needed next anyway.
  await api("/v1/coupon-series?limit=1");
  sessionStorage.setItem(KEY_STORAGE, key);
  state.signedIn = true;
  $("sign-in").hidden = true;
  $("workspace").hidden = false;
  $("session").hidden = false;
  $("session-label").textContent = `Signed in with key ${key.slice(0, 8)}…`;
  await Promise.all([loadSeries(), loadJobs()]);
}

function signOut(message) {
  stopWatching();
  state.key = null;
  state.signedIn = false;
  state.lastStatus.clear();
  sessionStorage.removeItem(KEY_STORAGE);
  $("workspace").hidden = true;
  $("session").hidden = true;
  $("job").hidden = true;
  $("sign-in").hidden = false;
  $("api-key").value = "";
  $("jobs-rows").replaceChildren();
  $("upload-result").textContent = "";
  if (message) {
    showError($("sign-in-error"), new Error(message));
  } else {
    clearError($("sign-in-error"));
  }
  $("api-key").focus();
  announce(message || "Signed out.");
}

async function onSignIn(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  const errorBox = $("sign-in-error");
  clearError(errorBox);
  if (!key) {
    showError(errorBox, new Error("Enter an API key."));
    $("api-key").focus();
    return;
  }
  $("sign-in-button").disabled = true;
  try {
    await signIn(key);
    announce("Signed in.");
    $("series").focus();
  } catch (error) {
    state.key = null;
    const shown = error instanceof ApiError && error.status === 401
      ? new ApiError(401, { ...error.body, status: { message: `This API key was refused: ${error.message}` } })
      : error;
    showError(errorBox, shown);
    $("api-key").focus();
  } finally {
    $("sign-in-button").disabled = false;
  }
}

// --- series --------------------------------------------------------------------------------

async function loadSeries() {
  const select = $("series");
  const items = [];
  let cursor = null;
  // Five pages of 100 is more series than a dropdown can usefully hold.
  for (let page = 0; page < 5; page += 1) {
    const query = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
    const body = await apiJson(`/v1/coupon-series?limit=100${query}`);
    items.push(...body.items);
    cursor = body.nextCursor;
    if (!cursor) break;
  }
  select.replaceChildren();
  if (!items.length) {
    const option = new Option("No coupon series in this org", "");
    option.disabled = true;
    select.append(option);
    return;
  }
  for (const series of items) {
    select.append(new Option(`${series.name} (#${series.id})`, String(series.id)));
  }
}

// --- reading the file's header row ---------------------------------------------------------

function decode(bytes) {
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return new TextDecoder("utf-16le").decode(bytes);
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return new TextDecoder("utf-16be").decode(bytes);
  return new TextDecoder("utf-8").decode(bytes); // drops a UTF-8 BOM; bad bytes become U+FFFD
}

/** The first record of the text (a quoted cell may hold line breaks), without its line end. */
function firstRecord(text) {
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (c === '"') quoted = !quoted;
    else if (!quoted && (c === "\n" || c === "\r")) return text.slice(0, i);
  }
  return text;
}

function detectDelimiter(record) {
  const counts = new Map(DELIMITERS.map((d) => [d, 0]));
  let quoted = false;
  for (const c of record) {
    if (c === '"') quoted = !quoted;
    else if (!quoted && counts.has(c)) counts.set(c, counts.get(c) + 1);
  }
  let best = ",";
  for (const d of DELIMITERS) if (counts.get(d) > counts.get(best)) best = d;
  return best;
}

function splitRecord(record, delimiter) {
  const cells = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < record.length; i += 1) {
    const c = record[i];
    if (quoted) {
      if (c === '"' && record[i + 1] === '"') { cell += '"'; i += 1; }
      else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === delimiter) { cells.push(cell.trim()); cell = ""; }
    else cell += c;
  }
  cells.push(cell.trim());
  return cells;
}

const normalise = (name) => name.replace(/\s+/g, "").toLowerCase();

async function readColumns(file) {
  const bytes = new Uint8Array(await file.slice(0, HEADER_BYTES).arrayBuffer());
  const record = firstRecord(decode(bytes));
  const delimiter = detectDelimiter(record);
  const cells = splitRecord(record, delimiter);
  // As the server decides: a first record whose date cell is an integer is data, not a header.
  // The page cannot know the date column yet, but a header row has no all-digit cell.
  const looksLikeHeader = !cells.some((cell) => /^\d+$/.test(cell));
  return { cells, delimiter, looksLikeHeader };
}

function renderMapping() {
  const body = $("mapping-rows");
  body.replaceChildren();
  const columns = state.columns;
  if (!columns) {
    $("mapping").hidden = true;
    return;
  }
  const required = requiredKeys();
  for (const [key, description] of COLUMN_KEYS) {
    const row = document.createElement("tr");
    const labelCell = document.createElement("td");
    const label = document.createElement("label");
    label.htmlFor = `map-${key}`;
    const name = document.createElement("code");
    name.textContent = key;
    label.append(name, ` ${description}`);
    if (required.has(key)) {
      const tag = document.createElement("span");
      tag.className = "required";
      tag.textContent = " (required)";
      label.append(tag);
    }
    labelCell.append(label);

    const selectCell = document.createElement("td");
    const select = document.createElement("select");
    select.id = `map-${key}`;
    select.dataset.key = key;
    select.append(new Option("not mapped", ""));
    columns.cells.forEach((cell, index) => {
      const text = columns.looksLikeHeader
        ? `${index + 1}: ${cell || "(no name)"}`
        : `column ${index + 1} (e.g. ${cell})`;
      select.append(new Option(text, String(index)));
    });
    const match = columns.looksLikeHeader
      ? columns.cells.findIndex((cell) => normalise(cell) === key.toLowerCase())
      : -1;
    select.value = match >= 0 ? String(match) : "";
    selectCell.append(select);
    row.append(labelCell, selectCell);
    body.append(row);
  }
  $("mapping").hidden = false;
}

/** The keys the chosen identifiers make mandatory (DESIGN.md). */
function requiredKeys() {
  return new Set([
    "redeemedDateInMillis",
    "redeemedAt",
    CUSTOMER_KEY[$("customer-identifier").value],
    COUPON_KEY[$("coupon-identifier").value],
  ]);
}

/** Keeps the choices made so far when the identifiers (and so the required marks) change. */
function refreshRequiredMarks() {
  const chosen = new Map([...document.querySelectorAll("#mapping-rows select")].map((s) => [s.id, s.value]));
  renderMapping();
  for (const [id, value] of chosen) $(id).value = value;
}

async function onFileChosen() {
  const file = $("file").files[0];
  const info = $("file-info");
  state.columns = null;
  if (!file) {
    info.textContent = "Pick a file to map its columns.";
    renderMapping();
    return;
  }
  try {
    state.columns = await readColumns(file);
  } catch {
    info.textContent = "This file could not be read.";
    renderMapping();
    return;
  }
  const { cells, delimiter, looksLikeHeader } = state.columns;
  info.textContent = `${file.name}: ${cells.length} columns, ${DELIMITER_NAMES[delimiter]}-separated, `
    + (looksLikeHeader ? "with a header row." : "no header row (its first line is data).");
  renderMapping();
}

function uploadHeaders() {
  const mapping = {};
  for (const select of document.querySelectorAll("#mapping-rows select")) {
    if (select.value !== "") mapping[select.dataset.key] = Number(select.value);
  }
  return mapping;
}

// --- uploading -----------------------------------------------------------------------------

async function onUpload(event) {
  event.preventDefault();
  const errorBox = $("upload-error");
  clearError(errorBox);
  $("upload-result").textContent = "";
  const seriesId = $("series").value;
  const file = $("file").files[0];
  if (!seriesId) {
    showError(errorBox, new Error("Pick a coupon series."));
    $("series").focus();
    return;
  }
  if (!file || !state.columns) {
    showError(errorBox, new Error("Pick a file."));
    $("file").focus();
    return;
  }
  const mapping = uploadHeaders();
  const missing = [...requiredKeys()].filter((key) => !(key in mapping));
  if (missing.length) {
    showError(errorBox, new Error(`Choose a column for ${missing.join(", ")}.`));
    $(`map-${missing[0]}`).focus();
    return;
  }

  const form = new FormData();
  form.append("customerIdentifier", $("customer-identifier").value);
  form.append("couponIdentifier", $("coupon-identifier").value);
  form.append("uploadHeaders", JSON.stringify(mapping));
  // The delimiter the mapping was built with, so that the server reads the same columns.
  form.append("delimiter", state.columns.delimiter === "\t" ? "tab" : state.columns.delimiter);
  const details = $("details").value.trim();
  if (details) form.append("details", details);
  if ($("dry-run").checked) form.append("dryRun", "true");
  form.append("file", file, file.name);

  const button = $("upload-button");
  button.disabled = true;
  button.textContent = "Uploading…";
  try {
    const body = await apiJson(`/coupon/api/v1/upload/redeemFile/${encodeURIComponent(seriesId)}`, {
      method: "POST",
      body: form,
    });
    const jobId = body.result.redeemUploadJobStatuses[0].jobId;
    $("upload-result").textContent = `Uploaded: job #${jobId} is queued.`;
    loadJobs();
    openJob(jobId);
  } catch (error) {
    showError(errorBox, error);
    announce(`Upload refused: ${error.message}`);
  } finally {
    button.disabled = false;
    button.textContent = "Upload";
  }
}

// --- the jobs list -------------------------------------------------------------------------

function statusBadge(status) {
  const badge = document.createElement("span");
  badge.className = `badge status-${status.toLowerCase()}`;
  badge.textContent = status;
  return badge;
}

function cell(content, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (content instanceof Node) td.append(content);
  else td.textContent = content ?? "";
  return td;
}

function formatTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function jobRow(job) {
  const row = document.createElement("tr");
  row.dataset.jobId = String(job.jobId);
  const open = document.createElement("button");
  open.type = "button";
  open.className = "link";
  open.textContent = `#${job.jobId}`;
  open.setAttribute("aria-label", `Open job ${job.jobId}`);
  open.addEventListener("click", () => openJob(job.jobId));
  const status = document.createElement("span");
  status.append(statusBadge(job.status));
  if (job.dryRun) {
    const tag = document.createElement("span");
    tag.className = "badge dry";
    tag.textContent = "dry run";
    status.append(" ", tag);
  }
  const p = job.progress;
  row.append(
    cell(open),
    cell(job.fileName),
    cell(status, "status"),
    cell(p.rowsProcessed.toLocaleString(), "num processed"),
    cell(p.rowsSucceeded.toLocaleString(), "num succeeded"),
    cell(p.rowsFailed.toLocaleString(), "num failed"),
    cell(formatTime(job.createdAt)),
  );
  return row;
}

async function loadJobs(more = false) {
  const errorBox = $("jobs-error");
  clearError(errorBox);
  const query = more && state.jobsCursor ? `&cursor=${encodeURIComponent(state.jobsCursor)}` : "";
  state.jobsRequest += 1;
  const request = state.jobsRequest;
  try {
    const body = await apiJson(`/v1/jobs?limit=20${query}`);
    if (request !== state.jobsRequest) return;
    const rows = $("jobs-rows");
    if (!more) rows.replaceChildren();
    for (const job of body.items) rows.append(jobRow(job));
    state.jobsCursor = body.nextCursor;
    $("jobs-more").hidden = !body.nextCursor;
    $("jobs-empty").hidden = rows.children.length > 0;
  } catch (error) {
    if (state.key) showError(errorBox, error);
  }
}

function updateJobRow(job) {
  const old = document.querySelector(`#jobs-rows tr[data-job-id="${job.jobId}"]`);
  if (old) old.replaceWith(jobRow(job));
}

// --- one job -------------------------------------------------------------------------------

function formatEta(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 1) return "0 s";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const minutes = Math.floor(s / 60);
  if (minutes < 60) return `${minutes} min ${s % 60} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function renderJob(job) {
  const p = job.progress;
  const status = $("job-status");
  status.textContent = job.dryRun ? `${job.status} (dry run)` : job.status;
  status.className = `badge status-${job.status.toLowerCase()}`;
  $("job-file").textContent = job.fileName;
  $("job-processed").textContent = p.rowsProcessed.toLocaleString();
  $("job-succeeded").textContent = p.rowsSucceeded.toLocaleString();
  $("job-failed").textContent = p.rowsFailed.toLocaleString();
  $("job-rate").textContent = p.rowsPerSecond === null ? "-" : p.rowsPerSecond.toLocaleString();
  $("job-eta").textContent = formatEta(p.etaSeconds);
  const bar = $("job-progress");
  bar.value = p.percent;
  bar.setAttribute("aria-valuenow", String(p.percent));
  bar.setAttribute("aria-valuetext", `${p.percent}%, ${p.rowsProcessed} rows processed`);
  $("job-percent").textContent = `${p.percent}%`;
  const failure = $("job-failure");
  failure.hidden = !job.failureReason;
  failure.textContent = job.failureReason ? `Failed: ${job.failureReason}` : "";
  $("job-cancel").disabled = !CANCELLABLE.has(job.status);
  $("job-download").disabled = p.rowsFailed === 0;

  const summary = $("summary-rows");
  summary.replaceChildren();
  for (const entry of job.errorSummary) {
    const row = document.createElement("tr");
    row.dataset.code = String(entry.code);
    row.append(cell(String(entry.code)), cell(entry.name), cell(entry.count.toLocaleString(), "num"));
    summary.append(row);
  }
  $("summary-table").hidden = job.errorSummary.length === 0;
  $("summary-empty").hidden = job.errorSummary.length > 0;

  if (state.lastStatus.get(job.jobId) !== job.status) {
    state.lastStatus.set(job.jobId, job.status);
    announce(TERMINAL.has(job.status)
      ? `Job ${job.jobId} ended ${job.status}: ${p.rowsSucceeded} rows succeeded, ${p.rowsFailed} failed.`
      : `Job ${job.jobId} is ${job.status}.`);
  }
  updateJobRow(job);
}

async function loadRowErrors(jobId) {
  const body = await apiJson(`/v1/jobs/${jobId}/errors?limit=${ROW_ERRORS_SHOWN}`);
  const rows = $("row-errors-rows");
  rows.replaceChildren();
  for (const item of body.items) {
    const row = document.createElement("tr");
    const fields = document.createElement("code");
    fields.textContent = (item.fields || []).join(" | ");
    row.append(
      cell(String(item.rowNumber), "num"),
      cell(String(item.errorCode)),
      cell(item.errorName),
      cell(item.errorMessage),
      cell(fields, "cells"),
    );
    rows.append(row);
  }
  $("row-errors-table").hidden = body.items.length === 0;
  $("row-errors-note").textContent = body.items.length === 0
    ? "(none)"
    : body.nextAfterRow !== null
      ? `(the first ${body.items.length}; the CSV has them all)`
      : "";
}

function stopWatching() {
  if (state.watched) state.watched.controller.abort();
  state.watched = null;
}

async function openJob(jobId) {
  stopWatching();
  const controller = new AbortController();
  state.watched = { jobId, controller };
  const section = $("job");
  section.dataset.jobId = String(jobId);
  section.dataset.transport = "";
  section.dataset.sseEvents = "0";
  section.dataset.done = "";
  $("job-title").textContent = `Job #${jobId}`;
  clearError($("job-error"));
  $("row-errors-rows").replaceChildren();
  $("row-errors-table").hidden = true;
  $("row-errors-note").textContent = "";
  section.hidden = false;
  $("job-title").focus();
  try {
    let job = await follow(jobId, controller.signal);
    if (!job) job = await poll(jobId, controller.signal);
    if (controller.signal.aborted) return;
    renderJob(job);
    await Promise.all([loadRowErrors(jobId), loadJobs()]);
    section.dataset.done = "true";
  } catch (error) {
    if (error.name !== "AbortError" && !controller.signal.aborted) showError($("job-error"), error);
  }
}

/**
 * Follows the job's event stream (fetch, since EventSource cannot send the Authorization header).
 * The final job document once the `end` event came; null when the stream broke before it.
 */
async function follow(jobId, signal) {
  const section = $("job");
  let response;
  try {
    response = await api(`/v1/jobs/${jobId}/events`, { headers: { Accept: "text/event-stream" }, signal });
  } catch (error) {
    if (error.name === "AbortError" || (error instanceof ApiError && [401, 404].includes(error.status))) throw error;
    return null;
  }
  if (!response.body || !(response.headers.get("content-type") || "").startsWith("text/event-stream")) {
    response.body?.cancel().catch(() => {});
    return null;
  }
  section.dataset.transport = "sse";
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let eventName = "";
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      // Another job was opened meanwhile: this stream's news is no longer wanted.
      if (signal.aborted) throw new DOMException("aborted", "AbortError");
      if (done) return null;
      buffer += value;
      // A line ends at CRLF, LF or CR; a CR at the very end may be half of a CRLF still to come.
      const lines = buffer.split(/\r\n|\n|\r(?!$)/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "") {
          if (data.length) {
            const job = JSON.parse(data.join("\n"));
            section.dataset.sseEvents = String(Number(section.dataset.sseEvents) + 1);
            renderJob(job);
            if (eventName === "end") {
              reader.cancel().catch(() => {});
              return job;
            }
          }
          eventName = "";
          data = [];
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let text = colon < 0 ? "" : line.slice(colon + 1);
          if (text.startsWith(" ")) text = text.slice(1);
          if (field === "event") eventName = text;
          else if (field === "data") data.push(text);
        }
      }
    }
  } catch (error) {
    if (signal.aborted) throw error;
    return null; // the stream broke: the caller polls instead
  }
}

/** Polls the job every second until it ends: the fallback when the event stream is not there. */
async function poll(jobId, signal) {
  $("job").dataset.transport = "polling";
  for (;;) {
    const job = await apiJson(`/v1/jobs/${jobId}`, { signal });
    if (signal.aborted) throw new DOMException("aborted", "AbortError");
    renderJob(job);
    if (TERMINAL.has(job.status)) return job;
    await new Promise((resolve, reject) => {
      const timer = window.setTimeout(resolve, POLL_MS);
      signal.addEventListener("abort", () => {
        window.clearTimeout(timer);
        reject(new DOMException("aborted", "AbortError"));
      }, { once: true });
    });
  }
}

async function onCancel() {
  const jobId = Number($("job").dataset.jobId);
  const button = $("job-cancel");
  clearError($("job-error"));
  button.disabled = true;
  try {
    const job = await apiJson(`/v1/jobs/${jobId}/cancel`, { method: "POST" });
    if (job && job.progress) renderJob(job);
    announce(`Cancel asked for job ${jobId}.`);
  } catch (error) {
    showError($("job-error"), error);
    button.disabled = false;
  }
}

async function onDownload() {
  const jobId = Number($("job").dataset.jobId);
  const button = $("job-download");
  clearError($("job-error"));
  button.disabled = true;
  try {
    // A plain link cannot carry the Authorization header: fetch, then save the bytes as they came.
    const blob = await (await api(`/v1/jobs/${jobId}/errors.csv`)).blob();
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;
    link.download = `job-${jobId}-errors.csv`;
    link.hidden = true;
    document.body.append(link);
    link.click();
    link.remove();
    window.setTimeout(() => URL.revokeObjectURL(url), 60_000);
    announce(`Errors of job ${jobId} downloaded.`);
  } catch (error) {
    showError($("job-error"), error);
  } finally {
    button.disabled = false;
  }
}

function onCloseJob() {
  stopWatching();
  $("job").hidden = true;
  const row = document.querySelector(`#jobs-rows tr[data-job-id="${$("job").dataset.jobId}"] button`);
  (row || $("jobs-title")).focus();
}

// --- start ---------------------------------------------------------------------------------

function start() {
  $("sign-in-form").addEventListener("submit", onSignIn);
  $("sign-out").addEventListener("click", () => signOut());
  $("file").addEventListener("change", onFileChosen);
  $("customer-identifier").addEventListener("change", refreshRequiredMarks);
  $("coupon-identifier").addEventListener("change", refreshRequiredMarks);
  $("upload-form").addEventListener("submit", onUpload);
  $("jobs-refresh").addEventListener("click", () => loadJobs());
  $("jobs-more").addEventListener("click", () => loadJobs(true));
  $("job-cancel").addEventListener("click", onCancel);
  $("job-download").addEventListener("click", onDownload);
  $("job-close").addEventListener("click", onCloseJob);

  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) {
    signIn(saved).catch(() => signOut("Your saved API key was refused: sign in again."));
  } else {
    $("api-key").focus();
  }
}

start();
