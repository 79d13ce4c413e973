// HTTP to the service's public API, with the signed-in key in the Authorization header. A
// refusal becomes an ApiError that carries the API's error envelope.

let key = null;
let onRefused = () => {};

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.status?.message || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

/** The key every later request sends; null once signed out. */
export function useKey(value) {
  key = value;
}

/** What to do when the API answers 401 (a key revoked while it was in use). */
export function whenRefused(callback) {
  onRefused = callback;
}

export async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${key}`, ...(options.headers || {}) };
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, { status: { message: "The service cannot be reached." } });
  }
  if (!response.ok) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (response.status === 401) onRefused();
    throw new ApiError(response.status, body);
  }
  return response;
}

export async function apiJson(path, options) {
  return (await api(path, options)).json();
}
