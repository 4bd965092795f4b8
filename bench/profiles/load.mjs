// Load for bench/profiles/callgrind.sh, against a couchgate at BASE (its virtual database URL):
//   token USER SECRET           prints an HS256 token
//   setup CASE BASE TOKEN       writes what CASE reads (untimed, before the counters are zeroed)
//   run CASE BASE TOKEN         the measured load; prints how many units it did (requests or docs)
// CASEs: get (2,000 GETs of one doc, 4 at a time), revs_diff (200 requests of 100 ids, half
// missing), bulk_get (100 requests of 100 docs, revs/attachments/latest), push (PouchDB 9
// pushes 2,000 docs), pull (PouchDB 9 pulls 2,000 docs). Docs are ~1 KB (bench/lib/util.mjs).
import http from 'node:http';
import { tokenFor } from '../../conformance/lib/jwt.mjs';
import { PouchDB } from '../../conformance/lib/pouch.mjs';
import { makeDoc } from '../lib/util.mjs';

const [cmd, kase, base, token] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

function call(method, url, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
    const headers = { Authorization: `Bearer ${token}` };
    if (data) { headers['Content-Type'] = 'application/json'; headers['Content-Length'] = data.length; }
    const req = http.request(url, { method, agent, headers }, (r) => {
      const chunks = [];
      r.on('data', (c) => chunks.push(c));
      r.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        if (r.statusCode >= 300) reject(new Error(`${method} ${url} -> ${r.statusCode} ${text.slice(0, 200)}`));
        else resolve(text ? JSON.parse(text) : null);
      });
    });
    req.on('error', reject);
    req.end(data);
  });
}

const docs = (prefix, n) => Array.from({ length: n }, (_, i) => makeDoc(`${prefix}-${String(i).padStart(6, '0')}`, i));
const remote = (url) => new PouchDB(url, { fetch: (u, o) => { o.headers.set('Authorization', `Bearer ${token}`); return PouchDB.fetch(u, o); } });

async function revsOf(url) {
  const rows = (await call('GET', `${url}/_all_docs`)).rows;
  return rows.map((r) => [r.id, r.value.rev]);
}

const cases = {
  get: {
    async setup(url) { await call('PUT', `${url}/doc1`, makeDoc('doc1', 1, 800)); },
    async run(url, n = 2000) {
      for (let i = 0; i < n; i += 4) await Promise.all([0, 1, 2, 3].map(() => call('GET', `${url}/doc1`)));
      return `${n} GETs`;
    },
  },
  revs_diff: {
    async setup(url) { await call('POST', `${url}/_bulk_docs`, { docs: docs('rd', 1000) }); },
    async run(url, n = 200) {
      const revs = await revsOf(url);
      for (let r = 0; r < n; r++) {
        const body = {};
        for (let i = 0; i < 100; i++) { const [id, rev] = revs[(r * 100 + i * 7) % revs.length]; body[id] = [i % 2 ? rev : `2-${'f'.repeat(32)}`]; }
        await call('POST', `${url}/_revs_diff`, body);
      }
      return `${n * 100} ids in ${n} requests`;
    },
  },
  bulk_get: {
    async setup(url) { await call('POST', `${url}/_bulk_docs`, { docs: docs('bg', 1000) }); },
    async run(url, n = 100) {
      const revs = await revsOf(url);
      for (let r = 0; r < n; r++) {
        const items = Array.from({ length: 100 }, (_, i) => { const [id, rev] = revs[(r * 100 + i * 7) % revs.length]; return { id, rev }; });
        await call('POST', `${url}/_bulk_get?revs=true&attachments=true&latest=true`, { docs: items });
      }
      return `${n * 100} docs in ${n} requests`;
    },
  },
  push: {
    async setup(url) {
      const warm = new PouchDB('profile-warm', { adapter: 'memory' });
      await warm.bulkDocs(docs('warm', 200));
      await warm.replicate.to(remote(url));
      await warm.destroy();
    },
    async run(url, n = 2000) {
      const src = new PouchDB('profile-push', { adapter: 'memory' });
      await src.bulkDocs(docs('push', n));
      const r = await src.replicate.to(remote(url));
      if (r.docs_written !== n) throw new Error(`push wrote ${r.docs_written}`);
      await src.destroy();
      return `${n} docs pushed`;
    },
  },
  pull: {
    async setup(url) {
      for (let i = 0; i < 2000; i += 500) await call('POST', `${url}/_bulk_docs`, { docs: docs('pull', 2000).slice(i, i + 500) });
    },
    async run(url, n = 2000) {
      const dst = new PouchDB('profile-pull', { adapter: 'memory' });
      const r = await dst.replicate.from(remote(url));
      if (r.docs_written !== n) throw new Error(`pull wrote ${r.docs_written}`);
      await dst.destroy();
      return `${n} docs pulled`;
    },
  },
};

if (cmd === 'token') {
  console.log(tokenFor(kase, base, { ttl: 3600 }));
} else if (cases[kase] && (cmd === 'setup' || cmd === 'run')) {
  const out = await cases[kase][cmd](base);
  if (out) console.log(out);
  agent.destroy();
} else {
  throw new Error('usage: load.mjs token USER SECRET | setup|run get|revs_diff|bulk_get|push|pull BASE TOKEN');
}
