// The columns fieldset: for each value the service reads, the file's column that holds it. The
// service's preview says which column each value's header suggests and which values the chosen
// identifiers make required: the page keeps no rule of its own for either.

import { $ } from "./dom.js";

// UI text only: what each key holds, in the order a person fills them in.
const DESCRIPTIONS = [
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

const selects = () => [...document.querySelectorAll("#mapping-rows select")];

/** The keys offered: the described ones, then any the service names that the page does not. */
function keysOf(preview) {
  const keys = new Map(DESCRIPTIONS);
  const named = [...Object.keys(preview.suggestedUploadHeaders || {}), ...(preview.requiredKeys || [])];
  for (const key of named) if (!keys.has(key)) keys.set(key, "");
  return keys;
}

// A file without a header row has columns by number only (the service names them column0, ...).
function optionText(columns, cellText, index) {
  return columns.hasHeader ? `${index + 1}: ${cellText || "(no name)"}` : `column ${index + 1}`;
}

/**
 * One dropdown per key over the file's columns, each preselected as the preview suggests;
 * hidden when there is no file to map. `columns` is {cells, hasHeader}.
 */
export function renderMapping(columns, preview) {
  const body = $("mapping-rows");
  body.replaceChildren();
  if (!columns) {
    $("mapping").hidden = true;
    return;
  }
  const suggested = preview.suggestedUploadHeaders || {};
  for (const [key, description] of keysOf(preview)) {
    const row = document.createElement("tr");
    const labelCell = document.createElement("td");
    const label = document.createElement("label");
    label.htmlFor = `map-${key}`;
    const name = document.createElement("code");
    name.textContent = key;
    const tag = document.createElement("span");
    tag.className = "required";
    tag.textContent = " (required)";
    label.append(name, description ? ` ${description}` : "", tag);
    labelCell.append(label);

    const selectCell = document.createElement("td");
    const select = document.createElement("select");
    select.id = `map-${key}`;
    select.dataset.key = key;
    select.append(new Option("not mapped", ""));
    columns.cells.forEach((cellText, index) => {
      select.append(new Option(optionText(columns, cellText, index), String(index)));
    });
    select.value = key in suggested ? String(suggested[key]) : "";
    selectCell.append(select);
    row.append(labelCell, selectCell);
    body.append(row);
  }
  markRequired(preview.requiredKeys || []);
  $("mapping").hidden = false;
}

/** Marks the keys the service requires for the chosen identifiers; the choices made stay. */
export function markRequired(required) {
  const wanted = new Set(required);
  for (const select of selects()) {
    const key = select.dataset.key;
    select.required = wanted.has(key);
    select.closest("tr").querySelector(".required").hidden = !wanted.has(key);
  }
}

/** The `uploadHeaders` object: each mapped key and its column's index. */
export function chosenMapping() {
  const mapping = {};
  for (const select of selects()) {
    if (select.value !== "") mapping[select.dataset.key] = Number(select.value);
  }
  return mapping;
}

/** The required keys that have no column yet, in the form's order. */
export function unmappedRequired() {
  return selects().filter((s) => s.required && s.value === "").map((s) => s.dataset.key);
}
