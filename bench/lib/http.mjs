// A small keep-alive HTTP client on node:http, so the harness itself adds as little as it can
// (no fetch/undici per-request overhead) and the number of sockets is under our control.
import http from 'node:http';

/** A keep-alive agent; `maxSockets` bounds concurrent connections per host. */
export function agent(maxSockets = 64) {
  return new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets, scheduling: 'lifo' });
}

const defaultAgent = agent(256);

/** Splits `http://user:pass@host:port/path` into a base without credentials and an auth header. */
export function splitUrl(url) {
  const u = new URL(url);
  const auth = u.username ? `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}` : null;
  u.username = '';
  u.password = '';
  return { base: u.toString().replace(/\/$/, ''), auth };
}

/**
 * One request. `url` may carry credentials. Resolves {status, headers, body (string), json()}.
 * Rejects on network errors and on timeout.
 */
export function request(url, { method = 'GET', headers = {}, body, json, timeout = 120000, agent: ag = defaultAgent, auth } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const h = { Accept: 'application/json', ...headers };
    if (u.username) {
      h.Authorization = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`;
    }
    if (auth) h.Authorization = auth;
    let payload = body;
    if (json !== undefined) {
      payload = JSON.stringify(json);
      h['Content-Type'] = 'application/json';
    }
    if (payload != null) h['Content-Length'] = Buffer.byteLength(payload);
    const req = http.request({
      hostname: u.hostname,
      port: u.port,
      path: u.pathname + u.search,
      method,
      headers: h,
      agent: ag,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({
          status: res.statusCode,
          headers: res.headers,
          body: text,
          json() { return JSON.parse(text); },
        });
      });
      res.on('error', (e) => { clearTimeout(timer); reject(e); });
    });
    const timer = setTimeout(() => req.destroy(new Error(`timeout after ${timeout} ms: ${method} ${u.pathname}`)), timeout);
    req.on('error', (e) => { clearTimeout(timer); reject(e); });
    if (payload != null) req.write(payload);
    req.end();
  });
}

/** Like request() but throws unless the status is 2xx; returns parsed JSON. */
export async function requestOk(url, opts = {}) {
  const res = await request(url, opts);
  if (res.status < 200 || res.status > 299) {
    throw new Error(`${opts.method || 'GET'} ${new URL(url).pathname}${new URL(url).search.slice(0, 80)} -> ${res.status} ${res.body.slice(0, 300)}`);
  }
  return res.body ? res.json() : null;
}
