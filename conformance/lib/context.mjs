// The context a scenario runs in. A scenario never knows whether it talks to couchgate or to
// the control (a plain database per user and virtual db on the backend): it asks the context
// for users, their remote databases and local (memory) client databases.
import crypto from 'node:crypto';
import { PouchDB } from './pouch.mjs';
import { makeClientFetch, newStats, request } from './http.mjs';
import { tokenFor } from './jwt.mjs';
import { randomTag } from './util.mjs';

export class SkipError extends Error {}

/** Through couchgate: every user holds a JWT; db names are used as given. */
export class GateTarget {
  constructor({ url, secret, token, gate, backingUrl }) {
    this.mode = 'couchgate';
    this.url = url.replace(/\/$/, '');
    this.secret = secret;
    this.fixedToken = token;
    this.gate = gate; // our own process (restartable) or null for --url
    this.backingUrl = backingUrl; // backend URL of the shared database, or null
  }
  get canMintTokens() { return !!this.secret; }
  dbUrl(_user, db) { return `${this.url}/${encodeURIComponent(db)}`; }
}

/** The control: the same scenario straight at the backend, one plain database per (user, db). */
export class ControlTarget {
  constructor({ backendUrl, prefix }) {
    this.mode = 'control';
    this.backendUrl = backendUrl.replace(/\/$/, '');
    this.prefix = prefix;
    this.created = new Set();
  }
  dbName(user, db) {
    const h = crypto.createHash('sha1').update(`${user}\u0000${db}`).digest('hex').slice(0, 16);
    return `${this.prefix}${h}`;
  }
  dbUrl(user, db) {
    const name = this.dbName(user, db);
    this.created.add(name);
    return `${this.backendUrl}/${name}`;
  }
  async cleanup() {
    for (const name of this.created) await request(`${this.backendUrl}/${name}`, { method: 'DELETE' }).catch(() => {});
    this.created.clear();
  }
}

class User {
  constructor(ctx, name) {
    this.ctx = ctx;
    this.name = name;
    this.stats = newStats();
    const t = ctx.target;
    if (t.mode === 'couchgate') this.token = t.fixedToken || tokenFor(name, t.secret);
    this.dbs = new Set();
  }

  /**
   * The virtual db name actually used for `db`. With one fixed token (--token) every run shares
   * one user, so db names get the run's tag to start empty.
   */
  dbName(db) {
    return this.ctx.isGate && this.ctx.target.fixedToken ? `${db}-${this.ctx.tag}` : db;
  }

  /** URL of virtual database `db` for this user. */
  dbUrl(db) {
    return this.ctx.target.dbUrl(this.name, this.dbName(db));
  }

  /** Authorization header value (null for the control). */
  auth() {
    return this.ctx.target.mode === 'couchgate' ? `Bearer ${this.token}` : null;
  }

  /** Mints a fresh token (couchgate with --secret only). */
  newToken(opts) {
    const t = this.ctx.target;
    if (!t.secret) throw new SkipError('needs --secret to mint tokens');
    return tokenFor(this.name, t.secret, opts);
  }

  /**
   * A remote PouchDB for virtual database `db`. Options:
   *   stats: a stats object to count requests in (default: the user's),
   *   auth: () => header value (default: the user's current token),
   *   on401: async () => boolean, pouch: extra PouchDB options,
   *   base: another server URL to reach the same database through (a balancer).
   */
  remote(vdb, { stats, auth, on401, pouch = {}, base } = {}) {
    const db = this.dbName(vdb);
    this.dbs.add(db);
    this.ctx.pairs.set(`${this.name}\u0000${db}`, { user: this.name, db, owner: this });
    const f = makeClientFetch({ auth: auth || (() => this.auth()), on401, stats: stats || this.stats });
    let url = this.ctx.target.dbUrl(this.name, db);
    if (base) url = base.replace(/\/$/, '') + new URL(url).pathname;
    const r = new PouchDB(url, { fetch: f, ...pouch });
    r.__fetch = f;
    return r;
  }

  /** Raw HTTP request on virtual db `db`; `rest` is the path after the db, e.g. '/_changes'. */
  request(vdb, rest = '', opts = {}) {
    const db = this.dbName(vdb);
    this.dbs.add(db);
    this.ctx.pairs.set(`${this.name}\u0000${db}`, { user: this.name, db, owner: this });
    const headers = { ...(opts.headers || {}) };
    const a = opts.token !== undefined ? (opts.token && `Bearer ${opts.token}`) : this.auth();
    if (a) headers.Authorization = a;
    return request(this.ctx.target.dbUrl(this.name, db) + rest, { ...opts, headers });
  }
}

export class Context {
  constructor({ target, scenario, shared, log }) {
    this.target = target;
    this.mode = target.mode;
    this.isGate = target.mode === 'couchgate';
    this.scenario = scenario;
    this.shared = shared; // survives from the control run to the couchgate run of a scenario
    this.tag = randomTag(5);
    this.users = new Map();
    this.pairs = new Map();
    this.locals = [];
    this.cleanups = [];
    this.notes = [];
    this._log = log;
  }

  /** A user, unique to this run (`alice` -> `alice-x1y2z`). With --token there is only one. */
  user(base) {
    if (this.users.has(base)) return this.users.get(base);
    let name = `${base}-${this.tag}`;
    if (this.isGate && this.target.fixedToken) {
      if (this.users.size >= 1) throw new SkipError('needs several users: run with --secret instead of --token');
      name = JSON.parse(Buffer.from(this.target.fixedToken.split('.')[1], 'base64url').toString()).sub;
    }
    const u = new User(this, name);
    this.users.set(base, u);
    return u;
  }

  /** A fresh in-memory client database, destroyed after the run. */
  local(label = 'local') {
    const db = new PouchDB(`${label}-${this.tag}-${this.locals.length}-${randomTag(4)}`, { adapter: 'memory' });
    this.locals.push(db);
    return db;
  }

  /** Starts a live (retrying) replication that is cancelled at the end of the run. */
  live(from, to, opts = {}, kind = 'sync') {
    const h = kind === 'sync'
      ? from.sync(to, { live: true, retry: true, ...opts })
      : from.replicate.to(to, { live: true, retry: true, ...opts });
    h.errors = [];
    h.on('error', (e) => h.errors.push(e));
    this.cleanups.push(async () => {
      h.cancel();
    });
    return h;
  }

  onCleanup(fn) { this.cleanups.push(fn); }

  note(msg) {
    this.notes.push(msg);
    if (this._log) this._log(msg);
  }

  skip(reason) { throw new SkipError(reason); }

  needs(what) {
    if (what === 'tokens' && this.isGate && !this.target.secret) this.skip('needs --secret to mint tokens');
    if (what === 'restart' && this.isGate && !this.target.gate) this.skip('needs a couchgate started by the suite (not --url)');
  }

  async cleanup() {
    for (const fn of this.cleanups.splice(0)) {
      try { await fn(); } catch { /* best effort */ }
    }
    for (const db of this.locals.splice(0)) {
      try { await db.destroy(); } catch { /* best effort */ }
    }
  }
}
