import { mkdir, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import type { Context, Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import { OcularError, validationError } from '../spec/errors.ts';
import type { StreamPart } from '../spec/stream-parts.ts';
import { compileTagSchema, type Quicktagger, type TagSchema } from '../vision/quicktag.ts';
import type { QaVideoSource, VideoQa } from '../vision/video-qa.ts';
import { errorEnvelope, parseBody } from './errors.ts';
import { receiveMultipartUpload } from './multipart-upload.ts';
import { readJson } from './read-body.ts';
import type { RequestEdge } from './vision-routes.ts';
import { QUICKTAG_FIELD_NAMES, qaChatRequestSchema, quicktagFieldsSchema, toQaMessages, toQaResponse } from './wire/qa.ts';

export interface QaRouteDependencies {
  qa: VideoQa;
  quicktagger: Quicktagger;
  /** Largest quicktag upload, in bytes. */
  maxQuicktagBytes: number;
  /** Where quicktag uploads stream to; they are removed once answered. */
  incomingDir: string;
}

type QaEnv = { Variables: { requestId: string; owner: string } };
/** Names the video a `video_url` request stored, so a client told 409 can ask again by id. */
export const QA_VIDEO_ID_HEADER = 'X-Ocular-Video-Id';

/** Writes the answer as Reka's QA stream: the text so far in each event, then one with `status`. */
async function writeQaEvents(
  stream: { writeSSE(message: { data: string; event?: string }): Promise<void>; onAbort(listener: () => void): void },
  parts: ReadableStream<StreamPart>,
): Promise<void> {
  const reader = parts.getReader();
  stream.onAbort(() => void reader.cancel().catch(() => undefined));
  let text = '';
  for (let next = await reader.read(); !next.done; next = await reader.read()) {
    const part = next.value;
    if (part.type === 'text-delta') {
      text += part.text;
      await stream.writeSSE({ data: JSON.stringify({ chat_response: text }) });
    } else if (part.type === 'finish') {
      await stream.writeSSE({ data: JSON.stringify(toQaResponse(text)) });
    } else if (part.type === 'error') {
      await stream.writeSSE({ event: 'error', data: JSON.stringify(errorEnvelope(part.error)) });
    }
  }
}

/** Video QA and quicktag: thin edges over VideoQa and Quicktagger, scoped to the caller's owner. */
export function registerQaRoutes(app: Hono<QaEnv>, deps: QaRouteDependencies, edge: RequestEdge): void {
  const { qa, quicktagger } = deps;

  app.post('/v1/qa/chat', async (c) => {
    const body = parseBody(qaChatRequestSchema, await readJson(c, edge.bodyLimits));
    const signal = edge.requestSignal(c);
    const owner = c.get('owner');
    const source: QaVideoSource =
      body.video_id !== undefined ? { kind: 'id', videoId: body.video_id } : { kind: 'url', url: body.video_url! };
    const video = await qa.resolveVideo(owner, source, signal);
    c.header(QA_VIDEO_ID_HEADER, video.id);
    const request = {
      owner,
      videoId: video.id,
      messages: toQaMessages(body),
      model: body.model,
      wait: body.wait,
      maxTokens: body.max_tokens,
      temperature: body.temperature,
    };
    if (!body.stream) return c.json(toQaResponse((await qa.answer(request, signal)).text));
    const { parts } = await qa.stream(request, signal);
    return streamSSE(c, (stream) => writeQaEvents(stream, parts));
  });

  const quicktag = (c: Context) =>
    edge.uploads.run(c, async (incoming) => {
      await mkdir(deps.incomingDir, { recursive: true, mode: 0o700 });
      const upload = await receiveMultipartUpload(incoming, {
        directory: deps.incomingDir,
        fileField: 'video',
        maxFileBytes: deps.maxQuicktagBytes,
        limitName: 'media.maxBytes',
        allowedFields: QUICKTAG_FIELD_NAMES,
      });
      try {
        const fields = parseBody(quicktagFieldsSchema, upload.fields);
        if (upload.file === undefined) throw validationError('send the video as a `video` file part', 'video');
        if (upload.file.size === 0) throw validationError('the uploaded video is empty', 'video');
        let schema: TagSchema | undefined;
        if (fields.schema !== undefined) {
          let parsed: unknown;
          try {
            parsed = JSON.parse(fields.schema);
          } catch {
            throw validationError('schema is not valid JSON', 'schema');
          }
          schema = compileTagSchema(parsed);
        }
        const tags = await quicktagger.tag({ path: upload.file.path, schema, model: fields.model }, edge.requestSignal(c));
        return c.json(tags as Record<string, unknown>);
      } finally {
        if (upload.file !== undefined) await rm(upload.file.path, { force: true });
      }
    });
  app.post('/qa/quicktag', quicktag);
  app.post('/v1/qa/quicktag', quicktag);
}
