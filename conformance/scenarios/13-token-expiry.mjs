// A token expires during a live sync: the server answers 401, the app's fetch picks up a new
// token, and the sync carries on with nothing lost.
import { newStats } from '../lib/http.mjs';
import { claimsOf } from '../lib/jwt.mjs';
import { assert, waitFor } from '../lib/util.mjs';

const exists = (db, id) => db.get(id).then(() => true, () => false);
const LEEWAY = Number(process.env.CONFORMANCE_JWT_LEEWAY || 0);

export default {
  title: 'token expiry during live sync: 401, new token, carries on, nothing lost',
  timeout: 120000,
  async run(ctx) {
    ctx.needs('tokens');
    const alice = ctx.user('alice');
    const stats = newStats();
    let current = ctx.isGate ? alice.newToken({ ttl: 4 }) : null;
    const refreshed = [];
    const unauthorizedBodies = [];
    const remote = alice.remote('expiring', {
      stats,
      auth: () => (current ? `Bearer ${current}` : null),
      on401: async (res, sentAuth) => {
        unauthorizedBodies.push(await res.text());
        // Several requests fail at once when the token runs out: the first one refreshes it,
        // the others are sent again with the new token.
        if (sentAuth !== `Bearer ${current}`) return true;
        if (claimsOf(current).exp * 1000 > Date.now() - LEEWAY * 1000) return false; // not ours to fix
        current = alice.newToken({ ttl: 3600 });
        refreshed.push(Date.now());
        return true;
      },
    });
    const other = alice.remote('expiring', { stats: newStats() });
    const local = ctx.local();
    const h = ctx.live(local, remote);

    const roundTrip = async (tag) => {
      for (let i = 0; i < 5; i++) {
        await local.put({ _id: `${tag}-up-${i}` });
        await other.put({ _id: `${tag}-down-${i}` });
      }
      await waitFor(async () => {
        for (let i = 0; i < 5; i++) {
          if (!(await exists(other, `${tag}-up-${i}`)) || !(await exists(local, `${tag}-down-${i}`))) return false;
        }
        return true;
      }, { timeout: 20000, what: `${tag} docs on both sides` });
    };
    await roundTrip('before');
    if (ctx.isGate) {
      const expMs = claimsOf(current).exp * 1000 + LEEWAY * 1000;
      // the token's lifetime is the measured period here
      await waitFor(() => Date.now() > expMs + 1000, { timeout: 60000, interval: 100, what: 'the token to expire' });
    }
    await roundTrip('after');
    await roundTrip('later');
    assert.equal(h.errors.length, 0, `live sync stopped with an error: ${h.errors.map((e) => `${e.status} ${e.message}`).join('; ')}`);
    const n = (await other.allDocs()).rows.length;
    assert.equal(n, 30, `server holds ${n} docs, expected 30`);
    assert.equal((await local.allDocs()).rows.length, 30, 'client doc count');
    if (ctx.isGate) {
      assert.ok(stats.unauthorized >= 1, 'no request was answered 401 after the token expired');
      assert.ok(refreshed.length >= 1, 'the client never had to refresh its token');
      const body = JSON.parse(unauthorizedBodies[0]);
      assert.equal(body.error, 'unauthorized', `401 body: ${unauthorizedBodies[0]}`);
      return `${stats.unauthorized} x 401, ${refreshed.length} refresh, nothing lost`;
    }
    return 'nothing lost';
  },
};
