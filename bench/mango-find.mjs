// mango-find: a user's `_find` through couchgate while the shared backing database holds N
// documents of other users, on a plain and on a partitioned shared database, against the same
// queries straight at a plain database holding only that user's documents.
import { request } from './lib/http.mjs';
import { agent } from './lib/http.mjs';
import { cpuSeconds } from './lib/procs.mjs';
import { fmt, fmtMs, log, mdTable, median, percentile, timeRatio } from './lib/util.mjs';

export const describe = "_find latency of a user with 1k docs as the shared db holds N other users' docs, plain and partitioned, vs the user's own database";
export const options = {
  'other-docs': { def: 100000, help: "other users' docs in the shared db (1000000 needs many minutes to load and index)" },
  'user-docs': { def: 1000, help: 'docs of the measured user' },
  requests: { def: 50, help: 'requests per query, path and repetition (p50/p99 over them)' },
  modes: { def: 'plain,partitioned', help: 'shared databases to measure: plain, partitioned (CouchDB only)' },
  batch: { def: 5000, help: "_bulk_docs batch size when loading other users' docs" },
};

const USER = 'bench-find-user';
const VDB = 'notes';
const PER_OTHER_USER = 1000;

/** The queries, by name: one on an index (`n`, which every user defines), one sorted on it,
 * one no index serves (so CouchDB scans the user's `_id` range, or partition). */
const QUERIES = {
  'indexed range (n >= 900, limit 25)': { selector: { n: { $gte: 900 } }, limit: 25 },
  'sorted (n desc, limit 10)': { selector: { n: { $gt: null } }, sort: [{ n: 'desc' }], limit: 10 },
  'unindexed (kind = "x", limit 25)': { selector: { kind: 'x' }, limit: 25 },
};

function doc(id, i) {
  return { _id: id, n: i % 1000, kind: i % 7 === 0 ? 'x' : 'y', text: 'lorem ipsum '.repeat(8) };
}

export async function run(ctx) {
  const a = ctx.args;
  if (ctx.backend.kind !== 'couchdb') {
    ctx.note('PouchDB Server has neither partitioned databases nor a planner like CouchDB\'s: only the plain mode is measured, and its figures say little about CouchDB');
  }
  const modes = String(a.modes).split(',').map((m) => m.trim()).filter((m) => m === 'plain' || (m === 'partitioned' && ctx.backend.kind === 'couchdb'));
  const ag = agent(4);
  const auth = `Bearer ${ctx.token(USER)}`;
  const userDocs = Array.from({ length: a['user-docs'] }, (_, i) => doc(`note-${String(i).padStart(5, '0')}`, i));

  // The baseline: the user's documents alone in a database of their own, with the same index.
  const directUrl = await ctx.createBackendDb(`bench_find_direct_${ctx.tag}`);
  await ctx.backendBulk(directUrl, userDocs);
  const idx = await request(`${directUrl}/_index`, { method: 'POST', json: { index: { fields: ['n'] } } });
  if (idx.status !== 200) throw new Error(`direct _index -> ${idx.status} ${idx.body}`);

  const rows = [];
  for (const mode of modes) {
    const shared = `bench_find_${mode}_${ctx.tag}`;
    const sharedUrl = ctx.backendDb(shared);
    const created = await request(`${sharedUrl}${mode === 'partitioned' ? '?partitioned=true' : ''}`, { method: 'PUT' });
    if (created.status !== 201 && created.status !== 202) throw new Error(`PUT ${shared} -> ${created.status} ${created.body}`);
    const gate = await ctx.startGate({ database: shared, name: `couchgate-${mode}` });
    // Other users' documents, straight at the backend, in their partitions.
    const t0 = Date.now();
    for (let start = 0; start < a['other-docs']; start += a.batch) {
      const docs = [];
      for (let k = start; k < Math.min(a['other-docs'], start + a.batch); k++) {
        const u = Math.floor(k / PER_OTHER_USER);
        docs.push(doc(`u${u}.notes.aaaaaaaaaaaaa:doc-${k % PER_OTHER_USER}`, k));
      }
      await ctx.backendBulk(sharedUrl, docs, a.batch);
      ctx.checkAlive();
    }
    log(`${mode}: loaded ${a['other-docs']} other docs in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    await ctx.gateCreateDb(gate, USER, VDB);
    await ctx.gateBulk(gate, USER, VDB, userDocs);
    // couchgate's follower reads the whole load into its changes index; the queries are timed
    // after it has (a `_changes` after the user's own write answers once it has caught up).
    const tf = Date.now();
    for (;;) {
      const r = await request(`${gate.url}/${VDB}/_changes?limit=1`, { auth, agent: ag, timeout: 600000 });
      if (r.status === 200) break;
      if (Date.now() - tf > 1800000) throw new Error(`the follower did not catch up: ${r.status} ${r.body.slice(0, 200)}`);
    }
    log(`${mode}: couchgate's follower caught up ${((Date.now() - tf) / 1000).toFixed(1)} s after the user's writes`);
    const made = await request(`${gate.url}/${VDB}/_index`, { method: 'POST', json: { index: { fields: ['n'] } }, auth });
    if (made.status !== 200) throw new Error(`couchgate _index -> ${made.status} ${made.body}`);
    // The shared index is built over every user's documents by the first query that uses it.
    // At 1M documents that takes longer than couchgate's backend timeout (60 s: the client
    // gets a 504 and CouchDB goes on building), so the build is timed straight at the backend.
    const tb = Date.now();
    const listed = await request(`${sharedUrl}/_index`, { timeout: 600000 });
    const shared_ = listed.json().indexes.find((i) => String(i.ddoc).startsWith('_design/couchgate-mango-'));
    if (!shared_) throw new Error(`no shared index in ${listed.body.slice(0, 300)}`);
    const findPath = mode === 'partitioned' ? '/_partition/u0.notes.aaaaaaaaaaaaa/_find' : '/_find';
    // CouchDB itself gives up on a query after 60 s (500 `timeout`) and goes on building:
    // asked again until the index is there.
    for (let attempt = 1; ; attempt++) {
      const built = await request(`${sharedUrl}${findPath}`, { method: 'POST', json: { selector: { n: { $gte: 0 } }, use_index: [shared_.ddoc, 'idx'], limit: 1 }, timeout: 3600000 });
      if (built.status === 200) break;
      if (attempt >= 60 || !built.body.includes('timeout')) throw new Error(`building the shared index -> ${built.status} ${built.body.slice(0, 300)}`);
      log(`${mode}: the shared index is still being built (${((Date.now() - tb) / 1000).toFixed(0)} s)`);
    }
    const buildMs = Date.now() - tb;
    const first = await request(`${gate.url}/${VDB}/_find`, { method: 'POST', json: QUERIES['indexed range (n >= 900, limit 25)'], auth, agent: ag, timeout: 600000 });
    if (first.status !== 200) throw new Error(`first _find -> ${first.status} ${first.body}`);
    log(`${mode}: the shared index was built on the first query, ${(buildMs / 1000).toFixed(1)} s`);

    for (const [name, q] of Object.entries(QUERIES)) {
      const paths = [
        { label: 'direct', url: `${directUrl}/_find`, auth: undefined, pid: null },
        { label: 'couchgate', url: `${gate.url}/${VDB}/_find`, auth, pid: gate.pid },
      ];
      const res = { direct: { p50: [], p99: [] }, couchgate: { p50: [], p99: [], cpu: [] } };
      let expected = null;
      for (let rep = 0; rep < a.reps; rep++) {
        for (const p of rep % 2 ? [...paths].reverse() : paths) {
          const once = async () => {
            const r = await request(p.url, { method: 'POST', json: q, auth: p.auth, agent: ag, timeout: 600000 });
            if (r.status !== 200) throw new Error(`${mode} ${name} ${p.label}: ${r.status} ${r.body.slice(0, 200)}`);
            return r.json().docs.map((d) => d._id).join(',');
          };
          const ids = await once();
          if (expected === null) expected = ids;
          else if (ids !== expected) throw new Error(`${mode} ${name}: ${p.label} found other documents than the direct database`);
          const c0 = cpuSeconds(p.pid);
          const times = [];
          for (let i = 0; i < a.requests; i++) {
            const t = process.hrtime.bigint();
            await once();
            times.push(Number(process.hrtime.bigint() - t) / 1e6);
          }
          res[p.label].p50.push(percentile(times, 50));
          res[p.label].p99.push(percentile(times, 99));
          if (p.pid) res[p.label].cpu.push(((cpuSeconds(p.pid) - c0) * 1000) / times.length);
          log(`  ${mode} ${name} rep ${rep + 1} ${p.label}: p50 ${fmtMs(percentile(times, 50))}`);
        }
      }
      const d = median(res.direct.p50);
      const g = median(res.couchgate.p50);
      rows.push([mode, name, fmtMs(d), fmtMs(g), fmt(timeRatio(g, d), 2), `${fmtMs(median(res.direct.p99))} / ${fmtMs(median(res.couchgate.p99))}`, `${fmt(median(res.couchgate.cpu))} ms`]);
    }
    rows.push([mode, 'building the shared index (timed at the backend)', '', fmtMs(buildMs), '', '', '']);
    gate.expectedDown = true;
    await gate.stop();
    await ctx.deleteBackendDb(shared);
  }
  ctx.section(
    `_find of a ${a['user-docs']}-doc user, ${a['other-docs']} other docs in the shared database`,
    mdTable(['shared db', 'query', 'direct (own db) p50', 'couchgate p50', 'ratio', 'p99 direct / couchgate', 'couchgate CPU per query'], rows),
  );
}
