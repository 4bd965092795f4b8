// CouchDB's own replicator as the client: a CouchDB 3 backend pulls a user's database out of
// couchgate (one-shot with and without `_bulk_get`, and continuous) and pushes one into it. The
// data set has revision histories, conflicts, deletions, design documents, `_local` documents,
// small inline attachments and a multi-megabyte one. Every document's revision tree, body and
// attachment digests come out as they went in, and the control run does the same replications
// straight between plain databases. Runs whenever the backend is a CouchDB (`COUCHDB_URL`):
// its replicator is the backend's own.
import { basicAuth, request, requestOk } from '../lib/http.mjs';
import { assert, pseudoRandomBytes, sha256, waitFor } from '../lib/util.mjs';

const BIG = 3 * 1024 * 1024;

export default {
  title: "CouchDB's replicator pulls (bulk_get on and off, continuous) and pushes through couchgate",
  timeout: 300000,
  async run(ctx) {
    const server = ctx.env.backendUrl;
    const hello = server ? await requestOk(server).catch(() => ({})) : {};
    if (hello.couchdb !== 'Welcome' || hello.vendor?.name !== 'The Apache Software Foundation') {
      ctx.skip('needs a CouchDB backend (COUCHDB_URL): its replicator is the client');
    }
    const alice = ctx.user('alice');
    const src = await endpoint(alice, 'repl-src');
    const big = pseudoRandomBytes(BIG, 17);
    await seed(src, big);

    // Plain databases on the backend for the other side of each replication.
    const plain = async (what) => {
      const url = `${server}/repl-${what}-${ctx.tag}-${ctx.mode}`;
      await requestOk(url, { method: 'PUT' });
      ctx.onCleanup(() => request(url, { method: 'DELETE' }).catch(() => {}));
      return { url, headers: {} };
    };
    const before = await tree(src);
    const ids = Object.keys(before).length;
    assert.equal(ids, 55, `the data set has ${ids} documents, not 55`);

    // Pull, with _bulk_get (CouchDB 3.3+) and without (older replicators): documents with
    // attachments and design documents come one by one through `open_revs` in multipart.
    for (const useBulkGet of [true, false]) {
      const target = await plain(`pull-${useBulkGet ? 'bulk' : 'single'}`);
      const r = await replicate(server, { source: src, target, use_bulk_get: useBulkGet });
      assert.deepEqual(await tree(target), before, `pull (use_bulk_get ${useBulkGet}): the target differs from the source`);
      await sameBytes(target, src, 'big', 'blob.bin');
      ctx.note(`pull, use_bulk_get ${useBulkGet}: ${r.history?.[0]?.docs_written} docs written, ${r.history?.[0]?.doc_write_failures} failures`);
      assert.equal(r.history?.[0]?.doc_write_failures ?? 0, 0, 'write failures');
    }

    // Push from a plain database into a second virtual database of the user.
    const origin = await plain('origin');
    await replicate(server, { source: src, target: origin });
    const dst = await endpoint(alice, 'repl-dst');
    const r = await replicate(server, { source: origin, target: dst });
    assert.deepEqual(await tree(dst), before, 'push: the virtual database differs from the source');
    await sameBytes(dst, src, 'big', 'blob.bin');
    ctx.note(`push: ${r.history?.[0]?.docs_written} docs written`);

    // Continuous pull: new documents (one with an attachment) arrive while it runs.
    const live = await plain('live');
    const job = { source: src, target: live, continuous: true };
    await replicate(server, job);
    ctx.onCleanup(() => request(`${server}/_replicate`, { method: 'POST', body: { ...job, cancel: true } }).catch(() => {}));
    await waitFor(async () => Object.keys(await tree(live)).length === ids, { timeout: 60000, interval: 250, what: 'the continuous pull to copy the data set' });
    await requestOk(`${src.url}/late`, { method: 'PUT', headers: src.headers, body: { v: 1, _attachments: { 'n.txt': { content_type: 'text/plain', data: Buffer.from('late news').toString('base64') } } } });
    await requestOk(`${src.url}/_bulk_docs`, { method: 'POST', headers: src.headers, body: { docs: [{ _id: 'late-2' }, { _id: 'late-3' }] } });
    const after = await tree(src);
    await waitFor(async () => JSON.stringify(await tree(live)) === JSON.stringify(after), { timeout: 60000, interval: 250, what: 'the continuous pull to copy the late documents' });
    const status = await requestOk(`${server}/_scheduler/jobs`);
    const srcPath = new URL(src.url).pathname;
    const mine = (status.jobs || []).filter((j) => j.source && new URL(j.source).pathname.replace(/\/$/, '') === srcPath);
    assert.ok(mine.length >= 1, 'the continuous job is listed in _scheduler/jobs');
    for (const j of mine) {
      const crashes = (j.history || []).filter((h) => h.type === 'crashed');
      assert.equal(crashes.length, 0, `the continuous job crashed: ${JSON.stringify(crashes[0])}`);
    }
    ctx.note(`continuous pull: ${Object.keys(after).length} documents copied`);

    // Continuous push, without _bulk_get on its source: the data set, then documents written
    // to the source while it runs (one with a multi-megabyte attachment, which streams).
    const liveDst = await endpoint(alice, 'repl-live-dst');
    const pushJob = { source: origin, target: liveDst, continuous: true, use_bulk_get: false };
    await replicate(server, pushJob);
    ctx.onCleanup(() => request(`${server}/_replicate`, { method: 'POST', body: { ...pushJob, cancel: true } }).catch(() => {}));
    await waitFor(async () => Object.keys(await tree(liveDst)).length === ids, { timeout: 60000, interval: 250, what: 'the continuous push to copy the data set' });
    const big2 = pseudoRandomBytes(BIG + 12345, 23);
    await requestOk(`${origin.url}/pushed-late`, { method: 'PUT', body: { v: 2, _attachments: { 'big2.bin': { content_type: 'application/octet-stream', data: big2.toString('base64') } } } });
    const bigNow = await requestOk(`${origin.url}/big`);
    await requestOk(`${origin.url}/_bulk_docs`, { method: 'POST', body: { docs: [{ _id: 'pushed-late-2' }, { _id: 'big', _rev: bigNow._rev, _deleted: true }] } });
    const originAfter = await tree(origin);
    await waitFor(async () => JSON.stringify(await tree(liveDst)) === JSON.stringify(originAfter), { timeout: 60000, interval: 250, what: 'the continuous push to copy the late documents' });
    await sameBytes(liveDst, origin, 'pushed-late', 'big2.bin');
    ctx.note(`continuous push: ${Object.keys(originAfter).length} documents copied`);
  },
};

/** A user's new database as a replication endpoint: its URL and the user's credentials. */
async function endpoint(user, db) {
  const made = await user.request(db, '', { method: 'PUT' });
  assert.ok(made.status === 201 || made.status === 202, `PUT ${db}: ${made.status} ${made.text}`);
  const auth = user.auth();
  return { url: user.dbUrl(db), headers: auth ? { Authorization: auth } : {} };
}

async function replicate(server, { source, target, ...opts }) {
  const body = { source: replEndpoint(source), target: replEndpoint(target), ...opts };
  const r = await request(`${server}/_replicate`, { method: 'POST', body, timeout: 240000 });
  if (r.status < 200 || r.status > 299 || !r.body.ok) {
    throw new Error(`_replicate ${JSON.stringify({ ...opts })} -> ${r.status} ${r.text.slice(0, 500)}`);
  }
  return r.body;
}

/** The replicator's form of an endpoint: credentials in the URL become a Basic header. */
function replEndpoint({ url, headers }) {
  const u = new URL(url);
  u.username = '';
  u.password = '';
  return { url: u.toString(), headers: { ...headers, ...basicAuth(url) } };
}

function docPath(id) {
  return id.startsWith('_design/') ? `_design/${encodeURIComponent(id.slice(8))}` : encodeURIComponent(id);
}

/** Revisions, conflicts, deletions, design and `_local` documents, attachments small and big. */
async function seed(db, big) {
  const post = (path, body) => requestOk(`${db.url}${path}`, { method: 'POST', headers: db.headers, body });
  const put = (id, body) => requestOk(`${db.url}/${docPath(id)}`, { method: 'PUT', headers: db.headers, body });
  const docs = [];
  for (let i = 0; i < 40; i++) docs.push({ _id: `p-${String(i).padStart(2, '0')}`, i, text: 'x'.repeat(i * 10) });
  for (let i = 0; i < 8; i++) {
    docs.push({ _id: `att-${i}`, _attachments: { 'note.txt': { content_type: 'text/plain', data: Buffer.from(`note ${i}\r\n--`.repeat(i + 1)).toString('base64') } } });
  }
  const made = await post('/_bulk_docs', { docs });
  assert.ok(made.every((r) => r.ok), 'seed docs');
  // Histories of three revisions.
  for (let i = 0; i < 10; i++) {
    const id = `p-${String(i).padStart(2, '0')}`;
    let rev = made.find((r) => r.id === id).rev;
    for (let n = 2; n <= 3; n++) rev = (await put(id, { _rev: rev, i, n })).rev;
  }
  // Deletions.
  for (let i = 30; i < 35; i++) {
    const id = `p-${i}`;
    await requestOk(`${db.url}/${id}?rev=${made.find((r) => r.id === id).rev}`, { method: 'DELETE', headers: db.headers });
  }
  // Conflicts: two branches each, one of them deleted on the last document.
  const h = (c) => c.repeat(32);
  for (let i = 0; i < 3; i++) {
    await post('/_bulk_docs', {
      new_edits: false,
      docs: [
        { _id: `c-${i}`, _rev: `2-${h('a')}`, _revisions: { start: 2, ids: [h('a'), h('0')] }, side: 'a' },
        { _id: `c-${i}`, _rev: `2-${h('b')}`, _revisions: { start: 2, ids: [h('b'), h('0')] }, side: 'b', ...(i === 2 ? { _deleted: true } : {}) },
      ],
    });
  }
  // Design documents: stored data for couchgate, replicated like any other.
  await put('_design/app', { views: { by_i: { map: 'function (doc) { emit(doc.i); }' } } });
  await put('_design/other', { language: 'javascript', filters: { none: 'function () { return false; }' } });
  // `_local` documents are not replicated.
  await put('_local/device', { seen: 1 });
  // A multi-megabyte attachment, and a document whose attachments changed between revisions.
  await put('big', { _attachments: { 'blob.bin': { content_type: 'application/octet-stream', data: big.toString('base64') } } });
  const two = await put('two', {
    _attachments: {
      'a.txt': { content_type: 'text/plain', data: Buffer.from('first').toString('base64') },
      'b.bin': { content_type: 'application/octet-stream', data: pseudoRandomBytes(70000, 3).toString('base64') },
    },
  });
  await put('two', { _rev: two.rev, v: 2, _attachments: { 'a.txt': { content_type: 'text/plain', data: Buffer.from('second').toString('base64') }, 'b.bin': { stub: true } } });
}

/** Every document's leaves: history, deletion, body and attachment digests. */
async function tree(db) {
  const feed = await requestOk(`${db.url}/_changes?style=all_docs`, { headers: db.headers, timeout: 120000 });
  const out = {};
  for (const row of feed.results.sort((x, y) => (x.id < y.id ? -1 : 1))) {
    const leaves = await requestOk(`${db.url}/${docPath(row.id)}?open_revs=all&revs=true`, { headers: { ...db.headers, Accept: 'application/json' } });
    out[row.id] = leaves.filter((l) => l.ok).map(({ ok: doc }) => {
      const { _id, _rev, _revisions, _deleted, _attachments, ...body } = doc;
      const atts = Object.fromEntries(Object.entries(_attachments || {}).sort().map(([k, a]) => [k, { digest: a.digest, length: a.length, content_type: a.content_type, revpos: a.revpos }]));
      return { _rev, _revisions, deleted: !!_deleted, body, atts };
    }).sort((x, y) => (x._rev < y._rev ? -1 : 1));
  }
  return out;
}

/** An attachment reads back byte for byte the same from two databases. */
async function sameBytes(a, b, id, name) {
  const read = async (db) => {
    const res = await fetch(replEndpoint(db).url + `/${id}/${name}`, { headers: replEndpoint(db).headers });
    assert.equal(res.status, 200, `GET ${id}/${name}`);
    return sha256(Buffer.from(await res.arrayBuffer()));
  };
  assert.equal(await read(a), await read(b), `${id}/${name} differs`);
}
