// idle-feeds: F idle `_changes?feed=longpoll&heartbeat=...` feeds of many users on one couchgate:
// its memory per feed, its connections to the backend, its idle CPU, and how long a write takes
// to reach its owner's open feed (against the same on a plain backend database).
import http from 'node:http';
import { request, agent } from './lib/http.mjs';
import { cpuSeconds, fdCount, rssMiB, tcpConnections } from './lib/procs.mjs';
import { fmt, fmtMs, log, makeDoc, mdTable, median, percentile, sleep, timeRatio } from './lib/util.mjs';

export const describe = 'F idle longpoll/continuous feeds on one couchgate: RSS per feed, backend connections, write-to-owner-feed latency';
export const options = {
  feeds: { def: 10000, help: 'idle feeds to open (each is a client socket; see ulimit -n)' },
  users: { def: 1000, help: 'users owning them (feeds per user = feeds / users)' },
  feed: { def: 'longpoll', help: 'longpoll or continuous' },
  heartbeat: { def: 10000, help: 'heartbeat of every feed, ms' },
  writes: { def: 50, help: 'writes whose arrival at the owner\'s open feed is timed' },
  'idle-seconds': { def: 20, help: 'idle window over which CPU use is measured' },
  'open-concurrency': { def: 200, help: 'feeds being opened at once' },
  'max-connections': { def: 0, help: 'couchgate --max-connections (0: feeds + 1000, so the cap does not decide the outcome)' },
  'open-seconds': { def: 300, help: 'time limit for opening the feeds' },
  'write-seconds': { def: 180, help: 'time limit of the write phase (writes stop early beyond it)' },
  source: { def: '', help: 'couchgate --changes-source value (when the flag exists; default: its own default)' },
};

const VDB = 'notes';

export async function run(ctx) {
  const a = ctx.args;
  if (a.feed !== 'longpoll' && a.feed !== 'continuous') throw new Error('--feed is longpoll or continuous');
  const F = a.feeds;
  const U = Math.max(1, Math.min(a.users, F));
  const perUser = Math.ceil(F / U);
  const shared = `bench_if_${ctx.tag}`;
  const extra = ['--max-connections', String(a['max-connections'] || F + 1000)];
  if (a.source) {
    if (ctx.hasFlag('--changes-source')) extra.push('--changes-source', a.source);
    else ctx.note(`--source ${a.source} asked for, but this couchgate has no --changes-source flag; its built-in source was used`);
  }
  const ulimit = Number((await import('node:child_process')).execSync('sh -c "ulimit -n"', { encoding: 'utf8' }).trim());
  if (2 * F + 100 > ulimit) {
    ctx.note(`ulimit -n is ${ulimit} (the hard limit of this environment; raise it with \`ulimit -n 65536\` where permitted). ` +
      `couchgate holds one client socket per feed, and one backend socket per feed if it relays each feed's wait upstream: ${F} feeds may need up to ${2 * F} descriptors in couchgate`);
  }
  const gate = await ctx.startGate({ database: shared, extraArgs: extra });
  const backendPort = ctx.backend.port;
  const small = agent(32);

  // Direct baseline and the single-feed figure through couchgate, before the crowd arrives.
  const directDb = `bench_if_direct_${ctx.tag}`;
  const directUrl = await ctx.createBackendDb(directDb);
  const results = {};
  results.direct = await writeLatency(ctx, {
    label: 'direct (plain db, 1 feed)', n: a.writes,
    feedUrl: (since) => `${directUrl}/_changes?feed=${a.feed}&heartbeat=${a.heartbeat}&since=${encodeURIComponent(since)}`,
    sinceUrl: `${directUrl}/_changes?since=now&limit=1`,
    write: (id) => request(`${directUrl}/${id}`, { method: 'PUT', json: makeDoc(id, 0, 1024), agent: small }),
  });
  const probeUser = 'probe-user';
  await ctx.gateCreateDb(gate, probeUser, VDB);
  const probeAuth = `Bearer ${ctx.token(probeUser)}`;
  const gateProbe = (label) => ({
    label, n: a.writes, auth: probeAuth,
    feedUrl: (since) => `${gate.url}/${VDB}/_changes?feed=${a.feed}&heartbeat=${a.heartbeat}&since=${encodeURIComponent(since)}`,
    sinceUrl: `${gate.url}/${VDB}/_changes?since=now&limit=1`,
    write: (id) => request(`${gate.url}/${VDB}/${id}`, { method: 'PUT', json: makeDoc(id, 0, 1024), auth: probeAuth, agent: small }),
  });
  results.gate1 = await writeLatency(ctx, gateProbe('couchgate, 1 feed open'));

  // Users and their starting sequences.
  const users = Array.from({ length: U }, (_, i) => ({ name: `idle-${String(i).padStart(5, '0')}`, since: null, feeds: [] }));
  for (let i = 0; i < U; i += 16) {
    await Promise.all(users.slice(i, i + 16).map(async (u) => {
      u.auth = `Bearer ${ctx.token(u.name)}`;
      await ctx.gateCreateDb(gate, u.name, VDB);
      const r = await request(`${gate.url}/${VDB}/_changes?since=now&limit=1`, { auth: u.auth, agent: small });
      if (r.status !== 200) throw new Error(`_changes?since=now as ${u.name} -> ${r.status} ${r.body.slice(0, 200)}`);
      u.since = r.json().last_seq;
    }));
  }
  await sleep(2000);
  const before = { rss: rssMiB(gate.pid), fds: fdCount(gate.pid), backendConns: tcpConnections(gate.pid, backendPort), backendRss: rssMiB(ctx.backend.pid) };
  log(`before feeds: couchgate RSS ${fmt(before.rss.rss)} MiB, ${before.fds} fds, ${before.backendConns.total} backend connections`);

  // Open the feeds.
  const feedAgent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: F + 100 });
  const gateUrl = new URL(gate.url);
  const stats = { opened: 0, ended: 0, reopened: 0, errors: {}, statuses: {}, bytes: 0, failedOpen: 0 };
  let stopping = false;
  const waiters = new Map(); // doc id -> resolve(time)
  const all = [];
  function open(f) {
    return new Promise((resolve) => {
      const u = f.user;
      const path = `/${VDB}/_changes?feed=${a.feed}&heartbeat=${a.heartbeat}&style=all_docs&since=${encodeURIComponent(u.since)}`;
      const req = http.request({ hostname: gateUrl.hostname, port: gateUrl.port, path, agent: feedAgent, headers: { Authorization: u.auth, Accept: 'application/json' } });
      f.req = req;
      let settled = false;
      const done = (ok) => { if (!settled) { settled = true; resolve(ok); } };
      req.on('response', (res) => {
        stats.statuses[res.statusCode] = (stats.statuses[res.statusCode] || 0) + 1;
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          stats.bytes += c.length;
          text += c;
          if (a.feed === 'continuous') onContinuous(f, text, (rest) => { text = rest; });
        });
        res.on('end', () => {
          stats.ended++;
          if (res.statusCode === 200 && a.feed === 'longpoll') {
            try {
              const body = JSON.parse(text);
              u.since = body.last_seq;
              for (const r of body.results) waiters.get(r.id)?.(process.hrtime.bigint());
            } catch (e) { stats.errors.parse = (stats.errors.parse || 0) + 1; }
          }
          if (!stopping && res.statusCode === 200) { stats.reopened++; open(f); }
        });
        res.on('error', () => {});
        if (res.statusCode === 200) done(true); else { stats.failedOpen++; done(false); }
      });
      req.on('error', (e) => {
        if (!stopping) stats.errors[e.code || e.message] = (stats.errors[e.code || e.message] || 0) + 1;
        done(false);
      });
      req.end();
    });
  }
  function onContinuous(f, text, keep) {
    const lines = text.split('\n');
    keep(lines.pop());
    for (const l of lines) {
      if (!l.trim()) continue;
      try {
        const row = JSON.parse(l);
        if (row.seq) f.user.since = row.seq;
        if (row.id) waiters.get(row.id)?.(process.hrtime.bigint());
      } catch { /* partial */ }
    }
  }
  for (const u of users) for (let k = 0; k < perUser && all.length < F; k++) { const f = { user: u, k }; u.feeds.push(f); all.push(f); }
  const tOpen = Date.now();
  let ok = 0;
  const openDeadline = Date.now() + a['open-seconds'] * 1000;
  for (let i = 0; i < all.length && Date.now() < openDeadline; i += a['open-concurrency']) {
    const r = await Promise.all(all.slice(i, i + a['open-concurrency']).map(open));
    ok += r.filter(Boolean).length;
    if ((i / a['open-concurrency']) % 10 === 9) log(`  opened ${ok}/${i + r.length} feeds; couchgate fds ${fdCount(gate.pid)}`);
    if (!gate.alive) break;
  }
  const openMs = Date.now() - tOpen;
  stats.opened = ok;
  log(`opened ${ok}/${F} feeds in ${(openMs / 1000).toFixed(1)} s; statuses ${JSON.stringify(stats.statuses)} errors ${JSON.stringify(stats.errors)}`);
  if (ok < F) ctx.note(`only ${ok} of ${F} feeds opened: statuses ${JSON.stringify(stats.statuses)}, client errors ${JSON.stringify(stats.errors)}; couchgate ${gate.alive ? 'still running' : 'EXITED'}; last couchgate log lines: \`${gate.logTail(5).replace(/\s+/g, ' ').slice(0, 600)}\``);

  // Idle.
  await sleep(3000);
  const c0 = cpuSeconds(gate.pid); const b0 = cpuSeconds(ctx.backend.pid); const bytes0 = stats.bytes; const t0 = Date.now();
  await sleep(a['idle-seconds'] * 1000);
  const idleS = (Date.now() - t0) / 1000;
  const idle = {
    gateCpu: (cpuSeconds(gate.pid) - c0) / idleS, backendCpu: (cpuSeconds(ctx.backend.pid) - b0) / idleS,
    bytesPerS: (stats.bytes - bytes0) / idleS, reopenedDuringIdle: stats.reopened,
  };
  const after = { rss: rssMiB(gate.pid), fds: fdCount(gate.pid), backendConns: tcpConnections(gate.pid, backendPort), backendRss: rssMiB(ctx.backend.pid) };
  log(`with ${ok} feeds: couchgate RSS ${fmt(after.rss.rss)} MiB, ${after.fds} fds, backend connections ${JSON.stringify(after.backendConns)}; idle CPU ${fmt(idle.gateCpu * 100)} %`);

  // Writes to owners of open feeds.
  let crowd = null;
  if (gate.alive && ok > 0) {
    const c1 = cpuSeconds(gate.pid); const b1 = cpuSeconds(ctx.backend.pid); const r1 = stats.reopened;
    const tw = Date.now();
    const lat = []; const putLat = []; let timeouts = 0;
    const step = Math.max(1, Math.floor(U / a.writes));
    const writeDeadline = Date.now() + a['write-seconds'] * 1000;
    let written = 0;
    for (let i = 0; i < a.writes; i++) {
      if (Date.now() > writeDeadline) {
        ctx.note(`the write phase stopped after ${i} of ${a.writes} writes: its ${a['write-seconds']} s limit was reached`);
        break;
      }
      written++;
      const u = users[(i * step) % U];
      const id = `w-${i}-${Date.now()}`;
      const arrived = new Promise((resolve) => { waiters.set(id, resolve); });
      const t = process.hrtime.bigint();
      const res = await request(`${gate.url}/${VDB}/${id}`, { method: 'PUT', json: makeDoc(id, i, 1024), auth: u.auth, agent: small });
      const tPut = process.hrtime.bigint();
      if (res.status !== 201) throw new Error(`PUT as ${u.name} -> ${res.status} ${res.body.slice(0, 200)}`);
      const got = await Promise.race([arrived, sleep(30000).then(() => null)]);
      waiters.delete(id);
      putLat.push(Number(tPut - t) / 1e6);
      if (got == null) timeouts++; else lat.push(Number(got - t) / 1e6);
      await sleep(200);
    }
    crowd = { label: `couchgate, ${ok} feeds open`, p50: percentile(lat, 50), p99: percentile(lat, 99), put50: percentile(putLat, 50), timeouts,
      // CPU of the write phase minus what the same time costs when idle (heartbeats), per write.
      gateCpuPerWrite: ((cpuSeconds(gate.pid) - c1 - idle.gateCpu * ((Date.now() - tw) / 1000)) * 1000) / written,
      backendCpuPerWrite: ((cpuSeconds(ctx.backend.pid) - b1 - idle.backendCpu * ((Date.now() - tw) / 1000)) * 1000) / written,
      reopenedPerWrite: (stats.reopened - r1) / written, written };
    log(`write -> owner feed with ${ok} feeds: p50 ${fmtMs(crowd.p50)} p99 ${fmtMs(crowd.p99)}, ${timeouts} timeouts, couchgate CPU ${fmt(crowd.gateCpuPerWrite)} ms/write`);
  }
  const end = { rss: rssMiB(gate.pid), backendConns: gate.alive ? tcpConnections(gate.pid, backendPort) : { total: NaN } };
  stopping = true;
  for (const f of all) f.req?.destroy();
  feedAgent.destroy();

  // Report.
  const perFeedKiB = ((after.rss.rss - before.rss.rss) * 1024) / ok;
  ctx.section(`Resources with ${ok.toLocaleString('en-US')} idle ${a.feed} feeds (${U} users x ${perUser}), changes source: ${a.source || 'couchgate default'}`, mdTable(['', 'before feeds', `with ${ok} feeds`], [
    ['couchgate RSS', `${fmt(before.rss.rss)} MiB`, `${fmt(after.rss.rss)} MiB (peak ${fmt(after.rss.hwm)} MiB; after the writes ${fmt(end.rss.rss)} MiB)`],
    ['RSS per feed', '', `${fmt(perFeedKiB)} KiB`],
    ['couchgate open fds', before.fds, after.fds],
    ['couchgate threads', before.rss.threads, after.rss.threads],
    ['couchgate -> backend TCP connections', fmtConns(before.backendConns), `${fmtConns(after.backendConns)} (after the writes: ${fmtConns(end.backendConns)})`],
    ['backend RSS', `${fmt(before.backendRss.rss)} MiB`, `${fmt(after.backendRss.rss)} MiB`],
    [`idle CPU over ${a['idle-seconds']} s`, '', `couchgate ${fmt(idle.gateCpu * 100)} % of a core, backend ${fmt(idle.backendCpu * 100)} %`],
    ['feeds that ended and were reopened while idle', '', String(idle.reopenedDuringIdle)],
    ['time to open the feeds', '', `${(openMs / 1000).toFixed(1)} s (${fmt(ok / (openMs / 1000))} feeds/s)`],
    ['open failures', '', `${F - ok} (response statuses of all feed requests of the run, reopened ones included: ${JSON.stringify(stats.statuses)}; client errors ${JSON.stringify(stats.errors)})`],
  ]));
  const rows = [results.direct, results.gate1, crowd].filter(Boolean).map((r) => [r.label, fmtMs(r.p50), fmtMs(r.p99),
    fmt(timeRatio(r.p50, results.direct.p50), 2), fmt(timeRatio(r.p99, results.direct.p99), 2), fmtMs(r.put50), String(r.timeouts ?? 0),
    r.gateCpuPerWrite != null ? `${fmt(r.gateCpuPerWrite)} ms / ${fmt(r.backendCpuPerWrite)} ms` : '', r.reopenedPerWrite != null ? fmt(r.reopenedPerWrite) : '']);
  ctx.section('Write to owner\'s open feed', mdTable(['setting', 'p50', 'p99', 'ratio p50', 'ratio p99', 'PUT p50', 'timeouts (30 s)', 'CPU per write couchgate / backend (net of idle)', 'feeds ended per write'], rows) +
    `\n\nTime from sending a PUT (as the feed's owner) until the owner's open ${a.feed} feed delivers the row; ${crowd ? crowd.written : a.writes} writes with the crowd (${a.writes} for the single-feed rows), 200 ms apart, each by a different user. ` +
    'Single-feed figures are medians of per-write latencies over one pass (no repetitions: the figure is itself a distribution).');
}

function fmtConns(c) {
  if (!Number.isFinite(c.total)) return 'n/a';
  const rest = Object.entries(c).filter(([k]) => k !== 'total').map(([k, v]) => `${k} ${v}`).join(', ');
  return `${c.total}${rest ? ` (${rest})` : ''}`;
}

/** p50/p99 of write -> open feed delivery with a single feed (`n` writes). */
async function writeLatency(ctx, { label, n, feedUrl, sinceUrl, write, auth }) {
  const ag = agent(4);
  const first = await request(sinceUrl, { auth, agent: ag });
  if (first.status !== 200) throw new Error(`${label}: ${sinceUrl} -> ${first.status}`);
  let since = first.json().last_seq;
  const lat = []; const putLat = []; let timeouts = 0;
  for (let i = 0; i < n; i++) {
    const id = `probe-${i}-${Date.now()}`;
    const feed = request(feedUrl(since), { auth, agent: ag, timeout: 30000 }).catch((e) => ({ error: e }));
    await sleep(100); // let the feed settle into its wait
    const t = process.hrtime.bigint();
    const w = await write(id);
    putLat.push(Number(process.hrtime.bigint() - t) / 1e6);
    if (w.status !== 201) throw new Error(`${label}: PUT -> ${w.status} ${w.body}`);
    const res = await feed;
    if (res.error || res.status !== 200) { timeouts++; continue; }
    lat.push(Number(process.hrtime.bigint() - t) / 1e6);
    const body = res.json();
    if (!body.results.some((r) => r.id === id)) throw new Error(`${label}: feed returned without ${id}: ${res.body.slice(0, 200)}`);
    since = body.last_seq;
  }
  ag.destroy();
  log(`${label}: write -> feed p50 ${fmtMs(percentile(lat, 50))} p99 ${fmtMs(percentile(lat, 99))}`);
  return { label, p50: percentile(lat, 50), p99: percentile(lat, 99), put50: percentile(putLat, 50), timeouts };
}
