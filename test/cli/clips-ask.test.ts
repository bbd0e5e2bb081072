// `ocular clips`, `ocular ask` and `ocular transcribe`: the real CLI, spawned as a user runs it, against a real
// server whose default model is a fake OpenAI-compatible upstream over HTTP. Index rows are written straight into
// the database (what QA and the clip job read); clips are rendered for real by ffmpeg.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ocular } from '../../src/sdk/index.ts';
import { environmentKeyOwner } from '../../src/store/api-keys.ts';
import { VideoStore } from '../../src/store/video-store.ts';
import { sendJson } from '../helpers/fake-upstream.ts';
import { insertIndexedVideo } from '../helpers/library-fixtures.ts';
import { makeVideo, removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';
import { completion, startOpenAiUpstream } from '../helpers/openai-upstream.ts';
import { useOcularCli } from './ocular-cli.ts';

let upstream: Awaited<ReturnType<typeof startOpenAiUpstream>>;
let ocular: TestOcular;
const cli = useOcularCli();

beforeAll(async () => {
  upstream = await startOpenAiUpstream();
  upstream.behave(async (request, response) => {
    const body = request.body as { messages: Array<{ content: unknown }> };
    const asked = JSON.stringify(body.messages);
    sendJson(response, 200, completion(asked.includes('QUARTZ FALCON') ? 'The falcon launches at [00:12].' : 'I cannot tell.'));
  });
  ocular = await startOcular({
    defaultModel: 'flash',
    models: [{ id: 'flash', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'upstream', maxRetries: 0 }],
    qa: { maxWaitSeconds: 1 },
  });
}, 30_000);

afterAll(async () => {
  await ocular?.close();
  await upstream?.close();
  removeMediaFixtures();
});

function ocularCli(args: string[]) {
  return cli.run(args, { cwd: cli.temporaryDir(), env: { OCULAR_BASE_URL: ocular.url, OCULAR_API_KEY: ocular.key } });
}

function withStore<T>(use: (store: VideoStore) => Promise<T>): Promise<T> {
  return ocular.withDatabase((database) => use(new VideoStore(database)));
}

describe('ocular ask', () => {
  it('answers a question about an indexed video through /v1/qa/chat, as text or --json', async () => {
    const id = await withStore((store) =>
      insertIndexedVideo(store, environmentKeyOwner(ocular.key), [
        { caption: 'A studio.' },
        { caption: 'A map.' },
        { caption: 'A rocket on a launch pad.', ocrText: 'QUARTZ FALCON' },
      ]),
    );
    const asked = await ocularCli(['ask', id, 'When does the quartz falcon launch?']);
    expect(asked).toMatchObject({ code: 0, stdout: 'The falcon launches at [00:12].\n' });
    const json = await ocularCli(['ask', id, 'When does the quartz falcon launch?', '--json']);
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual({ chat_response: 'The falcon launches at [00:12].', status: 'success' });
  });

  it('fails with one line and exit 1: an unknown video, a video still indexing', async () => {
    const unknown = await ocularCli(['ask', 'no-such-video', 'what?']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('not_found_error');
    expect(unknown.stderr.trim().split('\n')).toHaveLength(1);
    const pending = await withStore((store) => insertIndexedVideo(store, environmentKeyOwner(ocular.key), [{}], { status: 'indexing' }));
    const busy = await ocularCli(['ask', pending, 'what?']);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toContain('conflict_error');
  });
});

describe('ocular clips', () => {
  it('creates and waits, lists, gets (JSON) and removes a clip', { timeout: 60_000 }, async () => {
    const client = new Ocular({ apiKey: ocular.key, baseURL: ocular.url, maxRetries: 0 });
    const video = await client.videos.upload({ file: await makeVideo({ seconds: 12 }), index: false });
    await withStore(async (store) => {
      for (const [seq, text] of ['intro', 'red balloon launch', 'credits'].entries()) {
        await store.saveSegment({
          videoId: video.video_id,
          seq,
          startSeconds: seq * 4,
          endSeconds: seq * 4 + 4,
          keyframes: [],
          ocrText: text,
          objects: [],
          labels: [],
          transcript: '',
          speech: [],
          hasSpeech: null,
          caption: `On-screen text: ${text}`,
          thumbnail: null,
        });
      }
      await store.updateVideo(video.video_id, { status: 'indexed', stage: 'done', progress: 1 });
    });

    const created = await ocularCli([
      'clips',
      'create',
      video.video_id,
      'red balloon',
      '--wait',
      '--min',
      '2',
      '--max',
      '3',
      '--aspect',
      '1:1',
    ]);
    expect(created.code, created.stderr).toBe(0);
    const [head, output] = created.stdout.trim().split('\n');
    const [id, status] = head!.split('\t');
    expect(status).toBe('completed');
    expect(output).toMatch(/^ {2}\d+:\d\d\.\d-\d+:\d\d\.\d\t.*red balloon.*\thttps?:\/\//);
    const clip = await client.clips.get(id!);
    expect(clip.rendering_config.aspect_ratio).toBe('1:1');
    expect(clip.generation_config).toMatchObject({ min_duration_seconds: 2, max_duration_seconds: 3 });

    const listed = await ocularCli(['clips', 'list']);
    expect(listed.code).toBe(0);
    const [header, row] = listed.stdout.trim().split('\n');
    expect(header).toMatch(/^ID\s+STATUS\s+OUTPUTS\s+PROMPT\s+CREATED$/);
    expect(row).toMatch(new RegExp(`^${id}\\s+completed\\s+1\\s+red balloon\\s+\\d{4}-`));
    const got = JSON.parse((await ocularCli(['clips', 'get', id!, '--json'])).stdout) as { id: string; output: unknown[] };
    expect(got).toMatchObject({ id, output: [expect.anything()] });

    const queued = await ocularCli(['clips', 'create', video.video_id, 'credits', '--json']);
    expect(queued.code, queued.stderr).toBe(0);
    const queuedId = (JSON.parse(queued.stdout) as { id: string }).id;
    expect(await ocularCli(['clips', 'rm', id!, queuedId])).toMatchObject({ code: 0, stdout: `deleted ${id}\ndeleted ${queuedId}\n` });
    const again = await ocularCli(['clips', 'rm', id!]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('not_found_error');
    expect((await ocularCli(['clips', 'list'])).stderr).toBe('no clips\n');
  });

  it('fails with exit 1: no prompt, a bad option, an unknown video', async () => {
    const lone = await ocularCli(['clips', 'create', 'only-a-prompt']);
    expect(lone.code).toBe(1);
    const badAspect = await ocularCli(['clips', 'create', 'v', 'p', '--aspect', '4:3']);
    expect(badAspect.code).not.toBe(0);
    const unknown = await ocularCli(['clips', 'create', 'no-such-video', 'red balloon']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('not_found_error');
  });
});

describe('ocular transcribe', () => {
  it('sends a local file as a data: URL; a file that is not media or absent fails with exit 1', async () => {
    const dir = cli.temporaryDir();
    const text = join(dir, 'notes.txt');
    writeFileSync(text, 'plain text, not audio');
    const notMedia = await ocularCli(['transcribe', text]);
    expect(notMedia.code).toBe(1);
    expect(notMedia.stderr).toMatch(/^ocular: transcribe: /);
    const absent = await ocularCli(['transcribe', join(dir, 'absent.wav')]);
    expect(absent.code).toBe(1);
    expect(absent.stderr).toMatch(/^ocular: transcribe: no file at /);
    const badLanguage = await ocularCli(['transcribe', await makeVideo({ seconds: 1, withAudio: true }), '--translate-to', 'klingon']);
    expect(badLanguage.code).toBe(1);
    expect(badLanguage.stderr).toContain('validation_error');
  });
});
