// `ocular chat`, `videos`, `search`: the real CLI, spawned as a user runs it, against a real server (whose model is
// a fake OpenAI-compatible upstream over HTTP, and whose indexing is real).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatTimestamp } from '../../src/cli/client-commands.ts';
import { Ocular } from '../../src/sdk/index.ts';
import { sendJson } from '../helpers/fake-upstream.ts';
import { removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';
import { completion, startOpenAiUpstream, streamCompletion } from '../helpers/openai-upstream.ts';
import { FONT_PATH, makeTitledVideo } from '../helpers/vision-fixtures.ts';
import { closedPort, STACK_FRAME, useOcularCli } from './ocular-cli.ts';

const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');

let upstream: Awaited<ReturnType<typeof startOpenAiUpstream>>;
let ocular: TestOcular;
const cli = useOcularCli();

beforeAll(async () => {
  upstream = await startOpenAiUpstream();
  ocular = await startOcular({
    defaultModel: 'flash',
    models: [{ id: 'flash', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'upstream-model', maxRetries: 0 }],
    indexing: { objects: { enabled: false }, labels: { enabled: false }, vad: { enabled: false } },
  });
}, 60_000);

afterAll(async () => {
  await ocular?.close();
  await upstream?.close();
  removeMediaFixtures();
});

/** Runs the CLI pointed at the test server through the environment, as a user's shell would. */
function ocularCli(args: string[]) {
  return cli.run(args, { cwd: cli.temporaryDir(), env: { OCULAR_BASE_URL: ocular.url, OCULAR_API_KEY: ocular.key } });
}

describe('ocular chat', () => {
  it('streams the answer to stdout', async () => {
    upstream.behave((_request, response) => streamCompletion(response, ['Hel', 'lo, ', 'wörld'], { delayMs: 5 }));
    const result = await ocularCli(['chat', 'Say hello', '--model', 'flash']);
    expect(result.stderr).toBe('');
    expect(result).toMatchObject({ code: 0, stdout: 'Hello, wörld\n' });
    const sent = upstream.requests.at(-1)!.body as { stream: boolean; messages: Array<{ content: unknown }> };
    expect(sent.stream).toBe(true);
    expect(JSON.stringify(sent.messages)).toContain('Say hello');
  });

  it('sends a local image as a data: URL, with a system prompt; --json prints the response', async () => {
    upstream.behave((_request, response) => sendJson(response, 200, completion('A dot.')));
    const dir = cli.temporaryDir();
    const image = join(dir, 'dot.png');
    writeFileSync(image, PNG);
    const result = await cli.run(
      ['chat', 'What is this?', '--image', image, '--system', 'Be brief', '--json', '--url', ocular.url, '--api-key', ocular.key],
      {
        cwd: dir,
      },
    );
    expect(result.code).toBe(0);
    const reply = JSON.parse(result.stdout) as { responses: Array<{ message: { content: string } }> };
    expect(reply.responses[0]!.message.content).toBe('A dot.');
    const sent = JSON.stringify(upstream.requests.at(-1)!.body);
    expect(sent).toContain('data:image/png;base64,');
    expect(sent).toContain('Be brief');
  });

  it('fails with one line and exit 1: unknown model, missing file, bad key, no server', async () => {
    const unknown = await ocularCli(['chat', 'hi', '--model', 'nope']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^ocular: .*\(not_found_error, HTTP 404, request [\w.:-]+\)\n$/);

    const missing = await ocularCli(['chat', 'hi', '--image', 'no-such.png']);
    expect(missing).toMatchObject({ code: 1, stdout: '' });
    expect(missing.stderr).toMatch(/^ocular: --image: no file at no-such\.png\n$/);

    const wrongKey = await cli.run(['chat', 'hi', '--url', ocular.url, '--api-key', 'ocu_wrong_0000000000000000'], {
      cwd: cli.temporaryDir(),
    });
    expect(wrongKey.code).toBe(1);
    expect(wrongKey.stderr).toContain('authentication_error');

    const nobody = await cli.run(['videos', 'list', '--url', `http://127.0.0.1:${await closedPort()}`], { cwd: cli.temporaryDir() });
    expect(nobody.code).toBe(1);
    expect(nobody.stderr).toContain('connection_error');
    for (const result of [unknown, missing, wrongKey, nobody]) expect(result.stderr).not.toMatch(STACK_FRAME);
  }, 30_000);
});

describe('ocular chat, stopped or broken mid-answer', () => {
  it('Ctrl+C stops the stream, cancels the request upstream and exits 1', async () => {
    const upstreamClosed = new Promise<void>((resolve) =>
      upstream.behave((_request, response) => {
        response.on('close', () => resolve());
        return streamCompletion(
          response,
          Array.from({ length: 300 }, (_, index) => `w${index} `),
          { delayMs: 20, splitEvery: 64 },
        );
      }),
    );
    const spawned = await cli.ocular(['chat', 'Count'], {
      cwd: cli.temporaryDir(),
      env: { OCULAR_BASE_URL: ocular.url, OCULAR_API_KEY: ocular.key },
    });
    const deadline = Date.now() + 10_000;
    while (!spawned.stdout().includes('w3 ') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    spawned.child.kill('SIGINT');
    expect(await spawned.exited).toBe(1);
    expect(spawned.stderr()).toBe('ocular: interrupted\n');
    expect(spawned.stdout()).toMatch(/^w0 w1 w2 w3 /);
    expect(spawned.stdout()).not.toContain('w299');
    await upstreamClosed;
  }, 20_000);

  it('an upstream that dies mid-answer: the text so far, then the error, exit 1', async () => {
    upstream.behave((_request, response) => streamCompletion(response, ['partial ', 'answer'], { omitEnd: true }));
    const result = await ocularCli(['chat', 'hi']);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('partial answer\n');
    expect(result.stderr).toMatch(/^ocular: .*_error/);
    expect(result.stderr).not.toMatch(STACK_FRAME);
  });
});

describe.skipIf(FONT_PATH === undefined)('ocular videos and search', () => {
  it('uploads and waits, lists, searches (a table with timestamps) and removes', async () => {
    const path = await makeTitledVideo({ seconds: 10, captions: [{ text: 'VIOLET MOOSE', fromSeconds: 3, toSeconds: 7 }] });
    const group = await new Ocular({ baseURL: ocular.url, apiKey: ocular.key }).videos.groups.create({ name: 'wildlife' });
    const wildlife = group.group_id;
    const uploaded = await ocularCli(['videos', 'upload', path, '--wait', '--name', 'moose clip', '--group', wildlife]);
    expect(uploaded.code, uploaded.stderr).toBe(0);
    const id = uploaded.stdout.trim();
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(uploaded.stderr).toContain(`indexed ${id}`);

    const listed = await ocularCli(['videos', 'list']);
    expect(listed.code).toBe(0);
    const [header, row] = listed.stdout.trim().split('\n');
    expect(header).toMatch(/^ID\s+NAME\s+STATUS\s+DURATION\s+GROUP\s+CREATED$/);
    expect(row).toMatch(new RegExp(`^${id}\\s+moose clip\\s+indexed\\s+0:10\\.0\\s+${wildlife}\\s+\\d{4}-`));
    const json = JSON.parse((await ocularCli(['videos', 'list', '--json', '--group', wildlife])).stdout) as { total: number };
    expect(json.total).toBe(1);

    const found = await ocularCli(['search', 'violet moose', '--group', wildlife, '--limit', '3']);
    expect(found.code).toBe(0);
    const lines = found.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^VIDEO\s+FROM\s+TO\s+SCORE\s+ID\s+TEXT$/);
    const match = /^moose clip\s+(\d+:\d\d\.\d)\s+(\d+:\d\d\.\d)\s+(\d\.\d\d)\s+(\S+)/.exec(lines[1]!);
    expect(match?.[4]).toBe(id);
    const seconds = (clock: string) => Number(clock.split(':')[0]) * 60 + Number(clock.split(':')[1]);
    expect(seconds(match![1]!)).toBeLessThan(7);
    expect(seconds(match![2]!)).toBeGreaterThan(3);
    const none = await ocularCli(['search', 'violet moose', '--group', 'default']);
    expect(none).toMatchObject({ code: 0, stdout: '', stderr: 'no matches\n' });
    const searchJson = JSON.parse((await ocularCli(['search', 'violet moose', '--json'])).stdout) as {
      results: Array<{ video_id: string }>;
    };
    expect(searchJson.results[0]!.video_id).toBe(id);

    // `ocular ask` answers from the video's index through the server's Video QA.
    upstream.requests.length = 0;
    upstream.behave((_request, response) => sendJson(response, 200, completion('A violet moose is shown at [0:04].')));
    const asked = await ocularCli(['ask', id, 'What animal is on screen?']);
    expect(asked.code, asked.stderr).toBe(0);
    expect(asked.stdout).toContain('A violet moose is shown at [0:04].');
    expect(JSON.stringify(upstream.requests.at(-1)!.body)).toContain('VIOLET MOOSE');

    const removed = await ocularCli(['videos', 'rm', id]);
    expect(removed).toMatchObject({ code: 0, stdout: `deleted ${id}\n` });
    const again = await ocularCli(['videos', 'rm', id]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('not_found_error');
    expect((await ocularCli(['videos', 'list'])).stderr).toBe('no videos\n');
  }, 120_000);

  it('uploads without indexing and prints the video as JSON; refuses a missing file', async () => {
    const path = await makeTitledVideo({ seconds: 2, captions: [{ text: 'X', fromSeconds: 0, toSeconds: 1 }] });
    const uploaded = await ocularCli(['videos', 'upload', path, '--no-index', '--json']);
    expect(uploaded.code, uploaded.stderr).toBe(0);
    const video = JSON.parse(uploaded.stdout) as { video_id: string; indexing_status: string };
    expect(video.indexing_status).toBe('pending');
    await ocularCli(['videos', 'rm', video.video_id]);

    const missing = await ocularCli(['videos', 'upload', 'absent.mp4']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^ocular: no file at absent\.mp4/);
  }, 60_000);
});

describe('formatTimestamp', () => {
  it('writes m:ss.s, and h:mm:ss.s past an hour', () => {
    expect(formatTimestamp(0)).toBe('0:00.0');
    expect(formatTimestamp(65.34)).toBe('1:05.3');
    expect(formatTimestamp(59.96)).toBe('1:00.0');
    expect(formatTimestamp(3725.5)).toBe('1:02:05.5');
  });
});
