// proxy-overhead: the cost of couchgate on ordinary requests and on PouchDB 9 replication,
// against the same requests straight at the backend, plus couchgate's CPU time per request.
import { PouchDB } from '../conformance/lib/pouch.mjs';
import { agent, request } from './lib/http.mjs';
import { startCountingProxy } from './lib/countproxy.mjs';
import { cpuSeconds, rssMiB } from './lib/procs.mjs';
import { fmt, fmtMs, log, makeDoc, mdTable, median, percentile, rateRatio, timeRatio } from './lib/util.mjs';

export const describe = 'GET doc latency and throughput, _revs_diff, _bulk_get, PouchDB 9 push/pull, couchgate CPU per request';
export const options = {
  docs: { def: 1000, help: 'docs of the measured user for the request benchmarks' },
  'doc-size': { def: 1024, help: 'approximate JSON size of every doc, bytes' },
  'get-requests': { def: 300, help: 'sequential GET doc requests per path and repetition (p50/p99)' },
  concurrency: { def: 8, help: 'concurrent clients of the throughput test' },
  duration: { def: 10, help: 'seconds of the throughput test per path and repetition' },
  'batch-requests': { def: 100, help: 'sequential _revs_diff and _bulk_get requests per path and repetition' },
  'batch-docs': { def: 100, help: 'docs per _revs_diff / _bulk_get request' },
  'replicate-docs': { def: 10000, help: 'docs pushed and pulled by PouchDB 9 (0 to skip)' },
  'replicate-users': { def: 20, help: 'users pushing (then pulling) at once, each its own virtual database (0 to skip)' },
  'user-docs': { def: 1000, help: 'docs of each of the replicate-users' },
  'count-backend': { def: true, help: 'one more untimed push and pull per path behind a counting proxy: backend requests per 1k docs' },
};

const USER = 'bench-user';
const VDB = 'notes';

export async function run(ctx) {
  const a = ctx.args;
  const shared = `bench_po_${ctx.tag}`;
  const directDb = `bench_po_direct_${ctx.tag}`;
  const gate = await ctx.startGate({ database: shared });
  const auth = `Bearer ${ctx.token(USER)}`;
  const docs = Array.from({ length: a.docs }, (_, i) => makeDoc(`doc-${String(i).padStart(5, '0')}`, i, a['doc-size']));
  await ctx.gateCreateDb(gate, USER, VDB);
  await ctx.gateBulk(gate, USER, VDB, docs);
  const directUrl = await ctx.createBackendDb(directDb);
  await ctx.backendBulk(directUrl, docs);

  const paths = [
    { label: 'direct', base: directUrl, auth: undefined, pid: null },
    { label: 'couchgate', base: `${gate.url}/${VDB}`, auth, pid: gate.pid },
  ];
  for (const p of paths) {
    p.ag = agent(Math.max(8, a.concurrency));
    const res = await request(`${p.base}/_all_docs`, { auth: p.auth, agent: p.ag });
    const rows = res.json().rows;
    if (rows.length !== a.docs) throw new Error(`${p.label}: _all_docs has ${rows.length} rows, expected ${a.docs}`);
    p.revs = Object.fromEntries(rows.map((r) => [r.id, r.value.rev]));
  }
  const ids = docs.map((d) => d._id);
  let seed = 12345;
  const rnd = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed; };
  const pick = () => ids[rnd() % ids.length];

  const get = async (p, id) => {
    const res = await request(`${p.base}/${id}`, { auth: p.auth, agent: p.ag });
    if (res.status !== 200) throw new Error(`${p.label}: GET ${id} -> ${res.status} ${res.body.slice(0, 200)}`);
  };
  const batchIds = (n) => { const s = new Set(); while (s.size < Math.min(n, ids.length)) s.add(pick()); return [...s]; };
  const revsDiff = async (p) => {
    const body = {};
    // Half present (their current rev), half missing (a rev nobody has).
    batchIds(a['batch-docs']).forEach((id, i) => { body[id] = [i % 2 ? p.revs[id] : `2-${'f'.repeat(32)}`]; });
    const res = await request(`${p.base}/_revs_diff`, { method: 'POST', json: body, auth: p.auth, agent: p.ag });
    if (res.status !== 200) throw new Error(`${p.label}: _revs_diff -> ${res.status} ${res.body.slice(0, 200)}`);
    const missing = Object.keys(res.json()).length;
    if (missing !== Math.floor(a['batch-docs'] / 2) && missing !== Math.ceil(a['batch-docs'] / 2)) throw new Error(`${p.label}: _revs_diff: ${missing} missing`);
  };
  const bulkGet = async (p) => {
    const body = { docs: batchIds(a['batch-docs']).map((id) => ({ id, rev: p.revs[id] })) };
    const res = await request(`${p.base}/_bulk_get?revs=true&attachments=true&latest=true`, { method: 'POST', json: body, auth: p.auth, agent: p.ag });
    if (res.status !== 200) throw new Error(`${p.label}: _bulk_get -> ${res.status} ${res.body.slice(0, 200)}`);
    const results = res.json().results;
    if (results.length !== body.docs.length || !results.every((r) => r.docs[0].ok)) throw new Error(`${p.label}: _bulk_get answered ${JSON.stringify(results).slice(0, 200)}`);
  };

  // Each measure yields per path per rep: a value, couchgate CPU ms per request, backend CPU ms per request.
  const M = {};
  const record = (measure, p, values) => {
    M[measure] ??= {};
    M[measure][p.label] ??= {};
    for (const [k, v] of Object.entries(values)) (M[measure][p.label][k] ??= []).push(v);
  };
  const cpuWindow = async (p, fn) => {
    const c0 = cpuSeconds(gate.pid); const b0 = cpuSeconds(ctx.backend.pid);
    const n = await fn();
    return { n, gateCpu: ((cpuSeconds(gate.pid) - c0) * 1000) / n, backendCpu: ((cpuSeconds(ctx.backend.pid) - b0) * 1000) / n };
  };
  const sequential = async (p, count, fn) => {
    const times = [];
    const w = await cpuWindow(p, async () => {
      for (let i = 0; i < count; i++) {
        const t = process.hrtime.bigint();
        await fn(p);
        times.push(Number(process.hrtime.bigint() - t) / 1e6);
      }
      return count;
    });
    return { p50: percentile(times, 50), p99: percentile(times, 99), ...w };
  };

  // Warm-up of both paths (the JIT of a Node backend, pools, caches) before anything counts.
  for (const p of paths) {
    for (let i = 0; i < 500; i++) await get(p, pick());
    for (let i = 0; i < 30; i++) { await revsDiff(p); await bulkGet(p); }
  }
  for (let rep = 0; rep < a.reps; rep++) {
    const order = rep % 2 ? [...paths].reverse() : paths;
    for (const p of order) {
      for (let i = 0; i < 20; i++) await get(p, pick()); // warm-up
      const g = await sequential(p, a['get-requests'], (q) => get(q, pick()));
      record('get', p, g);
      log(`rep ${rep + 1} ${p.label}: GET doc p50 ${fmtMs(g.p50)} p99 ${fmtMs(g.p99)}, couchgate CPU ${fmt(g.gateCpu)} ms/req`);

      const end = Date.now() + a.duration * 1000;
      let count = 0;
      const t0 = Date.now();
      const w = await cpuWindow(p, async () => {
        await Promise.all(Array.from({ length: a.concurrency }, async () => {
          while (Date.now() < end) { await get(p, pick()); count++; }
        }));
        return count;
      });
      const ops = count / ((Date.now() - t0) / 1000);
      record('throughput', p, { ops, ...w });
      log(`rep ${rep + 1} ${p.label}: ${a.concurrency} clients ${fmt(ops)} ops/s, couchgate CPU ${fmt(w.gateCpu)} ms/req, backend ${fmt(w.backendCpu)} ms/req`);

      const rd = await sequential(p, a['batch-requests'], revsDiff);
      record('revs_diff', p, rd);
      const bg = await sequential(p, a['batch-requests'], bulkGet);
      record('bulk_get', p, bg);
      log(`rep ${rep + 1} ${p.label}: _revs_diff p50 ${fmtMs(rd.p50)}, _bulk_get p50 ${fmtMs(bg.p50)}`);
      ctx.checkAlive();
    }
  }
  const gateRss = rssMiB(gate.pid);

  // PouchDB 9 replication, each repetition into fresh databases (and a fresh couchgate with a
  // fresh shared database, so one repetition's data does not slow the next one's _changes).
  // `users` PouchDB databases replicate at once, each to its own remote (a user's virtual
  // database through couchgate, a database of its own direct); with `counted`, the backend
  // connection goes through a counting proxy (lib/countproxy.mjs) and nothing is timed.
  const replicate = async (label, rep, sources, counted) => {
    const users = sources.length;
    const tag = `${ctx.tag}_${rep}_${users}${counted ? 'c' : ''}`;
    let counter = null; let g = null; const names = [];
    let remotes;
    if (label === 'direct') {
      if (counted) { counter = await startCountingProxy(ctx.backend.url); ctx.proxies.push(counter); }
      const base = counter ? counter.url : ctx.backend.url;
      remotes = sources.map((_, u) => {
        const name = `bench_po_rep_direct_${tag}_${u}`;
        ctx.backendDb(name); names.push(name);
        return new PouchDB(`${base}/${name}`);
      });
    } else {
      const name = `bench_po_rep_${tag}`;
      names.push(name);
      g = await ctx.startGate({ database: name, name: 'couchgate-replication', countBackend: counted });
      counter = g.counter;
      remotes = sources.map((_, u) => {
        const userAuth = `Bearer ${ctx.token(`${USER}-${u}`)}`;
        const fetch = (url, o) => { o.headers.set('Authorization', userAuth); return PouchDB.fetch(url, o); };
        return new PouchDB(`${g.url}/${VDB}`, { fetch });
      });
    }
    const docs = sources.reduce((n, s) => n + s.docs, 0);
    const pid = g ? g.pid : null;
    const m0 = counter?.mark();
    const c0 = cpuSeconds(pid); const b0 = cpuSeconds(ctx.backend.pid);
    let t = Date.now();
    const pushes = await Promise.all(sources.map((s, u) => s.db.replicate.to(remotes[u])));
    const pushMs = Date.now() - t;
    const c1 = cpuSeconds(pid); const b1 = cpuSeconds(ctx.backend.pid);
    const m1 = counter?.mark();
    const pushRequests = counter?.since(m0);
    pushes.forEach((push, u) => { if (push.docs_written !== sources[u].docs) throw new Error(`${label}: push ${u} wrote ${push.docs_written} docs`); });
    const targets = sources.map((_, u) => new PouchDB(`bench-dst-${tag}-${label}-${u}`, { adapter: 'memory' }));
    t = Date.now();
    const pulls = await Promise.all(targets.map((target, u) => target.replicate.from(remotes[u])));
    const pullMs = Date.now() - t;
    const c2 = cpuSeconds(pid); const b2 = cpuSeconds(ctx.backend.pid);
    for (let u = 0; u < users; u++) {
      const info = await targets[u].info();
      if (pulls[u].docs_written !== sources[u].docs || info.doc_count !== sources[u].docs) throw new Error(`${label}: pull ${u} wrote ${pulls[u].docs_written}, has ${info.doc_count}`);
    }
    const perK = (a0, a1) => (((a1 - a0) * 1000) / docs) * 1000;
    const out = {
      push: { ms: pushMs, gateCpu: perK(c0, c1), backendCpu: perK(b0, b1) },
      pull: { ms: pullMs, gateCpu: perK(c1, c2), backendCpu: perK(b1, b2) },
    };
    if (counter) { out.push.requests = pushRequests; out.pull.requests = counter.since(m1); }
    log(`${counted ? 'counted' : `rep ${rep + 1}`} ${label}, ${users} user(s): PouchDB push ${docs} docs ${(pushMs / 1000).toFixed(1)} s, pull ${(pullMs / 1000).toFixed(1)} s`);
    for (const target of targets) await target.destroy();
    if (g) { g.expectedDown = true; await g.stop(); }
    for (const name of names) await ctx.deleteBackendDb(name);
    ctx.checkAlive();
    return out;
  };
  const counts = {};
  if (a['replicate-docs'] > 0) {
    const source = async (name, n) => {
      const db = new PouchDB(`bench-src-${ctx.tag}-${name}`, { adapter: 'memory' });
      const docs = Array.from({ length: n }, (_, i) => makeDoc(`rep-${String(i).padStart(6, '0')}`, i, a['doc-size']));
      for (let i = 0; i < docs.length; i += 1000) await db.bulkDocs(docs.slice(i, i + 1000));
      return { db, docs: n };
    };
    const one = [await source('one', a['replicate-docs'])];
    const many = [];
    for (let u = 0; u < a['replicate-users']; u++) many.push(await source(`u${u}`, a['user-docs']));
    const cases = [['', one]];
    if (many.length) cases.push([`_users`, many]);
    for (const [suffix, sources] of cases) {
      for (let rep = 0; rep < a.reps; rep++) {
        const order = rep % 2 ? ['couchgate', 'direct'] : ['direct', 'couchgate'];
        for (const label of order) {
          const r = await replicate(label, rep, sources, false);
          record(`push${suffix}`, { label }, r.push);
          record(`pull${suffix}`, { label }, r.pull);
        }
      }
    }
    if (a['count-backend']) {
      for (const label of ['direct', 'couchgate']) counts[label] = await replicate(label, 0, one, true);
    }
    for (const s of [...one, ...many]) await s.db.destroy();
  }

  // Report.
  const md = (measure) => (label, key) => median(M[measure]?.[label]?.[key] ?? []);
  const cpu = (x) => (Number.isFinite(x) ? `${fmt(x)} ms` : 'n/a');
  const rows = [];
  const lat = (title, measure) => {
    const m = md(measure);
    rows.push([title, fmtMs(m('direct', 'p50')), fmtMs(m('couchgate', 'p50')), fmt(timeRatio(m('couchgate', 'p50'), m('direct', 'p50')), 2),
      `${fmtMs(m('direct', 'p99'))} / ${fmtMs(m('couchgate', 'p99'))}`, cpu(m('couchgate', 'gateCpu')), `${cpu(m('direct', 'backendCpu'))} / ${cpu(m('couchgate', 'backendCpu'))}`]);
  };
  lat('GET doc (sequential)', 'get');
  const t = md('throughput');
  rows.push([`GET doc throughput, ${a.concurrency} clients, ${a.duration} s`, `${fmt(t('direct', 'ops'))} ops/s`, `${fmt(t('couchgate', 'ops'))} ops/s`,
    fmt(rateRatio(t('couchgate', 'ops'), t('direct', 'ops')), 2), '', cpu(t('couchgate', 'gateCpu')), `${cpu(t('direct', 'backendCpu'))} / ${cpu(t('couchgate', 'backendCpu'))}`]);
  lat(`_revs_diff (${a['batch-docs']} docs, half missing)`, 'revs_diff');
  lat(`_bulk_get (${a['batch-docs']} docs, revs=true)`, 'bulk_get');
  const many = `${a['replicate-users']} users × ${a['user-docs'].toLocaleString('en-US')} docs`;
  for (const [measure, title] of [['push', `push, ${a['replicate-docs'].toLocaleString('en-US')} docs`], ['pull', `pull, ${a['replicate-docs'].toLocaleString('en-US')} docs`],
    ['push_users', `push, ${many} at once`], ['pull_users', `pull, ${many} at once`]]) {
    if (!M[measure]) continue;
    const m = md(measure);
    rows.push([`PouchDB 9 ${title}`, `${fmt(m('direct', 'ms') / 1000)} s`, `${fmt(m('couchgate', 'ms') / 1000)} s`,
      fmt(timeRatio(m('couchgate', 'ms'), m('direct', 'ms')), 2), '', `${cpu(m('couchgate', 'gateCpu'))} per 1k docs`,
      `${cpu(m('direct', 'backendCpu'))} / ${cpu(m('couchgate', 'backendCpu'))} per 1k docs`]);
  }
  ctx.section('Ratios (medians)', mdTable(['request', 'direct', 'couchgate', 'ratio', 'p99 direct / couchgate', 'couchgate CPU per request', 'backend CPU per request, direct / via couchgate'], rows) +
    `\n\ncouchgate RSS after the request tests: ${fmt(gateRss.rss)} MiB (peak ${fmt(gateRss.hwm)} MiB). CPU times come from /proc/PID/stat (10 ms ticks) over the whole window divided by its requests.`);
  if (counts.direct && counts.couchgate) {
    const perK = (n) => fmt((n * 1000) / a['replicate-docs']);
    const crows = [];
    for (const phase of ['push', 'pull']) {
      const d = counts.direct[phase].requests; const c = counts.couchgate[phase].requests;
      crows.push([`**${phase}**`, `**${perK(d.total)}**`, `**${perK(c.total)}**`, `${fmt(counts.direct[phase].backendCpu)} / ${fmt(counts.couchgate[phase].backendCpu)} ms`]);
      // Keys name the database; both paths' databases are {db} here.
      const byKey = (list) => {
        const m = new Map();
        for (const [k, v] of list) { const key = k.replace(/bench_po_rep_\w+/, '{db}'); m.set(key, (m.get(key) || 0) + v); }
        return m;
      };
      const dk = byKey(d.byKey); const ck = byKey(c.byKey);
      for (const k of new Set([...dk.keys(), ...ck.keys()])) crows.push([`${phase} \`${k}\``, perK(dk.get(k) || 0), perK(ck.get(k) || 0), '']);
    }
    ctx.section('Backend requests per 1,000 replicated docs', 'One more push and pull of '
      + `${a['replicate-docs'].toLocaleString('en-US')} docs per path, untimed, with the backend behind a counting proxy (bench/lib/countproxy.mjs): `
      + 'direct, the requests PouchDB made; through couchgate, the requests couchgate made of the backend for them (its changes follower included).\n\n'
      + mdTable(['requests', 'direct', 'via couchgate', 'backend CPU per 1k docs, direct / via couchgate'], crows));
  }
  const raw = [];
  for (const [measure, byPath] of Object.entries(M)) {
    for (const [label, vals] of Object.entries(byPath)) {
      raw.push([measure, label, ...['p50', 'ops', 'ms', 'gateCpu'].map((k) => (k === 'gateCpu' && label === 'direct' ? '-' : vals[k] ? vals[k].map((x) => fmt(x)).join(', ') : ''))]);
    }
  }
  ctx.section('Per repetition', mdTable(['measure', 'path', 'p50 ms', 'ops/s', 'time ms', 'couchgate CPU ms'], raw));
}
