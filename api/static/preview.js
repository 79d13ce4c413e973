// The preview: what the service makes of the chosen file before anything is uploaded. The file's
// start goes to POST /v1/uploads/preview with the form's choices, and its first records are shown
// as the service will read them, each with the row error it would get: a swapped mapping is
// seen here, not in a job's errors.

import { apiJson } from "./api.js";
import { $, cell, clearError, showError } from "./dom.js";
import { plural } from "./format.js";

// The service reads no more of a file for its preview (core/uploads/preview.py's
// PREVIEW_BYTES, DESIGN.md): the rest is not sent.
const PREVIEW_BYTES = 256 * 1024;

/**
 * The service's preview of `file` with the form's series and identifiers, judged with
 * `mapping` (the `uploadHeaders` object), or with the service's suggestion when it is null.
 */
export function askPreview(file, mapping, signal) {
  const form = new FormData();
  form.append("customerIdentifier", $("customer-identifier").value);
  form.append("couponIdentifier", $("coupon-identifier").value);
  if (mapping) form.append("uploadHeaders", JSON.stringify(mapping));
  // Last: the service stops reading at the file's 256 KiB, so nothing may come after it.
  form.append("file", file.slice(0, PREVIEW_BYTES), file.name);
  // Without a series the records get the checks that need none (no look-ups).
  const seriesId = $("series").value;
  const query = seriesId ? `?couponSeriesId=${encodeURIComponent(seriesId)}` : "";
  return apiJson(`/v1/uploads/preview${query}`, { method: "POST", body: form, signal });
}

// A record that would fail has its error's code; one the service could not judge (the mapping
// lacks a required key) has none, and says so in its message.
const fails = (record) => record.errorCode !== null && record.errorCode !== undefined;

/** The keys the records carry, in the order they first appear. */
function keysOf(records) {
  const keys = [];
  for (const record of records) {
    for (const key of Object.keys(record.values || {})) if (!keys.includes(key)) keys.push(key);
  }
  return keys;
}

function headCell(text, className) {
  const th = document.createElement("th");
  th.scope = "col";
  if (className) th.className = className;
  th.textContent = text;
  return th;
}

/** "The first 5 records: 3 would apply, 2 would fail." */
function summary(records, missing) {
  if (records.length === 0) return "The file's start holds no data record.";
  const first = `The first ${plural(records.length, "record")}`;
  if (missing.length) return `${first}, not judged: choose a column for ${missing.join(", ")}.`;
  const failing = records.filter(fails).length;
  return `${first}: ${records.length - failing} would apply, ${failing} would fail.`;
}

/** Shows the preview's records: each mapped key's value and the row error it would get. */
export function showRecords(preview) {
  clearError($("preview-error"));
  const records = preview.records || [];
  const missing = preview.missingKeys || [];
  const keys = keysOf(records);
  const head = $("preview-head");
  head.replaceChildren(
    headCell("Row", "num"),
    ...keys.map((key) => headCell(key)),
    headCell("Code"),
    headCell("Name"),
    headCell("Message"),
  );
  const body = $("preview-rows");
  body.replaceChildren();
  for (const record of records) {
    const row = document.createElement("tr");
    row.dataset.rowNumber = String(record.rowNumber);
    row.className = fails(record) ? "fails" : missing.length ? "unjudged" : "applies";
    row.append(cell(String(record.rowNumber), "num", "Row"));
    for (const key of keys) row.append(cell(record.values?.[key] ?? "", "value", key));
    row.append(
      cell(fails(record) ? String(record.errorCode) : "", "code", "Code"),
      cell(record.errorName ?? "", "name", "Name"),
      cell(record.errorMessage ?? "would apply", "message", "Message"),
    );
    body.append(row);
  }
  $("preview-table").hidden = records.length === 0;
  $("preview-note").textContent = summary(records, missing);
  $("preview").hidden = false;
}

/** The service refused to preview the form as it is: its reason, in place of the records. */
export function showRefusal(error) {
  $("preview-table").hidden = true;
  $("preview-rows").replaceChildren();
  $("preview-note").textContent = "";
  showError($("preview-error"), error);
  $("preview").hidden = false;
}

export function hidePreview() {
  $("preview").hidden = true;
  $("preview-rows").replaceChildren();
  $("preview-note").textContent = "";
  clearError($("preview-error"));
}
