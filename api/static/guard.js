// The upload's guard: the max-error-rate field, pre-filled with the org's defaultMaxErrorRate
// (GET /v1/org) so that the user sees, before sending, at what share of failed rows the job
// will stop. The service judges the value (0.05 or 5%); an empty field sends nothing, and the
// org's default, if any, still applies.

import { apiJson } from "./api.js";
import { $ } from "./dom.js";

/** 0.05 as "5%", 0.125 as "12.5%": in the service's own syntax, never the locale's "5 %". */
function percent(rate) {
  return `${Number((rate * 100).toPrecision(4))}%`;
}

let orgDefault = null; // the org's defaultMaxErrorRate, a share, or null

function describe() {
  const help = $("max-error-rate-help");
  const stops = "The job stops, FAILED, when more than this share of its rows fail; its first "
    + "chunk is judged before anything is applied.";
  const fallback = orgDefault === null
    ? "Empty: no guard (the org has no default)."
    : `Empty: the org's default, ${percent(orgDefault)}.`;
  help.textContent = `${stops} ${fallback}`;
}

/** Reads the org's default into the field (after sign-in). */
export async function loadGuard() {
  const org = await apiJson("/v1/org");
  orgDefault = org.defaultMaxErrorRate ?? null;
  $("max-error-rate").value = orgDefault === null ? "" : percent(orgDefault);
  describe();
}

export function forgetGuard() {
  orgDefault = null;
  $("max-error-rate").value = "";
  describe();
}

/** The field as typed, for the form's maxErrorRate; null when empty. */
export function chosenRate() {
  const value = $("max-error-rate").value.trim();
  return value === "" ? null : value;
}
