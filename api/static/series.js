// The org's coupon series: the upload form's dropdown, and their names for the jobs list.

import { apiJson } from "./api.js";
import { $ } from "./dom.js";

const names = new Map(); // series id -> name

/** "Diwali 2020 (#42)", or "#42" for a series the dropdown does not hold. */
export function seriesLabel(id) {
  return names.has(id) ? `${names.get(id)} (#${id})` : `#${id}`;
}

export function forgetSeries() {
  names.clear();
}

export async function loadSeries() {
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
  names.clear();
  if (!items.length) {
    const option = new Option("No coupon series in this org", "");
    option.disabled = true;
    select.append(option);
    return;
  }
  for (const series of items) {
    names.set(series.id, series.name);
    select.append(new Option(`${series.name} (#${series.id})`, String(series.id)));
  }
}
