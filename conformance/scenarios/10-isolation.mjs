// Isolation: user B on the same db name as user A sees only B's namespace, whatever B asks;
// tokens whose signature does not match their claims are refused with 401.
import { assert, allIds, replicate } from '../lib/util.mjs';
import { claimsOf, signHS256, tamper } from '../lib/jwt.mjs';
import { request } from '../lib/http.mjs';
import { enc } from '../lib/namespace.mjs';

const DB = 'shared-name';

export default {
  title: 'isolation between users; forged tokens get 401',
  timeout: 60000,
  async run(ctx) {
    const A = ctx.user('alice');
    const B = ctx.user('bob');
    const ra = A.remote(DB);
    const la = ctx.local();
    await la.bulkDocs([
      { _id: 'a1', secret: 'alice-1' }, { _id: 'a2', secret: 'alice-2' }, { _id: 'both', secret: 'alice' },
      { _id: '_design/a', views: {} },
      { _id: 'att', _attachments: { 's.txt': { content_type: 'text/plain', data: Buffer.from('alice attachment') } } },
    ]);
    await replicate(la, ra);
    await ra.put({ _id: '_local/secret', secret: 'alice-local' });
    const aRev = (await ra.get('a1'))._rev;

    const rb = B.remote(DB);
    const infoB = await rb.info();
    assert.equal(infoB.doc_count, 0, `B's GET /${DB} doc_count ${infoB.doc_count} (leaks A's count?)`);
    const lb = ctx.local();
    const pulled = await replicate(rb, lb);
    assert.equal(pulled.docs_written, 0, `B pulled ${pulled.docs_written} docs from an empty db`);
    await rb.bulkDocs([{ _id: 'b1', secret: 'bob-1' }, { _id: 'both', secret: 'bob' }]);

    const probes = [
      ['/a1', 404], ['/att/s.txt', 404], ['/_local/secret', 404], ['/_design/a', 404],
      [`/a1?open_revs=${encodeURIComponent(JSON.stringify([aRev]))}`, null],
      ['/a1?rev=' + aRev, 404],
    ];
    for (const [path, status] of probes) {
      const r = await B.request(DB, path);
      if (status) assert.equal(r.status, status, `B: GET /${DB}${path} -> ${r.status} ${r.text.slice(0, 120)}`);
      assert.ok(!r.text.includes('alice'), `B: GET /${DB}${path} leaked A's data: ${r.text.slice(0, 200)}`);
    }
    const posts = [
      ['/_all_docs?include_docs=true', { keys: ['a1', 'a2', 'both', '_design/a'] }],
      ['/_bulk_get?revs=true', { docs: [{ id: 'a1' }, { id: 'a1', rev: aRev }, { id: 'both' }] }],
      ['/_revs_diff', { a1: [aRev] }],
      ['/_changes?filter=_doc_ids&include_docs=true', { doc_ids: ['a1', 'a2', 'both'] }],
    ];
    for (const [path, body] of posts) {
      const r = await B.request(DB, path, { method: 'POST', body });
      assert.ok(!r.text.includes('alice'), `B: POST /${DB}${path} leaked A's data: ${r.text.slice(0, 200)}`);
    }
    const diff = await B.request(DB, '/_revs_diff', { method: 'POST', body: { a1: [aRev] } });
    assert.deepEqual(diff.body, { a1: { missing: [aRev] } }, `B's _revs_diff for A's doc: ${diff.text}`);
    for (const path of ['/_all_docs?include_docs=true', '/_changes?include_docs=true&style=all_docs', '/_all_docs?startkey=%22%22&endkey=%22%EF%BF%BF%22']) {
      const r = await B.request(DB, path);
      assert.equal(r.status, 200, `B: GET ${path} -> ${r.status}`);
      assert.ok(!r.text.includes('alice'), `B: GET /${DB}${path} leaked A's data: ${r.text.slice(0, 300)}`);
    }
    const allB = await rb.allDocs();
    assert.equal(allB.total_rows, 2, `B's _all_docs total_rows ${allB.total_rows} (leaks the shared count?)`);

    if (ctx.isGate && ctx.target.backingUrl) {
      // B asks for A's backing ids literally (partition strings are not secrets)
      const part = (await request(`${ctx.target.backingUrl}/couchgate:db.${enc(A.name)}.${enc(A.dbName(DB))}`)).body;
      const backingId = `${enc(A.name)}.${enc(A.dbName(DB))}.${part.epoch}:a1`;
      for (const path of [`/${encodeURIComponent(backingId)}`, `/${encodeURIComponent('../' + backingId)}`]) {
        const r = await B.request(DB, path);
        assert.equal(r.status, 404, `B: GET ${path} -> ${r.status} ${r.text.slice(0, 200)}`);
      }
    }

    // B's full pull, then A's: each has exactly its own
    const lb2 = ctx.local();
    await replicate(rb, lb2);
    assert.deepEqual(await allIds(lb2), ['b1', 'both'], 'B pulled');
    assert.equal((await lb2.get('both')).secret, 'bob');
    const la2 = ctx.local();
    await replicate(ra, la2);
    assert.deepEqual(await allIds(la2), ['_design/a', 'a1', 'a2', 'att', 'both'], 'A pulled');
    assert.equal((await la2.get('both')).secret, 'alice', 'B overwrote A\'s doc "both"');

    if (!ctx.isGate) return 'control: separate databases';
    // tokens
    ctx.needs('tokens');
    const good = A.token;
    const cases = {
      'claims changed (sub=alice, bob\'s signature)': tamper(B.token, { ...claimsOf(B.token), sub: A.name }),
      'signed with another secret': signHS256({ sub: A.name, exp: Math.floor(Date.now() / 1000) + 600 }, 'not-the-secret'),
      'alg none': `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${good.split('.')[1]}.`,
      'expired': A.newToken({ ttl: -120 }),
      'garbage': 'not-a-jwt',
    };
    for (const [label, tok] of Object.entries(cases)) {
      const r = await A.request(DB, '/a1', { token: tok });
      assert.equal(r.status, 401, `token ${label}: GET /${DB}/a1 -> ${r.status} ${r.text.slice(0, 200)}`);
      assert.equal(r.body.error, 'unauthorized', `token ${label}: error ${r.text.slice(0, 200)}`);
    }
    const none = await A.request(DB, '/a1', { token: null });
    assert.equal(none.status, 401, `no token: GET /${DB}/a1 -> ${none.status}`);
    const forged = ctx.local();
    const rf = A.remote(DB, { auth: () => `Bearer ${cases['claims changed (sub=alice, bob\'s signature)']}` });
    const err = await replicate(rf, forged).then(() => null, (e) => e);
    assert.ok(err && err.status === 401, `replication with a forged token: ${err ? err.status : 'succeeded'}`);
    assert.equal((await forged.info()).doc_count, 0, 'forged token pulled docs');
    const session = await request(`${ctx.target.url}/_session`, { headers: { Authorization: `Bearer ${good}` } });
    assert.equal(session.body?.userCtx?.name, A.name, `GET /_session: ${session.text.slice(0, 200)}`);
    return 'isolated; 5 bad tokens refused';
  },
};
