// Signing in with an API key (kept in this tab's session storage) and signing out.

import { ApiError, api, useKey } from "./api.js";
import { $, announce, clearError, showError } from "./dom.js";
import { forgetGuard, loadGuard } from "./guard.js";
import { forgetJobs, stopWatching } from "./job.js";
import { clearJobs, loadJobs } from "./jobs.js";
import { forgetSeries, loadSeries } from "./series.js";
import { dropBanner } from "./upload.js";

const KEY_STORAGE = "bulkredeem.apiKey";

let signedIn = false;

async function signIn(key) {
  useKey(key);
  // Any authenticated read proves the key; the series are needed next anyway.
  await api("/v1/coupon-series?limit=1");
  sessionStorage.setItem(KEY_STORAGE, key);
  signedIn = true;
  $("sign-in").hidden = true;
  $("workspace").hidden = false;
  $("session").hidden = false;
  $("session-label").textContent = `Signed in with key ${key.slice(0, 8)}…`;
  // The series first: the jobs list names each job's series.
  await loadSeries();
  await loadGuard();
  await loadJobs();
}

export function signOut(message) {
  stopWatching();
  useKey(null);
  signedIn = false;
  forgetJobs();
  forgetSeries();
  forgetGuard();
  sessionStorage.removeItem(KEY_STORAGE);
  $("workspace").hidden = true;
  $("session").hidden = true;
  $("job").hidden = true;
  $("sign-in").hidden = false;
  $("api-key").value = "";
  clearJobs();
  dropBanner();
  if (message) {
    showError($("sign-in-error"), new Error(message));
  } else {
    clearError($("sign-in-error"));
  }
  $("api-key").focus();
  announce(message || "Signed out.");
}

export async function onSignIn(event) {
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
    useKey(null);
    const shown = error instanceof ApiError && error.status === 401
      ? new ApiError(401, { ...error.body, status: { message: `This API key was refused: ${error.message}` } })
      : error;
    showError(errorBox, shown);
    $("api-key").focus();
  } finally {
    $("sign-in-button").disabled = false;
  }
}

/** A key revoked while signed in: back to the sign-in form, saying why. */
export function onKeyRefused() {
  if (signedIn) signOut("Your API key was refused: sign in again.");
}

/** Signs in again with the key this tab kept; true when there was one to try. */
export function resumeSession() {
  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (!saved) return false;
  signIn(saved).catch(() => signOut("Your saved API key was refused: sign in again."));
  return true;
}
