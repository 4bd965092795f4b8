// Push, pull and two-way sync of 1, 100 and 10,000 documents of about 1 KB.
import { assert, bulkInsert, idRevs, makeDocs, replicate, sync } from '../lib/util.mjs';

export default {
  title: 'push, pull and two-way sync of 1, 100 and 10,000 docs of ~1 KB',
  timeout: 480000,
  async run(ctx) {
    const alice = ctx.user('alice');
    const times = [];
    for (const n of [1, 100, 10000]) {
      const remote = alice.remote(`bulk-${n}`);

      // push: a client's n docs reach the server
      const a = ctx.local();
      const docs = makeDocs(n, 'p', 1024);
      await bulkInsert(a, docs);
      let t = Date.now();
      const pushed = await replicate(a, remote);
      times.push(`push ${n} ${((Date.now() - t) / 1000).toFixed(1)}s`);
      assert.equal(pushed.docs_written, n, `push of ${n}: docs_written`);
      assert.equal(pushed.doc_write_failures, 0, `push of ${n}: doc_write_failures`);
      const revsA = await idRevs(a);
      assert.deepEqual(await idRevs(remote), revsA, `push of ${n}: server ids/revs differ from the client's`);
      const info = await remote.info();
      assert.equal(info.doc_count, n, `push of ${n}: GET /db doc_count`);

      // pull: a fresh client gets exactly the same docs
      const b = ctx.local();
      t = Date.now();
      const pulled = await replicate(remote, b);
      times.push(`pull ${n} ${((Date.now() - t) / 1000).toFixed(1)}s`);
      assert.equal(pulled.docs_written, n, `pull of ${n}: docs_written`);
      assert.deepEqual(await idRevs(b), revsA, `pull of ${n}: pulled ids/revs differ`);
      const sample = docs[Math.floor(n / 2)];
      const got = await b.get(sample._id);
      delete got._rev;
      assert.deepEqual(got, sample, `pull of ${n}: content of ${sample._id} differs`);

      // two-way sync: a third client with n docs of its own
      const c = ctx.local();
      await bulkInsert(c, makeDocs(n, 's', 1024));
      t = Date.now();
      const res = await sync(c, remote);
      times.push(`sync ${n} ${((Date.now() - t) / 1000).toFixed(1)}s`);
      assert.equal(res.push.docs_written, n, `sync of ${n}: pushed docs_written`);
      assert.equal(res.pull.docs_written, n, `sync of ${n}: pulled docs_written`);
      const revsC = await idRevs(c);
      assert.equal(Object.keys(revsC).length, 2 * n, `sync of ${n}: client doc count`);
      assert.deepEqual(await idRevs(remote), revsC, `sync of ${n}: server and client differ after sync`);
      for (const db of [a, b, c]) await db.destroy();
      ctx.locals = ctx.locals.filter((l) => ![a, b, c].includes(l));
    }
    return times.filter((s) => s.includes('10000')).join(', ');
  },
};
