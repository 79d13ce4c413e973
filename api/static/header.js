// The first record of a CSV file: its encoding, delimiter and cells, read as the service reads
// them, so that the columns the page offers are the columns the service will see.

const DELIMITERS = [",", ";", "\t", "|"]; // in the server's order: a tie goes to the comma
const DELIMITER_NAMES = { ",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe" };

export const delimiterName = (delimiter) => DELIMITER_NAMES[delimiter];

function decode(bytes) {
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return new TextDecoder("utf-16le").decode(bytes);
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return new TextDecoder("utf-16be").decode(bytes);
  return new TextDecoder("utf-8").decode(bytes); // drops a UTF-8 BOM; bad bytes become U+FFFD
}

/** The first record of the text (a quoted cell may hold line breaks), without its line end. */
function firstRecord(text) {
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (c === '"') quoted = !quoted;
    else if (!quoted && (c === "\n" || c === "\r")) return text.slice(0, i);
  }
  return text;
}

function detectDelimiter(record) {
  const counts = new Map(DELIMITERS.map((d) => [d, 0]));
  let quoted = false;
  for (const c of record) {
    if (c === '"') quoted = !quoted;
    else if (!quoted && counts.has(c)) counts.set(c, counts.get(c) + 1);
  }
  let best = ",";
  for (const d of DELIMITERS) if (counts.get(d) > counts.get(best)) best = d;
  return best;
}

function splitRecord(record, delimiter) {
  const cells = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < record.length; i += 1) {
    const c = record[i];
    if (quoted) {
      if (c === '"' && record[i + 1] === '"') { cell += '"'; i += 1; }
      else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === delimiter) { cells.push(cell.trim()); cell = ""; }
    else cell += c;
  }
  cells.push(cell.trim());
  return cells;
}

/** `{cells, delimiter, looksLikeHeader}` of the file's first bytes (at most HEAD_BYTES). */
export function columnsOf(bytes) {
  const record = firstRecord(decode(bytes));
  const delimiter = detectDelimiter(record);
  const cells = splitRecord(record, delimiter);
  // As the server decides: a first record whose date cell is an integer is data, not a header.
  // The page cannot know the date column yet, but a header row has no all-digit cell.
  const looksLikeHeader = !cells.some((cell) => /^\d+$/.test(cell));
  return { cells, delimiter, looksLikeHeader };
}
