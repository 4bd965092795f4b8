// HS256 JSON Web Tokens, signed with node:crypto (no dependency).
import crypto from 'node:crypto';

const b64url = (buf) => Buffer.from(buf).toString('base64url');

export function signHS256(claims, secret) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = b64url(JSON.stringify(claims));
  const sig = crypto.createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${sig}`;
}

/** A token for `user`, valid `ttl` seconds from now (negative: already expired). */
export function tokenFor(user, secret, { ttl = 3600, extra = {} } = {}) {
  const now = Math.floor(Date.now() / 1000);
  return signHS256({ sub: user, iat: Math.min(now, now + ttl - 1), exp: now + ttl, ...extra }, secret);
}

/** Decodes (without verifying) the claims of a token. */
export function claimsOf(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

/** Replaces the claims of a signed token, keeping the old signature (so it no longer matches). */
export function tamper(token, claims) {
  const [h, , s] = token.split('.');
  return `${h}.${b64url(JSON.stringify(claims))}.${s}`;
}
