// Conflicts: two clients of one user edit the same docs concurrently. The winning rev and the
// _conflicts list must be exactly what plain CouchDB (the control) picks, on the server and on
// both clients, and the resolution must replicate.
import { assert, replicate } from '../lib/util.mjs';

async function state(db, ids) {
  const out = {};
  for (const id of ids) {
    const d = await db.get(id, { conflicts: true }).catch((e) => ({ error: e.status, reason: e.reason }));
    const leaves = await db.get(id, { open_revs: 'all' });
    out[id] = {
      winner: d._rev || d.error,
      value: d.v ?? null,
      conflicts: (d._conflicts || []).slice().sort(),
      leaves: leaves.map((l) => `${l.ok._rev}${l.ok._deleted ? ' (deleted)' : ''}`).sort(),
    };
  }
  return out;
}

export default {
  title: 'conflicts: same winner and _conflicts as CouchDB; resolution replicates',
  timeout: 60000,
  async run(ctx) {
    const alice = ctx.user('alice');
    const remote = alice.remote('conflicts');
    const l1 = ctx.local('phone');
    const l2 = ctx.local('laptop');
    const ids = ['x', 'y', 'z', 'w'];
    for (const id of ids) await l1.put({ _id: id, v: 'base' });
    await replicate(l1, remote);
    await replicate(remote, l2);

    // offline, concurrent edits
    const edit = async (db, id, v, times = 1) => {
      for (let i = 0; i < times; i++) {
        const d = await db.get(id);
        await db.put({ ...d, v: `${v}${i}` });
      }
    };
    await edit(l1, 'x', 'phone');
    await edit(l2, 'x', 'laptop');
    await edit(l1, 'y', 'phone', 1);
    await edit(l2, 'y', 'laptop', 3); // longer branch wins
    await l1.remove(await l1.get('z')); // deleted branch vs edit: the edit wins
    await edit(l2, 'z', 'laptop');
    await edit(l1, 'w', 'phone'); // three-way conflict: a second device edits w twice, separately
    await edit(l2, 'w', 'laptop');

    await replicate(l1, remote);
    await replicate(l2, remote);
    await replicate(remote, l1);
    await replicate(remote, l2);

    const sServer = await state(remote, ids);
    const s1 = await state(l1, ids);
    const s2 = await state(l2, ids);
    assert.deepEqual(s1, sServer, 'client 1 and the server disagree on winners/conflicts');
    assert.deepEqual(s2, sServer, 'client 2 and the server disagree on winners/conflicts');
    assert.ok(sServer.x.conflicts.length === 1, `x should have one conflict: ${JSON.stringify(sServer.x)}`);
    assert.ok(sServer.z.value === 'laptop0', `z: the edit should beat the deletion: ${JSON.stringify(sServer.z)}`);
    if (ctx.shared.conflicted) assert.deepEqual(sServer, ctx.shared.conflicted, 'winners/conflicts differ from the control (plain database)');
    else ctx.shared.conflicted = sServer;

    // the raw server answer too: GET ?conflicts=true and ?open_revs=all
    const raw = await alice.request('conflicts', '/x?conflicts=true');
    assert.equal(raw.status, 200);
    assert.deepEqual(raw.body._conflicts.slice().sort(), sServer.x.conflicts, 'GET /db/x?conflicts=true');
    assert.equal(raw.body._id, 'x', `GET /db/x returned _id ${raw.body._id}`);

    // resolve on client 1: keep the winner, delete the losers; client 2 pulls the resolution
    for (const id of ids) {
      const d = await l1.get(id, { conflicts: true });
      for (const rev of d._conflicts || []) await l1.remove(id, rev);
    }
    await replicate(l1, remote);
    await replicate(remote, l2);
    const r1 = await state(l1, ids);
    const r2 = await state(l2, ids);
    const rs = await state(remote, ids);
    for (const id of ids) assert.deepEqual(rs[id].conflicts, [], `${id} still conflicted on the server after resolution`);
    assert.deepEqual(r2, r1, 'client 2 did not get the resolution');
    assert.deepEqual(rs, r1, 'server differs from the resolving client');
    if (ctx.shared.resolved) assert.deepEqual(rs, ctx.shared.resolved, 'resolved state differs from the control');
    else ctx.shared.resolved = rs;
    return `x winner ${sServer.x.winner.slice(0, 10)}..., ${sServer.w.conflicts.length} conflict on w`;
  },
};
