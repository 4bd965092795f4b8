// couchgate's id namespacing, re-implemented independently from its documentation, and the
// check run after every couchgate run: everything written to the backing database during the
// run sits in the partition of a (user, virtual db) the scenario used, and each virtual
// database's backing partition holds exactly what its user sees through couchgate.
import { request, requestOk } from './http.mjs';

/** enc(): keeps a-z and 0-9, every other UTF-8 byte becomes `-xx` (lowercase hex). */
export function enc(s) {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    if ((b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39)) out += String.fromCharCode(b);
    else out += '-' + b.toString(16).padStart(2, '0');
  }
  return out;
}

export const metaId = (user, db) => `couchgate:db.${enc(user)}.${enc(db)}`;
export const partitionPrefix = (user, db) => `${enc(user)}.${enc(db)}.`;

/** The backing database's current update sequence, to diff against after a run. */
export async function snapshot(backingUrl) {
  const info = await requestOk(backingUrl);
  return info.update_seq;
}

const q = (v) => encodeURIComponent(JSON.stringify(v));

/**
 * Waits (bounded) until couchgate has removed the documents of every virtual db the scenario
 * deleted: `DELETE /{db}` moves the epoch to the record's `dropped` list at once and removes
 * the documents in the background, so its writes would otherwise land in a later scenario.
 */
async function waitForCleanups(backingUrl, pairs, problems) {
  const deadline = Date.now() + 120000;
  for (const p of pairs) {
    for (;;) {
      const meta = await request(`${backingUrl}/${encodeURIComponent(metaId(p.user, p.db))}`);
      if (meta.status !== 200 || !(meta.body.dropped || []).length) break;
      if (Date.now() > deadline) {
        problems.push(`${metaId(p.user, p.db)}: deleted incarnations not cleaned up: ${JSON.stringify(meta.body.dropped)}`);
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * Checks the backing database after a couchgate run. `pairs` is a list of
 * {user, db, view()} where view() resolves the client-visible {id: rev} map of that virtual
 * database through couchgate (or null when the db no longer exists for the client).
 * Returns a list of problems (empty when all is well) and a summary.
 */
export async function checkNamespaces(backingUrl, since, pairs) {
  const problems = [];
  await waitForCleanups(backingUrl, pairs, problems);
  const prefixes = new Map(pairs.map((p) => [partitionPrefix(p.user, p.db), p]));
  const metas = new Map(pairs.map((p) => [metaId(p.user, p.db), p]));

  // 1. Everything written during the run.
  const ch = await requestOk(`${backingUrl}/_changes?style=all_docs&since=${encodeURIComponent(since)}`, { timeout: 120000 });
  let written = 0;
  const foreign = [];
  for (const row of ch.results) {
    written++;
    const id = row.id;
    if (id.startsWith('couchgate:')) {
      if (id.startsWith('couchgate:db.') && !metas.has(id)) foreign.push(`${id} (metadata of a virtual db the scenario never used)`);
      continue;
    }
    // Shared Mango indexes (one per distinct definition, for all users): couchgate's own
    // design documents, Mango's `query` language, with no document data in them.
    if (/^_design\/couchgate-mango-[0-9a-f]{40}$/.test(id)) {
      const ddoc = await request(`${backingUrl}/${id}`);
      if (ddoc.status === 200 && ddoc.body.language !== 'query') foreign.push(`${id} (a shared index design document that is not Mango's)`);
      continue;
    }
    const m = /^([a-z0-9-]+)\.([a-z0-9-]+)\.([a-z2-7]+):/.exec(id);
    if (!m) {
      foreign.push(`${id} (not in any partition)`);
      continue;
    }
    const pre = `${m[1]}.${m[2]}.`;
    if (!prefixes.has(pre)) foreign.push(`${id} (partition of a user/db the scenario never used)`);
  }
  if (foreign.length) problems.push(`backing db got ${foreign.length} writes outside the scenario's namespaces: ${foreign.slice(0, 5).join('; ')}`);

  // 2. Each virtual db: the backing partition of its current epoch == what the client sees.
  let checked = 0;
  for (const p of pairs) {
    const meta = await request(`${backingUrl}/${encodeURIComponent(metaId(p.user, p.db))}`);
    if (meta.status === 404) continue; // destroyed (or never created): nothing to compare
    if (meta.status !== 200) {
      problems.push(`GET metadata ${metaId(p.user, p.db)} -> ${meta.status}`);
      continue;
    }
    const epoch = meta.body.epoch;
    if (typeof epoch !== 'string' || !/^[a-z2-7]+$/.test(epoch)) {
      problems.push(`metadata ${metaId(p.user, p.db)} has no lowercase base32 epoch: ${JSON.stringify(meta.body)}`);
      continue;
    }
    const part = `${partitionPrefix(p.user, p.db)}${epoch}`;
    const rows = (await requestOk(`${backingUrl}/_all_docs?startkey=${q(part + ':')}&endkey=${q(part + ';')}&inclusive_end=false`, { timeout: 120000 })).rows;
    const backing = Object.fromEntries(rows.map((r) => [r.id.slice(part.length + 1), r.value.rev]));
    const client = await p.view();
    if (client == null) continue;
    const bIds = Object.keys(backing).sort();
    const cIds = Object.keys(client).sort();
    const missing = cIds.filter((id) => !(id in backing));
    const extra = bIds.filter((id) => !(id in client));
    const revDiff = cIds.filter((id) => id in backing && backing[id] !== client[id]);
    if (missing.length || extra.length || revDiff.length) {
      problems.push(`${p.user}/${p.db}: partition ${part} differs from the client's view: ` +
        `${missing.length} seen by client but not in partition (${missing.slice(0, 3).join(', ')}), ` +
        `${extra.length} in partition but not seen (${extra.slice(0, 3).join(', ')}), ${revDiff.length} with other revs`);
    }
    checked += cIds.length;
  }
  return { problems, summary: `${written} backing writes, ${pairs.length} namespaces, ${checked} docs compared` };
}
