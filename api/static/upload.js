// The upload form: the chosen file judged by its bytes, its columns mapped, the upload sent once,
// and a banner that follows the job it made until that job ends.

import { apiJson } from "./api.js";
import { $, announce, clearError, fileName, showError } from "./dom.js";
import { plural } from "./format.js";
import { columnsOf, delimiterName } from "./header.js";
import { TERMINAL, openJob } from "./job.js";
import { loadJobs } from "./jobs.js";
import { chosenMapping, refreshRequiredMarks, renderMapping, requiredKeys } from "./mapping.js";
import { identify, refusal, uploadable } from "./sniff.js";

const NO_FILE = "Pick a file to map its columns.";
const BANNER_CLASSES = { COMPLETED: "ok", COMPLETED_WITH_ERRORS: "warn", FAILED: "bad", CANCELLED: "bad" };

let columns = null; // {cells, delimiter, looksLikeHeader} of the chosen file, when it is a CSV
let choosing = 0; // the latest file choice: an older one's late reading is dropped
// One Idempotency-Key per state of the form: sent again unchanged (a retry after the answer was
// lost), the form gets the job it already made; any change makes it a new request.
let requestKey = null;
let uploaded = null; // {jobId, fileName} of the upload the banner follows
let sending = false;
let refused = false; // the chosen file is not one the page uploads

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

function showColumns(file) {
  const info = $("file-info");
  const { cells, delimiter, looksLikeHeader } = columns;
  const shape = `${plural(cells.length, "column")}, ${delimiterName(delimiter)}-separated, `
    + (looksLikeHeader ? "with a header row." : "no header row (its first line is data).");
  info.replaceChildren(fileName(file.name), `: ${shape}`);
}

/** Upload is offered unless an upload is on its way or the chosen file is refused. */
function offerUpload() {
  $("upload-button").disabled = sending || refused;
}

function refuseFile(file, kind) {
  const info = $("file-info");
  info.replaceChildren(fileName(file.name), ` ${refusal(kind)}`);
  info.classList.add("refused");
  refused = true;
  offerUpload();
}

export async function onFileChosen() {
  const file = $("file").files[0];
  const info = $("file-info");
  choosing += 1;
  const choice = choosing;
  columns = null;
  info.classList.remove("refused");
  refused = false;
  offerUpload();
  if (file) dropBanner();
  if (!file) {
    info.textContent = NO_FILE;
    renderMapping(null);
    return;
  }
  let seen;
  try {
    seen = await identify(file);
  } catch {
    seen = null;
  }
  if (choice !== choosing) return;
  if (seen === null) {
    info.replaceChildren(fileName(file.name), " could not be read.");
  } else if (!uploadable(seen.kind)) {
    refuseFile(file, seen.kind);
  } else {
    columns = columnsOf(seen.head);
    showColumns(file);
  }
  renderMapping(columns);
}

export function onIdentifierChanged() {
  if (columns) refreshRequiredMarks(columns);
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
  columns = null;
  requestKey = null;
  $("details").value = "";
  $("file-info").textContent = NO_FILE;
  renderMapping(null);
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
  if (!file || !columns) {
    showError(errorBox, new Error("Pick a CSV file."));
    $("file").focus();
    return;
  }
  const mapping = chosenMapping();
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
  form.append("delimiter", columns.delimiter === "\t" ? "tab" : columns.delimiter);
  const details = $("details").value.trim();
  if (details) form.append("details", details);
  if ($("dry-run").checked) form.append("dryRun", "true");
  form.append("file", file, file.name);
  requestKey ??= newRequestKey();

  const button = $("upload-button");
  sending = true;
  offerUpload();
  button.textContent = "Uploading…";
  try {
    const body = await apiJson(`/coupon/api/v1/upload/redeemFile/${encodeURIComponent(seriesId)}`, {
      method: "POST",
      body: form,
      headers: { "Idempotency-Key": requestKey },
    });
    const jobId = body.result.redeemUploadJobStatuses[0].jobId;
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
