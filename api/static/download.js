// Saving an API response as a file under the name the API gives it (Content-Disposition).

/**
 * The file name a Content-Disposition header gives (RFC 6266): `filename*` (RFC 8187, UTF-8 or
 * ISO-8859-1, percent-encoded) wins over `filename`; null when it gives none that is usable.
 */
export function attachmentName(header) {
  if (!header) return null;
  const params = new Map();
  // A parameter's value is a quoted string (which may hold `;`) or a token up to the next `;`.
  for (const [, name, raw] of header.matchAll(/;\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)/g)) {
    const lower = name.toLowerCase();
    if (params.has(lower)) continue; // the first of a repeated parameter counts
    params.set(lower, raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, "$1") : raw.trim());
  }
  const extended = params.has("filename*") ? decodeExtended(params.get("filename*")) : null;
  return safeName(extended ?? params.get("filename") ?? "");
}

function decodeExtended(value) {
  const match = /^([^']*)'[^']*'(.*)$/.exec(value);
  if (!match) return null;
  const charset = match[1].toLowerCase();
  try {
    if (charset === "utf-8") return decodeURIComponent(match[2]);
    if (charset === "iso-8859-1") {
      return match[2].replace(/%([0-9a-f]{2})/gi, (_, hex) => String.fromCharCode(parseInt(hex, 16)));
    }
  } catch {
    return null; // a broken percent-escape: fall back to `filename`
  }
  return null;
}

/** The name without a directory part or control characters; null when nothing is left. */
function safeName(name) {
  const base = name.split(/[\\/]/).pop().replace(/[\u0000-\u001f\u007f]/g, "").trim();
  return base && base !== "." && base !== ".." ? base : null;
}

/** Saves the response's body as a download; the API's name for it, else `fallback`. */
export async function saveResponse(response, fallback) {
  const name = attachmentName(response.headers.get("content-disposition")) || fallback;
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // The browser reads the blob after the click returns: freed a minute later, not at once.
  window.setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return name;
}
