// 20 users syncing at once, each with the same db name and partly the same ids: each ends with
// exactly their own data.
import { assert, bulkInsert, idRevs, makeDocs, replicate, sync } from '../lib/util.mjs';

const USERS = 20;
const DOCS = 100;

export default {
  title: '20 users syncing at once, each ending with exactly their own data',
  timeout: 300000,
  async run(ctx) {
    const users = Array.from({ length: USERS }, (_, i) => ctx.user(`user${String(i).padStart(2, '0')}`));
    // one user name that needs escaping in the partition
    users.push(ctx.user('Zoë.Ünïcode@example.org'));
    await Promise.all(users.map(async (u, i) => {
      const local = ctx.local(`u${i}`);
      // ids shared by all users ("common-*") plus ids of their own
      const docs = [
        ...makeDocs(DOCS / 2, 'common', 500, { owner: u.name }),
        ...makeDocs(DOCS / 2, `own${i}`, 500, { owner: u.name }),
      ];
      await bulkInsert(local, docs);
      const remote = u.remote('notes');
      const r = await sync(local, remote);
      assert.equal(r.push.docs_written, DOCS, `${u.name}: pushed ${r.push.docs_written}`);
      assert.equal(r.pull.docs_written, 0, `${u.name}: pulled ${r.pull.docs_written} docs it never wrote`);
      u.expected = await idRevs(local);
    }));
    // each user pulls into a fresh client, all at once
    await Promise.all(users.map(async (u, i) => {
      const fresh = ctx.local(`fresh${i}`);
      await replicate(u.remote('notes'), fresh);
      const got = await idRevs(fresh);
      assert.deepEqual(got, u.expected, `${u.name}: pulled data differs from its own`);
      const all = await fresh.allDocs({ include_docs: true });
      const foreign = all.rows.filter((r) => r.doc.owner !== u.name);
      assert.equal(foreign.length, 0, `${u.name} got ${foreign.length} docs of other users (e.g. owner ${foreign[0]?.doc.owner})`);
      const info = await u.remote('notes').info();
      assert.equal(info.doc_count, DOCS, `${u.name}: GET /notes doc_count ${info.doc_count}`);
    }));
    return `${users.length} users x ${DOCS} docs`;
  },
};
