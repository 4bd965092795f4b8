#!/usr/bin/env node
// couchgate conformance suite: every scenario in scenarios/ runs through couchgate (as users
// holding JWTs) and against the control (plain databases on the same backend), and after each
// couchgate run the backing database is checked for namespace hygiene.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Context, ControlTarget, GateTarget, SkipError } from './lib/context.mjs';
import { request, requestOk, stripCreds } from './lib/http.mjs';
import { checkNamespaces, snapshot } from './lib/namespace.mjs';
import { ROOT, makeTempDir, startBackend, startCouchgate } from './lib/procs.mjs';
import { errText } from './lib/util.mjs';

const HELP = `couchgate conformance suite

Usage: node run.mjs [options]        (npm test -- [options])

Starts PouchDB Server (in memory) and couchgate on free ports, runs every scenario twice -
through couchgate as JWT users, and straight at the backend as the control - checks the
backing database after each couchgate run, prints a table and "N passed, N failed".

Options:
  --only <pattern>     run scenarios whose number or name matches (regex, case-insensitive;
                       comma-separated list allowed), e.g. --only 01,conflicts
  --bin <path>         couchgate binary [env COUCHGATE_BIN, default ../target/debug/couchgate]
  --url <url>          test an external couchgate instead of starting one
  --backend-url <url>  that couchgate's CouchDB, with admin credentials
                       (http://admin:pass@host:5984); enables the control runs and the
                       backing-database checks. Without --url: start couchgate against it.
  --database <name>    the shared backing database [default: couchgate-conformance when the
                       suite starts couchgate, couchgate with --url]
  --secret <s>         HS256 secret couchgate verifies tokens with (mints one token per user)
  --token <jwt>        a single ready-made token (scenarios needing several users, token
                       expiry or forged tokens are skipped)
  --no-control         skip the control runs
  --control-only       run only the control runs (no couchgate needed)
  --verbose            print scenario notes as they happen
  -h, --help           this text

Environment: COUCHGATE_BIN, CHROMIUM_PATH (default /usr/bin/chromium).
Exit code: 0 when every run passed, 1 otherwise.`;

function parse() {
  const { values } = parseArgs({
    options: {
      only: { type: 'string' },
      bin: { type: 'string' },
      url: { type: 'string' },
      'backend-url': { type: 'string' },
      database: { type: 'string' },
      secret: { type: 'string' },
      token: { type: 'string' },
      'no-control': { type: 'boolean' },
      'control-only': { type: 'boolean' },
      verbose: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: false,
  });
  return values;
}

async function loadScenarios(only) {
  const dir = path.join(ROOT, 'scenarios');
  const files = fs.readdirSync(dir).filter((f) => /^\d+-.*\.mjs$/.test(f)).sort();
  const pats = only ? only.split(',').map((p) => new RegExp(p.trim(), 'i')) : null;
  const out = [];
  for (const f of files) {
    const id = f.split('-')[0];
    const name = f.replace(/^\d+-/, '').replace(/\.mjs$/, '');
    if (pats && !pats.some((re) => re.test(id) || re.test(name) || re.test(`${id}-${name}`))) continue;
    const mod = (await import(pathToFileURL(path.join(dir, f)))).default;
    out.push({ id, name, ...mod });
  }
  return out;
}

/** Our own processes (backend and couchgate), restarted if one dies. */
class Environment {
  constructor(opts) {
    this.opts = opts;
    this.dir = makeTempDir();
    this.secret = opts.secret || (opts.token ? null : crypto.randomBytes(24).toString('hex'));
    this.backend = null;
    this.gate = null;
    this.gateError = null;
  }

  get backendUrl() { return this.opts['backend-url'] || this.backend?.url || null; }
  get database() { return this.opts.database || (this.opts.url ? 'couchgate' : 'couchgate-conformance'); }

  async ensure({ needGate }) {
    const o = this.opts;
    if (!o['backend-url'] && !o.url && (!this.backend || !this.backend.alive)) {
      if (this.backend) console.log(`  ! ${this.backend.exitInfo()}\n  ! restarting PouchDB Server (and couchgate)`);
      this.backend = await startBackend({ dir: this.dir });
      if (this.gate) await this.gate.stop();
      this.gate = null;
    }
    if (needGate && !o.url && (!this.gate || !this.gate.alive) && !this.gateError) {
      if (this.gate) console.log(`  ! ${this.gate.exitInfo()}\n  ! restarting couchgate`);
      const bin = path.resolve(o.bin || process.env.COUCHGATE_BIN || path.join(ROOT, '..', 'target', 'debug', 'couchgate'));
      try {
        this.gate = await startCouchgate({
          bin, backendUrl: this.backendUrl, database: this.database, secret: this.secret, dir: this.dir,
        });
      } catch (e) {
        this.gateError = e;
      }
    }
  }

  gateTarget() {
    const o = this.opts;
    const backingUrl = this.backendUrl ? `${this.backendUrl.replace(/\/$/, '')}/${encodeURIComponent(this.database)}` : null;
    return new GateTarget({
      url: o.url || this.gate.url,
      secret: this.secret,
      token: o.token,
      gate: o.url ? null : this.gate,
      backingUrl,
    });
  }

  async stop() {
    if (this.gate) await this.gate.stop();
    if (this.backend) await this.backend.stop();
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`${what} timed out after ${ms / 1000} s`)), ms); }),
  ]);
}

async function runOne(env, sc, mode, shared, verbose) {
  const started = Date.now();
  let target;
  const result = { mode, status: 'fail', ms: 0, detail: '', notes: [] };
  try {
    await env.ensure({ needGate: mode === 'couchgate' });
    if (mode === 'couchgate') {
      if (env.gateError) throw env.gateError;
      target = env.gateTarget();
    } else {
      target = new ControlTarget({ backendUrl: env.backendUrl, prefix: `ctl-${sc.id}-` });
    }
  } catch (e) {
    result.detail = `environment: ${errText(e)}`;
    return result;
  }
  const ctx = new Context({
    target, scenario: sc, shared,
    log: verbose ? (m) => console.log(`    [${mode}] ${sc.id} ${m}`) : null,
  });
  ctx.env = env;
  let since = null;
  try {
    if (target.mode === 'couchgate' && target.backingUrl) since = await snapshot(target.backingUrl);
    const strayBefore = (globalThis.__strayRejections || []).length;
    ctx.onCleanup(() => {
      const s = (globalThis.__strayRejections || []).slice(strayBefore);
      if (s.length) ctx.note(`${s.length} unhandled rejection(s) inside PouchDB: ${s[0]}`);
    });
    const out = await withTimeout(Promise.resolve().then(() => sc.run(ctx)), sc.timeout || 120000, 'scenario');
    await ctx.cleanup();
    if (since !== null) {
      const pairs = [...ctx.pairs.values()].map((p) => ({
        user: p.user,
        db: p.db,
        view: async () => {
          const r = await request(`${target.dbUrl(p.user, p.db)}/_all_docs`, {
            headers: { Authorization: `Bearer ${p.owner.token}` }, timeout: 120000,
          });
          if (r.status === 404) return null;
          if (r.status !== 200) throw new Error(`GET /${p.db}/_all_docs as ${p.user} -> ${r.status} ${r.text.slice(0, 200)}`);
          return Object.fromEntries(r.body.rows.map((row) => [row.id, row.value.rev]));
        },
      }));
      const tc = Date.now();
      const chk = await checkNamespaces(target.backingUrl, since, pairs);
      result.checkMs = Date.now() - tc;
      if (chk.problems.length) throw new Error(`namespace check: ${chk.problems.join(' | ')}`);
      ctx.note(`namespace check ok in ${result.checkMs} ms: ${chk.summary}`);
    } else if (target.mode === 'couchgate') {
      ctx.note('namespace check skipped (no --backend-url)');
    }
    result.status = 'pass';
    if (typeof out === 'string') result.detail = out;
  } catch (e) {
    if (e instanceof SkipError) {
      result.status = 'skip';
      result.detail = e.message;
    } else {
      result.detail = errText(e);
      if (process.env.CONFORMANCE_STACKS) result.detail += `\n${e.stack}`;
      if (target.mode === 'couchgate' && env.gate && !env.gate.alive) result.detail += `\n${env.gate.exitInfo()}`;
      if (env.backend && !env.backend.alive) result.detail += `\n${env.backend.exitInfo()}`;
    }
    await ctx.cleanup();
  } finally {
    if (target.cleanup) await target.cleanup();
  }
  result.notes = ctx.notes;
  result.ms = Date.now() - started;
  return result;
}

function pad(s, n) { s = String(s); return s.length >= n ? s.slice(0, n) : s + ' '.repeat(n - s.length); }
function cell(r) {
  if (!r) return '-';
  return `${r.status.toUpperCase()} ${(r.ms / 1000).toFixed(1)}s`;
}

async function main() {
  let opts;
  try {
    opts = parse();
  } catch (e) {
    console.error(`${e.message}\n\n${HELP}`);
    process.exit(2);
  }
  if (opts.help) {
    console.log(HELP);
    return 0;
  }
  if (opts.url && !opts.secret && !opts.token) {
    console.error('--url needs --secret or --token');
    return 2;
  }
  const modes = [];
  const haveBackend = !opts.url || opts['backend-url'];
  if (!opts['no-control'] && haveBackend) modes.push('control');
  if (!opts['control-only']) modes.push('couchgate');

  const scenarios = await loadScenarios(opts.only);
  if (!scenarios.length) {
    console.error(`no scenario matches ${opts.only}`);
    return 2;
  }
  // PouchDB leaves some promises of its own unhandled when the server is unreachable (e.g. while
  // couchgate restarts); record them instead of letting Node end the suite.
  const stray = [];
  process.on('unhandledRejection', (e) => { stray.push(errText(e)); });
  globalThis.__strayRejections = stray;
  const env = new Environment(opts);
  const results = [];
  const t0 = Date.now();
  const stopAll = async () => { await env.stop().catch(() => {}); };
  process.on('SIGINT', async () => { await stopAll(); process.exit(130); });
  try {
    await env.ensure({ needGate: modes.includes('couchgate') });
    if (env.backend) console.log(`backend: PouchDB Server ${env.backend.url} (logs in ${env.dir})`);
    else if (env.backendUrl) console.log(`backend: ${stripCreds(env.backendUrl)}`);
    if (modes.includes('couchgate')) {
      if (env.gateError) console.log(`couchgate: NOT STARTED: ${errText(env.gateError)}`);
      else console.log(`couchgate: ${opts.url || env.gate.url}, backing database "${env.database}"`);
    }
    if (env.backendUrl) {
      const hello = await requestOk(env.backendUrl).catch(() => ({}));
      env.backendVendor = hello['express-pouchdb'] ? 'pouchdb-server' : 'couchdb';
    }
    for (const sc of scenarios) {
      const shared = {};
      const row = { sc, runs: {} };
      results.push(row);
      for (const mode of modes) {
        const r = await runOne(env, sc, mode, shared, opts.verbose);
        row.runs[mode] = r;
        const extra = r.status === 'pass' ? (r.detail ? `  ${r.detail}` : '') : `  ${r.detail.split('\n')[0]}`;
        console.log(`${pad(`[${mode}]`, 12)} ${sc.id} ${pad(sc.name, 22)} ${pad(r.status.toUpperCase(), 5)} ${(r.ms / 1000).toFixed(1).padStart(6)}s${extra}`);
      }
    }
  } finally {
    await stopAll();
  }

  console.log('\n' + pad('#', 4) + pad('scenario', 28) + modes.map((m) => pad(m, 16)).join(''));
  for (const { sc, runs } of results) {
    console.log(pad(sc.id, 4) + pad(sc.name, 28) + modes.map((m) => pad(cell(runs[m]), 16)).join(''));
  }
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  const failures = [];
  for (const { sc, runs } of results) {
    for (const [mode, r] of Object.entries(runs)) {
      if (r.status === 'pass') passed++;
      else if (r.status === 'skip') skipped++;
      else {
        failed++;
        failures.push(`${sc.id} ${sc.name} [${mode}]: ${r.detail}`);
      }
    }
  }
  if (failures.length) console.log(`\nFailures:\n${failures.map((f) => `- ${f}`).join('\n')}`);
  const skips = results.flatMap(({ sc, runs }) => Object.entries(runs).filter(([, r]) => r.status === 'skip').map(([m, r]) => `${sc.id} [${m}]: ${r.detail}`));
  if (skips.length) console.log(`\nSkipped (${skipped}):\n${skips.map((s) => `- ${s}`).join('\n')}`);
  console.log(`\ntotal time ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  console.log(`${passed} passed, ${failed} failed`);
  return failed ? 1 : 0;
}

main().then((code) => process.exit(code), (e) => {
  console.error(e);
  console.log('0 passed, 1 failed');
  process.exit(1);
});
