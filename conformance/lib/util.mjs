// Small helpers shared by the harness and the scenarios.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

export { assert };

/** An error that makes waitFor() give up at once. */
export function fatal(message) {
  return Object.assign(new Error(message), { fatal: true });
}

/**
 * Polls `fn` until it returns a truthy value (returned), or throws after `timeout` ms.
 * An error thrown by `fn` is retried unless it carries `fatal: true`.
 */
export async function waitFor(fn, { timeout = 10000, interval = 25, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let lastErr;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      lastErr = undefined;
    } catch (e) {
      if (e && e.fatal) throw e; // no point waiting any longer
      lastErr = e;
    }
    if (Date.now() > deadline) {
      const detail = lastErr ? ` (last error: ${lastErr.message || lastErr})` : '';
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${detail}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** Waits `ms` milliseconds. Only for scenarios that measure time (idle periods). */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function randomTag(n = 6) {
  return crypto.randomBytes(8).toString('hex').slice(0, n);
}

const FILLER = 'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor ';

/** `n` documents of about `size` bytes of JSON each, ids `${prefix}-00001`... */
export function makeDocs(n, prefix = 'doc', size = 1024, extra = {}) {
  const docs = [];
  for (let i = 0; i < n; i++) {
    const id = `${prefix}-${String(i).padStart(5, '0')}`;
    let body = '';
    while (body.length < size - 80) body += FILLER;
    docs.push({ _id: id, n: i, prefix, body: body.slice(0, size - 80), ...extra });
  }
  return docs;
}

/** Writes docs in batches (large bulkDocs calls are slow in the memory adapter). */
export async function bulkInsert(db, docs, batch = 1000) {
  for (let i = 0; i < docs.length; i += batch) {
    const res = await db.bulkDocs(docs.slice(i, i + batch));
    const bad = res.filter((r) => r.error);
    if (bad.length) throw new Error(`bulkDocs failed: ${JSON.stringify(bad.slice(0, 3))}`);
  }
}

/** Sorted ids of the non-deleted docs of a PouchDB database. */
export async function allIds(db) {
  const res = await db.allDocs();
  return res.rows.map((r) => r.id).sort();
}

/** Map id -> rev of the winning, non-deleted docs. */
export async function idRevs(db) {
  const res = await db.allDocs();
  return Object.fromEntries(res.rows.map((r) => [r.id, r.value.rev]));
}

/** One-shot replication returning its result; rejects on error. */
export function replicate(from, to, opts = {}) {
  return new Promise((resolve, reject) => {
    const rep = from.replicate.to(to, opts);
    rep.on('complete', resolve);
    rep.on('error', reject);
  });
}

/** One-shot two-way sync returning its result; rejects on error. */
export function sync(a, b, opts = {}) {
  return new Promise((resolve, reject) => {
    const s = a.sync(b, opts);
    s.on('complete', resolve);
    s.on('error', reject);
  });
}

export function sha256(buf) {
  return crypto.createHash('sha256').update(buf).digest('hex');
}

/** Deterministic pseudo-random bytes (so binary attachments are reproducible). */
export function pseudoRandomBytes(n, seed = 1) {
  const out = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** Formats a short description of an error from PouchDB or fetch. */
export function errText(e) {
  if (!e) return String(e);
  const parts = [];
  if (e.status) parts.push(String(e.status));
  if (e.name && e.name !== 'Error') parts.push(e.name);
  if (e.message) parts.push(e.message);
  if (e.reason && e.reason !== e.message) parts.push(e.reason);
  return parts.join(' ') || String(e);
}
