// Several virtual databases of one user stay separate.
import { assert, allIds, replicate } from '../lib/util.mjs';

const DBS = ['inbox', 'archive', 'work_2024-q1', 'inbox2'];

export default {
  title: 'several virtual databases of one user stay separate',
  timeout: 60000,
  async run(ctx) {
    const alice = ctx.user('alice');
    for (const db of DBS) {
      const local = ctx.local();
      await local.bulkDocs([{ _id: 'same', db }, { _id: `only-${db}`, db }]);
      await replicate(local, alice.remote(db));
    }
    for (const db of DBS) {
      const remote = alice.remote(db);
      const fresh = ctx.local();
      await replicate(remote, fresh);
      assert.deepEqual(await allIds(fresh), [`only-${db}`, 'same'].sort(), `${db}: ids`);
      assert.equal((await fresh.get('same')).db, db, `${db}: "same" came from another db`);
      assert.equal((await remote.info()).doc_count, 2, `${db}: doc_count`);
      const ch = await remote.changes();
      assert.equal(ch.results.length, 2, `${db}: _changes rows`);
    }
    // deleting one database leaves the others alone
    await alice.remote('inbox').destroy();
    const gone = await alice.request('inbox', '');
    assert.equal(gone.status, 404, `GET /inbox after destroy -> ${gone.status}`);
    for (const db of DBS.slice(1)) assert.equal((await alice.remote(db).info()).doc_count, 2, `${db} after inbox was destroyed`);
    return `${DBS.length} databases separate`;
  },
};
