// The upload form: the chosen file previewed by the service (what it is, its columns mapped as the
// service suggests, its first records judged), the upload sent once, and a banner that follows
// the job it made until that job ends.

import { ApiError, apiJson } from "./api.js";
import { $, announce, clearError, fileName, showError } from "./dom.js";
import { delimiterName, plural } from "./format.js";
import { chosenRate } from "./guard.js";
import { TERMINAL, openJob } from "./job.js";
import { loadJobs } from "./jobs.js";
import { chosenMapping, markRequired, renderMapping, unmappedRequired } from "./mapping.js";
import { askPreview, hidePreview, showRecords, showRefusal } from "./preview.js";

const NO_FILE = "Pick a file to map its columns.";
const BANNER_CLASSES = { COMPLETED: "ok", COMPLETED_WITH_ERRORS: "warn", FAILED: "bad", CANCELLED: "bad" };
// What a file other than plain CSV is, where the service reads it.
const FORMAT_NAMES = { gzip: "a gzip-compressed CSV", xlsx: "an Excel workbook (XLSX)" };
const FILE_REFUSALS = new Set([400, 413, 415]);
// How the service's refusals of a file begin (core/formats.py, core/uploads/form.py).
const THE_FILE = "the file";
// A change to the mapping or identifiers is previewed once the user pauses, not at each click.
const SETTLE_MS = 300;

// The chosen file once the service previewed it: {file, columns: {cells, delimiter, hasHeader}}.
let chosen = null;
let asking = 0; // the latest preview asked: an older one's late answer is dropped
let inFlight = null; // its AbortController
let settling = null; // the timer of a preview still to ask
// One Idempotency-Key per state of the form: sent again unchanged (a retry after the answer was
// lost), the form gets the job it already made; any change makes it a new request.
let requestKey = null;
let uploaded = null; // {jobId, fileName} of the upload the banner follows
let sending = false;
let refused = false; // the service will not read the chosen file

function newRequestKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs HTTPS; this does not
  return `web-${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

function banner(parts, tone = "ok") {
  const box = $("upload-result");
  box.replaceChildren(...parts);
  box.className = `notice ${tone}`;
}

/** Takes the banner down: another job is on view, the user signed out or picks a new file. */
export function dropBanner() {
  uploaded = null;
  banner([]);
}

/** Keeps the banner in step with the uploaded job (a listener of the job view's news). */
export function followUpload(jobId, job) {
  if (!uploaded || uploaded.jobId !== jobId) return;
  if (job === null) {
    dropBanner();
    return;
  }
  const name = uploaded.fileName;
  if (!TERMINAL.has(job.status)) {
    banner(["Uploaded ", fileName(name), `: job #${jobId} is ${job.status.toLowerCase()}.`]);
    return;
  }
  const p = job.progress;
  const rows = `${plural(p.rowsSucceeded, "row")} succeeded, ${p.rowsFailed} failed`;
  const ended = `) ended ${job.status}${job.dryRun ? " (dry run)" : ""}: ${rows}.`;
  banner([`Job #${jobId} (`, fileName(name), ended], BANNER_CLASSES[job.status]);
}

/** What the service read: "redeemed.csv: 6 columns, comma-separated, with a header row." */
function showColumns(file, preview) {
  const { cells, delimiter, hasHeader } = chosen.columns;
  const format = FORMAT_NAMES[preview.format] ? `${FORMAT_NAMES[preview.format]}, ` : "";
  // UTF-8 goes without saying; another encoding the service found (a BOM's) is told.
  const encoding = preview.encoding && preview.encoding !== "utf-8"
    ? `${preview.encoding.toUpperCase()} text, `
    : "";
  const what = `${format}${encoding}`;
  const shape = `${what}${plural(cells.length, "column")}, ${delimiterName(delimiter)}-separated, `
    + (hasHeader ? "with a header row." : "no header row (its first line is data).");
  $("file-info").replaceChildren(fileName(file.name), `: ${shape}`);
}

/** Upload is offered unless an upload is on its way or the chosen file is refused. */
function offerUpload() {
  $("upload-button").disabled = sending || refused;
}

/**
 * The service's reason for not reading the file (what it is, what to do), told of the file by
 * its name: "book.xlsx is an Excel workbook (XLSX), ...".
 */
function refuseFile(file, error) {
  const info = $("file-info");
  const { message } = error;
  const ofTheFile = message.startsWith(THE_FILE) ? message.slice(THE_FILE.length) : `: ${message}`;
  info.replaceChildren(fileName(file.name), ofTheFile);
  info.classList.add("refused");
  // The file itself is refused (its format, empty, too big): another one must be chosen.
  refused = error instanceof ApiError && FILE_REFUSALS.has(error.status);
  offerUpload();
}

/**
 * The preview of `file` judged with `mapping` (null: the service's suggestion), as {preview}
 * or {error}; null when a later question made this one's answer moot.
 */
async function ask(file, mapping) {
  inFlight?.abort();
  const controller = new AbortController();
  inFlight = controller;
  asking += 1;
  const mine = asking;
  try {
    const preview = await askPreview(file, mapping, controller.signal);
    return mine === asking ? { preview } : null;
  } catch (error) {
    // A refused key signs the page out (api.js): nothing to show here.
    if (mine !== asking || error.name === "AbortError" || error.status === 401) return null;
    return { error };
  }
}

function forgetFile() {
  window.clearTimeout(settling);
  inFlight?.abort();
  asking += 1;
  chosen = null;
  renderMapping(null);
  hidePreview();
}

export async function onFileChosen() {
  const file = $("file").files[0];
  const info = $("file-info");
  forgetFile();
  info.classList.remove("refused");
  refused = false;
  offerUpload();
  if (!file) {
    info.textContent = NO_FILE;
    return;
  }
  dropBanner();
  info.replaceChildren(fileName(file.name), ": reading…");
  const answer = await ask(file, null);
  if (answer === null) return;
  if (answer.error) {
    refuseFile(file, answer.error);
    return;
  }
  const { preview } = answer;
  chosen = {
    file,
    columns: { cells: preview.header || [], delimiter: preview.delimiter, hasHeader: preview.hasHeader },
  };
  showColumns(file, preview);
  renderMapping(chosen.columns, preview);
  showRecords(preview);
}

/** The records judged again with the form's mapping and identifiers as they now stand. */
async function judgeAgain() {
  if (!chosen) return;
  const { file } = chosen;
  const answer = await ask(file, chosenMapping());
  if (answer === null || chosen?.file !== file) return;
  if (answer.preview) {
    markRequired(answer.preview.requiredKeys || []);
    showRecords(answer.preview);
    return;
  }
  showRefusal(answer.error);
  // The required marks follow the identifiers even while the mapping is refused (a new
  // identifier's column not chosen yet): the service's suggestion names them.
  const suggested = await ask(file, null);
  if (suggested?.preview && chosen?.file === file) markRequired(suggested.preview.requiredKeys || []);
}

/** The series, an identifier or a column changed: the preview follows once the user pauses. */
export function onChoicesChanged() {
  if (!chosen) return;
  window.clearTimeout(settling);
  settling = window.setTimeout(judgeAgain, SETTLE_MS);
}

/** Any change to the form makes the next upload a new request. */
export function onFormChanged() {
  requestKey = null;
}

/**
 * Empties what would send the same file again; the series and identifiers stay for the next.
 * A file chosen while the upload was on its way is the next one: it stays.
 */
function clearSentFile(sent) {
  if ($("file").files[0] !== sent) return;
  $("file").value = "";
  forgetFile();
  requestKey = null;
  $("details").value = "";
  $("file-info").textContent = NO_FILE;
}

export async function onUpload(event) {
  event.preventDefault();
  const errorBox = $("upload-error");
  clearError(errorBox);
  const seriesId = $("series").value;
  const file = $("file").files[0];
  if (!seriesId) {
    showError(errorBox, new Error("Pick a coupon series."));
    $("series").focus();
    return;
  }
  if (!file || chosen?.file !== file) {
    showError(errorBox, new Error("Pick a CSV file."));
    $("file").focus();
    return;
  }
  const mapping = chosenMapping();
  const missing = unmappedRequired();
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
  const { delimiter } = chosen.columns;
  form.append("delimiter", delimiter === "\t" ? "tab" : delimiter);
  const details = $("details").value.trim();
  if (details) form.append("details", details);
  if ($("dry-run").checked) form.append("dryRun", "true");
  const rate = chosenRate();
  if (rate !== null) form.append("maxErrorRate", rate);
  form.append("file", file, file.name);
  requestKey ??= newRequestKey();

  const button = $("upload-button");
  sending = true;
  offerUpload();
  button.textContent = "Uploading…";
  try {
    const body = await apiJson(`/v1/jobs?couponSeriesId=${encodeURIComponent(seriesId)}`, {
      method: "POST",
      body: form,
      headers: { "Idempotency-Key": requestKey },
    });
    const { jobId } = body; // the job document (202)
    clearSentFile(file);
    loadJobs();
    openJob(jobId); // drops the banner of an earlier upload, whose job leaves the view
    uploaded = { jobId, fileName: file.name };
    banner(["Uploaded ", fileName(file.name), `: job #${jobId} is queued.`]);
  } catch (error) {
    showError(errorBox, error);
    announce(`Upload refused: ${error.message}`);
  } finally {
    sending = false;
    offerUpload();
    button.textContent = "Upload";
  }
}
