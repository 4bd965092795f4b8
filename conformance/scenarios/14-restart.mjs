// couchgate restarted (same port) during a live sync: the client retries and ends consistent.
import { newStats } from '../lib/http.mjs';
import { assert, bulkInsert, idRevs, makeDocs, waitFor } from '../lib/util.mjs';

export default {
  title: 'couchgate restarted during live sync: client retries, nothing lost',
  timeout: 180000,
  async run(ctx) {
    ctx.needs('restart');
    const alice = ctx.user('alice');
    const remote = alice.remote('restart', { stats: newStats() });
    const other = alice.remote('restart', { stats: newStats() });
    const local = ctx.local();
    // a quick back-off so the test does not wait PouchDB's default random delays
    const h = ctx.live(local, remote, { back_off_function: (d) => (d ? Math.min(d * 2, 1000) : 100) });
    await local.put({ _id: 'first' });
    await waitFor(() => other.get('first').then(() => true, () => false), { timeout: 10000, what: 'first doc on the server' });

    // a big push in flight when couchgate goes down
    await bulkInsert(local, makeDocs(2000, 'bulk', 500));
    await waitFor(async () => (await other.info()).doc_count > 100, { timeout: 30000, interval: 10, what: 'the push to start' });
    const atRestart = (await other.info()).doc_count;
    if (ctx.isGate) {
      await ctx.target.gate.restart({
        downtimeHook: async () => {
          await bulkInsert(local, makeDocs(20, 'down', 300));
        },
      });
    } else {
      await bulkInsert(local, makeDocs(20, 'down', 300));
    }
    await bulkInsert(other, makeDocs(20, 'server', 300));
    await waitFor(async () => (await other.info()).doc_count === 2041 && (await local.info()).doc_count === 2041,
      { timeout: 90000, interval: 100, what: 'both sides to hold 2041 docs' });
    assert.deepEqual(await idRevs(local), await idRevs(other), 'client and server differ after the restart');
    const ch = await other.changes({ limit: 5000 });
    assert.equal(ch.results.length, 2041, `server _changes has ${ch.results.length} rows (duplicates?)`);
    assert.equal(h.errors.length, 0, `live sync gave up: ${h.errors.map(String).join('; ')}`);
    return `restart with ${atRestart}/2001 pushed; consistent`;
  },
};
