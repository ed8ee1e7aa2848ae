// The API key and the calls made with it. The key lives in this tab's sessionStorage only: it is sent as an
// Authorization header to this origin, and never put in a URL, a log or any other storage.

const KEY_ITEM = 'joblens.apiKey';
// emit_<spaceId>_<secret>: the key names its space, so the page needs nothing else to list the space's jobs.
const KEY_PATTERN = /^emit_([0-9A-HJKMNP-TV-Z]{26})_[A-Za-z0-9_-]{20,100}$/;
const RETRIES = 3; // for 429 and 503, which say "try again later"

export const TERMINAL_STATUSES = new Set(['completed', 'dead', 'killed']);
export const STATUSES = ['scheduled', 'pending', 'delivered', 'running', 'completed', 'dead', 'killed'];
export const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

export const session = {
  get key() {
    return sessionStorage.getItem(KEY_ITEM);
  },
  get spaceId() {
    return spaceOfKey(this.key ?? '');
  },
  store(key) {
    sessionStorage.setItem(KEY_ITEM, key);
  },
  forget() {
    sessionStorage.removeItem(KEY_ITEM);
  },
};

/** The space a well-formed key belongs to, or null. */
export function spaceOfKey(key) {
  const match = KEY_PATTERN.exec(key);
  return match ? match[1] : null;
}

export function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${session.key}`, ...extra };
}

/** A URL of this origin's API; parameters that are null, undefined or '' are left out. */
export function apiUrl(path, params = {}) {
  const url = new URL(`/api/v1${path}`, window.location.origin);
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== '') url.searchParams.set(name, String(value));
  }
  return url;
}

/** Options every API fetch shares: no cookies, no referrer, no cache (answers are live data). */
export function fetchOptions(signal, extraHeaders = {}) {
  return {
    headers: authHeaders(extraHeaders),
    signal,
    cache: 'no-store',
    credentials: 'omit',
    referrerPolicy: 'no-referrer',
  };
}

export async function apiGet(path, params = {}, { signal } = {}) {
  const response = await fetchRetrying(apiUrl(path, params), fetchOptions(signal, { Accept: 'application/json' }));
  return response.json();
}

/** fetch(), retried on 429 and 503 (after Retry-After, or a short backoff); any other failure is an ApiError. */
export async function fetchRetrying(url, options) {
  for (let attempt = 0; ; attempt += 1) {
    const response = await fetch(url, options);
    if (response.ok) return response;
    if ((response.status === 429 || response.status === 503) && attempt < RETRIES) {
      const retryAfterS = Number(response.headers.get('Retry-After'));
      await sleep(Number.isFinite(retryAfterS) && retryAfterS > 0 ? retryAfterS * 1000 : 250 * 2 ** attempt, options.signal);
      continue;
    }
    throw await apiError(response);
  }
}

/** The API's {"error": …} message as an ApiError; a 401 also tells the page that the key stopped working. */
export async function apiError(response) {
  let message = `${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    if (typeof body?.error === 'string') message = body.error;
  } catch {
    // not JSON (a proxy's page): the status line says enough
  }
  if (response.status === 401) window.dispatchEvent(new CustomEvent('joblens:unauthorized', { detail: message }));
  return new ApiError(response.status, message);
}

export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}

export function isAbort(error) {
  return error?.name === 'AbortError';
}
