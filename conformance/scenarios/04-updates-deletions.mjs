// Updates, deletions, and deletion then re-creation of the same id, both directions.
import { assert, idRevs, replicate } from '../lib/util.mjs';

async function history(db, ids) {
  const out = {};
  for (const id of ids) {
    const leaves = await db.get(id, { open_revs: 'all', revs: true });
    out[id] = leaves.map((l) => l.ok).map((d) => ({ rev: d._rev, deleted: !!d._deleted, revs: d._revisions }))
      .sort((x, y) => (x.rev < y.rev ? -1 : 1));
  }
  return out;
}

export default {
  title: 'updates, deletions, delete then re-create the same id',
  timeout: 60000,
  async run(ctx) {
    const alice = ctx.user('alice');
    const remote = alice.remote('edits');
    const a = ctx.local();
    const ids = Array.from({ length: 20 }, (_, i) => `doc-${i}`);
    for (const id of ids) await a.put({ _id: id, v: 0 });
    for (const id of ids.slice(0, 10)) {
      for (let v = 1; v <= 3; v++) {
        const d = await a.get(id);
        await a.put({ ...d, v });
      }
    }
    for (const id of ids.slice(10, 15)) await a.remove(await a.get(id));
    // delete then re-create
    await a.remove(await a.get('doc-15'));
    await a.put({ _id: 'doc-15', v: 'reborn' });
    await replicate(a, remote);

    const b = ctx.local();
    await replicate(remote, b);
    assert.deepEqual(await idRevs(b), await idRevs(a), 'pulled client differs from the writer');
    assert.deepEqual(await idRevs(remote), await idRevs(a), 'server differs from the writer');
    assert.deepEqual(await history(b, ids), await history(a, ids), 'revision histories differ after the round trip');
    const gone = await b.get('doc-11').then(() => null, (e) => e);
    assert.ok(gone && gone.status === 404 && gone.reason === 'deleted', `deleted doc on the puller: ${gone && gone.reason}`);
    const reborn = await b.get('doc-15');
    assert.equal(reborn.v, 'reborn');
    assert.ok(reborn._rev.startsWith('3-'), `re-created doc rev ${reborn._rev}, expected 3-`);
    const ch = await remote.changes({ style: 'all_docs' });
    const deleted = ch.results.filter((r) => r.deleted).map((r) => r.id).sort();
    assert.deepEqual(deleted, ids.slice(10, 15).sort(), 'server _changes: deleted ids');
    assert.equal(ch.results.length, 20, 'server _changes: one row per doc');
    // same revs as through the control (client-made revs are deterministic in PouchDB; revs the
    // server makes are not compared: PouchDB Server hashes the _id into them, CouchDB does not)
    const first = await history(remote, ids);
    if (ctx.shared.first) assert.deepEqual(first, ctx.shared.first, 'server revision trees differ from the control run');
    else ctx.shared.first = first;

    // the other way: edits made on the server (another device) reach the first client
    const d3 = await remote.get('doc-3');
    await remote.put({ ...d3, v: 'server' });
    await remote.remove(await remote.get('doc-4'));
    await remote.remove(await remote.get('doc-15'));
    await remote.put({ _id: 'doc-15', v: 'again' }).catch(async (e) => {
      // CouchDB: PUT without rev on a deleted doc creates a new revision
      throw new Error(`re-create of a deleted doc on the server failed: ${e.status} ${e.message}`);
    });
    await remote.put({ _id: 'doc-12', v: 'back' }); // re-create a doc deleted by the client
    await replicate(remote, a);
    assert.deepEqual(await idRevs(a), await idRevs(remote), 'client differs after pulling server edits');
    assert.deepEqual(await history(a, ids), await history(remote, ids), 'histories differ after server edits');
    assert.equal((await a.get('doc-15')).v, 'again');
    assert.equal((await a.get('doc-12')).v, 'back');

    return `${Object.keys(await idRevs(remote)).length} live docs`;
  },
};
