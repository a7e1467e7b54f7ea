// Interop: common/hist's .hlog writer and V2 codec (through build/hlogdump) against npm `hdr-histogram-js`.
// Run with: node --test --test-reporter=tap tests/interop/   (tests/interop/run.sh does that; WSH_BUILD picks the build)
// Both directions: we write and hdr-histogram-js reads; hdr-histogram-js writes and we read. No servers: every
// child is a short hlogdump run with a timeout, and every file lives in one temporary directory removed at the end.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as hdr from 'hdr-histogram-js';

const here = path.dirname(fileURLToPath(import.meta.url));
const build = process.env.WSH_BUILD || path.resolve(here, '../../build');
const HLOGDUMP = path.join(build, 'hlogdump');
const SKIP = fs.existsSync(HLOGDUMP)
  ? false
  : `${HLOGDUMP} is not built: the Makefile builds tests/tools/hlogdump.c, which needs -lz in LDLIBS`;

// The layout hlogdump --write records with (HIST_NS_* in common/hist.h): ns, 1 us..1 h, 3 digits; unit 512 ns.
const LAYOUT = { lowestDiscernibleValue: 1000, highestTrackableValue: 3.6e12, numberOfSignificantValueDigits: 3 };
const UNIT = 512;
const SEED = 42;
const N = 100000;

// Two values the histogram cannot tell apart: at most one unit, or 1/1000 of the value, between them.
// (hdr-histogram-js reports a decoded max one unit minus one above the bucket's top: allow a second unit.)
function assertWithinPrecision(actual, expected, what) {
  const tol = Math.max(2 * UNIT, expected / 1000);
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} vs ${expected} (tolerance ${tol})`);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wsh-hist-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function hlogdump(...args) {
  return execFileSync(HLOGDUMP, args, { encoding: 'utf8', timeout: 30000 });
}

// hlogdump FILE: "count=N max=N p50=N p99=N[ tag=T]" per interval.
function dumpLog(file) {
  return hlogdump(file)
    .trim()
    .split('\n')
    .map((line) => {
      const m = /^count=(\d+) max=(\d+) p50=(\d+) p99=(\d+)(?: tag=(\S+))?$/.exec(line);
      assert.ok(m, `unexpected hlogdump line: ${line}`);
      return { count: +m[1], max: +m[2], p50: +m[3], p99: +m[4], tag: m[5] ?? null };
    });
}

function readWithJs(text) {
  const reader = new hdr.HistogramLogReader(text);
  const out = [];
  for (let h = reader.nextIntervalHistogram(); h; h = reader.nextIntervalHistogram()) out.push(h);
  return out;
}

const jsTag = (h) => (h.tag === 'NO TAG' ? null : h.tag); // the reader's NO_TAG

// mulberry32: a seeded stream, so a failing run can be repeated.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('common/hist .hlog and hdr-histogram-js', { skip: SKIP }, () => {
  test('we write, hdr-histogram-js reads: counts, times, max, percentiles, mean', () => {
    const file = path.join(tmp, 'ours.hlog');
    const written = JSON.parse(hlogdump('--write', file, String(SEED), String(N)));
    const text = fs.readFileSync(file, 'utf8');
    assert.match(text, /^#\[Histogram log format version 1\.3\]$/m);
    const intervals = readWithJs(text);
    assert.equal(intervals.length, written.intervals.length);
    assert.equal(intervals.reduce((s, h) => s + h.totalCount, 0), N);
    written.intervals.forEach((c, i) => {
      const js = intervals[i];
      assert.equal(jsTag(js), c.tag);
      assert.equal(js.totalCount, c.count);
      assert.equal(js.startTimeStampMsec, (written.start_epoch + c.start) * 1000);
      assert.equal(js.endTimeStampMsec - js.startTimeStampMsec, c.length * 1000);
      assertWithinPrecision(js.maxValue, c.max, `interval ${i} max`);
      assertWithinPrecision(js.getValueAtPercentile(50), c.p50, `interval ${i} p50`);
      assertWithinPrecision(js.getValueAtPercentile(99), c.p99, `interval ${i} p99`);
      assertWithinPrecision(js.getValueAtPercentile(99.9), c.p999, `interval ${i} p99.9`);
      // The same counts and the same bucket middles: the means agree to rounding.
      assert.ok(Math.abs(js.mean - c.mean) <= 1e-3 + c.mean * 1e-12, `interval ${i} mean ${js.mean} vs ${c.mean}`);
    });
    // The max column is the exact max in ms, %.3f.
    const lines = text.split('\n').filter((l) => /^(Tag=[^,]*,)?\d/.test(l));
    lines.forEach((l, i) => {
      const fields = l.replace(/^Tag=[^,]*,/, '').split(',');
      assert.equal(fields[2], (written.intervals[i].max / 1e6).toFixed(3));
    });
  });

  test('both decoders agree on our log: count, p50, p99 exactly, max within a unit', () => {
    const file = path.join(tmp, 'ours2.hlog');
    hlogdump('--write', file, String(SEED + 1), String(N));
    const ours = dumpLog(file);
    const theirs = readWithJs(fs.readFileSync(file, 'utf8'));
    assert.equal(ours.length, theirs.length);
    ours.forEach((o, i) => {
      const js = theirs[i];
      assert.equal(o.tag, jsTag(js));
      assert.equal(o.count, js.totalCount);
      assert.equal(o.p50, js.getValueAtPercentile(50));
      assert.equal(o.p99, js.getValueAtPercentile(99));
      assert.ok(Math.abs(o.max - js.maxValue) < UNIT, `max ${o.max} vs ${js.maxValue}`);
    });
  });

  test('hdr-histogram-js writes, we read: our layout, another layout, an auto-resizing default', () => {
    const next = rng(SEED);
    const made = [
      { tag: 'ns', h: hdr.build({ ...LAYOUT, bitBucketSize: 64 }), draw: () => 1000 * Math.exp(next() * 16) },
      {
        tag: null,
        h: hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 1e7, numberOfSignificantValueDigits: 2 }),
        draw: () => (next() < 0.9 ? 50 + next() * 100 : 1e5 + next() * 1e6),
      },
      { tag: 'default', h: hdr.build(), draw: () => -1e4 * Math.log(1 - next()) },
    ];
    let text = '';
    const writer = new hdr.HistogramLogWriter((s) => (text += s));
    writer.outputLogFormatVersion();
    writer.outputStartTime(1700000000000);
    writer.outputLegend();
    made.forEach(({ tag, h, draw }, i) => {
      for (let k = 0; k < N / 4; k++) h.recordValue(Math.floor(draw()));
      if (tag) h.tag = tag;
      writer.outputIntervalHistogram(h, i, i + 1, 1e6);
    });
    const file = path.join(tmp, 'theirs.hlog');
    fs.writeFileSync(file, text);
    const ours = dumpLog(file);
    assert.equal(ours.length, made.length);
    made.forEach(({ tag, h }, i) => {
      assert.equal(ours[i].tag, tag);
      assert.equal(ours[i].count, h.totalCount);
      assert.equal(ours[i].p50, h.getValueAtPercentile(50), `interval ${i} p50`);
      assert.equal(ours[i].p99, h.getValueAtPercentile(99), `interval ${i} p99`);
      assert.ok(ours[i].max >= h.maxValue - h.unitMagnitudeMask, `interval ${i} max ${ours[i].max} vs ${h.maxValue}`);
      assert.ok(ours[i].max <= h.highestEquivalentValue(h.maxValue), `interval ${i} max`);
    });
  });

  test('the small blob pinned in tests/unit/test_hist.c decodes to its counts', () => {
    // 1 x1, 2 x3, 1000 x2 at lowest 1, highest 100000, 2 digits: the bytes test_encode_small_known_bytes checks.
    const h = hdr.decodeFromCompressedBase64('HISTFAAAACJ42pNpmSzMwMDAxgABTFCaEUK2LbD/AJNhe8vOAgBejASm');
    assert.equal(h.totalCount, 6);
    assert.equal(h.getCountAtValue(1), 1);
    assert.equal(h.getCountAtValue(2), 3);
    assert.equal(h.getCountAtValue(1000), 2);
    assert.equal(h.numberOfSignificantValueDigits, 2);
    assert.equal(h.highestTrackableValue, 100000);
  });
});
