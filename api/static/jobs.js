// The jobs list: newest first, a page at a time, each row opening its job.

import { apiJson } from "./api.js";
import { $, cell, clearError, fileName, showError } from "./dom.js";
import { time, whole } from "./format.js";
import { seriesLabel } from "./series.js";

const PAGE = 20;

let cursor = null;
let latest = 0; // the latest list request: an older answer arriving late is dropped
let open = () => {};

/** What a row's job button does (the job view, which itself refreshes this list). */
export function whenJobChosen(callback) {
  open = callback;
}

function statusBadge(status) {
  const badge = document.createElement("span");
  badge.className = `badge status-${status.toLowerCase()}`;
  badge.textContent = status;
  return badge;
}

function jobRow(job) {
  const row = document.createElement("tr");
  row.dataset.jobId = String(job.jobId);
  const button = document.createElement("button");
  button.type = "button";
  button.className = "link";
  button.textContent = `#${job.jobId}`;
  button.setAttribute("aria-label", `Open job ${job.jobId}`);
  button.addEventListener("click", () => open(job.jobId));
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
    cell(button, "job", "Job"),
    cell(fileName(job.fileName), "file", "File"),
    cell(seriesLabel(job.couponSeriesId), "series", "Series"),
    cell(status, "status", "Status"),
    cell(whole(p.rowsProcessed), "num processed", "Processed"),
    cell(whole(p.rowsSucceeded), "num succeeded", "Succeeded"),
    cell(whole(p.rowsFailed), "num failed", "Failed"),
    cell(time(job.createdAt), "created", "Created"),
  );
  return row;
}

/** The first page again, or (`more`) the page after the last one shown. */
export async function loadJobs(more = false) {
  const errorBox = $("jobs-error");
  clearError(errorBox);
  const query = more && cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
  latest += 1;
  const request = latest;
  try {
    const body = await apiJson(`/v1/jobs?limit=${PAGE}${query}`);
    if (request !== latest) return;
    const rows = $("jobs-rows");
    if (!more) rows.replaceChildren();
    for (const job of body.items) rows.append(jobRow(job));
    cursor = body.nextCursor;
    $("jobs-more").hidden = !body.nextCursor;
    $("jobs-empty").hidden = rows.children.length > 0;
  } catch (error) {
    if (request === latest && error.status !== 401) showError(errorBox, error);
  }
}

/** Redraws the job's row, where the list shows it, from a newer document. */
export function updateJobRow(job) {
  const old = document.querySelector(`#jobs-rows tr[data-job-id="${job.jobId}"]`);
  if (old) old.replaceWith(jobRow(job));
}

export function clearJobs() {
  latest += 1; // an answer still on its way is for the key that signed out
  cursor = null;
  $("jobs-rows").replaceChildren();
  $("jobs-more").hidden = true;
}

/** The row's button of the job, to put the focus back on. */
export function jobButton(jobId) {
  return document.querySelector(`#jobs-rows tr[data-job-id="${jobId}"] button`);
}
