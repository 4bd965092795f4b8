// db.destroy() from the client, then re-create and sync: only the new data comes back.
import { assert, allIds, bulkInsert, makeDocs, replicate } from '../lib/util.mjs';
import { request } from '../lib/http.mjs';
import { metaId } from '../lib/namespace.mjs';

export default {
  title: 'destroy() from the client, re-create, sync: only the new data',
  timeout: 60000,
  async run(ctx) {
    const alice = ctx.user('alice');
    const old = ctx.local();
    await bulkInsert(old, makeDocs(30, 'old', 300));
    await replicate(old, alice.remote('scratch'));
    const backingMeta = async () => (ctx.isGate && ctx.target.backingUrl
      ? request(`${ctx.target.backingUrl}/${encodeURIComponent(metaId(alice.name, alice.dbName('scratch')))}`) : null);
    const metaBefore = await backingMeta();

    const res = await alice.remote('scratch').destroy();
    assert.ok(res.ok, `destroy: ${JSON.stringify(res)}`);
    const after = await alice.request('scratch', '');
    assert.equal(after.status, 404, `GET /scratch after destroy -> ${after.status} ${after.text.slice(0, 120)}`);
    const again = await alice.request('scratch', '', { method: 'DELETE' });
    if (ctx.isGate || ctx.env?.backendVendor !== 'pouchdb-server') {
      assert.equal(again.status, 404, `second DELETE /scratch -> ${again.status}`);
    } else if (again.status !== 404) {
      ctx.note(`control: PouchDB Server answers a DELETE of a missing db with ${again.status} (CouchDB: 404)`);
    }

    // re-create (PouchDB PUTs the db on first use) with new data
    const remote = alice.remote('scratch');
    const info = await remote.info();
    assert.equal(info.doc_count, 0, `re-created db has doc_count ${info.doc_count}`);
    const fresh = ctx.local();
    await bulkInsert(fresh, makeDocs(10, 'new', 300));
    await replicate(fresh, remote);
    const puller = ctx.local();
    await replicate(remote, puller);
    assert.deepEqual(await allIds(puller), await allIds(fresh), 'pulled data is not just the new data');
    const ch = await remote.changes();
    assert.ok(ch.results.every((r) => r.id.startsWith('new-')), `_changes after re-create lists old docs: ${ch.results.filter((r) => !r.id.startsWith('new-')).length}`);
    const oldDoc = await remote.get('old-00001').catch((e) => e);
    assert.equal(oldDoc.status, 404, 'old doc visible after re-create');
    const ckpt = await alice.request('scratch', '/_local/anything');
    assert.equal(ckpt.status, 404);

    if (metaBefore && metaBefore.status === 200) {
      const metaAfter = await backingMeta();
      assert.notEqual(metaAfter.body.epoch, metaBefore.body.epoch, 're-created db kept the old epoch');
    }
    return 'only new data after re-create';
  },
};
