// The columns fieldset: for each value the service reads, the file's column that holds it,
// preselected where a header cell carries the value's name.

import { $ } from "./dom.js";

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

const normalise = (name) => name.replace(/\s+/g, "").toLowerCase();

/** The keys the chosen identifiers make mandatory (DESIGN.md). */
export function requiredKeys() {
  return new Set([
    "redeemedDateInMillis",
    "redeemedAt",
    CUSTOMER_KEY[$("customer-identifier").value],
    COUPON_KEY[$("coupon-identifier").value],
  ]);
}

/** One dropdown per key over the file's columns; hidden when there is no file to map. */
export function renderMapping(columns) {
  const body = $("mapping-rows");
  body.replaceChildren();
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

/** Redraws the required marks when the identifiers change, keeping the choices made so far. */
export function refreshRequiredMarks(columns) {
  const chosen = new Map([...document.querySelectorAll("#mapping-rows select")].map((s) => [s.id, s.value]));
  renderMapping(columns);
  for (const [id, value] of chosen) $(id).value = value;
}

/** The `uploadHeaders` object: each mapped key and its column's index. */
export function chosenMapping() {
  const mapping = {};
  for (const select of document.querySelectorAll("#mapping-rows select")) {
    if (select.value !== "") mapping[select.dataset.key] = Number(select.value);
  }
  return mapping;
}
