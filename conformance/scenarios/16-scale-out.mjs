// Scale-out: two couchgate instances over one backing database behind a round-robin balancer
// without stickiness. A client syncs live through the balancer (so every request may land on
// the other instance, with a checkpoint the other one issued) while another device writes
// straight to each instance in turn. Nothing is lost, the server holds no duplicates, and what
// a switch of instance costs is bounded by the user's own documents.
import { newStats } from '../lib/http.mjs';
import { startBalancer } from '../lib/balancer.mjs';
import { assert, bulkInsert, idRevs, makeDocs, waitFor } from '../lib/util.mjs';

const ROUNDS = 6;
const PER_ROUND = 10;

export default {
  title: 'two instances behind a round-robin balancer: live sync loses nothing, switches cost own docs',
  timeout: 180000,
  async run(ctx) {
    ctx.needs('restart');
    const alice = ctx.user('alice');
    // The control has one server; couchgate gets a twin over the same backing database.
    const twin = ctx.isGate ? await ctx.target.gate.twin() : null;
    if (twin) ctx.onCleanup(() => twin.stop());
    const upstreams = twin ? [ctx.target.url, twin.url] : [controlOrigin(alice.dbUrl('scale'))];
    const balancer = await startBalancer(upstreams);
    ctx.onCleanup(() => balancer.stop());

    const remote = alice.remote('scale', { stats: newStats(), base: balancer.url });
    const direct = [alice.remote('scale', { stats: newStats() })];
    if (twin) direct.push(alice.remote('scale', { stats: newStats(), base: twin.url }));
    const local = ctx.local();
    await bulkInsert(local, makeDocs(50, 'seed', 200));
    const h = ctx.live(local, remote, { back_off_function: (d) => (d ? Math.min(d * 2, 1000) : 100) });

    let total = 50;
    for (let round = 0; round < ROUNDS; round++) {
      await bulkInsert(local, makeDocs(PER_ROUND, `up${round}-`, 200));
      // Another device writes through one instance, then the other.
      await bulkInsert(direct[round % direct.length], makeDocs(PER_ROUND, `down${round}-`, 200));
      total += 2 * PER_ROUND;
      await waitFor(async () => (await local.info()).doc_count === total && (await direct[0].info()).doc_count === total,
        { timeout: 30000, interval: 50, what: `round ${round}: both sides to hold ${total} docs` });
    }
    assert.deepEqual(await idRevs(local), await idRevs(direct[0]), 'client and server differ');
    const ch = await direct[0].changes({ limit: 10000 });
    assert.equal(ch.results.length, total, `server _changes has ${ch.results.length} rows for ${total} docs`);
    assert.equal(h.errors.length, 0, `live sync gave up: ${h.errors.map(String).join('; ')}`);

    // Every answer carries at most the user's own documents: a switch replays the namespace,
    // never the shared database.
    const feeds = balancer.feeds;
    const biggest = Math.max(0, ...feeds.map((f) => f.rows));
    assert.ok(biggest <= total, `a _changes answer carried ${biggest} rows for a user with ${total} docs`);
    let switches = 0;
    let replayed = 0;
    for (let i = 1; i < feeds.length; i++) {
      if (feeds[i].upstream !== feeds[i - 1].upstream) {
        switches++;
        replayed += feeds[i].rows;
      }
    }
    if (twin) {
      assert.ok(balancer.counts.every((n) => n > 0), `every instance served: ${balancer.counts}`);
    }
    return `${total} docs consistent; ${feeds.length} feed answers, ${switches} instance switches carrying ${replayed} rows ` +
      `(largest answer ${biggest}); requests per instance ${balancer.counts.join('/')}`;
  },
};

/** The control's server URL with its credentials (the balancer forwards them). */
function controlOrigin(dbUrl) {
  const u = new URL(dbUrl);
  return `${u.protocol}//${u.username ? `${u.username}:${u.password}@` : ''}${u.host}`;
}
