// One job, followed live: its event stream, or polling where the stream is not there; its
// errors by code and first failed rows; cancel; revert; the errors report as the API names it.

import { ApiError, api, apiJson } from "./api.js";
import { $, announce, cell, clearError, fileName, showError } from "./dom.js";
import { saveResponse } from "./download.js";
import { eta, whole } from "./format.js";
import { jobButton, loadJobs, updateJobRow } from "./jobs.js";
import { serverEvents } from "./sse.js";

export const TERMINAL = new Set(["COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED"]);
const CANCELLABLE = new Set(["QUEUED", "RUNNING"]);
const ROW_ERRORS_SHOWN = 50;
const POLL_MS = 1000;

let watched = null; // {jobId, controller}
const lastStatus = new Map(); // jobId -> status last announced
const listeners = [];

/**
 * Calls `listener(jobId, job)` with each newer document of the job on view, and with
 * `(jobId, null)` once the view stops following it.
 */
export function onJobNews(listener) {
  listeners.push(listener);
}

const tell = (jobId, job) => listeners.forEach((listener) => listener(jobId, job));

function renderJob(job) {
  const p = job.progress;
  const status = $("job-status");
  status.textContent = job.dryRun ? `${job.status} (dry run)` : job.status;
  status.className = `badge status-${job.status.toLowerCase()}`;
  $("job-file").replaceChildren(fileName(job.fileName));
  $("job-processed").textContent = whole(p.rowsProcessed);
  $("job-succeeded").textContent = whole(p.rowsSucceeded);
  $("job-failed").textContent = whole(p.rowsFailed);
  $("job-rate").textContent = p.rowsPerSecond === null ? "-" : whole(p.rowsPerSecond);
  $("job-eta").textContent = eta(p.etaSeconds);
  const bar = $("job-progress");
  bar.value = p.percent;
  bar.setAttribute("aria-valuenow", String(p.percent));
  bar.setAttribute("aria-valuetext", `${p.percent}%, ${p.rowsProcessed} rows processed`);
  $("job-percent").textContent = `${p.percent}%`;
  const failure = $("job-failure");
  failure.hidden = !job.failureReason;
  failure.textContent = job.failureReason ? `Failed: ${job.failureReason}` : "";
  $("job-cancel").disabled = !CANCELLABLE.has(job.status) || job.kind === "REVERT";
  // A revert undoes an import that has ended and applied rows, once (the API says why not).
  $("job-revert").hidden = job.kind === "REVERT" || job.dryRun;
  $("job-revert").disabled = !TERMINAL.has(job.status) || p.rowsSucceeded === 0
    || Boolean(job.revertedByJobId);
  $("job-download").disabled = p.rowsFailed === 0;
  $("job-download-successes").disabled = p.rowsSucceeded === 0;

  const summary = $("summary-rows");
  summary.replaceChildren();
  for (const entry of job.errorSummary) {
    const row = document.createElement("tr");
    row.dataset.code = String(entry.code);
    row.append(cell(String(entry.code)), cell(entry.name), cell(whole(entry.count), "num"));
    summary.append(row);
  }
  $("summary-table").hidden = job.errorSummary.length === 0;
  $("summary-empty").hidden = job.errorSummary.length > 0;

  if (lastStatus.get(job.jobId) !== job.status) {
    lastStatus.set(job.jobId, job.status);
    announce(TERMINAL.has(job.status)
      ? `Job ${job.jobId} ended ${job.status}: ${p.rowsSucceeded} rows succeeded, ${p.rowsFailed} failed.`
      : `Job ${job.jobId} is ${job.status}.`);
  }
  updateJobRow(job);
  tell(job.jobId, job);
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
      cell(String(item.rowNumber), "num", "Row"),
      cell(String(item.errorCode), "", "Code"),
      cell(item.errorName, "", "Name"),
      cell(item.errorMessage, "", "Message"),
      cell(fields, "cells", "Cells"),
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

export function stopWatching() {
  if (watched) {
    watched.controller.abort();
    tell(watched.jobId, null);
  }
  watched = null;
}

/** Forgets what was announced: a new session hears each job's status afresh. */
export function forgetJobs() {
  lastStatus.clear();
}

export async function openJob(jobId) {
  stopWatching();
  const controller = new AbortController();
  watched = { jobId, controller };
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

const aborted = () => new DOMException("aborted", "AbortError");

/** The final job document once the stream's `end` event came; null when it broke before. */
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
  try {
    for await (const { event, data } of serverEvents(response.body)) {
      // Another job was opened meanwhile: this stream's news is no longer wanted.
      if (signal.aborted) throw aborted();
      const job = JSON.parse(data);
      section.dataset.sseEvents = String(Number(section.dataset.sseEvents) + 1);
      renderJob(job);
      if (event === "end") return job;
    }
  } catch (error) {
    if (signal.aborted) throw error;
  }
  return null; // the stream broke: the caller polls instead
}

/** Polls the job every second until it ends: the fallback when the event stream is not there. */
async function poll(jobId, signal) {
  $("job").dataset.transport = "polling";
  for (;;) {
    const job = await apiJson(`/v1/jobs/${jobId}`, { signal });
    if (signal.aborted) throw aborted();
    renderJob(job);
    if (TERMINAL.has(job.status)) return job;
    await new Promise((resolve, reject) => {
      const timer = window.setTimeout(resolve, POLL_MS);
      signal.addEventListener("abort", () => {
        window.clearTimeout(timer);
        reject(aborted());
      }, { once: true });
    });
  }
}

/**
 * Runs `work(jobId)` for the job on view with `buttonId`'s button held down meanwhile; a refusal
 * is shown in the job's error box and gives the button back.
 */
async function withJobButton(buttonId, work) {
  const jobId = Number($("job").dataset.jobId);
  const button = $(buttonId);
  clearError($("job-error"));
  button.disabled = true;
  try {
    await work(jobId);
  } catch (error) {
    showError($("job-error"), error);
    button.disabled = false;
  }
}

export async function onCancel() {
  // Once asked, the button stays as the job's status says (renderJob): a job may end meanwhile.
  await withJobButton("job-cancel", async (jobId) => {
    const job = await apiJson(`/v1/jobs/${jobId}/cancel`, { method: "POST" });
    if (job && job.progress) renderJob(job);
    announce(`Cancel asked for job ${jobId}.`);
  });
}

export async function onRevert() {
  const jobId = Number($("job").dataset.jobId);
  const applied = $("job-succeeded").textContent;
  const question = `Revert job ${jobId}? Its ${applied} applied redemptions are removed (and kept`
    + " in an archive), the coupons can be redeemed again, and this cannot be cancelled.";
  if (!window.confirm(question)) return;
  await withJobButton("job-revert", async (importId) => {
    const revert = await apiJson(`/v1/jobs/${importId}/revert`, { method: "POST" });
    announce(`Job ${revert.jobId} reverts job ${importId}.`);
    await openJob(revert.jobId);
  });
}

/** Saves one of the job's reports (`errors.csv`, `successes.csv`) as the API names it. */
async function downloadReport(buttonId, report, what) {
  await withJobButton(buttonId, async (jobId) => {
    // A plain link cannot carry the Authorization header: fetch, then save the bytes as they came.
    const response = await api(`/v1/jobs/${jobId}/${report}`);
    const name = await saveResponse(response, `job-${jobId}-${report}`);
    announce(`${what} of job ${jobId} downloaded as ${name}.`);
  });
  $(buttonId).disabled = false; // the report may be fetched again
}

export const onDownload = () => downloadReport("job-download", "errors.csv", "Errors");
export const onDownloadSuccesses = () =>
  downloadReport("job-download-successes", "successes.csv", "Applied rows");

export function closeJob() {
  const jobId = $("job").dataset.jobId;
  stopWatching();
  $("job").hidden = true;
  (jobButton(jobId) || $("jobs-title")).focus();
}
