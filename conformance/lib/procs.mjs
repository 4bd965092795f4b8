// Child processes of the suite: the PouchDB Server backend and couchgate.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fatal, waitFor } from './util.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..');

/** A free TCP port on 127.0.0.1, found by binding port 0. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * The port of scenario 15's page server, chosen once, so that couchgate can name the page's
 * origin in `--cors-origins` (with credentials, couchgate refuses `*`). An external couchgate
 * (`--url`) is told it through CONFORMANCE_PAGE_PORT.
 */
export const PAGE_PORT = Number(process.env.CONFORMANCE_PAGE_PORT || (await freePort()));

export function makeTempDir(prefix = 'couchgate-conformance-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

async function httpOk(url) {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

function tail(file, n = 30) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-n).join('\n');
  } catch {
    return '';
  }
}

/** Starts PouchDB Server from node_modules, in memory, cwd in a temp dir. */
export async function startBackend({ dir }) {
  const port = await freePort();
  const bin = path.join(ROOT, 'node_modules', 'pouchdb-server', 'bin', 'pouchdb-server');
  if (!fs.existsSync(bin)) throw new Error(`PouchDB Server not found at ${bin}: run npm install in ${ROOT}`);
  const log = path.join(dir, 'pouchdb-server.out');
  const out = fs.openSync(log, 'a');
  const proc = spawn(process.execPath, [bin, '--in-memory', '--port', String(port), '--host', '127.0.0.1'], {
    cwd: dir,
    stdio: ['ignore', out, out],
  });
  fs.closeSync(out);
  const state = { exited: false, code: null };
  proc.on('exit', (code, sig) => Object.assign(state, { exited: true, code: code ?? sig }));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(async () => {
      if (state.exited) throw fatal(`PouchDB Server exited (${state.code}):\n${tail(log)}`);
      return httpOk(`${url}/`);
    }, { timeout: 30000, interval: 100, what: 'PouchDB Server to answer' });
  } catch (e) {
    proc.kill('SIGKILL');
    throw e;
  }
  return {
    url,
    port,
    log,
    get alive() { return !state.exited; },
    exitInfo: () => `PouchDB Server exited (${state.code}); last log lines:\n${tail(log, 15)}`,
    async stop() {
      if (state.exited) return;
      const done = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await Promise.race([done, new Promise((r) => setTimeout(r, 3000))]);
      if (!state.exited) proc.kill('SIGKILL');
    },
  };
}

/**
 * Starts couchgate. Resolves once it has printed `couchgate listening on http://...`.
 * `port` 0 lets couchgate choose (we read it back); restart() reuses the same port.
 */
export async function startCouchgate({ bin, backendUrl, database, secret, dir, extraArgs = [], env = {} }) {
  if (!fs.existsSync(bin)) throw new Error(`couchgate binary not found at ${bin} (set COUCHGATE_BIN or build it)`);
  const log = path.join(dir, 'couchgate.log');
  let port = 0;
  let current;

  async function launch() {
    const args = [
      '--listen', `127.0.0.1:${port}`,
      '--couchdb-url', backendUrl,
      '--database', database,
      '--jwt-secret', secret,
      '--data-dir', path.join(dir, 'couchgate-data'),
      '--cors-origins', `http://127.0.0.1:${PAGE_PORT}`,
      ...extraArgs,
    ];
    fs.appendFileSync(log, `\n=== ${new Date().toISOString()} ${bin} ${args.join(' ').replace(secret, '***')}\n`);
    const errFd = fs.openSync(log, 'a');
    const proc = spawn(bin, args, {
      cwd: dir,
      stdio: ['ignore', 'pipe', errFd],
      env: { ...process.env, COUCHGATE_JWT_LEEWAY_SECS: '0', COUCHGATE_CORS_CREDENTIALS: 'true', ...env },
    });
    fs.closeSync(errFd);
    const state = { proc, exited: false, code: null, url: null };
    proc.on('exit', (code, sig) => Object.assign(state, { exited: true, code: code ?? sig }));
    let buf = '';
    proc.stdout.on('data', (d) => {
      const s = d.toString();
      fs.appendFileSync(log, s);
      if (state.url) return;
      buf += s;
      const m = buf.match(/^couchgate listening on (http:\/\/127\.0\.0\.1:(\d+))\s*$/m);
      if (m) {
        state.url = m[1];
        port = Number(m[2]);
      }
    });
    await waitFor(() => {
      if (state.exited) throw fatal(`couchgate exited (${state.code}) before listening; log:\n${tail(log, 20)}`);
      return state.url;
    }, { timeout: 30000, interval: 20, what: 'couchgate to print "couchgate listening on ..."' });
    current = state;
    return state;
  }

  async function stop(signal = 'SIGTERM') {
    const st = current;
    if (!st || st.exited) return;
    const done = new Promise((r) => st.proc.once('exit', r));
    st.proc.kill(signal);
    await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
    if (!st.exited) {
      st.proc.kill('SIGKILL');
      await done;
    }
  }

  await launch();
  return {
    get url() { return current.url; },
    get port() { return port; },
    get alive() { return !current.exited; },
    log,
    exitInfo: () => `couchgate exited (${current.code}); last log lines:\n${tail(log, 15)}`,
    logTail: (n) => tail(log, n),
    stop,
    /** Another couchgate over the same backend, database and secret, with its own data. */
    async twin() {
      const twinDir = fs.mkdtempSync(path.join(dir, 'twin-'));
      return startCouchgate({ bin, backendUrl, database, secret, dir: twinDir, extraArgs, env });
    },
    /** Stops couchgate and starts it again on the same port. */
    async restart({ downtimeHook } = {}) {
      await stop();
      if (downtimeHook) await downtimeHook();
      await launch();
    },
  };
}
