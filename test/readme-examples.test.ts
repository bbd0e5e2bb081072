import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closedPort } from './cli/ocular-cli.ts';
import { writeTinyLlamaGguf, writeTinyMmprojGguf } from './helpers/gguf-writer.ts';
import { makeVideo, removeMediaFixtures } from './helpers/media-fixtures.ts';

// Every `curl` example in README.md, taken from the README itself and run with the real curl against
// `ocular serve` as the Quick start starts it: no config file for models, a fresh ./data, the key from
// data/bootstrap-key. A generated tiny GGUF (and projector, for the image example) stands in for the default
// model's download. So an example naming a model that only some config has, or a field the API no longer
// takes, fails here instead of in a newcomer's first ten minutes.

const execFileAsync = promisify(execFile);
const README = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
/** Where the README's examples point; replaced by the test server's origin. */
const README_ORIGIN = 'http://127.0.0.1:8080';
/** A streamed answer (video events until indexing is done) ends well within this. */
const CURL_MAX_SECONDS = 120;

/** Examples that cannot run here, each with the reason. A skip that matches no example any more fails the test. */
const SKIPPED: ReadonlyArray<{ argument: string; reason: string }> = [
  { argument: 'video_url=https://example.com/talk.mp4', reason: 'fetches a video from the internet; the tests use no network' },
  {
    argument: '{"audio_url": "https://example.com/talk.mp3", "target_language": "french", "return_translation_audio": true}',
    reason: 'fetches audio from the internet, and the defaults have no transcriber (test/server/speech-api.test.ts runs it)',
  },
  {
    argument: 'video=@talk.mp4',
    reason:
      'quicktag needs tags that match its schema; the tiny test model writes one endless string (test/server/quicktag.test.ts covers it)',
  },
  {
    argument:
      '{"video_urls":["https://example.com/match.mp4"],"prompt":"goals","generation_config":{"template":"compilation","max_duration_seconds":60}}',
    reason: 'fetches a video from the internet; the tests use no network',
  },
  {
    argument: '{"image_url":"https://example.com/storefront.jpg","max_results":5}',
    reason: 'needs indexing.imageEmbeddingModel and the internet; test/server/image-search.test.ts searches by image',
  },
  {
    argument: '{"image_url":"https://example.com/storefront.jpg","max_results":3}',
    reason: 'needs indexing.imageEmbeddingModel and the internet; test/server/image-search.test.ts searches by image',
  },
];

interface Example {
  /** The README section the block is in, for the test's name. */
  section: string;
  script: string;
}

/** The fenced `sh` blocks that call curl, in README order. */
function curlExamples(markdown: string): Example[] {
  const examples: Example[] = [];
  for (const match of markdown.matchAll(/^```sh\n([\s\S]*?)^```$/gm)) {
    const script = match[1]!;
    if (!/^\s*curl\s/m.test(script)) continue;
    const headings = [...markdown.slice(0, match.index).matchAll(/^#{2,3} (.+)$/gm)];
    examples.push({ section: headings.at(-1)?.[1] ?? '(top)', script });
  }
  return examples;
}

const EXAMPLES = curlExamples(README);
const BIN = new URL('../bin/ocular.js', import.meta.url).pathname;

/**
 * The argument vectors of the curl calls in `script`, as bash expands them (quotes, `$OCULAR_KEY`, `$(base64 …)`),
 * found by running the script with `curl` defined as a function that prints its arguments. Other commands run
 * for real, in `cwd`.
 */
async function curlCalls(script: string, cwd: string, env: NodeJS.ProcessEnv): Promise<string[][]> {
  const recorder = `set -euo pipefail\ncurl() { printf '\\036'; printf '%s\\037' "$@"; }\n`;
  const { stdout } = await execFileAsync('bash', ['-c', recorder + script], { cwd, env, maxBuffer: 64 * 1024 * 1024 });
  return stdout
    .split('\x1e')
    .slice(1)
    .map((call) => call.split('\x1f').slice(0, -1));
}

let server: ChildProcess | undefined;
let origin: string;
let cwd: string;
let env: NodeJS.ProcessEnv;
/** Ids the examples leave as VIDEO_ID, GROUP_ID, IMAGE_ID, ASSET_KEY and CONVERSATION_ID, taken from the answers of the calls that create them. */
const placeholders = new Map<string, string>();
const skipsUsed = new Set<string>();
let responseCount = 0;

/** Runs one curl call (placeholders filled in) and returns its status and body. */
async function runCurl(args: string[]): Promise<{ status: number; body: string }> {
  const filled = args.map((arg) =>
    arg.replace(/\b(VIDEO_ID|GROUP_ID|IMAGE_ID|ASSET_KEY|CONVERSATION_ID|CLIP_ID)\b/g, (name) => {
      const value = placeholders.get(name);
      if (value === undefined) throw new Error(`${name} is used before an example created one: ${args.join(' ')}`);
      return value;
    }),
  );
  const bodyPath = join(cwd, `response-${++responseCount}`);
  const { stdout } = await execFileAsync(
    'curl',
    [...filled, '--max-time', String(CURL_MAX_SECONDS), '-o', bodyPath, '-w', '%{http_code}'],
    { cwd, env, maxBuffer: 1024 * 1024 },
  );
  return { status: Number(stdout), body: readFileSync(bodyPath, 'utf8') };
}

function remember(args: string[], body: string): void {
  const url = args.find((arg) => arg.startsWith(origin));
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return;
  }
  const record = parsed as { id?: unknown; video_id?: unknown; group_id?: unknown; results?: Array<{ image_id?: unknown }> };
  if (url === `${origin}/v1/clips` && args.includes('-d') && typeof record.id === 'string') placeholders.set('CLIP_ID', record.id);
  if (url?.startsWith(`${origin}/v1/videos/upload`) && typeof record.video_id === 'string') placeholders.set('VIDEO_ID', record.video_id);
  const imageId = record.results?.[0]?.image_id;
  if (url?.startsWith(`${origin}/v1/images/upload`) && typeof imageId === 'string') placeholders.set('IMAGE_ID', imageId);
  const conversation = parsed as { asset?: { key?: unknown }; conversationId?: unknown };
  if (url === `${origin}/api/assets` && typeof conversation.asset?.key === 'string') placeholders.set('ASSET_KEY', conversation.asset.key);
  if (url?.startsWith(`${origin}/api/features`) && typeof conversation.conversationId === 'string') {
    placeholders.set('CONVERSATION_ID', conversation.conversationId);
  }
  if (url === `${origin}/v1/videos/groups` && args.includes('-d') && typeof record.group_id === 'string') {
    placeholders.set('GROUP_ID', record.group_id);
  }
}

beforeAll(async () => {
  cwd = mkdtempSync(join(tmpdir(), 'ocular-readme-'));
  const model = writeTinyLlamaGguf(join(cwd, 'tiny.gguf'));
  const mmproj = writeTinyMmprojGguf(join(cwd, 'tiny-mmproj.gguf'));
  // The two analyzers whose weights are downloaded in the background are off, so nothing leaves the machine;
  // models and everything else stay at their defaults.
  writeFileSync(join(cwd, 'ocular.config.json'), JSON.stringify({ indexing: { vad: { enabled: false }, labels: { enabled: false } } }));
  // The files the examples name.
  await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 200, g: 60, b: 40 } } })
    .jpeg()
    .toFile(join(cwd, 'photo.jpg'));
  copyFileSync(await makeVideo({ seconds: 2, width: 160, height: 120, withAudio: true }), join(cwd, 'talk.mp4'));

  // No OCULAR_* or HF_* setting from the environment running the tests, and no hub to reach.
  const inherited = Object.entries(process.env).filter(([name]) => !name.startsWith('OCULAR_') && !name.startsWith('HF_'));
  env = { ...Object.fromEntries(inherited), HF_ENDPOINT: `http://127.0.0.1:${await closedPort()}` };
  server = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--model-path', model, '--mmproj-path', mmproj], {
    cwd,
    env,
    stdio: 'pipe',
  });
  let log = '';
  server.stdout!.setEncoding('utf8').on('data', (chunk: string) => (log += chunk));
  server.stderr!.setEncoding('utf8').on('data', (chunk: string) => (log += chunk));
  const deadline = Date.now() + 30_000;
  let listening: RegExpExecArray | null = null;
  while ((listening = /"message":"ocular is listening".*?"url":"(http:\/\/[^"]+)"/.exec(log)) === null) {
    expect(Date.now(), log).toBeLessThan(deadline);
    expect(server.exitCode, log).toBeNull();
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  origin = listening[1]!;
  env = { ...env, OCULAR_KEY: readFileSync(join(cwd, 'data', 'bootstrap-key'), 'utf8').trim() };
}, 60_000);

afterAll(async () => {
  removeMediaFixtures();
  if (server && server.exitCode === null) {
    const exited = new Promise((resolve) => server!.once('close', resolve));
    server.kill('SIGTERM');
    await exited;
  }
  if (cwd) rmSync(cwd, { recursive: true, force: true });
});

describe('README curl examples, run against a server on its defaults', () => {
  it('finds the examples', () => {
    expect(EXAMPLES.length).toBeGreaterThanOrEqual(6);
  });

  it.each(EXAMPLES.map((example, index) => [`${index + 1} (${example.section})`, example] as const))(
    'example %s answers 2xx',
    async (_, example) => {
      const calls = await curlCalls(example.script.replaceAll(README_ORIGIN, origin), cwd, env);
      expect(calls.length).toBeGreaterThan(0);
      for (const args of calls) {
        const skip = SKIPPED.find((entry) => args.includes(entry.argument));
        if (skip) {
          skipsUsed.add(skip.argument);
          continue;
        }
        const { status, body } = await runCurl(args);
        const what = `curl ${args.join(' ').slice(0, 300)} answered ${status}: ${body.slice(0, 500)}`;
        expect(status, what).toBeGreaterThanOrEqual(200);
        expect(status, what).toBeLessThan(300);
        remember(args, body);
      }
    },
    CURL_MAX_SECONDS * 1000,
  );

  it('skips only examples that exist', () => {
    expect([...skipsUsed].sort()).toEqual(SKIPPED.map((entry) => entry.argument).sort());
  });
});
