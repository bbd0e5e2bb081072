// The client side of the CLI: commands that talk to a running Ocular server (`chat`, `videos`, `search`, `ask`)
// through the SDK, as any other client does. Human-readable output by default, `--json` for scripts; a failure
// prints its message (with the server's request id) and exits non-zero.
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { fetch as undiciFetch } from 'undici';
import { ConfigError } from '../config/load-config.ts';
import { resolveClientSettings, type ClientFlags } from '../config/settings.ts';
import { sniffBuffer } from '../media/sniff.ts';
import { ProgressReporter } from '../models/progress.ts';
import { Ocular, OcularError, type ChatContentPart, type Clip, type Fetch, type IndexingEvent, type Video } from '../sdk/index.ts';

export interface ClientCommandContext {
  env: Readonly<Record<string, string | undefined>>;
  writeTable(rows: readonly (readonly string[])[]): void;
  fail(message: string): never;
}

interface OutputFlags extends ClientFlags {
  json?: boolean | undefined;
}

/** Largest local file `ocular chat` inlines as a data: URL (the server's own request limit is usually lower). */
const MAX_INLINE_BYTES = 256 * 1024 * 1024;

/** How long `videos upload` may take to send a file and be answered. */
const UPLOAD_TIMEOUT_MS = 6 * 60 * 60 * 1000;

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** --url, --api-key and --data (for a local server's bootstrap key), as `ocular mcp` takes them, plus --json. */
function withClientOptions(command: Command): Command {
  return command
    .option('--url <url>', 'the Ocular server (env OCULAR_BASE_URL; default http://127.0.0.1:8080)')
    .option('--api-key <key>', "the key to call it with (env OCULAR_API_KEY; default a local server's bootstrap key)")
    .option('--data <dir>', "the local server's data directory, for its bootstrap key (env OCULAR_DATA_DIR)")
    .option('--json', 'print JSON (for scripts)');
}

/** `1:05.3`, or `1:02:05.3` past an hour. */
export function formatTimestamp(seconds: number): string {
  const tenths = Math.round(seconds * 10);
  const whole = Math.floor(tenths / 10);
  const fraction = tenths % 10;
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const secs = String(whole % 60).padStart(2, '0');
  const clock = hours > 0 ? `${hours}:${String(minutes).padStart(2, '0')}:${secs}` : `${minutes}:${secs}`;
  return `${clock}.${fraction}`;
}

const isRemote = (source: string): boolean => /^(?:https?|data):/i.test(source);

export function registerClientCommands(program: Command, context: ClientCommandContext): void {
  const { env, writeTable, fail } = context;

  function connect(flags: ClientFlags): Ocular {
    try {
      const settings = resolveClientSettings(flags, env);
      // undici's fetch rather than the platform's bundled one, which has an undici crash on hostile peers.
      return new Ocular({ apiKey: settings.apiKey, baseURL: settings.baseUrl, fetch: undiciFetch as unknown as Fetch });
    } catch (error) {
      if (error instanceof ConfigError) fail(error.message);
      throw error;
    }
  }

  /** Runs a command, turning any failure into one line on stderr and exit status 1 (never a stack trace). */
  const action =
    <Args extends unknown[]>(run: (...args: Args) => Promise<void>) =>
    async (...args: Args): Promise<void> => {
      try {
        await run(...args);
      } catch (error) {
        if (error instanceof OcularError) {
          const details = [
            error.type,
            error.status === undefined ? undefined : `HTTP ${error.status}`,
            error.requestId && `request ${error.requestId}`,
          ]
            .filter(Boolean)
            .join(', ');
          fail(`${error.message} (${details})`);
        }
        fail(error instanceof Error ? error.message : String(error));
      }
    };

  const writeJson = (value: unknown): void => {
    process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  };

  /** A local file as a data: URL of its sniffed type; URLs are passed as they are. */
  async function mediaUrl(source: string, flag: string): Promise<string> {
    if (isRemote(source)) return source;
    if (!existsSync(source) || !statSync(source).isFile()) fail(`${flag}: no file at ${source}`);
    if (statSync(source).size > MAX_INLINE_BYTES) fail(`${flag}: ${source} is over ${MAX_INLINE_BYTES / 1024 / 1024} MB`);
    const bytes = await readFile(source);
    const sniffed = await sniffBuffer(bytes);
    if (sniffed === undefined) return fail(`${flag}: ${source} is not an image, video, audio file or PDF that Ocular reads`);
    return `data:${sniffed.mediaType};base64,${bytes.toString('base64')}`;
  }

  withClientOptions(
    program
      .command('chat')
      .description('ask a model a question, with images, video, audio or PDFs (files or URLs); the answer streams')
      .argument('<question>', 'what to ask')
      .option('--image <file|url>', 'an image to send (repeatable)', collect)
      .option('--video <file|url>', 'a video to send (repeatable)', collect)
      .option('--audio <file|url>', 'an audio file to send (repeatable)', collect)
      .option('--pdf <file|url>', 'a PDF to send (repeatable)', collect)
      .option('--model <model>', "the model (default: the server's default model)")
      .option('--system <text>', 'a system prompt')
      .option('--max-tokens <n>', 'longest answer, in tokens', (value) => Number.parseInt(value, 10)),
  ).action(
    action(
      async (
        question: string,
        flags: OutputFlags & {
          image?: string[];
          video?: string[];
          audio?: string[];
          pdf?: string[];
          model?: string;
          system?: string;
          maxTokens?: number;
        },
      ) => {
        if (flags.maxTokens !== undefined && !(flags.maxTokens > 0)) fail('--max-tokens takes a positive whole number');
        const client = connect(flags);
        const content: ChatContentPart[] = [];
        for (const url of flags.image ?? []) content.push({ type: 'image_url', image_url: await mediaUrl(url, '--image') });
        for (const url of flags.video ?? []) content.push({ type: 'video_url', video_url: await mediaUrl(url, '--video') });
        for (const url of flags.audio ?? []) content.push({ type: 'audio_url', audio_url: await mediaUrl(url, '--audio') });
        for (const url of flags.pdf ?? []) content.push({ type: 'pdf_url', pdf_url: await mediaUrl(url, '--pdf') });
        content.push({ type: 'text', text: question });
        const params = {
          messages: [
            ...(flags.system === undefined ? [] : [{ role: 'system' as const, content: flags.system }]),
            { role: 'user' as const, content },
          ],
          ...(flags.model === undefined ? {} : { model: flags.model }),
          ...(flags.maxTokens === undefined ? {} : { max_tokens: flags.maxTokens }),
        };
        if (flags.json) {
          writeJson(await client.chat.create(params));
          return;
        }
        const stream = await client.chat.createStream(params);
        const interrupt = (): void => stream.abort();
        process.once('SIGINT', interrupt);
        try {
          for await (const delta of stream.textDeltas()) process.stdout.write(delta);
        } finally {
          process.off('SIGINT', interrupt);
          // End the answer's line, also when the stream broke: the error goes on a line of its own.
          process.stdout.write('\n');
        }
        if (stream.aborted) fail('interrupted');
        const final = await stream.finalResult();
        if (final.finishReason === 'length') process.stderr.write('(the answer was cut off at --max-tokens)\n');
      },
    ),
  );

  const videos = program.command('videos').description("the server's video library: upload, list, delete");

  withClientOptions(
    videos
      .command('upload')
      .description('upload a video file (streamed, with progress) or have the server fetch a URL; indexing starts at once')
      .argument('<file|url>', 'a local video file, or an http(s) URL')
      .option('--name <name>', "the video's name (default: the file's name)")
      .option('--group <group-id>', 'the id of the group to put it in (default: "default")')
      .option('--no-index', 'store it without indexing it for search')
      .option('--thumbnails', 'make a thumbnail')
      .option('--wait', 'wait until it is indexed (exit 1 if indexing fails)'),
  ).action(
    action(
      async (
        source: string,
        flags: OutputFlags & { name?: string; group?: string; index: boolean; thumbnails?: boolean; wait?: boolean },
      ) => {
        const remote = /^https?:\/\//i.test(source);
        if (!remote && !existsSync(source)) fail(`no file at ${source} (give a path or an http(s) URL)`);
        const client = connect(flags);
        const tty = process.stderr.isTTY === true;
        const reporter = tty && !remote ? new ProgressReporter(process.stderr, 'uploading') : undefined;
        const started = performance.now();
        let video = await client.videos.upload(
          {
            ...(remote ? { videoUrl: source } : { file: source }),
            ...(flags.name === undefined ? {} : { name: flags.name }),
            ...(flags.group === undefined ? {} : { groupId: flags.group }),
            index: flags.index,
            ...(flags.thumbnails ? { enableThumbnails: true } : {}),
            onProgress: (progress) => {
              const seconds = (performance.now() - started) / 1000;
              reporter?.update({
                received: progress.loaded,
                total: progress.total,
                bytesPerSecond: seconds > 0.5 ? progress.loaded / seconds : 0,
              });
            },
          },
          // A large file over a slow link takes longer than the client's usual 10 minutes.
          { timeout: UPLOAD_TIMEOUT_MS },
        );
        reporter?.done();
        if (!flags.json) process.stderr.write(`uploaded "${video.video_name}" as ${video.video_id}\n`);
        if (flags.wait && flags.index) {
          const interrupt = new AbortController();
          const onInterrupt = (): void => interrupt.abort();
          process.once('SIGINT', onInterrupt);
          try {
            video = await client.videos.waitUntilIndexed(video.video_id, {
              signal: interrupt.signal,
              onProgress: (event) => (tty ? drawIndexing(event) : undefined),
            });
          } catch (error) {
            if (tty) process.stderr.write('\n');
            if (interrupt.signal.aborted) fail(`stopped waiting; ${video.video_id} goes on indexing on the server`);
            throw error;
          } finally {
            process.off('SIGINT', onInterrupt);
          }
          if (tty) process.stderr.write('\n');
          if (!flags.json) process.stderr.write(`indexed ${video.video_id}\n`);
        }
        if (flags.json) writeJson(video);
        else process.stdout.write(`${video.video_id}\n`);
      },
    ),
  );

  /** `[########----------------] 34.0% analyzing` redrawn in place. */
  function drawIndexing(event: IndexingEvent): void {
    const width = 24;
    const filled = Math.round((event.percent / 100) * width);
    const stage = event.stage ?? event.indexing_status;
    process.stderr.write(`\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] indexing ${event.percent.toFixed(1)}% ${stage}\x1b[K`);
  }

  const describeVideoStatus = (video: Video): string =>
    video.indexing_status === 'indexing' ? `indexing ${Math.floor(video.indexing_progress * 100)}%` : video.indexing_status;

  withClientOptions(
    videos
      .command('list')
      .description('list the videos of your key, newest first')
      .option('--group <group-id>', 'only this group')
      .addOption(
        new Option('--status <status>', 'only videos in this indexing status').choices(['pending', 'indexing', 'indexed', 'failed']),
      )
      .option('--limit <n>', 'at most this many (1-100)', '20')
      .option('--offset <n>', 'skip this many', '0'),
  ).action(
    action(
      async (
        flags: OutputFlags & { group?: string; status?: 'pending' | 'indexing' | 'indexed' | 'failed'; limit: string; offset: string },
      ) => {
        const client = connect(flags);
        const page = await client.videos.list({
          limit: Number(flags.limit),
          offset: Number(flags.offset),
          ...(flags.group === undefined ? {} : { group_id: flags.group }),
          ...(flags.status === undefined ? {} : { indexing_status: flags.status }),
        });
        if (flags.json) return writeJson(page);
        if (page.results.length === 0) {
          process.stderr.write(page.total === 0 ? 'no videos\n' : `no videos past ${page.offset} (of ${page.total})\n`);
          return;
        }
        writeTable([
          ['ID', 'NAME', 'STATUS', 'DURATION', 'GROUP', 'CREATED'],
          ...page.results.map((video) => [
            video.video_id,
            video.video_name,
            describeVideoStatus(video),
            video.metadata.duration === null ? '-' : formatTimestamp(video.metadata.duration),
            video.group_id,
            video.created_at.replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
          ]),
        ]);
        const last = page.offset + page.results.length;
        if (page.offset > 0 || last < page.total)
          process.stderr.write(`videos ${page.offset + 1}-${last} of ${page.total} (use --offset)\n`);
      },
    ),
  );

  withClientOptions(videos.command('rm').description('delete videos (their files and index)').argument('<id...>', 'video ids')).action(
    action(async (ids: string[], flags: OutputFlags) => {
      const client = connect(flags);
      const deleted = [];
      for (const id of ids) {
        deleted.push(await client.videos.delete(id));
        if (!flags.json) process.stdout.write(`deleted ${id}\n`);
      }
      if (flags.json) writeJson(deleted);
    }),
  );

  withClientOptions(
    program
      .command('search')
      .description('search your videos: the time ranges that match, best first')
      .argument('<query>', 'words to find (on-screen text, speech, captions)')
      .option('--group <group-id>', 'only this group (repeatable)', collect)
      .option('--video <id>', 'only this video (repeatable)', collect)
      .option('--limit <n>', 'at most this many results (1-100)', '10'),
  ).action(
    action(async (query: string, flags: OutputFlags & { group?: string[]; video?: string[]; limit: string }) => {
      const client = connect(flags);
      const found = await client.videos.search({
        query,
        max_results: Number(flags.limit),
        ...(flags.group === undefined ? {} : { group_ids: flags.group }),
        ...(flags.video === undefined ? {} : { video_ids: flags.video }),
      });
      if (flags.json) return writeJson(found);
      if (found.results.length === 0) {
        process.stderr.write('no matches\n');
        return;
      }
      const excerpt = (text: string): string => {
        const flat = text.replace(/\s+/g, ' ').trim();
        return flat.length > 60 ? `${flat.slice(0, 59)}…` : flat;
      };
      writeTable([
        ['VIDEO', 'FROM', 'TO', 'SCORE', 'ID', 'TEXT'],
        ...found.results.map((hit) => [
          hit.video_title,
          formatTimestamp(hit.start_timestamp),
          formatTimestamp(hit.end_timestamp),
          hit.score.toFixed(2),
          hit.video_id,
          excerpt(hit.plain_text_caption || hit.plain_text_transcript),
        ]),
      ]);
    }),
  );

  withClientOptions(
    program
      .command('ask')
      .description('ask a question about one of your videos (answers cite times as [mm:ss])')
      .argument('<video-id>', 'the video')
      .argument('<question>', 'what to ask')
      .option('--model <model>', "the model (default: the server's default model)")
      .option('--wait', 'wait for a video that is still being indexed'),
  ).action(
    action(async (videoId: string, question: string, flags: OutputFlags & { model?: string; wait?: boolean }) => {
      const client = connect(flags);
      const answer = await client.qa.chat({
        video_id: videoId,
        messages: [{ role: 'user', content: question }],
        ...(flags.model === undefined ? {} : { model: flags.model }),
        ...(flags.wait ? { wait: true } : {}),
      });
      if (flags.json) return writeJson(answer);
      process.stdout.write(`${answer.chat_response}\n`);
    }),
  );

  const clips = program.command('clips').description('short clips cut from your videos by a prompt: create, list, get, delete');

  /** One line per output: its time range in the source, title and signed URL. */
  const writeClip = (clip: Clip): void => {
    process.stdout.write(`${clip.id}\t${clip.status}${clip.error_message ? `\t${clip.error_message}` : ''}\n`);
    for (const output of clip.output) {
      process.stdout.write(`  ${formatTimestamp(output.start)}-${formatTimestamp(output.end)}\t${output.title}\t${output.url}\n`);
    }
  };

  withClientOptions(
    clips
      .command('create')
      .description('cut clips matching a prompt out of videos of your library')
      .argument('<args...>', 'the video ids, then the prompt last')
      .option('--wait', 'wait until it is rendered and print the outputs (exit 1 if it fails)')
      .addOption(new Option('--template <template>', 'one clip per moment, or the moments joined').choices(['moments', 'compilation']))
      .addOption(new Option('--aspect <ratio>', "the outputs' aspect ratio").choices(['16:9', '9:16', '1:1']))
      .option('--count <n>', 'outputs to make (1-3)', (value) => Number.parseInt(value, 10))
      .option('--min <seconds>', 'shortest clip', Number.parseFloat)
      .option('--max <seconds>', 'longest clip', Number.parseFloat)
      .option('--resolution <height>', 'output height in pixels', (value) => Number.parseInt(value, 10))
      .option('--subtitles', 'burn the transcript in as subtitles'),
  ).action(
    action(
      async (
        args: string[],
        flags: OutputFlags & {
          wait?: boolean;
          template?: 'moments' | 'compilation';
          aspect?: '16:9' | '9:16' | '1:1';
          count?: number;
          min?: number;
          max?: number;
          resolution?: number;
          subtitles?: boolean;
        },
      ) => {
        if (args.length < 2) fail('give at least one video id, then the prompt');
        const prompt = args.at(-1)!;
        const client = connect(flags);
        let clip = await client.clips.create({
          video_ids: args.slice(0, -1),
          prompt,
          generation_config: {
            ...(flags.template === undefined ? {} : { template: flags.template }),
            ...(flags.count === undefined ? {} : { num_generations: flags.count }),
            ...(flags.min === undefined ? {} : { min_duration_seconds: flags.min }),
            ...(flags.max === undefined ? {} : { max_duration_seconds: flags.max }),
          },
          rendering_config: {
            ...(flags.aspect === undefined ? {} : { aspect_ratio: flags.aspect }),
            ...(flags.resolution === undefined ? {} : { resolution: flags.resolution }),
            ...(flags.subtitles ? { subtitles: true } : {}),
          },
        });
        if (flags.wait) {
          const tty = process.stderr.isTTY === true;
          clip = await client.clips.waitUntilDone(clip.id, {
            onProgress: (event) => {
              if (tty) process.stderr.write(`\r${event.stage ?? event.status} ${event.percent.toFixed(0)}%   `);
            },
          });
          if (tty) process.stderr.write('\n');
        }
        if (flags.json) return writeJson(clip);
        writeClip(clip);
      },
    ),
  );

  withClientOptions(
    clips
      .command('list')
      .description('your clips, newest first')
      .option('--limit <n>', 'clips per page (at most 100)', (value) => Number.parseInt(value, 10))
      .option('--offset <n>', 'clips to skip', (value) => Number.parseInt(value, 10)),
  ).action(
    action(async (flags: OutputFlags & { limit?: number; offset?: number }) => {
      const page = await connect(flags).clips.list({ limit: flags.limit ?? 20, offset: flags.offset ?? 0 });
      if (flags.json) return writeJson(page);
      if (page.results.length === 0) {
        process.stderr.write('no clips\n');
        return;
      }
      writeTable([
        ['ID', 'STATUS', 'OUTPUTS', 'PROMPT', 'CREATED'],
        ...page.results.map((clip) => [clip.id, clip.status, String(clip.output.length), clip.prompt, clip.created_at]),
      ]);
    }),
  );

  withClientOptions(clips.command('get').description('a clip: its status and outputs').argument('<id>', 'the clip id')).action(
    action(async (id: string, flags: OutputFlags) => {
      const clip = await connect(flags).clips.get(id);
      if (flags.json) return writeJson(clip);
      writeClip(clip);
    }),
  );

  withClientOptions(
    clips.command('rm').description('delete clips (cancelling them while they run)').argument('<id...>', 'clip ids'),
  ).action(
    action(async (ids: string[], flags: OutputFlags) => {
      const client = connect(flags);
      const deleted = [];
      for (const id of ids) {
        deleted.push(await client.clips.delete(id));
        if (!flags.json) process.stdout.write(`deleted ${id}\n`);
      }
      if (flags.json) writeJson(deleted);
    }),
  );

  withClientOptions(
    program
      .command('transcribe')
      .description('transcribe speech in an audio or video file or URL, optionally translated')
      .argument('<file|url>', 'a local file (sent as a data: URL) or an http(s) URL')
      .option('--translate-to <language>', 'translate the transcript (e.g. french or fr)')
      .option('--timestamps', 'print each segment with its times'),
  ).action(
    action(async (source: string, flags: OutputFlags & { translateTo?: string; timestamps?: boolean }) => {
      const audioUrl = await mediaUrl(source, 'transcribe');
      const result = await connect(flags).speech.transcribe({
        audio_url: audioUrl,
        ...(flags.translateTo === undefined ? {} : { target_language: flags.translateTo }),
      });
      if (flags.json) return writeJson(result);
      if (flags.timestamps) {
        for (const segment of result.transcript_translation_with_timestamp) {
          process.stdout.write(`[${formatTimestamp(segment.start)}-${formatTimestamp(segment.end)}] ${segment.transcript}\n`);
        }
        return;
      }
      process.stdout.write(`${result.translation ?? result.transcript}\n`);
    }),
  );
}
