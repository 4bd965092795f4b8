// Statistics, formatting and small helpers of the benchmark harness.

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Nearest-rank percentile (p in 0..100) of a list of numbers; NaN when empty. */
export function percentile(values, p) {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length - 1, Math.max(0, rank - 1))];
}

export function median(values) {
  const v = values.filter((x) => Number.isFinite(x));
  if (!v.length) return NaN;
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Formats a number with a sensible number of digits. */
export function fmt(x, digits) {
  if (x == null || Number.isNaN(x)) return 'n/a';
  if (!Number.isFinite(x)) return String(x);
  if (digits != null) return x.toFixed(digits);
  const a = Math.abs(x);
  if (a >= 1000) return Math.round(x).toLocaleString('en-US');
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toFixed(3);
}

export const fmtMs = (x) => (Number.isFinite(x) ? `${fmt(x)} ms` : 'n/a');

/**
 * The speed ratio of couchgate against the direct backend, as used in every table:
 * for times, direct ÷ couchgate; for rates, couchgate ÷ direct. 1.00 = parity, below 1 = slower
 * through couchgate (0.50 = half the speed).
 */
export const timeRatio = (gate, direct) => direct / gate;
export const rateRatio = (gate, direct) => gate / direct;

/** `n` documents of about `size` bytes of JSON, ids `${prefix}${i}`. */
const FILLER = 'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor ';
let filler = '';
export function body(size) {
  while (filler.length < size) filler += FILLER;
  return filler.slice(0, size);
}
export function makeDoc(id, i, size = 1024) {
  // ~80 bytes of JSON around the filler.
  return { _id: id, n: i, kind: 'bench', body: body(Math.max(0, size - 80)) };
}

/** A table in Markdown. */
export function mdTable(header, rows) {
  const line = (cells) => `| ${cells.map((c) => String(c).replace(/\|/g, '\\|')).join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** Logs a progress line on stderr with elapsed time. */
const T0 = Date.now();
export function log(...args) {
  const t = ((Date.now() - T0) / 1000).toFixed(1).padStart(7);
  console.error(`[${t}s]`, ...args);
}

/** Runs `fn` up to `count` times (at least `min`) or until `maxMs` has passed; returns ms of each. */
export async function timeLoop(fn, { count, min = 1, maxMs = Infinity }) {
  const times = [];
  const start = Date.now();
  for (let i = 0; i < count; i++) {
    if (i >= min && Date.now() - start > maxMs) break;
    const t = process.hrtime.bigint();
    await fn(i);
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return times;
}
