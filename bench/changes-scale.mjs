// changes-scale: a user's `_changes?since=0` (style=all_docs and the default main_only; 100 docs
// of ~1 KB) while the shared backing database holds N documents of other users, through couchgate
// and straight at a plain database holding only that user's docs; with the number of backend
// requests couchgate made per client request (a counting proxy in between), couchgate's memory
// and index file, its restart (warm and cold) and the cost of a token from another instance.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { request } from './lib/http.mjs';
import { logMark, logSince } from './lib/countproxy.mjs';
import { cpuSeconds, rssMiB } from './lib/procs.mjs';
import { fmt, fmtMs, log, makeDoc, mdTable, median, percentile, timeRatio, sleep } from './lib/util.mjs';
import { agent } from './lib/http.mjs';

export const describe = "a user's _changes?since=0 (style=all_docs and default; 100 docs) as the shared db grows with other users' docs; restart and instance-switch costs";
export const options = {
  sizes: { def: '10000,100000', help: 'numbers of other users\' docs in the shared db, ascending (1000000 needs minutes and several GB)' },
  'user-docs': { def: 100, help: 'docs of the measured user' },
  'doc-size': { def: 1024, help: 'approximate JSON size of every doc, bytes' },
  requests: { def: 30, help: 'requests per path, size and repetition (p50/p99 over them)' },
  'max-seconds': { def: 60, help: 'time limit per path, size and repetition (at least 5 requests are made)' },
  batch: { def: 5000, help: '_bulk_docs batch size when loading other users\' docs' },
  restart: { def: true, help: 'after the largest size, restart couchgate on its data directory (warm) and on an empty one (cold), and time the first complete answer' },
  switch: { def: '100,10000', help: 'after the largest size: users of these sizes replay a token of one couchgate at a second one (each with its own data directory); empty for none' },
  styles: { def: 'all_docs,default', help: 'comma-separated: all_docs (style=all_docs), main_only (style=main_only), default (no style parameter: main_only)' },
  'count-backend': { def: true, help: 'put a counting HTTP proxy (lib/countproxy.mjs) between each measured couchgate and the backend and report its backend requests per _changes' },
  'load-concurrency': { def: 1, help: '_bulk_docs batches in flight at once when loading other users\' docs' },
};

const STYLE_QUERY = { all_docs: '&style=all_docs', main_only: '&style=main_only', default: '' };

const USER = 'bench-user';
/** Writes one doc per size after the load, to tell when the index has caught up. */
const SENTINEL = 'bench-sentinel';
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

/** Bytes under a directory (the changes index file, and redb's side files). */
function dirBytes(dir) {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    n += e.isDirectory() ? dirBytes(p) : fs.statSync(p).size;
  }
  return n;
}

const mib = (bytes) => `${fmt(bytes / 1048576)} MiB`;

export async function run(ctx) {
  const a = ctx.args;
  if (!ctx.hasFlag('--data-dir')) throw new Error('this couchgate build has no --data-dir flag: changes-scale measures the on-disk changes index (issue 11 and later)');
  const sizes = String(a.sizes).split(',').map((s) => Number(s.trim())).filter((n) => n > 0).sort((x, y) => x - y);
  if (!sizes.length) throw new Error('--sizes needs at least one positive number');
  const switchSizes = String(a.switch).split(',').map((s) => Number(s.trim())).filter((n) => n > 0);
  const shared = `bench_cs_${ctx.tag}`;
  const directDb = `bench_cs_direct_${ctx.tag}`;
  const ag = agent(8);
  const styles = String(a.styles).split(',').map((s) => s.trim()).filter(Boolean);
  for (const st of styles) if (!(st in STYLE_QUERY)) throw new Error(`--styles: unknown style ${st} (all_docs, main_only, default)`);
  if (!styles.length) throw new Error('--styles needs at least one style');
  const couchLog = ctx.backend.kind === 'couchdb' ? process.env.COUCHDB_LOG || '' : '';
  // A real CouchDB: the harness creates the shared database itself (couchgate would too).
  if (ctx.backend.kind === 'couchdb') await ctx.createBackendDb(shared);

  // The measured couchgate, and (for the switch) a second instance on the same shared database,
  // each with a data directory of its own.
  const dataDir = (name) => path.join(ctx.dir, `data-${name}`);
  const gateArgs = (name) => ['--data-dir', dataDir(name)];
  const gates = [{ label: 'couchgate', name: 'a', gate: await ctx.startGate({ database: shared, extraArgs: gateArgs('a'), name: 'couchgate-a', countBackend: a['count-backend'] }) }];
  const twin = switchSizes.length
    ? await ctx.startGate({ database: shared, extraArgs: gateArgs('b'), name: 'couchgate-b', countBackend: a['count-backend'] })
    : null;
  const auth = `Bearer ${ctx.token(USER)}`;

  // The measured user's docs: through couchgate into the shared db, and into a plain db.
  const userDocs = Array.from({ length: a['user-docs'] }, (_, i) => makeDoc(`note-${String(i).padStart(4, '0')}`, i, a['doc-size']));
  await ctx.gateCreateDb(gates[0].gate, USER, VDB);
  await ctx.gateBulk(gates[0].gate, USER, VDB, userDocs);
  const directUrl = await ctx.createBackendDb(directDb);
  await ctx.backendBulk(directUrl, userDocs);
  const sharedUrl = ctx.backendDb(shared);

  // One path per style and target; the direct path of a style is its ratio baseline.
  const paths = [];
  for (const style of styles) {
    const q = `?since=0${STYLE_QUERY[style]}`;
    paths.push({ label: `direct (own db), ${style}`, style, direct: true, url: `${directUrl}/_changes${q}`, auth: undefined, pid: null });
    for (const g of gates) paths.push({ label: `${g.label}, ${style}`, style, url: `${g.gate.url}/${VDB}/_changes${q}`, auth, pid: g.gate.pid, g });
  }
  if (a['count-backend']) {
    ctx.note('couchgate\'s backend connection goes through a counting HTTP proxy in the harness (bench/lib/countproxy.mjs): '
      + '"backend requests per _changes" is the number of requests couchgate sent to the backend during a timed window, divided by the client requests in it '
      + '(its changes follower\'s long-lived feed opened before the window is not counted); any backend request it makes pays one extra local hop');
  }
  if (couchLog) ctx.note(`backend requests are also counted from CouchDB's log (${couchLog}): lines of requests on the shared database that finished within the window`);

  async function once(p) {
    const res = await request(p.url, { auth: p.auth, agent: ag, timeout: 600000 });
    if (res.status !== 200) throw new Error(`${p.label}: _changes -> ${res.status} ${res.body.slice(0, 200)}`);
    const n = res.json().results.length;
    if (n !== a['user-docs']) throw new Error(`${p.label}: _changes returned ${n} rows, expected ${a['user-docs']}`);
  }

  let loaded = 0;
  let loadedBatches = 0;
  let loadedBatchesBefore = 0; // sizes loaded so far (one sentinel doc each)
  const perSize = [];
  for (const size of sizes) {
    // Grow the shared db to `size` other docs, straight at the backend.
    const t0 = Date.now();
    const starts = [];
    for (let start = loaded; start < size; start += a.batch) starts.push(start);
    let next = 0;
    let done = 0;
    const worker = async () => {
      while (next < starts.length) {
        const start = starts[next++];
        const docs = [];
        for (let k = start; k < Math.min(size, start + a.batch); k++) {
          const u = Math.floor(k / PER_OTHER_USER);
          docs.push(makeDoc(`u${u}.notes.${epochOf(u)}:doc-${k % PER_OTHER_USER}`, k, a['doc-size']));
        }
        await ctx.backendBulk(sharedUrl, docs, a.batch);
        done += docs.length;
        if (++loadedBatches % 20 === 0) log(`  loaded ${loaded + done}/${size} other docs (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
        ctx.checkAlive();
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, a['load-concurrency']) }, worker));
    const loadMs = Date.now() - t0;
    const loadedNow = size - loaded;
    loaded = size;
    log(`size ${size}: loaded ${loadedNow} docs in ${(loadMs / 1000).toFixed(1)} s`);
    // Wait until the index has read the whole load: a write through the measured couchgate
    // is in its `_changes` only once its follower has caught up with the feed (read-your-writes).
    const tc = Date.now();
    const sentinel = `Bearer ${ctx.token(SENTINEL)}`;
    if (!loadedBatchesBefore++) await ctx.gateCreateDb(gates[0].gate, SENTINEL, VDB);
    await ctx.gateBulk(gates[0].gate, SENTINEL, VDB, [{ _id: `after-${size}` }]);
    const caught = await untilComplete(`${gates[0].gate.url}/${VDB}/_changes?since=0`, sentinel, ag, loadedBatchesBefore, tc);
    if (caught.ms == null) throw new Error(`size ${size}: the index never caught up with the load`);
    log(`size ${size}: the index caught up ${caught.ms} ms after the load ended`);
    const row = { size, loadMs, loadedNow, catchUpMs: caught.ms, backendRss: rssMiB(ctx.backend.pid).rss, paths: {} };

    // First answer after the load (an index has to catch up with the load first).
    for (const p of paths) {
      const t = Date.now();
      await once(p);
      row.paths[p.label] = { first: Date.now() - t, p50: [], p99: [], mean: [], rate: [], n: [], cpu: [], bcpu: [], breq: [], bkeys: new Map(), lreq: [] };
    }
    // Repetitions, paths in rotating order.
    for (let rep = 0; rep < a.reps; rep++) {
      const order = paths.map((_, i) => paths[(i + rep) % paths.length]);
      for (const p of order) {
        await once(p); await once(p); // warm-up
        const counter = p.g?.gate.counter;
        const m0 = counter?.mark();
        const l0 = p.g && couchLog ? logMark(couchLog) : null;
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
        const sum = times.reduce((x, y) => x + y, 0);
        r.p50.push(percentile(times, 50)); r.p99.push(percentile(times, 99));
        r.mean.push(sum / times.length); r.rate.push(times.length / (sum / 1000)); r.n.push(times.length);
        r.cpu.push(((cpuSeconds(p.pid) - c0) * 1000) / times.length);
        r.bcpu.push(((cpuSeconds(ctx.backend.pid) - b0) * 1000) / times.length);
        let counted = '';
        if (counter) {
          const d = counter.since(m0);
          r.breq.push(d.total / times.length);
          for (const [k, n] of d.byKey) r.bkeys.set(k, (r.bkeys.get(k) || 0) + n);
          for (const [k] of d.byKey) if (k.includes('{doc}')) r.bex = [...new Set([...(r.bex || []), ...counter.examples(k)])];
          counted = `, ${d.total} backend requests`;
        }
        if (l0 != null) {
          await sleep(300); // CouchDB writes the line when a request has finished
          const d = logSince(couchLog, l0, `/${shared}`);
          if (d) { r.lreq.push(d.total / times.length); counted += ` (CouchDB log: ${d.total})`; }
        }
        log(`  size ${size} rep ${rep + 1} ${p.label}: p50 ${fmtMs(percentile(times, 50))} p99 ${fmtMs(percentile(times, 99))} (${times.length} requests${counted})`);
        ctx.checkAlive();
      }
    }
    row.gateRss = rssMiB(gates[0].gate.pid).rss;
    row.indexBytes = dirBytes(dataDir('a'));
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
    `${fmt(r.loadedNow / (r.loadMs / 1000))} docs/s`, `${fmt(r.catchUpMs)} ms`, Number.isFinite(r.backendRss) ? `${fmt(r.backendRss)} MiB` : 'n/a',
    `${fmt(r.gateRss)} MiB`, mib(r.indexBytes), `${fmt((r.indexBytes / (r.size + a['user-docs'])))} B`]);
  ctx.section('Loading other users\' docs (straight into the backend, _bulk_docs), and couchgate\'s memory', mdTable(
    ['total other docs', 'added', 'load time', 'rate', 'index caught up after the load', 'backend RSS after', 'couchgate RSS', 'index file(s)', 'index bytes per doc'], loadRows)
    + `\n\ncouchgate RSS is the whole process (the changes index keeps its file on disk, with a page cache bounded by --index-cache-mib, default 64); `
    + `the index file is its data directory's size after the measurements of that size. "Index caught up" is the time from the end of the load until a write through `
    + `couchgate (one doc of another user) was in its \`_changes\`, i.e. until its follower had read the whole load; the measurements of a size start after it.`);

  if (twin) await switches(ctx, { from: gates[0].gate, to: twin, shared, sizes: switchSizes, auth, ag, size: last.size, docSize: a['doc-size'] });
  if (a.restart) await restarts(ctx, { gate: gates[0].gate, shared, dataDir: dataDir('a'), coldDir: dataDir('cold'), styles, auth, ag, userDocs: a['user-docs'], size: last.size });
}

/**
 * Polls `_changes?since=0` until it answers 200 with all `expect` rows; returns the time from
 * `t0` and what came before (503s while the index was cold, partial answers).
 */
async function untilComplete(url, auth, ag, expect, t0) {
  const seen = [];
  while (Date.now() - t0 < 900000) {
    const res = await request(url, { auth, agent: ag, timeout: 600000 });
    const n = res.status === 200 ? res.json().results.length : -res.status;
    if (n === expect) return { ms: Date.now() - t0, seen };
    const what = n < 0 ? `status ${-n}${res.headers['retry-after'] ? ` (Retry-After ${res.headers['retry-after']})` : ''}` : `${n} rows`;
    if (seen.length < 12) seen.push(`${Date.now() - t0} ms: ${what}`);
    await sleep(50);
  }
  return { ms: null, seen };
}

/**
 * Restart of the measured couchgate at the largest size: on its own data directory (warm: the
 * index file is reopened) and on an empty one (cold: the index is built from the shared feed).
 */
async function restarts(ctx, { gate, shared, dataDir, coldDir, styles, auth, ag, userDocs, size }) {
  const rows = [];
  const q = `/${VDB}/_changes?since=0${STYLE_QUERY[styles[0]]}`;
  const via = gate.counter;
  gate.expectedDown = true;
  await gate.stop();
  for (const [label, dir] of [['warm: same data directory', dataDir], ['cold: empty data directory', coldDir]]) {
    const m0 = via?.mark();
    const t = Date.now();
    const fresh = await ctx.startGate({ database: shared, extraArgs: ['--data-dir', dir], name: `couchgate-${label.split(':')[0]}`, via });
    const listenMs = Date.now() - t;
    const first = await untilComplete(`${fresh.url}${q}`, auth, ag, userDocs, t);
    const t3 = Date.now();
    const second = await untilComplete(`${fresh.url}${q}`, auth, ag, userDocs, t3);
    rows.push([label, `${listenMs} ms`, first.ms == null ? 'no complete answer in 900 s' : `${first.ms} ms`, `${second.ms} ms`,
      await indexReady(fresh), `${fmt(rssMiB(fresh.pid).rss)} MiB`, via ? backendSummary(via.since(m0)) : 'n/a']);
    if (first.seen.length) ctx.note(`${label}: answers before the first complete one (the user has ${userDocs} docs): ${first.seen.join('; ')}`);
    fresh.expectedDown = true;
    await fresh.stop();
  }
  ctx.section(`Restart at ${size.toLocaleString('en-US')} other docs`, mdTable(
    ['start', 'start to listening', 'start to first complete _changes', 'next _changes', 'index (couchgate log)', 'RSS after', 'backend requests, start to first answer'], rows)
    + `\n\n\`${q}\`, timed from the process start. The restarted couchgate is given the same backend URL as before (with --count-backend, the same counting proxy): `
    + 'the index file belongs to its backend URL. A cold index answers 503 with Retry-After (after --changes-ready-wait-secs) until it has caught up.');
}

/**
 * The cost of a token sealed by one couchgate presented to another (a load balancer without
 * sticky sessions): users with `sizes` docs read their whole feed at `from`, then resume at `to`
 * from the last_seq `from` gave them; the same resume at `from` is the baseline.
 */
async function switches(ctx, { from, to, shared, sizes, auth: mainAuth, ag, size, docSize }) {
  const rows = [];
  for (const n of sizes) {
    const user = n === 100 ? USER : `bench-switch-${n}`;
    const auth = user === USER ? mainAuth : `Bearer ${ctx.token(user)}`;
    if (user !== USER) {
      await ctx.gateCreateDb(from, user, VDB);
      await ctx.gateBulk(from, user, VDB, Array.from({ length: n }, (_, i) => makeDoc(`s-${i}`, i, docSize)));
    }
    // The first complete read after the writes (a 503 while the index catches up is retried,
    // as clients do).
    const t0 = Date.now();
    const caught = await untilComplete(`${from.url}/${VDB}/_changes?since=0&limit=${n + 1}`, auth, ag, n, t0);
    if (caught.ms == null) throw new Error(`switch user ${user}: no complete _changes at the first couchgate (${caught.seen.join('; ')})`);
    if (caught.seen.length) ctx.note(`switch user with ${n} docs: answers at the first couchgate right after its writes, before the first complete one: ${caught.seen.join('; ')}`);
    const full = await request(`${from.url}/${VDB}/_changes?since=0`, { auth, agent: ag, timeout: 600000 });
    const body = full.json();
    if (full.status !== 200 || body.results.length !== n) throw new Error(`switch user ${user}: ${full.status}, ${body.results?.length} rows, expected ${n}`);
    // The second instance has followed the same shared feed: wait until it has this user's docs.
    const ready = await untilComplete(`${to.url}/${VDB}/_changes?since=0&limit=${n + 1}`, auth, ag, n, Date.now());
    if (ready.ms == null) throw new Error(`switch user ${user}: the second couchgate never had ${n} rows`);
    const measure = async (gate) => {
      const m0 = gate.counter?.mark();
      const t = process.hrtime.bigint();
      const res = await request(`${gate.url}/${VDB}/_changes?since=${encodeURIComponent(body.last_seq)}`, { auth, agent: ag, timeout: 600000 });
      const ms = Number(process.hrtime.bigint() - t) / 1e6;
      if (res.status !== 200) throw new Error(`switch user ${user}: ${res.status} ${res.body.slice(0, 200)}`);
      return { ms, rows: res.json().results.length, breq: gate.counter ? gate.counter.since(m0).total : NaN };
    };
    const same = []; const other = [];
    for (let rep = 0; rep < Math.max(3, ctx.args.reps); rep++) { same.push(await measure(from)); other.push(await measure(to)); }
    const med = (xs, k) => median(xs.map((x) => x[k]));
    const int = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a');
    rows.push([`${n.toLocaleString('en-US')} docs`, `${caught.ms} ms`, fmtMs(med(same, 'ms')), int(med(same, 'rows')), int(med(same, 'breq')),
      fmtMs(med(other, 'ms')), int(med(other, 'rows')), int(med(other, 'breq'))]);
  }
  ctx.section(`Instance switch at ${size.toLocaleString('en-US')} other docs`, mdTable(
    ['user', 'writes to first complete _changes', 'same instance: ms', 'rows', 'backend requests', 'other instance: ms', 'rows', 'backend requests'], rows)
    + '\n\n`_changes?since=<last_seq of a complete read at the first couchgate>`, at the first couchgate (nothing new: no rows) and at a second couchgate '
    + 'with its own data directory on the same shared database. A position sealed by another index replays the whole namespace from 0 '
    + '(the client sees rows it already has; its revs_diff finds nothing missing). Medians over the repetitions.');
}

/**
 * The changes index as this couchgate's log tells it (the part after its last start header):
 * how it was opened and when its follower had caught up. Waits up to 10 s for the lines.
 */
async function indexReady(gate) {
  for (let i = 0; i < 100; i++) {
    let text = '';
    try { text = fs.readFileSync(gate.log, 'utf8'); } catch { return 'n/a'; }
    text = text.slice(text.lastIndexOf('\n=== ')).replace(/\x1b\[[0-9;]*m/g, '');
    const opened = text.match(/changes index opened .*?opened=(\w+).*?docs=(\d+)/);
    const ready = text.match(/changes index ready .*?elapsed=([\d.]+)(ms|s|µs)/);
    const how = opened ? `opened ${opened[1]} with ${Number(opened[2]).toLocaleString('en-US')} docs` : '';
    if (ready) {
      const ms = Number(ready[1]) * (ready[2] === 's' ? 1000 : ready[2] === 'µs' ? 0.001 : 1);
      return `${how ? `${how}; ` : ''}caught up ${fmt(ms)} ms after the follower started`;
    }
    // An index that held data when opened answers at once (its follower reads what is new).
    if (opened && opened[1] !== 'New' && Number(opened[2]) > 0) return `${how}: answers at once`;
    await sleep(100);
  }
  return 'not caught up within 10 s of the answers';
}

/** `N (key xn, ...)` of a counting-proxy window. */
function backendSummary(d) {
  return `${d.total}${d.byKey.length ? ` (${d.byKey.slice(0, 4).map(([k, n]) => `\`${k}\` x${n}`).join(', ')}${d.byKey.length > 4 ? ', ...' : ''})` : ''}`;
}

function reportSize(ctx, row, paths) {
  const anyCount = paths.some((p) => row.paths[p.label].breq.length);
  const anyLog = paths.some((p) => row.paths[p.label].lreq.length);
  const rows = paths.map((p) => {
    const base = paths.find((x) => x.direct && x.style === p.style) || paths[0];
    const d = row.paths[base.label];
    const r = row.paths[p.label];
    const p50 = median(r.p50);
    const p99 = median(r.p99);
    const rate = median(r.rate);
    const breq = r.breq.length ? `${fmt(median(r.breq), 2)} (${r.breq.map((x) => fmt(x, 2)).join('/')})` : '-';
    const lreq = r.lreq.length ? `${fmt(median(r.lreq), 2)} (${r.lreq.map((x) => fmt(x, 2)).join('/')})` : '-';
    return [p.label, fmtMs(p50), fmtMs(p99), `${fmt(rate)}/s`, fmt(timeRatio(p50, median(d.p50)), 2), fmt(timeRatio(p99, median(d.p99)), 2),
      fmt(median(r.rate) / median(d.rate), 2),
      `${r.first} ms`, p.pid ? `${fmt(median(r.cpu))} ms` : '-', Number.isFinite(median(r.bcpu)) ? `${fmt(median(r.bcpu))} ms` : 'n/a',
      ...(anyCount ? [breq] : []), ...(anyLog ? [lreq] : []), r.n.join('/')];
  });
  const keys = paths.filter((p) => row.paths[p.label].bkeys.size)
    .map((p) => `${p.label}: ${[...row.paths[p.label].bkeys].sort((x, y) => y[1] - x[1]).map(([k, n]) => `\`${k}\` x${n}`).join(', ')}`
      + (row.paths[p.label].bex ? ` (doc paths seen by the proxy so far: ${row.paths[p.label].bex.map((x) => `\`${x}\``).join(', ')})` : ''));
  ctx.section(`${row.size.toLocaleString('en-US')} other docs in the shared database`, mdTable(
    ['path', 'p50', 'p99', 'rate (1 client)', 'ratio p50', 'ratio p99', 'ratio rate', 'first request after load', 'couchgate CPU/request', 'backend CPU/request',
      ...(anyCount ? ['backend requests per _changes (proxy; per rep)'] : []), ...(anyLog ? ['same from CouchDB log'] : []), 'requests per rep'], rows) +
    `\n\nRatios against the direct path of the same style. Medians over ${ctx.args.reps} repetitions, paths interleaved; rate = requests ÷ summed request time of one sequential client. Raw p50 per repetition: ` +
    paths.map((p) => `${p.label} ${row.paths[p.label].p50.map((x) => fmt(x)).join(', ')} ms`).join('; ') + '.' +
    (anyCount ? `\n\nBackend requests counted in the timed windows (all repetitions): ${keys.length ? keys.join('; ') : 'none'}.` : ''));
}
