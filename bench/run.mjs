#!/usr/bin/env node
// couchgate benchmark harness. `node bench/run.mjs --help` lists the benchmarks and options.
//
// Every benchmark starts its own backend (PouchDB Server in memory, or the CouchDB in
// COUCHDB_URL) and couchgate (the release binary, or COUCHGATE_BIN), generates its own data,
// measures each figure through couchgate and straight at the backend in the same run (medians of
// --reps repetitions), prints the ratios and writes bench/results/<name>-<date>.md.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { tokenFor } from '../conformance/lib/jwt.mjs';
import { startBackend, startCouchgate, couchgateBin, couchgateHelp, machineInfo, BENCH, ROOT } from './lib/procs.mjs';
import { request, requestOk } from './lib/http.mjs';
import { startCountingProxy } from './lib/countproxy.mjs';
import { log, mdTable } from './lib/util.mjs';
import * as changesScale from './changes-scale.mjs';
import * as idleFeeds from './idle-feeds.mjs';
import * as multipartUpload from './multipart-upload.mjs';
import * as mangoFind from './mango-find.mjs';
import * as proxyOverhead from './proxy-overhead.mjs';

const BENCHMARKS = { 'changes-scale': changesScale, 'idle-feeds': idleFeeds, 'mango-find': mangoFind, 'multipart-upload': multipartUpload, 'proxy-overhead': proxyOverhead };

const COMMON = {
  reps: { def: 3, help: 'repetitions of every measurement; figures are medians over them' },
  'backend-heap-mb': { def: 12288, help: 'heap limit of the PouchDB Server process (ignored with COUCHDB_URL)' },
  'gate-args': { def: '', help: 'extra couchgate flags for every couchgate started, space-separated' },
  'gate-log': { def: 'info', help: 'couchgate log filter (COUCHGATE_LOG), as in production' },
  out: { def: '', help: 'result file (default bench/results/<name>-<date>.md; "-" for none)' },
  keep: { def: false, help: 'keep the temp directory (logs) after the run' },
};

function usage() {
  const opt = (o) => Object.entries(o).map(([k, v]) => `    --${k.padEnd(18)} ${v.help} (default: ${v.def === '' ? 'none' : v.def})`).join('\n');
  return `Usage: node bench/run.mjs <benchmark> [options]

Benchmarks:
${Object.entries(BENCHMARKS).map(([n, m]) => `  ${n}\n    ${m.describe}\n${opt(m.options)}`).join('\n\n')}

Options of every benchmark:
${opt(COMMON)}
    --help               this text

Environment:
  COUCHDB_URL     a real CouchDB 3 with admin credentials (http://admin:pass@127.0.0.1:5984) instead of
                  PouchDB Server in memory; the harness creates and deletes bench_* databases there
  COUCHDB_PID     with COUCHDB_URL on this machine: the PID of its beam.smp, for backend CPU and RSS figures
                  (e.g. COUCHDB_PID=$(cat /opt/couchdb-build/couchdb.pid)); without it they are n/a
  COUCHDB_LOG     with COUCHDB_URL on this machine: CouchDB's log file (one line per request); changes-scale
                  then also counts couchgate's backend requests from it, as a cross-check of its counting proxy
  COUCHGATE_BIN   couchgate binary (default target/release/couchgate; build with cargo build --release;
                  e.g. COUCHGATE_BIN=/tmp/bench-target/release/couchgate for a CARGO_TARGET_DIR build)

Ratios are speed ratios: direct time ÷ couchgate time (or couchgate rate ÷ direct rate).
1.00 means couchgate costs nothing; 0.50 means half the speed of talking to the backend directly.
`;
}

function parseArgs(argv, spec) {
  const out = {};
  for (const [k, v] of Object.entries(spec)) out[k] = v.def;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    let [k, v] = a.slice(2).split(/=(.*)/s);
    if (!(k in spec)) throw new Error(`unknown option --${k} (see --help)`);
    if (v === undefined) {
      if (typeof spec[k].def === 'boolean') v = 'true';
      else v = argv[++i];
    }
    if (v === undefined) throw new Error(`--${k} needs a value`);
    const d = spec[k].def;
    out[k] = typeof d === 'number' ? Number(v) : typeof d === 'boolean' ? v !== 'false' : v;
    if (typeof d === 'number' && !Number.isFinite(out[k])) throw new Error(`--${k} must be a number`);
  }
  return out;
}

/** Everything a benchmark needs: processes, data helpers and the report. */
class Context {
  constructor(name, args, dir) {
    this.name = name;
    this.args = args;
    this.dir = dir;
    this.tag = crypto.randomBytes(3).toString('hex');
    this.secret = crypto.randomBytes(24).toString('hex');
    this.sections = [];
    this.notes = [];
    this.gates = [];
    this.proxies = [];
    this.dbs = new Set();
    this.help = couchgateHelp();
  }

  /** Does this couchgate build know `--flag`? */
  hasFlag(flag) {
    return new RegExp(`(^|\\s)${flag.replace(/[-]/g, '\\-')}[\\s=,]`, 'm').test(this.help);
  }

  note(text) {
    log(`NOTE: ${text}`);
    this.notes.push(text);
  }

  section(title, markdown) {
    this.sections.push(`## ${title}\n\n${markdown}\n`);
    console.log(`\n## ${title}\n\n${markdown}\n`);
  }

  /**
   * Starts a couchgate on `database`. With `countBackend` its backend URL is a counting proxy
   * (lib/countproxy.mjs) in front of the backend: `gate.counter` counts its backend requests.
   * `via` reuses the counting proxy of an earlier couchgate (same backend URL, so a restarted
   * couchgate reopens its changes index, whose file belongs to the backend URL). Without a
   * `--data-dir` in `extraArgs`, each couchgate gets a fresh one in the run's temp directory.
   */
  async startGate({ database, extraArgs = [], name = 'couchgate', countBackend = false, via = null }) {
    const gateArgs = this.args['gate-args'] ? this.args['gate-args'].split(/\s+/).filter(Boolean) : [];
    if (this.hasFlag('--data-dir') && ![...gateArgs, ...extraArgs].includes('--data-dir')) {
      gateArgs.push('--data-dir', path.join(this.dir, `data-${name}-${this.gates.length}`));
    }
    let counter = via;
    if (!counter && countBackend) { counter = await startCountingProxy(this.backend.url); this.proxies.push(counter); }
    const gate = await startCouchgate({
      backendUrl: counter ? counter.url : this.backend.url, database, secret: this.secret, dir: this.dir, name,
      extraArgs: [...gateArgs, ...extraArgs],
      env: { COUCHGATE_LOG: this.args['gate-log'], COUCHGATE_JWT_LEEWAY_SECS: '30' },
    });
    gate.counter = counter;
    this.gates.push(gate);
    this.dbs.add(database);
    return gate;
  }

  token(user) {
    return tokenFor(user, this.secret, { ttl: 24 * 3600 });
  }

  /** URL of a backend database (with credentials, if any). */
  backendDb(name) {
    this.dbs.add(name);
    return `${this.backend.url}/${encodeURIComponent(name)}`;
  }

  async createBackendDb(name) {
    const url = this.backendDb(name);
    const res = await request(url, { method: 'PUT' });
    if (res.status !== 201 && res.status !== 202 && res.status !== 412) throw new Error(`PUT ${name} -> ${res.status} ${res.body}`);
    return url;
  }

  async deleteBackendDb(name) {
    await request(`${this.backend.url}/${encodeURIComponent(name)}`, { method: 'DELETE', timeout: 600000 }).catch(() => {});
    this.dbs.delete(name);
  }

  /** Writes docs straight into a backend database in batches; returns ms taken. */
  async backendBulk(url, docs, batch = 5000) {
    const t = Date.now();
    for (let i = 0; i < docs.length; i += batch) {
      const res = await requestOk(`${url}/_bulk_docs`, { method: 'POST', json: { docs: docs.slice(i, i + batch) }, timeout: 600000 });
      const bad = res.filter((r) => r.error);
      if (bad.length) throw new Error(`_bulk_docs: ${bad.length} errors, e.g. ${JSON.stringify(bad[0])}`);
    }
    return Date.now() - t;
  }

  /** Creates a user's virtual database through couchgate (idempotent). */
  async gateCreateDb(gate, user, db) {
    const res = await request(`${gate.url}/${encodeURIComponent(db)}`, { method: 'PUT', auth: `Bearer ${this.token(user)}` });
    if (res.status !== 201 && res.status !== 412) throw new Error(`couchgate PUT /${db} as ${user} -> ${res.status} ${res.body}`);
  }

  async gateBulk(gate, user, db, docs, batch = 1000) {
    for (let i = 0; i < docs.length; i += batch) {
      const res = await requestOk(`${gate.url}/${encodeURIComponent(db)}/_bulk_docs`, {
        method: 'POST', json: { docs: docs.slice(i, i + batch) }, auth: `Bearer ${this.token(user)}`, timeout: 600000,
      });
      const bad = res.filter((r) => r.error);
      if (bad.length) throw new Error(`couchgate _bulk_docs: ${bad.length} errors, e.g. ${JSON.stringify(bad[0])}`);
    }
  }

  checkAlive() {
    if (!this.backend.alive) throw new Error(this.backend.exitInfo());
    for (const g of this.gates) if (!g.alive && !g.expectedDown) throw new Error(g.exitInfo());
  }

  async cleanup() {
    for (const g of this.gates) await g.stop().catch(() => {});
    for (const p of this.proxies) await p.stop().catch(() => {});
    if (this.backend?.kind === 'couchdb') {
      for (const db of this.dbs) await this.deleteBackendDb(db);
    }
    await this.backend?.stop();
  }
}

function command() {
  const env = [];
  if (process.env.COUCHDB_URL) env.push(`COUCHDB_URL=${process.env.COUCHDB_URL.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@')}`);
  for (const k of ['COUCHDB_PID', 'COUCHDB_LOG', 'COUCHGATE_BIN']) if (process.env[k]) env.push(`${k}=${process.env[k]}`);
  const q = (a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`);
  return [...env, 'node', 'bench/run.mjs', ...process.argv.slice(2).map(q)].join(' ');
}

async function main() {
  const argv = process.argv.slice(2);
  const name = argv[0];
  if (!name || name === '--help' || name === '-h' || argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(usage());
    return;
  }
  const bench = BENCHMARKS[name];
  if (!bench) throw new Error(`unknown benchmark ${name}; one of ${Object.keys(BENCHMARKS).join(', ')}`);
  const args = parseArgs(argv.slice(1), { ...COMMON, ...bench.options });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `couchgate-bench-${name}-`));
  const ctx = new Context(name, args, dir);
  const started = new Date();
  const info = machineInfo();
  const loadStart = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  log(`${name}: logs in ${dir}`);
  let error = null;
  let stopping = false;
  const onSignal = async (sig) => {
    if (stopping) return;
    stopping = true;
    log(`${sig}: cleaning up`);
    await ctx.cleanup();
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    ctx.backend = await startBackend({ dir, couchdbUrl: process.env.COUCHDB_URL, couchdbPid: process.env.COUCHDB_PID, heapMb: args['backend-heap-mb'] });
    log(`backend: ${ctx.backend.version} at ${ctx.backend.url.replace(/\/\/[^@/]*@/, '//')}`);
    await bench.run(ctx);
  } catch (e) {
    error = e;
    log(`FAILED: ${e.stack || e}`);
    for (const g of ctx.gates) if (!g.alive) log(g.exitInfo());
  } finally {
    await ctx.cleanup();
  }
  const finished = new Date();
  const head = [
    `# ${name}: ${started.toISOString().slice(0, 10)}`,
    '',
    '```sh',
    command(),
    '```',
    '',
    mdTable(['', ''], [
      ['started / finished', `${started.toISOString()} / ${finished.toISOString()} (${((finished - started) / 60000).toFixed(1)} min)`],
      ['machine', `${info.nproc} cores (${info.cpu}), ${info.memory} RAM, ${info.kernel}, ulimit -n ${info.ulimitN}`],
      ['toolchain', `node ${info.node}, ${info.rustc}`],
      ['couchgate', `${info.binary}; source tree: ${info.commit}${info.stale ? `; **${info.stale}**` : ''}`],
      ['backend', ctx.backend ? ctx.backend.version : 'n/a'],
      ['load average (1/5/15 min)', `at start ${loadStart}; at end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`],
      ['options', Object.entries(args).map(([k, v]) => `--${k} ${v === '' ? "''" : v}`).join(' ')],
    ]),
    '',
    'Client (this harness), couchgate and the backend share the same cores. Ratios are speed ratios:',
    'direct time ÷ couchgate time, or couchgate rate ÷ direct rate; 1.00 = parity, 0.50 = half speed.',
    '',
  ];
  if (error) ctx.notes.push(`**The run failed**: ${String(error.message || error).split('\n')[0]}`);
  const notes = ctx.notes.length ? ['## Notes', '', ...ctx.notes.map((n) => `- ${n}`), ''] : [];
  const text = [...head, ...notes, ...ctx.sections].join('\n');
  if (args.out !== '-') {
    const file = args.out || path.join(BENCH, 'results', `${name}-${started.toISOString().slice(0, 16).replace(/:/g, '').replace('T', '-')}.md`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, text);
    log(`wrote ${path.relative(process.cwd(), file)}`);
  }
  if (!args.keep && !error) fs.rmSync(dir, { recursive: true, force: true });
  else log(`logs kept in ${dir}`);
  process.exitCode = error ? 1 : 0;
}

main().catch((e) => {
  console.error(e.message || e);
  process.exit(2);
});
