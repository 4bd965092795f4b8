// nano, CouchDB's Node.js client: documents, bulk calls, attachments and its multipart calls
// (`multipart.insert` sends a mixed-case boundary with lower-case part headers and no file
// names; `multipart.get` asks for `multipart/related`), through couchgate as through CouchDB.
import Nano from 'nano';
import { basicAuth } from '../lib/http.mjs';
import { assert, pseudoRandomBytes } from '../lib/util.mjs';

export default {
  title: "nano: documents, bulk, attachments and multipart insert/get",
  timeout: 60000,
  async run(ctx) {
    const alice = ctx.user('alice');
    const made = await alice.request('nano', '', { method: 'PUT' });
    assert.ok(made.status === 201 || made.status === 202, `PUT nano: ${made.status} ${made.text}`);
    const url = new URL(alice.dbUrl('nano'));
    const dbName = decodeURIComponent(url.pathname.split('/').pop());
    url.pathname = '/';
    const auth = alice.auth();
    const server = Nano({ url: url.toString().replace(/\/$/, ''), headers: auth ? { Authorization: auth } : {} });
    const db = server.use(dbName);

    const a = await db.insert({ _id: 'a', v: 1 });
    assert.equal(a.ok, true, JSON.stringify(a));
    assert.equal((await db.get('a')).v, 1);
    const a2 = await db.insert({ _id: 'a', _rev: a.rev, v: 2 });
    assert.match(a2.rev, /^2-/);
    await assert.rejects(db.insert({ _id: 'a', _rev: a.rev, v: 3 }), (e) => e.statusCode === 409 && e.error === 'conflict', 'a stale rev is a conflict');
    await assert.rejects(db.get('nothing'), (e) => e.statusCode === 404 && e.error === 'not_found');

    // Multipart insert: a text attachment holding framing-like bytes and a binary one. Straight
    // at PouchDB Server (the control run there) nano's multipart body crashes the server (it
    // reads a part without a file name as JSON), so that run writes the same document inline.
    const hello = await fetch(ctx.env.backendUrl ? new URL(ctx.env.backendUrl).origin : url.origin,
      { headers: ctx.env.backendUrl ? basicAuth(ctx.env.backendUrl) : {} }).then((r) => r.json()).catch(() => ({}));
    const multipartOk = ctx.isGate || hello.couchdb === 'Welcome';
    const bin = pseudoRandomBytes(50000, 5);
    const text = 'hello\r\n--not-a-boundary\r\n';
    const atts = [
      { name: 'note.txt', data: text, content_type: 'text/plain' },
      { name: 'blob.bin', data: bin, content_type: 'application/octet-stream' },
    ];
    const mp = multipartOk
      ? await db.multipart.insert({ kind: 'mp' }, atts, 'mp')
      : await db.insert({
        _id: 'mp', kind: 'mp',
        _attachments: Object.fromEntries(atts.map((x) => [x.name, { content_type: x.content_type, data: Buffer.from(x.data).toString('base64') }])),
      });
    if (!multipartOk) ctx.note('PouchDB Server: nano\'s multipart calls are not sent straight to it (it crashes on multipart.insert and answers multipart.get with JSON)');
    assert.equal(mp.ok, true, JSON.stringify(mp));
    const stored = await db.get('mp');
    assert.equal(stored.kind, 'mp');
    assert.deepEqual(Object.keys(stored._attachments).sort(), ['blob.bin', 'note.txt']);
    assert.equal(stored._attachments['blob.bin'].length, bin.length);
    assert.ok(bin.equals(await db.attachment.get('mp', 'blob.bin')), 'binary attachment differs');
    assert.equal((await db.attachment.get('mp', 'note.txt')).toString(), text);

    // Multipart get: the document and its attachments in one multipart/related body.
    if (multipartOk) {
      const body = await db.multipart.get('mp');
      assert.equal(typeof body, 'string', 'nano reads multipart/related as text');
      assert.ok(body.includes('"_id":"mp"'), `no document part in ${body.slice(0, 300)}`);
      // CouchDB keeps text attachments gzip-compressed and sends them so (Content-Encoding).
      assert.ok(body.includes('filename="note.txt"'), 'no part for the text attachment');
      assert.ok(body.includes(text) || /content-encoding: gzip/i.test(body), 'the text attachment is not in the multipart body');
      assert.ok(/"follows":true/.test(body), 'attachments are not marked follows');
    }

    // Attachment calls, bulk, list, fetch, changes, info.
    // (PouchDB Server answers this one as text/plain, which nano hands back as a string.)
    const answer = await db.attachment.insert('att-doc', 'x.txt', Buffer.from('xyz'), 'text/plain');
    const att = typeof answer === 'string' ? JSON.parse(answer) : answer;
    assert.equal(att.ok, true, JSON.stringify(att));
    assert.equal((await db.attachment.get('att-doc', 'x.txt')).toString(), 'xyz');
    const bulk = await db.bulk({ docs: Array.from({ length: 20 }, (_, i) => ({ _id: `b-${String(i).padStart(2, '0')}`, i })) });
    assert.equal(bulk.filter((r) => r.ok).length, 20);
    const list = await db.list({ include_docs: true, startkey: 'b-', endkey: 'b-\uffff' });
    assert.equal(list.rows.length, 20);
    assert.equal(list.rows[3].doc.i, 3);
    const fetched = await db.fetch({ keys: ['a', 'b-05', 'nothing'] });
    assert.equal(fetched.rows[0].doc.v, 2);
    assert.equal(fetched.rows[2].error, 'not_found');
    const changes = await db.changes({ since: 0 });
    assert.equal(changes.results.length, 23);
    assert.match(String(changes.last_seq), /^\d+/);
    const info = await db.info();
    assert.equal(info.doc_count, 23);
    const del = await db.destroy('b-00', bulk[0].rev);
    assert.equal(del.ok, true, JSON.stringify(del));
    assert.equal((await db.info()).doc_count, 22);
  },
};

