// The page's HTTP client: JSON reads of the contract's endpoints with the stored API key.

const KEY_STORAGE = "livinglab.apiKey";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }

  get isAuth() {
    return this.status === 401 || this.status === 403;
  }
}

export function storedKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function storeKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // Storage may be disabled (private mode): the key then lasts for this page only.
  }
}

export class Api {
  constructor() {
    this.key = storedKey();
  }

  setKey(key) {
    this.key = key.trim();
    storeKey(this.key);
  }

  headers() {
    return this.key ? { Authorization: `Bearer ${this.key}` } : {};
  }

  /** GET `path` with query `params` (null and undefined values left out); the parsed JSON body. */
  async get(path, params = {}) {
    const url = new URL(path, window.location.origin);
    for (const [name, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, String(value));
    }
    const response = await fetch(url, { headers: { ...this.headers(), Accept: "application/json" }, cache: "no-store" });
    if (!response.ok) {
      let problem = null;
      try {
        problem = await response.json();
      } catch {
        // Not a problem document: the status says enough.
      }
      throw new ApiError(response.status, problem);
    }
    return response.json();
  }

  /** POST `body` as JSON to `path`; the parsed JSON answer. */
  async post(path, body) {
    const response = await fetch(new URL(path, window.location.origin), {
      method: "POST",
      headers: { ...this.headers(), Accept: "application/json", "Content-Type": "application/json" },
      body: JSON.stringify(body),
      cache: "no-store",
    });
    let answer = null;
    try {
      answer = await response.json();
    } catch {
      // No JSON body: the status says enough.
    }
    if (!response.ok) throw new ApiError(response.status, answer);
    return answer;
  }

  /** Every item of a list endpoint, following `next_cursor` for at most `maxPages` pages. */
  async list(path, params = {}, { maxPages = 20 } = {}) {
    const items = [];
    let cursor = null;
    for (let page = 0; page < maxPages; page += 1) {
      const body = await this.get(path, { ...params, cursor });
      items.push(...body.items);
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    return { items, truncated: Boolean(cursor) };
  }
}
