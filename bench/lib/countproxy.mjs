// A counting HTTP forwarding proxy between couchgate and the backend, so a benchmark can report
// how many backend requests couchgate made in a measuring window (node:http only, no packages).
//
// Every request is counted when its head arrives, by method and a normalised path (doc ids
// become {doc}; _changes keeps its feed= value), then forwarded on a keep-alive agent. Bodies
// stream both ways, so continuous/longpoll feeds and heartbeats pass through as they come.
import fs from 'node:fs';
import http from 'node:http';

const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);

/** METHOD /db/segment with doc ids replaced, plus feed= for _changes. */
export function requestKey(method, url) {
  const q = url.indexOf('?');
  const p = q < 0 ? url : url.slice(0, q);
  const segs = p.split('/').slice(1);
  const norm = segs.map((s, i) => (i === 0 || s.startsWith('_') ? s : '{doc}')).slice(0, 3);
  let key = `${method} /${norm.join('/')}`;
  if (norm[1] === '_changes' && q >= 0) {
    const feed = new URLSearchParams(url.slice(q + 1)).get('feed');
    if (feed) key += `?feed=${feed}`;
  }
  return key;
}

/**
 * Starts the proxy on 127.0.0.1 (free port) in front of `targetUrl` (credentials in it are
 * kept by the caller: the proxy forwards the Authorization header it receives).
 * Returns { url (with targetUrl's credentials), total(), mark(), since(mark), stop() }.
 */
export async function startCountingProxy(targetUrl) {
  const t = new URL(targetUrl);
  const upstream = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024 });
  const counts = new Map();
  const examples = new Map(); // key -> up to 3 paths (no query) seen, for doc-level keys
  let total = 0;
  let open = 0;
  const server = http.createServer((req, res) => {
    total++;
    const key = requestKey(req.method, req.url);
    counts.set(key, (counts.get(key) || 0) + 1);
    if (key.includes('{doc}')) {
      const ex = examples.get(key) || new Set();
      if (ex.size < 3) ex.add(decodeURIComponent(req.url.split('?')[0]));
      examples.set(key, ex);
    }
    open++;
    res.on('close', () => { open--; });
    const headers = {};
    for (const [k, v] of Object.entries(req.headers)) if (!HOP.has(k)) headers[k] = v;
    headers.host = t.host;
    const up = http.request({ hostname: t.hostname, port: t.port || 80, method: req.method, path: req.url, headers, agent: upstream }, (ur) => {
      const raw = [];
      for (let i = 0; i < ur.rawHeaders.length; i += 2) {
        if (!HOP.has(ur.rawHeaders[i].toLowerCase())) raw.push(ur.rawHeaders[i], ur.rawHeaders[i + 1]);
      }
      res.writeHead(ur.statusCode, ur.statusMessage, raw);
      res.flushHeaders();
      ur.on('error', () => res.destroy());
      ur.pipe(res);
    });
    up.on('error', () => {
      if (!res.headersSent) { res.writeHead(502, { 'Content-Type': 'application/json' }); res.end('{"error":"bad_gateway"}'); } else res.destroy();
    });
    // A client that goes away (an aborted feed) ends the backend request too.
    res.on('close', () => { if (!res.writableFinished) up.destroy(); });
    req.pipe(up);
  });
  server.keepAliveTimeout = 120000;
  server.headersTimeout = 130000;
  server.requestTimeout = 0;
  await new Promise((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', resolve); });
  const port = server.address().port;
  const cred = t.username ? `${t.username}:${t.password}@` : '';
  return {
    url: `http://${cred}127.0.0.1:${port}`,
    port,
    total: () => total,
    open: () => open,
    /** A snapshot of the counts so far. */
    mark: () => ({ total, counts: new Map(counts) }),
    /** Paths seen (up to 3) under a doc-level key. */
    examples: (key) => [...(examples.get(key) || [])],
    /** Requests since `m`: { total, byKey: [[key, n], ...] sorted by n desc }. */
    since(m) {
      const byKey = [];
      for (const [k, n] of counts) { const d = n - (m.counts.get(k) || 0); if (d) byKey.push([k, d]); }
      byKey.sort((a, b) => b[1] - a[1]);
      return { total: total - m.total, byKey };
    },
    async stop() {
      server.closeAllConnections?.();
      await new Promise((r) => server.close(r));
      upstream.destroy();
    },
  };
}

/**
 * A second, independent count from CouchDB's own log (one `[notice]` line per finished request
 * with method and path): `logMark(file)` before a window, `logSince(file, mark, prefix)` after
 * it returns the requests whose path starts with `prefix` (e.g. `/shared_db`) logged since.
 * A request is logged when it finishes, so a feed that stays open is not in it.
 */
export function logMark(file) {
  try { return fs.statSync(file).size; } catch { return null; }
}

export function logSince(file, mark, prefix) {
  if (mark == null) return null;
  let text = '';
  try {
    const fd = fs.openSync(file, 'r');
    const size = fs.fstatSync(fd).size;
    if (size < mark) { fs.closeSync(fd); return null; } // rotated or truncated
    const buf = Buffer.alloc(size - mark);
    fs.readSync(fd, buf, 0, buf.length, mark);
    fs.closeSync(fd);
    text = buf.toString('utf8');
  } catch { return null; }
  const byKey = new Map();
  let total = 0;
  for (const line of text.split('\n')) {
    const m = line.match(/^\[notice\] .* (GET|HEAD|POST|PUT|DELETE|COPY) (\/\S*) (\d{3}) /);
    if (!m || !(m[2] === prefix || m[2].startsWith(`${prefix}/`) || m[2].startsWith(`${prefix}?`))) continue;
    total++;
    const key = requestKey(m[1], m[2]);
    byKey.set(key, (byKey.get(key) || 0) + 1);
  }
  return { total, byKey: [...byKey].sort((a, b) => b[1] - a[1]) };
}
