// The processes a benchmark runs against: the backend (PouchDB Server in memory, or a real
// CouchDB from COUCHDB_URL) and couchgate (the release binary), plus /proc readings of them.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../conformance/lib/procs.mjs';
import { request } from './http.mjs';
import { sleep } from './util.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const BENCH = path.resolve(HERE, '..');
export const ROOT = path.resolve(BENCH, '..');
export const CONFORMANCE = path.join(ROOT, 'conformance');

function tail(file, n = 20) {
  try { return fs.readFileSync(file, 'utf8').split('\n').slice(-n).join('\n'); } catch { return ''; }
}

async function waitUntil(fn, timeoutMs, what) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/**
 * The backend. With `couchdbUrl` it is that server (nothing started; pid null). Otherwise
 * PouchDB Server 4.2 `--in-memory` from conformance/node_modules on a free port, with a heap
 * of `heapMb` MB (1M docs of 1 KB need several GB).
 */
export async function startBackend({ dir, couchdbUrl, couchdbPid, heapMb = 12288 }) {
  if (couchdbUrl) {
    const url = couchdbUrl.replace(/\/$/, '');
    const res = await request(`${url}/`);
    if (res.status !== 200) throw new Error(`COUCHDB_URL answers GET / with ${res.status}`);
    const welcome = res.json();
    const u = new URL(url);
    // A local CouchDB's beam.smp PID (COUCHDB_PID) gives backend CPU and RSS figures.
    const pid = couchdbPid ? Number(couchdbPid) : null;
    if (pid && !fs.existsSync(`/proc/${pid}/stat`)) throw new Error(`COUCHDB_PID ${pid}: no such process`);
    return {
      kind: 'couchdb', url, port: Number(u.port || 5984), pid,
      version: `CouchDB ${welcome.version}${pid ? ` (PID ${pid} on this machine)` : ''}`, log: null, alive: true, async stop() {},
    };
  }
  const port = await freePort();
  const bin = path.join(CONFORMANCE, 'node_modules', 'pouchdb-server', 'bin', 'pouchdb-server');
  if (!fs.existsSync(bin)) throw new Error(`PouchDB Server not found at ${bin}: run npm ci in ${CONFORMANCE}`);
  const log = path.join(dir, 'pouchdb-server.out');
  const out = fs.openSync(log, 'a');
  // --no-stdout-logs: PouchDB Server otherwise prints a line per request, which is the
  // harness's cost, not the backend's.
  const proc = spawn(process.execPath, [`--max-old-space-size=${heapMb}`, bin, '--in-memory', '--no-stdout-logs',
    '--port', String(port), '--host', '127.0.0.1'], { cwd: dir, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  const state = { exited: false, code: null };
  proc.on('exit', (code, sig) => Object.assign(state, { exited: true, code: code ?? sig }));
  const url = `http://127.0.0.1:${port}`;
  await waitUntil(async () => {
    if (state.exited) throw new Error(`PouchDB Server exited (${state.code}):\n${tail(log)}`);
    try { return (await request(`${url}/`, { timeout: 2000 })).status === 200; } catch { return false; }
  }, 30000, 'PouchDB Server');
  const welcome = (await request(`${url}/`)).json();
  return {
    kind: 'pouchdb-server', url, port, pid: proc.pid, log,
    version: `PouchDB Server ${welcome.version} (in memory, heap ${heapMb} MB)`,
    get alive() { return !state.exited; },
    exitInfo: () => `PouchDB Server exited (${state.code}); log:\n${tail(log)}`,
    async stop() {
      if (state.exited) return;
      const done = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await Promise.race([done, sleep(3000)]);
      if (!state.exited) proc.kill('SIGKILL');
    },
  };
}

export function couchgateBin() {
  return process.env.COUCHGATE_BIN || path.join(ROOT, 'target', 'release', 'couchgate');
}

/** `couchgate --help` text (to see which flags this build has). */
export function couchgateHelp(bin = couchgateBin()) {
  try {
    return execFileSync(bin, ['--help'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    return String(e.stdout || '') + String(e.stderr || '');
  }
}

/** Starts couchgate; resolves once it prints `couchgate listening on http://...`. */
export async function startCouchgate({ bin = couchgateBin(), backendUrl, database, secret, dir, extraArgs = [], env = {}, name = 'couchgate' }) {
  if (!fs.existsSync(bin)) throw new Error(`couchgate binary not found at ${bin} (cargo build --release, or set COUCHGATE_BIN)`);
  const log = path.join(dir, `${name}.log`);
  const args = ['--listen', '127.0.0.1:0', '--couchdb-url', backendUrl, '--database', database, '--jwt-secret', secret, ...extraArgs];
  fs.appendFileSync(log, `\n=== ${new Date().toISOString()} ${bin} ${args.join(' ').replace(secret, '***').replace(backendUrl, '<backend>')}\n`);
  const errFd = fs.openSync(log, 'a');
  const proc = spawn(bin, args, { cwd: dir, stdio: ['ignore', 'pipe', errFd], env: { ...process.env, ...env } });
  fs.closeSync(errFd);
  const state = { exited: false, code: null, url: null };
  proc.on('exit', (code, sig) => Object.assign(state, { exited: true, code: code ?? sig }));
  let buf = '';
  proc.stdout.on('data', (d) => {
    const s = d.toString();
    fs.appendFileSync(log, s);
    if (state.url) return;
    buf += s;
    const m = buf.match(/couchgate listening on (http:\/\/[0-9.]+:(\d+))/);
    if (m) state.url = m[1];
  });
  await waitUntil(() => {
    if (state.exited) throw new Error(`couchgate exited (${state.code}) before listening; log:\n${tail(log)}`);
    return state.url;
  }, 60000, 'couchgate to listen');
  return {
    url: state.url,
    port: Number(new URL(state.url).port),
    pid: proc.pid,
    log,
    args: args.map((a) => (a === secret ? '***' : a === backendUrl ? '<backend>' : a)),
    get alive() { return !state.exited; },
    exitInfo: () => `couchgate exited (${state.code}); log:\n${tail(log)}`,
    logTail: (n) => tail(log, n),
    async stop(signal = 'SIGTERM') {
      if (state.exited) return;
      const done = new Promise((r) => proc.once('exit', r));
      proc.kill(signal);
      await Promise.race([done, sleep(15000)]);
      if (!state.exited) { proc.kill('SIGKILL'); await done; }
    },
  };
}

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid) {
  if (!pid) return NaN;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields after "(comm)": state is f[0], utime is field 14 overall = f[11], stime f[12]
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch { return NaN; }
}
let CLK_TCK = 100;
try { CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100; } catch { /* keep 100 */ }

/** Resident set size of a process in MiB (VmRSS), and its peak (VmHWM). */
export function rssMiB(pid) {
  if (!pid) return { rss: NaN, hwm: NaN };
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k) => Number((s.match(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm')) || [])[1]) / 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM'), threads: Number((s.match(/^Threads:\s+(\d+)/m) || [])[1]) };
  } catch { return { rss: NaN, hwm: NaN }; }
}

/** Number of open file descriptors of a process. */
export function fdCount(pid) {
  try { return fs.readdirSync(`/proc/${pid}/fd`).length; } catch { return NaN; }
}

/**
 * TCP connections of `pid`, by state, whose remote port is `remotePort` (127.0.0.1 or any):
 * the socket inodes of /proc/PID/fd matched against /proc/PID/net/tcp{,6}.
 */
export function tcpConnections(pid, remotePort) {
  const inodes = new Set();
  let fds = [];
  try { fds = fs.readdirSync(`/proc/${pid}/fd`); } catch { return { total: NaN }; }
  for (const fd of fds) {
    try {
      const l = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (l.startsWith('socket:[')) inodes.add(l.slice(8, -1));
    } catch { /* closed meanwhile */ }
  }
  const STATES = { '01': 'ESTABLISHED', '06': 'TIME_WAIT', '08': 'CLOSE_WAIT', '02': 'SYN_SENT', '04': 'FIN_WAIT1', '05': 'FIN_WAIT2', '0A': 'LISTEN' };
  const out = { total: 0 };
  for (const file of [`/proc/${pid}/net/tcp`, `/proc/${pid}/net/tcp6`]) {
    let text = '';
    try { text = fs.readFileSync(file, 'utf8'); } catch { continue; }
    for (const line of text.split('\n').slice(1)) {
      const c = line.trim().split(/\s+/);
      if (c.length < 10) continue;
      const rport = parseInt(c[2].split(':')[1], 16);
      if (rport !== remotePort || !inodes.has(c[9])) continue;
      const st = STATES[c[3]] || c[3];
      out[st] = (out[st] || 0) + 1;
      out.total++;
    }
  }
  return out;
}

/** Machine and toolchain facts for the result file. */
export function machineInfo(bin = couchgateBin()) {
  const sh = (cmd, args) => { try { return execFileSync(cmd, args, { encoding: 'utf8', cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] }).trim(); } catch { return 'n/a'; } };
  const cpu = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m) || [])[1] || os.cpus()[0]?.model || 'n/a';
  let binInfo = 'n/a';
  try { const st = fs.statSync(bin); const rel = path.relative(ROOT, bin); binInfo = `${rel && !rel.startsWith('..') ? rel : bin} (built ${st.mtime.toISOString()}, ${(st.size / 1048576).toFixed(1)} MiB)`; } catch { /* missing */ }
  const dirty = sh('git', ['status', '--porcelain', '--', 'src', 'Cargo.toml', 'Cargo.lock']);
  // Is the binary older than the source it is supposed to measure?
  let newest = 0; let newestFile = '';
  const walk = (d) => { for (const e of fs.readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name);
    if (e.isDirectory()) walk(p); else { const m = fs.statSync(p).mtimeMs; if (m > newest) { newest = m; newestFile = p; } }
  } };
  try { walk(path.join(ROOT, 'src')); for (const f of ['Cargo.toml', 'Cargo.lock']) { const m = fs.statSync(path.join(ROOT, f)).mtimeMs; if (m > newest) { newest = m; newestFile = f; } } } catch { /* no source tree */ }
  let stale = '';
  try { if (newest > fs.statSync(bin).mtimeMs) stale = `binary is OLDER than the source tree: ${path.relative(ROOT, newestFile)} changed at ${new Date(newest).toISOString()}`; } catch { /* missing */ }
  return {
    nproc: sh('nproc', []),
    cpu,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    rustc: sh('rustc', ['--version']),
    commit: `HEAD ${sh('git', ['rev-parse', '--short', 'HEAD'])}${dirty && dirty !== 'n/a' ? ` + uncommitted changes in src (${dirty.split('\n').length} files)` : ''} at the start of the run`,
    binary: binInfo,
    stale,
    ulimitN: sh('sh', ['-c', 'ulimit -n']),
  };
}
