// HTTP plumbing: the `fetch` given to every remote PouchDB (token injection, request
// counting, 401 refresh) and a raw JSON request helper for direct protocol checks.
import nodeFetch from 'node-fetch';

/** Per-client request statistics. */
export function newStats() {
  return { requests: 0, unauthorized: 0, byPath: {}, recent: [] };
}

function describe(url) {
  try {
    const u = new URL(url);
    return u.pathname + (u.search.length > 60 ? u.search.slice(0, 60) + '...' : u.search);
  } catch {
    return String(url);
  }
}

/**
 * A fetch for PouchDB's `fetch` option.
 * - `auth()` returns the Authorization header value to send now (the *current* token), or null.
 * - `on401(res, sentAuth)` is called when a request is answered 401, with the Authorization
 *   value that request carried; if it resolves true (a new token is available) the request is
 *   sent once more with the new auth, as an app's interceptor would.
 * - every request is counted in `stats` (several clients may share one stats object).
 */
export function makeClientFetch({ auth = () => null, on401 = null, stats = newStats() } = {}) {
  const f = async (url, opts = {}) => {
    let sentAuth = null;
    const send = () => {
      const headers = new nodeFetch.Headers(opts.headers || {});
      const a = auth();
      sentAuth = a;
      if (a) headers.set('Authorization', a);
      stats.requests++;
      const method = opts.method || 'GET';
      const key = `${method} ${describe(url).split('?')[0].replace(/^\/[^/]*/, '/{db}')}`;
      stats.byPath[key] = (stats.byPath[key] || 0) + 1;
      const entry = { t: Date.now(), method, url: describe(url), status: null };
      stats.recent.push(entry);
      if (stats.recent.length > 200) stats.recent.shift();
      return nodeFetch(url, { ...opts, headers }).then((res) => {
        entry.status = res.status;
        return res;
      }, (err) => {
        entry.status = `ERR ${err.code || err.message}`;
        throw err;
      });
    };
    let res = await send();
    if (res.status === 401) {
      stats.unauthorized++;
      if (on401 && (await on401(res.clone(), sentAuth))) {
        await res.arrayBuffer().catch(() => {});
        res = await send();
        if (res.status === 401) stats.unauthorized++;
      }
    }
    return res;
  };
  f.stats = stats;
  return f;
}

/**
 * A raw request; resolves { status, headers, body (parsed JSON or text), text }.
 * `body` objects are sent as JSON.
 */
export async function request(url, { method = 'GET', headers = {}, body, timeout = 30000 } = {}) {
  const h = { Accept: 'application/json', ...headers };
  let payload = body;
  if (body !== undefined && typeof body !== 'string' && !Buffer.isBuffer(body)) {
    payload = JSON.stringify(body);
    if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['Content-Type'] = 'application/json';
  }
  Object.assign(h, basicAuth(url));
  const u = new URL(url);
  u.username = '';
  u.password = '';
  const res = await nodeFetch(u.toString(), { method, headers: h, body: payload, signal: AbortSignal.timeout(timeout) });
  const text = await res.text();
  let parsed = text;
  try {
    parsed = JSON.parse(text);
  } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, body: parsed, text };
}

/** Like request() but throws unless the status is 2xx; returns the parsed body. */
export async function requestOk(url, opts) {
  const r = await request(url, opts);
  if (r.status < 200 || r.status > 299) {
    const e = new Error(`${opts?.method || 'GET'} ${describe(url)} -> ${r.status} ${r.text.slice(0, 300)}`);
    e.status = r.status;
    throw e;
  }
  return r.body;
}

/** `{Authorization: 'Basic ...'}` for the credentials in a URL, or `{}`. */
export function basicAuth(url) {
  const u = new URL(url);
  if (!u.username) return {};
  const pair = `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`;
  return { Authorization: 'Basic ' + Buffer.from(pair).toString('base64') };
}

export function stripCreds(url) {
  const u = new URL(url);
  u.username = '';
  u.password = '';
  return u.toString().replace(/\/$/, '');
}
