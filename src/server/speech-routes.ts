import { Scratch } from '../media/scratch.ts';
import type { IncomingMessage } from 'node:http';
import type { Context, Hono } from 'hono';
import { OcularError, validationError } from '../spec/errors.ts';
import type { SpeechService } from '../speech/speech-service.ts';
import { parseBody } from './errors.ts';
import { receiveMultipartUpload } from './multipart-upload.ts';
import { readJson } from './read-body.ts';
import type { RequestEdge } from './vision-routes.ts';
import { OPENAI_AUDIO_FIELD_NAMES, openAiAudioFieldsSchema, speechRequestSchema, toOpenAiAudio, toWireSpeech } from './wire/speech.ts';

export interface SpeechRouteDependencies {
  speech: SpeechService;
  /** Largest audio file accepted by the OpenAI multipart routes (`media.maxBytes`). */
  maxAudioBytes: number;
}

type SpeechEnv = { Variables: { requestId: string; owner: string } };
/** Paths of OpenAI's audio API, bare (for `/v1`) and under `/openai/v1` (for the `openai` SDK's baseURL). */
export const OPENAI_AUDIO_PATHS = {
  transcriptions: ['/v1/audio/transcriptions', '/openai/v1/audio/transcriptions'],
  translations: ['/v1/audio/translations', '/openai/v1/audio/translations'],
} as const;

/** The Speech API (Reka's) and OpenAI's audio transcription and translation routes, on one service. */
export function registerSpeechRoutes(app: Hono<SpeechEnv>, deps: SpeechRouteDependencies, edge: RequestEdge): void {
  const { speech } = deps;

  app.post('/v1/transcription_or_translation', async (c) => {
    const body = parseBody(speechRequestSchema, await readJson(c, edge.bodyLimits));
    const result = await speech.run(
      {
        audio: { url: body.audio_url },
        label: 'audio_url',
        targetLanguage: body.target_language ?? undefined,
        speakTranslation: body.return_translation_audio ?? false,
        model: body.model ?? undefined,
        temperature: body.temperature ?? undefined,
        maxTokens: body.max_tokens ?? undefined,
      },
      edge.requestSignal(c),
    );
    return c.json(toWireSpeech(result));
  });

  const openAiAudio = (task: 'transcribe' | 'translate') => (c: Context<SpeechEnv>) =>
    edge.uploads.run(c, async (incoming) => {
      // A private temporary folder per request (mkdtemp: 0700), removed however the request ends.
      const scratch = await Scratch.create();
      try {
        return await transcribeUpload(c, incoming, scratch, task);
      } finally {
        await scratch.dispose();
      }
    });

  const transcribeUpload = async (c: Context<SpeechEnv>, incoming: IncomingMessage, scratch: Scratch, task: 'transcribe' | 'translate') => {
    const upload = await receiveMultipartUpload(incoming, {
      directory: scratch.dir,
      fileField: 'file',
      maxFileBytes: deps.maxAudioBytes,
      limitName: 'media.maxBytes',
      allowedFields: OPENAI_AUDIO_FIELD_NAMES,
    });
    const fields = parseBody(openAiAudioFieldsSchema, upload.fields);
    if (upload.file === undefined) throw validationError('the audio file is required (a `file` part)', 'file');
    if (upload.file.size === 0) throw validationError('the uploaded file is empty', 'file');
    const result = await speech.run(
      { audio: { path: upload.file.path }, label: 'file', targetLanguage: task === 'translate' ? 'english' : undefined },
      edge.requestSignal(c),
    );
    const translated = result.translation;
    const { body, contentType } = toOpenAiAudio(
      fields.response_format,
      task,
      translated?.text ?? result.transcript,
      translated?.segments ?? result.segments,
      result,
    );
    return c.body(body, 200, { 'Content-Type': contentType });
  };
  for (const path of OPENAI_AUDIO_PATHS.transcriptions) app.post(path, openAiAudio('transcribe'));
  for (const path of OPENAI_AUDIO_PATHS.translations) app.post(path, openAiAudio('translate'));
}
