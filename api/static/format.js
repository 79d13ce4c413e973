// How figures, durations, times and words are written on the page, in the reader's locale.

const WHOLE = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

/** A count or a rate as a whole number with the locale's grouping: 27008.2 -> "27,008". */
export function whole(value) {
  return WHOLE.format(value);
}

/** "1 column", "3 columns": the number and the word that agrees with it. */
export function plural(count, one, many = `${one}s`) {
  return `${whole(count)} ${count === 1 ? one : many}`;
}

const DELIMITER_NAMES = { ",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe" };

/** A delimiter by its name: "comma", "tab"; one the page has no name for, as it is. */
export function delimiterName(delimiter) {
  return DELIMITER_NAMES[delimiter] ?? delimiter;
}

export function eta(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 1) return "0 s";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const minutes = Math.floor(s / 60);
  if (minutes < 60) return `${minutes} min ${s % 60} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function time(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

/** A file name cut after each `_`, `-`, `.` or space: the places it may wrap. */
export function nameSegments(name) {
  return name.split(/(?<=[_.\-\s])/).filter((segment) => segment !== "");
}
