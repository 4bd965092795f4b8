// The IBM Cloudant Python SDK with its defaults (it gzips every request body): documents, a
// conflict, bulk, attachments, _all_docs with a range and with keys, POST _changes and its
// one-off changes follower, which must end once nothing is pending. The SDK and its
// dependencies come from PyPI, pinned in python/requirements.txt, into conformance/.venv
// (made on first use; needs python3 with venv, Debian's python3-venv).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { basicAuth } from '../lib/http.mjs';
import { assert } from '../lib/util.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const VENV = path.join(ROOT, '.venv');
const REQUIREMENTS = path.join(ROOT, 'python', 'requirements.txt');
const CLIENT = path.join(ROOT, 'python', 'cloudant_client.py');

/** The venv's python, (re)made when the pinned requirements changed. */
function python() {
  const py = path.join(VENV, 'bin', 'python');
  const stamp = path.join(VENV, 'installed-requirements.txt');
  const want = fs.readFileSync(REQUIREMENTS, 'utf8');
  if (fs.existsSync(py) && fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === want) return py;
  fs.rmSync(VENV, { recursive: true, force: true });
  try {
    execFileSync('python3', ['-m', 'venv', VENV], { stdio: 'pipe' });
  } catch (e) {
    throw new Error(`cannot make a Python venv (install python3 and python3-venv): ${e.stderr || e.message}`);
  }
  execFileSync(path.join(VENV, 'bin', 'pip'), ['install', '--quiet', '--disable-pip-version-check', '--no-input', '-r', REQUIREMENTS],
    { stdio: 'pipe', timeout: 300000 });
  fs.writeFileSync(stamp, want);
  return py;
}

export default {
  title: 'the Cloudant Python SDK (gzip bodies by default): documents, bulk, attachments, changes follower',
  timeout: 360000,
  async run(ctx) {
    if (!ctx.isGate) {
      const hello = await fetch(new URL(ctx.env.backendUrl).origin, { headers: basicAuth(ctx.env.backendUrl) })
        .then((r) => r.json()).catch(() => ({}));
      if (hello.couchdb !== 'Welcome') {
        ctx.skip('PouchDB Server is no control for this client: the SDK\'s one-off follower never ends there (no `pending`), and it stores gzip-encoded uploads encoded');
      }
    }
    const py = python();
    const alice = ctx.user('alice');
    const made = await alice.request('cloudant', '', { method: 'PUT' });
    assert.ok(made.status === 201 || made.status === 202, `PUT cloudant: ${made.status} ${made.text}`);
    const url = new URL(alice.dbUrl('cloudant'));
    const env = { ...process.env, CG_DB: decodeURIComponent(url.pathname.split('/').pop()) };
    if (url.username) {
      env.CG_USER = decodeURIComponent(url.username);
      env.CG_PASSWORD = decodeURIComponent(url.password);
    }
    if (ctx.isGate) env.CG_TOKEN = alice.token;
    url.username = '';
    url.password = '';
    url.pathname = '/';
    env.CG_URL = url.toString().replace(/\/$/, '');
    let text;
    try {
      text = execFileSync(py, [CLIENT], { env, timeout: 120000, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
    } catch (e) {
      throw new Error(`the Python client failed: ${String(e.stderr || e.message).split('\n').slice(-8).join('\n')}`);
    }
    const out = JSON.parse(text);
    ctx.note(`Cloudant SDK: ${JSON.stringify(out)}`);
    assert.equal(out.gzip, true, 'the SDK compresses request bodies by default');
    assert.equal(out.post_document, true);
    assert.equal(out.get_document_v, 1);
    assert.equal(out.put_document_rev, '2-');
    assert.equal(out.conflict, 409);
    assert.equal(out.bulk_ok, 30);
    assert.equal(out.put_attachment, true);
    assert.equal(out.get_attachment, Buffer.from('\x00\x01binary\r\n--x', 'latin1').toString('hex'));
    assert.equal(out.all_docs_rows, 30);
    assert.equal(out.all_docs_doc_i, 5);
    assert.equal(out.keys_missing, 'not_found');
    assert.equal(out.changes_rows, 32);
    assert.equal(out.follower_ids, 32, 'the one-off follower saw every document');
    // It ends on `pending: 0`: one answer holds all 32 changes (a follower that never sees
    // `pending` polls until its timeout).
    assert.ok(out.follower_requests <= 2, `the one-off follower made ${out.follower_requests} requests`);
    assert.equal(out.doc_count, 32);
    assert.equal(out.delete_ok, true);
    assert.equal(out.doc_count_after, 31);
  },
};

