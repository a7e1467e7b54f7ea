// Interop: build/loadgen against an app that wraps its messages and wants a join first (wrapping_app.mjs, on npm
// `ws` and on npm socket.io). Without --send/--find/--on-open every message is missing and the verdict says why;
// with them every message is delivered exactly once. A template that puts the message where the app does not look
// is the negative control: it must fail.
// Run with: node --test --test-reporter=tap tests/interop/   (tests/interop/run.sh does that; WSH_BUILD picks the build)
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { HOST, SANITIZER_RE, SLOW, build, httpGet, removeTmp, runCommand, startScript, stopAll, tmp } from './lib.mjs';

const LOADGEN = path.join(build, 'loadgen');
const RUN_MS = 40000 * SLOW;
const CLIENTS = 20;
const ROUNDS = 4;
const WANT = (CLIENTS - 1) * ROUNDS;

after(async () => {
  await stopAll();
  removeTmp();
});

async function loadgen(url, extra) {
  const out = path.join(tmp, `lg-${Date.now()}-${Math.random().toString(36).slice(2)}.json`);
  const r = await runCommand([LOADGEN, '-c', String(CLIENTS), '-r', String(ROUNDS), '-i', '100ms', '--deadline', '2s',
    '--out', out, ...extra, url], RUN_MS);
  assert.ok(!SANITIZER_RE.test(r.stderr), r.stderr);
  assert.ok(!r.timedOut, 'loadgen timed out');
  const report = fs.existsSync(out) ? JSON.parse(fs.readFileSync(out, 'utf8')) : null;
  return { ...r, report };
}

const show = (r) => `exit ${r.code}\n${r.stdout}\n${r.stderr}`;

describe('websocket app (npm ws) that wraps and joins', () => {
  let app;
  test('start', async () => { app = await startScript('wrapping_app.mjs', [], 'wrap-ws'); });

  test('loadgen as it is: nothing relayed, every message missing, the verdict hints at --send/--find', async () => {
    const r = await loadgen(`ws://${HOST}:${app.port}/`, []);
    assert.equal(r.code, 1, show(r));
    assert.equal(r.report.totals.received, 0);
    assert.equal(r.report.totals.missing, WANT);
    assert.match(r.stdout + r.stderr, /--send/);
  });

  test('with --on-open, --send and --find: every message once, in order', async () => {
    const r = await loadgen(`ws://${HOST}:${app.port}/`, ['--on-open', '{"type":"join","room":"lobby"}',
      '--send', '{"type":"chat","text":"{{payload}}"}', '--find', '/text']);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.report.totals.received, WANT);
    assert.equal(r.report.totals.duplicate, 0);
    assert.equal(r.report.totals.reordered, 0);
    assert.equal(r.report.foreign, 0);
  });

  test('a regex finds it too', async () => {
    const r = await loadgen(`ws://${HOST}:${app.port}/`, ['--on-open', '{"type":"join","room":"lobby"}',
      '--send', '{"type":"chat","text":"{{payload}}"}', '--find', 're:"text":"(.*)"\\}$']);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.report.totals.received, WANT);
  });

  test('negative control: a template the app ignores fails with every message missing', async () => {
    const before = JSON.parse((await httpGet(app.port, '/stats')).body);
    const r = await loadgen(`ws://${HOST}:${app.port}/`, ['--on-open', '{"type":"join","room":"lobby"}',
      '--send', '{"type":"chat","body":"{{payload}}"}', '--find', '/text']);
    assert.equal(r.code, 1, show(r));
    assert.equal(r.report.totals.received, 0);
    const after_ = JSON.parse((await httpGet(app.port, '/stats')).body);
    assert.equal(after_.dropped - before.dropped, ROUNDS, 'the app dropped each emit: it has no text');
  });
});

describe('Socket.IO app (npm socket.io) that wraps and joins', () => {
  let app;
  test('start', async () => { app = await startScript('wrapping_app.mjs', ['--socketio'], 'wrap-sio'); });

  test('with --on-open, --send and --find: every message once, in order', async () => {
    const r = await loadgen(`ws://${HOST}:${app.port}/`, ['--protocol', 'socketio', '--on-open', '["join","lobby"]',
      '--send', '{"text":"{{payload}}","n":{{seq}}}', '--find', '/text']);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.report.totals.received, WANT);
    assert.equal(r.report.totals.duplicate, 0);
    const stats = JSON.parse((await httpGet(app.port, '/stats')).body);
    assert.equal(stats.joined, CLIENTS);
  });

  test('without --on-open nobody joined: every message missing', async () => {
    const r = await loadgen(`ws://${HOST}:${app.port}/`, ['--protocol', 'socketio',
      '--send', '{"text":"{{payload}}"}', '--find', '/text']);
    assert.equal(r.code, 1, show(r));
    assert.equal(r.report.totals.received, 0);
  });
});

test('bad templates and paths are usage errors (exit 2) with the reason', async () => {
  const cases = [
    [['--send', '{"text":"x"}'], /must hold \{\{payload\}\} exactly once/],
    [['--send', '{{payload}} {{nope}}'], /unknown placeholder/],
    [['--find', 'text'], /expected a JSON pointer/],
    [['--find', 're:(unclosed'], /--find re:/],
    [['--protocol', 'socketio', '--send', 'plain {{payload}}'], /must be JSON/],
    [['--protocol', 'socketio', '--on-open', 'join'], /an event as a JSON array/],
  ];
  for (const [extra, want] of cases) {
    const r = await runCommand([LOADGEN, '-c', '2', ...extra, `ws://${HOST}:1/`], 10000 * SLOW);
    assert.equal(r.code, 2, `${extra.join(' ')}: ${show(r)}`);
    assert.match(r.stderr, want, extra.join(' '));
  }
});
