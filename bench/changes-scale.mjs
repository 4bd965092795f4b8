// changes-scale: a user's `_changes?since=0&style=all_docs` (100 docs of ~1 KB) while the shared
// backing database holds N documents of other users, through couchgate (per changes source)
// and straight at a plain database holding only that user's docs.
import crypto from 'node:crypto';
import { request } from './lib/http.mjs';
import { cpuSeconds, rssMiB } from './lib/procs.mjs';
import { fmt, fmtMs, log, makeDoc, mdTable, median, percentile, timeRatio, sleep } from './lib/util.mjs';
import { agent } from './lib/http.mjs';

export const describe = "a user's _changes?since=0&style=all_docs (100 docs) as the shared db grows with other users' docs";
export const options = {
  sizes: { def: '10000,100000', help: 'numbers of other users\' docs in the shared db, ascending (1000000 needs minutes and several GB)' },
  'user-docs': { def: 100, help: 'docs of the measured user' },
  'doc-size': { def: 1024, help: 'approximate JSON size of every doc, bytes' },
  requests: { def: 30, help: 'requests per path, size and repetition (p50/p99 over them)' },
  'max-seconds': { def: 60, help: 'time limit per path, size and repetition (at least 5 requests are made)' },
  batch: { def: 5000, help: '_bulk_docs batch size when loading other users\' docs' },
  sources: { def: 'index,filter', help: 'couchgate --changes-source values to measure (when the flag exists)' },
  'index-args': { def: '', help: 'extra couchgate flags for the index source, space-separated' },
  restart: { def: true, help: 'after the largest size, restart each couchgate and time its first answer' },
};

const USER = 'bench-user';
const VDB = 'notes';
const PER_OTHER_USER = 100;

/** A lowercase base32 epoch, stable per other user. */
function epochOf(u) {
  const h = crypto.createHash('sha1').update(String(u)).digest();
  const A = 'abcdefghijklmnopqrstuvwxyz234567';
  let s = '';
  for (let i = 0; i < 13; i++) s += A[h[i] & 31];
  return s;
}

export async function run(ctx) {
  const a = ctx.args;
  const sizes = String(a.sizes).split(',').map((s) => Number(s.trim())).filter((n) => n > 0).sort((x, y) => x - y);
  if (!sizes.length) throw new Error('--sizes needs at least one positive number');
  const shared = `bench_cs_${ctx.tag}`;
  const directDb = `bench_cs_direct_${ctx.tag}`;
  const ag = agent(8);

  // Paths: couchgate per changes source, if the build has the flag.
  const gates = [];
  const sources = String(a.sources).split(',').map((s) => s.trim()).filter(Boolean);
  if (ctx.hasFlag('--changes-source')) {
    for (const src of sources) {
      const extra = ['--changes-source', src];
      if (src === 'index' && a['index-args']) extra.push(...a['index-args'].split(/\s+/).filter(Boolean));
      if (src === 'index' && ctx.hasFlag('--index-snapshot') && !/--index-snapshot/.test(a['index-args'])) extra.push('--index-snapshot', `${ctx.dir}/index.snapshot`);
      gates.push({ label: `couchgate ${src}`, src, extra, gate: await ctx.startGate({ database: shared, extraArgs: extra, name: `couchgate-${src}` }) });
    }
  } else {
    ctx.note(`this couchgate build has no \`--changes-source\` flag (\`couchgate --help\` does not list it): only its built-in source was measured, labelled "couchgate default"; the ${sources.join('/')} comparison could not be made`);
    gates.push({ label: 'couchgate default', src: null, extra: [], gate: await ctx.startGate({ database: shared, name: 'couchgate-default' }) });
  }
  const auth = `Bearer ${ctx.token(USER)}`;

  // The measured user's docs: through couchgate into the shared db, and into a plain db.
  const userDocs = Array.from({ length: a['user-docs'] }, (_, i) => makeDoc(`note-${String(i).padStart(4, '0')}`, i, a['doc-size']));
  await ctx.gateCreateDb(gates[0].gate, USER, VDB);
  await ctx.gateBulk(gates[0].gate, USER, VDB, userDocs);
  const directUrl = await ctx.createBackendDb(directDb);
  await ctx.backendBulk(directUrl, userDocs);
  const sharedUrl = ctx.backendDb(shared);

  const paths = [
    { label: 'direct (own db)', url: `${directUrl}/_changes?since=0&style=all_docs`, auth: undefined, pid: null },
    ...gates.map((g) => ({ label: g.label, url: `${g.gate.url}/${VDB}/_changes?since=0&style=all_docs`, auth, pid: g.gate.pid, g })),
  ];

  async function once(p) {
    const res = await request(p.url, { auth: p.auth, agent: ag, timeout: 600000 });
    if (res.status !== 200) throw new Error(`${p.label}: _changes -> ${res.status} ${res.body.slice(0, 200)}`);
    const n = res.json().results.length;
    if (n !== a['user-docs']) throw new Error(`${p.label}: _changes returned ${n} rows, expected ${a['user-docs']}`);
  }

  let loaded = 0;
  const perSize = [];
  for (const size of sizes) {
    // Grow the shared db to `size` other docs, straight at the backend.
    const t0 = Date.now();
    for (let start = loaded; start < size; start += a.batch) {
      const docs = [];
      for (let k = start; k < Math.min(size, start + a.batch); k++) {
        const u = Math.floor(k / PER_OTHER_USER);
        docs.push(makeDoc(`u${u}.notes.${epochOf(u)}:doc-${k % PER_OTHER_USER}`, k, a['doc-size']));
      }
      await ctx.backendBulk(sharedUrl, docs, a.batch);
      if ((start / a.batch) % 20 === 19) log(`  loaded ${start + docs.length}/${size} other docs (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
      ctx.checkAlive();
    }
    const loadMs = Date.now() - t0;
    const loadedNow = size - loaded;
    loaded = size;
    log(`size ${size}: loaded ${loadedNow} docs in ${(loadMs / 1000).toFixed(1)} s`);
    const row = { size, loadMs, loadedNow, backendRss: rssMiB(ctx.backend.pid).rss, paths: {} };

    // First answer after the load (an index has to catch up with the load first).
    for (const p of paths) {
      const t = Date.now();
      await once(p);
      row.paths[p.label] = { first: Date.now() - t, p50: [], p99: [], mean: [], n: [], cpu: [], bcpu: [] };
    }
    // Repetitions, paths in rotating order.
    for (let rep = 0; rep < a.reps; rep++) {
      const order = paths.map((_, i) => paths[(i + rep) % paths.length]);
      for (const p of order) {
        await once(p); await once(p); // warm-up
        const c0 = cpuSeconds(p.pid); const b0 = cpuSeconds(ctx.backend.pid);
        const times = [];
        const start = Date.now();
        for (let i = 0; i < a.requests; i++) {
          if (i >= 5 && Date.now() - start > a['max-seconds'] * 1000) break;
          const t = process.hrtime.bigint();
          await once(p);
          times.push(Number(process.hrtime.bigint() - t) / 1e6);
        }
        const r = row.paths[p.label];
        r.p50.push(percentile(times, 50)); r.p99.push(percentile(times, 99));
        r.mean.push(times.reduce((x, y) => x + y, 0) / times.length); r.n.push(times.length);
        r.cpu.push(((cpuSeconds(p.pid) - c0) * 1000) / times.length);
        r.bcpu.push(((cpuSeconds(ctx.backend.pid) - b0) * 1000) / times.length);
        log(`  size ${size} rep ${rep + 1} ${p.label}: p50 ${fmtMs(percentile(times, 50))} p99 ${fmtMs(percentile(times, 99))} (${times.length} requests)`);
        ctx.checkAlive();
      }
    }
    for (const g of gates) row.paths[g.label].rss = rssMiB(g.gate.pid).rss;
    perSize.push(row);
    reportSize(ctx, row, paths);
  }

  // Growth and restart.
  const first = perSize[0];
  const last = perSize[perSize.length - 1];
  const growthRows = paths.map((p) => {
    const f = median(first.paths[p.label].p50);
    const l = median(last.paths[p.label].p50);
    return [p.label, fmtMs(f), fmtMs(l), perSize.length > 1 ? `${fmt(l / f, 2)}x` : 'n/a'];
  });
  ctx.section(`Growth of p50 from ${first.size.toLocaleString('en-US')} to ${last.size.toLocaleString('en-US')} other docs`,
    mdTable(['path', `p50 at ${first.size.toLocaleString('en-US')}`, `p50 at ${last.size.toLocaleString('en-US')}`, 'growth'], growthRows));

  const loadRows = perSize.map((r) => [r.size.toLocaleString('en-US'), r.loadedNow.toLocaleString('en-US'), `${(r.loadMs / 1000).toFixed(1)} s`,
    `${fmt(r.loadedNow / (r.loadMs / 1000))} docs/s`, Number.isFinite(r.backendRss) ? `${fmt(r.backendRss)} MiB` : 'n/a',
    ...gates.map((g) => `${fmt(r.paths[g.label].rss)} MiB`)]);
  ctx.section('Loading other users\' docs (straight into the backend, _bulk_docs)', mdTable(
    ['total other docs', 'added', 'load time', 'rate', 'backend RSS after', ...gates.map((g) => `${g.label} RSS`)], loadRows));

  if (a.restart) {
    const rows = [];
    for (const g of gates) {
      const p = paths.find((x) => x.g === g);
      g.gate.expectedDown = true;
      await g.gate.stop();
      const t = Date.now();
      const fresh = await ctx.startGate({ database: shared, extraArgs: g.extra, name: `couchgate-${g.src || 'default'}` });
      const listenMs = Date.now() - t;
      p.url = `${fresh.url}/${VDB}/_changes?since=0&style=all_docs`;
      p.pid = fresh.pid;
      const t2 = Date.now();
      await once(p);
      const firstMs = Date.now() - t2;
      const t3 = Date.now();
      await once(p);
      rows.push([g.label, `${listenMs} ms`, `${firstMs} ms`, `${Date.now() - t3} ms`, `${fmt(rssMiB(fresh.pid).rss)} MiB`]);
      await fresh.stop();
      fresh.expectedDown = true;
    }
    // A cold start of the index source: no snapshot, the whole shared feed is read again.
    const idx = gates.find((g) => g.src === 'index');
    if (idx) {
      const extraCold = idx.extra.filter((x, i, arr) => x !== '--index-snapshot' && arr[i - 1] !== '--index-snapshot');
      const t = Date.now();
      const cold = await ctx.startGate({ database: shared, extraArgs: extraCold, name: 'couchgate-index-cold' });
      const listenMs = Date.now() - t;
      const url = `${cold.url}/${VDB}/_changes?since=0&style=all_docs`;
      const t2 = Date.now();
      const partial = [];
      let firstMs = null;
      while (Date.now() - t2 < 600000) {
        const res = await request(url, { auth, agent: ag, timeout: 600000 });
        const n = res.status === 200 ? res.json().results.length : -res.status;
        if (n === a['user-docs']) { firstMs = Date.now() - t2; break; }
        if (partial.length < 20) partial.push(`${Date.now() - t2} ms: ${n < 0 ? `status ${-n}` : `${n} rows`}`);
        await sleep(50);
      }
      rows.push(['couchgate index, cold start (no snapshot)', `${listenMs} ms`, firstMs == null ? 'no complete answer in 600 s' : `${firstMs} ms`, '', `${fmt(rssMiB(cold.pid).rss)} MiB`]);
      if (partial.length) ctx.note(`cold-started index couchgate answered \`_changes?since=0\` incompletely before it had caught up (the user has ${a['user-docs']} docs): ${partial.join('; ')}`);
      cold.expectedDown = true;
      await cold.stop();
    }
    ctx.section(`Restart at ${last.size.toLocaleString('en-US')} other docs`, mdTable(
      ['path', 'start to listening', 'first _changes after start', 'second _changes', 'RSS after'], rows));
  }
}

function reportSize(ctx, row, paths) {
  const direct = row.paths[paths[0].label];
  const dp50 = median(direct.p50);
  const dp99 = median(direct.p99);
  const rows = paths.map((p) => {
    const r = row.paths[p.label];
    const p50 = median(r.p50);
    const p99 = median(r.p99);
    return [p.label, fmtMs(p50), fmtMs(p99), fmt(timeRatio(p50, dp50), 2), fmt(timeRatio(p99, dp99), 2),
      `${r.first} ms`, p.pid ? `${fmt(median(r.cpu))} ms` : '-', Number.isFinite(median(r.bcpu)) ? `${fmt(median(r.bcpu))} ms` : 'n/a',
      r.n.join('/')];
  });
  ctx.section(`${row.size.toLocaleString('en-US')} other docs in the shared database`, mdTable(
    ['path', 'p50', 'p99', 'ratio p50', 'ratio p99', 'first request after load', 'couchgate CPU/request', 'backend CPU/request', 'requests per rep'], rows) +
    `\n\nMedians over ${ctx.args.reps} repetitions; raw p50 per repetition: ` +
    paths.map((p) => `${p.label} ${row.paths[p.label].p50.map((x) => fmt(x)).join(', ')} ms`).join('; ') + '.');
}
