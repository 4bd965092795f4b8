// Design documents written by a client round-trip as plain data (through couchgate they are
// inert: they must never become design documents of the shared backing database).
import { assert, idRevs, replicate } from '../lib/util.mjs';

const strip = (d) => { const { _rev, ...rest } = d; return rest; };

export default {
  title: 'design documents written by a client round-trip as data',
  timeout: 60000,
  async run(ctx) {
    const alice = ctx.user('alice');
    const remote = alice.remote('designs');
    const a = ctx.local();
    const app = {
      _id: '_design/app',
      language: 'javascript',
      views: { byType: { map: 'function (doc) { if (doc.type) emit(doc.type, 1); }', reduce: '_count' } },
      filters: { mine: 'function (doc, req) { return doc.owner === req.userCtx.name; }' },
      // harmless unless a doc carries the marker: shows whether it ran as a real validator
      validate_doc_update: 'function (newDoc) { if (newDoc.forbidden_marker) throw({forbidden: "marker"}); }',
      options: { partitioned: false },
      custom: { nested: [1, 2, { three: 3 }] },
    };
    const other = { _id: '_design/other', views: { all: { map: 'function (doc) { emit(doc._id); }' } } };
    await a.bulkDocs([app, other, { _id: 'plain', type: 'note' }]);
    await replicate(a, remote);

    const got = await remote.get('_design/app');
    assert.deepEqual(strip(got), app, 'server copy of _design/app differs');
    const raw = await alice.request('designs', '/_design%2Fapp');
    assert.equal(raw.status, 200, `GET /db/_design%2Fapp -> ${raw.status}`);
    assert.equal(raw.body._id, '_design/app', `GET /db/_design%2Fapp gave _id ${raw.body._id}`);

    const b = ctx.local();
    await replicate(remote, b);
    assert.deepEqual(strip(await b.get('_design/app')), app, 'pulled _design/app differs');
    assert.deepEqual(await idRevs(b), await idRevs(a), 'pulled ids/revs differ');

    // edit one, delete the other, pull the changes
    const cur = await b.get('_design/app');
    await b.put({ ...cur, custom: 'edited' });
    await b.remove(await b.get('_design/other'));
    await replicate(b, remote);
    await replicate(remote, a);
    assert.equal((await a.get('_design/app')).custom, 'edited', 'edit of a design doc did not replicate');
    const gone = await a.get('_design/other').catch((e) => e);
    assert.equal(gone.status, 404, 'deleted design doc still there');
    assert.deepEqual(await idRevs(a), await idRevs(remote), 'client and server differ');
    const ch = await remote.changes({ style: 'all_docs' });
    assert.deepEqual(ch.results.map((r) => r.id).sort(), ['_design/app', '_design/other', 'plain'], '_changes ids');

    if (ctx.isGate && ctx.target.backingUrl) {
      // nothing became a design doc of the shared database
      const r = await fetch(`${ctx.target.backingUrl}/_all_docs?startkey=%22_design%2F%22&endkey=%22_design0%22`)
        .then((x) => x.json()).catch(() => null);
      if (r && r.rows) assert.equal(r.rows.length, 0, `backing database has design docs: ${r.rows.map((x) => x.id).join(', ')}`);
    }
    return 'design docs round-trip';
  },
};
