// What a chosen file is, told by its bytes and never by its name, as the service tells it
// (DESIGN.md: magic numbers first, then a NUL byte in the first 8 KiB outside UTF-16).

/** How much of the file's start is read: its header row, and enough to tell its format. */
export const HEAD_BYTES = 64 * 1024;
// A zip names its members in a directory at its end; a workbook's is a few KiB.
const TAIL_BYTES = 64 * 1024;
const NUL_WINDOW = 8 * 1024;

// The formats the page uploads. XLSX and gzip join once the service reads them; until then the
// page names them and says how to make a CSV of them instead.
const UPLOADABLE = new Set(["csv"]);

const SIGNATURES = [
  [[0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "png"],
  [[0x1f, 0x8b], "gzip"],
  [[0x50, 0x4b, 0x03, 0x04], "zip"],
  [[0x50, 0x4b, 0x05, 0x06], "zip"], // an empty archive
  [[0x25, 0x50, 0x44, 0x46, 0x2d], "pdf"],
  [[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1], "xls"], // OLE2: Excel 97-2003 and kin
  [[0xff, 0xd8, 0xff], "jpeg"],
  [[0x47, 0x49, 0x46, 0x38], "gif"],
];

// What a zip holds, by the names of its members.
const ZIP_MEMBERS = [
  ["xl/workbook.xml", "xlsx"],
  ["xl/workbook.bin", "xlsb"],
  ["mimetypeapplication/vnd.oasis.opendocument.spreadsheet", "ods"],
  ["word/document.xml", "docx"],
];

const SAVE_FROM_EXCEL = "Open it in Excel (or another spreadsheet) and save it as CSV "
  + "(File > Save As > CSV UTF-8), then pick the CSV file.";
const SAVE_AS_CSV = "Export the redemptions from where they came as CSV (comma-, semicolon-, "
  + "tab- or pipe-separated text) and pick that file.";

const KINDS = {
  xlsx: ["an Excel workbook (XLSX)", `${SAVE_FROM_EXCEL} The page does not upload workbooks yet.`],
  xlsb: ["an Excel binary workbook (XLSB)", SAVE_FROM_EXCEL],
  xls: ["an Excel 97-2003 workbook (XLS) or another old Office file", SAVE_FROM_EXCEL],
  ods: ["an OpenDocument spreadsheet (ODS)", SAVE_FROM_EXCEL],
  docx: ["a Word document (DOCX)", SAVE_AS_CSV],
  gzip: [
    "a gzip-compressed file",
    "Decompress it (gunzip, or double-click it) and pick the CSV inside: the page does not "
      + "upload gzip files yet.",
  ],
  zip: ["a zip archive", "Extract the CSV file from it and pick that."],
  png: ["a PNG image", SAVE_AS_CSV],
  jpeg: ["a JPEG image", SAVE_AS_CSV],
  gif: ["a GIF image", SAVE_AS_CSV],
  pdf: ["a PDF document", SAVE_AS_CSV],
  binary: ["binary data (it holds NUL bytes)", SAVE_AS_CSV],
};

const startsWith = (bytes, prefix) => prefix.every((b, i) => bytes[i] === b);
// Latin-1 keeps every byte one character: an ASCII name is found wherever it sits.
const asText = (bytes) => new TextDecoder("latin1").decode(bytes);

async function zipKind(file, head) {
  const tail = new Uint8Array(await file.slice(Math.max(0, file.size - TAIL_BYTES)).arrayBuffer());
  const names = asText(head) + asText(tail);
  for (const [member, kind] of ZIP_MEMBERS) if (names.includes(member)) return kind;
  return "zip";
}

/**
 * The file's kind ("csv", "empty", or one of KINDS) and its first HEAD_BYTES bytes. "csv" means
 * text: whether it is a good CSV is for the header row and then the service to say.
 */
export async function identify(file) {
  const head = new Uint8Array(await file.slice(0, HEAD_BYTES).arrayBuffer());
  if (head.length === 0) return { kind: "empty", head };
  const signature = SIGNATURES.find(([prefix]) => startsWith(head, prefix));
  if (signature) {
    const kind = signature[1] === "zip" ? await zipKind(file, head) : signature[1];
    return { kind, head };
  }
  const utf16 = startsWith(head, [0xff, 0xfe]) || startsWith(head, [0xfe, 0xff]);
  if (!utf16 && head.subarray(0, NUL_WINDOW).includes(0)) return { kind: "binary", head };
  return { kind: "csv", head };
}

export function uploadable(kind) {
  return UPLOADABLE.has(kind);
}

/** Why the page will not upload the file, and what to do instead: "is ..., not a CSV file." */
export function refusal(kind) {
  if (kind === "empty") return "is empty: it has no header row and no redemptions.";
  const [what, advice] = KINDS[kind];
  return `is ${what}, not a CSV file. ${advice}`;
}
