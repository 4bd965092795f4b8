// Attachments: text and binary, 0 bytes and 5 MiB, kept across edits (stubs), pulled with
// attachments:true, and the standalone attachment API.
import { assert, pseudoRandomBytes, replicate, sha256 } from '../lib/util.mjs';

const BIG = 5 * 1024 * 1024;

function fixtures() {
  return {
    'text.txt': { type: 'text/plain', data: Buffer.from('Hello, couchgate! ünïcødé ✓\n', 'utf8') },
    'empty.bin': { type: 'application/octet-stream', data: Buffer.alloc(0) },
    'bytes.bin': { type: 'application/octet-stream', data: Buffer.from(Array.from({ length: 256 }, (_, i) => i)) },
    'big.bin': { type: 'application/octet-stream', data: pseudoRandomBytes(BIG, 7) },
  };
}

async function checkAtts(db, id, expect, label) {
  const doc = await db.get(id);
  const names = Object.keys(doc._attachments || {}).sort();
  assert.deepEqual(names, Object.keys(expect).sort(), `${label}: attachment names of ${id}`);
  for (const [name, f] of Object.entries(expect)) {
    const blob = await db.getAttachment(id, name);
    const buf = Buffer.isBuffer(blob) ? blob : Buffer.from(await blob.arrayBuffer());
    assert.equal(buf.length, f.data.length, `${label}: length of ${id}/${name}`);
    assert.equal(sha256(buf), sha256(f.data), `${label}: bytes of ${id}/${name}`);
    assert.equal(doc._attachments[name].content_type, f.type, `${label}: content_type of ${id}/${name}`);
  }
  return doc;
}

export default {
  title: 'attachments: text/binary, 0 B and 5 MiB, stubs across edits, attachments:true',
  timeout: 180000,
  async run(ctx) {
    const alice = ctx.user('alice');
    const remote = alice.remote('files');
    const a = ctx.local();
    const f = fixtures();
    const small = { 'text.txt': f['text.txt'], 'empty.bin': f['empty.bin'], 'bytes.bin': f['bytes.bin'] };
    const toAtts = (set) => Object.fromEntries(Object.entries(set).map(([n, x]) => [n, { content_type: x.type, data: x.data }]));
    await a.put({ _id: 'small', kind: 'small', _attachments: toAtts(small) });
    await a.put({ _id: 'big', kind: 'big', _attachments: toAtts({ 'big.bin': f['big.bin'] }) });
    await a.put({ _id: 'dir/slash', _attachments: toAtts({ 'a/b c.txt': f['text.txt'] }) });

    const push = await replicate(a, remote);
    assert.equal(push.docs_written, 3, 'push docs_written');
    await checkAtts(remote, 'small', small, 'server');
    await checkAtts(remote, 'big', { 'big.bin': f['big.bin'] }, 'server');
    await checkAtts(remote, 'dir/slash', { 'a/b c.txt': f['text.txt'] }, 'server');

    const b = ctx.local();
    await replicate(remote, b);
    await checkAtts(b, 'small', small, 'pulled');
    await checkAtts(b, 'big', { 'big.bin': f['big.bin'] }, 'pulled');
    await checkAtts(b, 'dir/slash', { 'a/b c.txt': f['text.txt'] }, 'pulled');

    // edit on b without touching the attachments (stubs), push, pull on a: attachments kept
    for (const id of ['small', 'big']) {
      const d = await b.get(id);
      assert.ok(Object.values(d._attachments).every((x) => x.stub), 'get() should give stubs');
      await b.put({ ...d, edited: true });
    }
    await replicate(b, remote);
    await replicate(remote, a);
    const ea = await checkAtts(a, 'small', small, 'after edit');
    assert.equal(ea.edited, true, 'edit did not arrive');
    await checkAtts(a, 'big', { 'big.bin': f['big.bin'] }, 'after edit');
    await checkAtts(remote, 'big', { 'big.bin': f['big.bin'] }, 'server after edit');

    // attachments:true reads inline base64 (GET, _all_docs, _changes)
    const inline = await remote.get('small', { attachments: true });
    for (const [n, x] of Object.entries(small)) {
      assert.equal(inline._attachments[n].data, x.data.toString('base64'), `GET ?attachments=true data of ${n}`);
    }
    const all = await remote.allDocs({ include_docs: true, attachments: true, keys: ['small'] });
    assert.equal(all.rows[0].doc._attachments['bytes.bin'].data, f['bytes.bin'].data.toString('base64'), '_all_docs attachments=true');
    const ch = await remote.changes({ include_docs: true, attachments: true, doc_ids: ['small'] });
    assert.equal(ch.results[0].doc._attachments['text.txt'].data, f['text.txt'].data.toString('base64'), '_changes attachments=true');

    // standalone attachment API on the server
    const rev = (await remote.get('small'))._rev;
    const put = await remote.putAttachment('small', 'added.txt', rev, Buffer.from('added later'), 'text/plain');
    assert.ok(put.ok, 'PUT attachment');
    const got = await remote.getAttachment('small', 'added.txt');
    assert.equal(Buffer.from(got).toString(), 'added later', 'GET attachment');
    const del = await remote.removeAttachment('small', 'added.txt', put.rev);
    assert.ok(del.ok, 'DELETE attachment');
    await replicate(remote, a);
    await checkAtts(a, 'small', small, 'after put+delete attachment');

    // raw: the attachment's digest survives and Content-Type is the stored one
    const r = await alice.request('files', '/small/text.txt', { headers: { Accept: '*/*' } });
    assert.equal(r.status, 200, 'GET /db/doc/att');
    assert.ok(String(r.headers.get('content-type')).startsWith('text/plain'), `attachment content-type ${r.headers.get('content-type')}`);
    return '5 MiB round trip ok';
  },
};
