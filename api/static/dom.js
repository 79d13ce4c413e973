// Small pieces of the page shared by every part: lookups, error boxes, the screen reader's
// announcer, table cells, file names. Text from a file or the API only ever goes in as text.

import { ApiError } from "./api.js";
import { nameSegments } from "./format.js";

export const $ = (id) => document.getElementById(id);

/** Shows the API's error envelope: its message, then each field's problem. */
export function showError(element, error) {
  element.replaceChildren();
  const message = document.createElement("p");
  message.className = "error-message";
  const status = error instanceof ApiError && error.status ? ` (${error.status})` : "";
  message.textContent = `${error.message}${status}`;
  element.append(message);
  const problems = error instanceof ApiError ? error.body?.errors || [] : [];
  const shown = problems.filter((p) => p && (p.field || p.message));
  if (shown.length) {
    const list = document.createElement("ul");
    for (const problem of shown) {
      const item = document.createElement("li");
      if (problem.field) {
        const field = document.createElement("code");
        field.textContent = problem.field;
        item.append(field, `: ${problem.message}`);
      } else {
        item.textContent = problem.message;
      }
      list.append(item);
    }
    element.append(list);
  }
  element.hidden = false;
}

export function clearError(element) {
  element.hidden = true;
  element.replaceChildren();
}

export function announce(text) {
  const announcer = $("announcer");
  // Emptied first so that the same text said twice is read twice.
  announcer.textContent = "";
  window.setTimeout(() => { announcer.textContent = text; }, 50);
}

/** A table cell; `label` names its column where a narrow screen shows rows as cards. */
export function cell(content, className, label) {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (label) td.dataset.label = label;
  if (content instanceof Node) td.append(content);
  else td.textContent = content ?? "";
  return td;
}

/**
 * A file name that wraps only after `_`, `-`, `.` or a space, never inside a word: a <wbr> marks
 * each place, and app.css forbids any other. A piece too long for its box ends in an ellipsis;
 * the full name is the title. Plain text between the <wbr>s: a screen reader reads one name.
 */
export function fileName(name) {
  const whole = document.createElement("span");
  whole.className = "file-name";
  whole.title = name;
  nameSegments(name).forEach((segment, index) => {
    if (index > 0) whole.append(document.createElement("wbr"));
    whole.append(segment);
  });
  return whole;
}
