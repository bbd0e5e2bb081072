import type { ChatService } from '../chat/chat-service.ts';
import { compileJsonSchema } from '../chat/structured-output.ts';
import { toWav16kMono } from '../media/audio.ts';
import type { FfmpegContext } from '../media/binaries.ts';
import { sniffFile } from '../media/sniff.ts';
import { formatTimestamp, probeMedia, sampleFrames } from '../media/video.ts';
import type { Transcriber } from '../perception/speech/transcriber.ts';
import { OcularError, validationError } from '../spec/errors.ts';
import type { MediaReference, TextPart } from '../spec/messages.ts';

/** Longest video quicktag takes, in seconds. */
export const QUICKTAG_MAX_SECONDS = 30;

const labelled = (description: string) => ({ type: 'boolean', description });

/** The fields quicktag answers with when the request brings no `schema`. */
export const DEFAULT_TAG_SCHEMA: Record<string, unknown> = {
  type: 'object',
  properties: {
    Description: { type: 'string', description: 'Two or three factual sentences on what the video shows.' },
    Violence: labelled('Whether the video shows violence.'),
    Profanity: labelled('Whether the video contains profane language or gestures.'),
    AdultContent: labelled('Whether the video shows sexual or adult content.'),
    Drugs: labelled('Whether the video shows or mentions drug use.'),
    Alcohol: labelled('Whether the video shows or mentions alcohol.'),
    Gambling: labelled('Whether the video shows or promotes gambling.'),
    Political: labelled('Whether the video is about politics.'),
    ExpectedCTR: { type: 'number', minimum: 0, maximum: 1, description: 'Expected click-through rate as a thumbnail, 0 to 1.' },
    ViralityScore: { type: 'integer', minimum: 1, maximum: 10, description: 'How likely the video is to spread, 1 to 10.' },
    Keyword: { type: 'array', items: { type: 'string' }, maxItems: 10, description: 'Keywords for search.' },
    MoodTone: { type: 'array', items: { type: 'string' }, maxItems: 5, description: 'The mood or tone, in a word each.' },
  },
  required: [
    'Description',
    'Violence',
    'Profanity',
    'AdultContent',
    'Drugs',
    'Alcohol',
    'Gambling',
    'Political',
    'ExpectedCTR',
    'ViralityScore',
    'Keyword',
    'MoodTone',
  ],
  additionalProperties: false,
};

/** Characters of the transcript given to the model (30 s of speech is far less). */
const MAX_TRANSCRIPT_CHARS = 4_000;
const MAX_TAG_TOKENS = 1_024;

export interface TagSchema {
  /** The JSON Schema, as sent to the model (and validated against by the chat service). */
  json: Record<string, unknown>;
}

/**
 * Checks a client's JSON Schema for validating answers (see `compileJsonSchema`). It must describe an object;
 * what zod cannot compile and regular expressions are a 400 naming the `schema` field.
 */
export function compileTagSchema(schema: unknown): TagSchema {
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) {
    throw validationError('schema must be a JSON Schema object', 'schema');
  }
  const json = schema as Record<string, unknown>;
  if (json.type !== 'object') throw validationError('schema must describe an object ("type": "object")', 'schema');
  compileJsonSchema(json, 'schema');
  return { json };
}

const DEFAULT_SCHEMA = compileTagSchema(DEFAULT_TAG_SCHEMA);

export interface QuicktagRequest {
  /** The uploaded video, on disk; the caller removes it. */
  path: string;
  /** Replaces the default fields. */
  schema?: TagSchema | undefined;
  /** The model id or alias; the server's default when absent. */
  model?: string | undefined;
}

export interface QuicktaggerOptions {
  chat: ChatService;
  ffmpeg: FfmpegContext;
  /** Speech-to-text for the soundtrack, when one is configured. */
  transcriber?: Transcriber | undefined;
  /** Frames sampled from the video. */
  frames: number;
}

/**
 * Metadata tagging of a short video (quicktag): sampled frames (and the transcript, when a transcriber is
 * configured) go to the model through the chat service with structured output asked for (`responseFormat`,
 * which providers that can constrain decoding honour); the answer is validated against the schema, asked
 * for once more on a mismatch, and a second mismatch is a 502 that says what did not match.
 */
export class Quicktagger {
  readonly #chat: ChatService;
  readonly #ffmpeg: FfmpegContext;
  readonly #transcriber: Transcriber | undefined;
  readonly #frames: number;

  constructor(options: QuicktaggerOptions) {
    this.#chat = options.chat;
    this.#ffmpeg = options.ffmpeg;
    this.#transcriber = options.transcriber;
    this.#frames = options.frames;
  }

  async tag(request: QuicktagRequest, signal: AbortSignal): Promise<unknown> {
    const schema = request.schema ?? DEFAULT_SCHEMA;
    const { capabilities } = this.#chat.describeModel(request.model);
    const sniffed = await sniffFile(request.path);
    if (sniffed?.kind !== 'video') {
      throw new OcularError(
        'unsupported_media_type',
        `the upload is not a video (its bytes are ${sniffed?.mediaType ?? 'not a known format'})`,
        {
          param: 'video',
        },
      );
    }
    const probe = await probeMedia(request.path, this.#ffmpeg, signal);
    if (probe.video === undefined) throw new OcularError('unsupported_media_type', 'the file has no video stream', { param: 'video' });
    const durationSeconds = probe.video.durationSeconds ?? probe.durationSeconds;
    if (!(durationSeconds > 0)) throw new OcularError('unsupported_media_type', 'the video has no duration', { param: 'video' });
    if (durationSeconds > QUICKTAG_MAX_SECONDS) {
      throw validationError(
        `the video is ${durationSeconds.toFixed(1)} s long; quicktag takes videos of at most ${QUICKTAG_MAX_SECONDS} s`,
        'video',
      );
    }
    const [frames, transcript] = await Promise.all([
      capabilities.image
        ? sampleFrames(request.path, { probe, maxFrames: this.#frames, fps: 1, maxSide: 768 }, this.#ffmpeg, signal)
        : Promise.resolve([]),
      this.#transcribe(request.path, probe.audio !== undefined, signal),
    ]);

    const content: Array<TextPart | MediaReference> = [];
    if (frames.length > 0) {
      content.push({
        type: 'text',
        text: `Frames of the video, at ${frames.map((frame) => formatTimestamp(frame.timestampSeconds)).join(', ')}:`,
      });
      for (const frame of frames)
        content.push({ type: 'media', kind: 'image', url: `data:image/jpeg;base64,${frame.jpeg.toString('base64')}` });
    }
    const lines = [
      `Tag this ${durationSeconds.toFixed(1)}-second video.`,
      transcript === '' ? 'No speech transcript is available.' : `Speech transcript: ${transcript}`,
      'Answer with one JSON object and nothing else, matching this JSON Schema:',
      JSON.stringify(schema.json),
    ];
    content.push({ type: 'text', text: lines.join('\n') });
    // The chat service validates the answer against the schema, asks once more on a mismatch, and answers a
    // second mismatch with a 502 that says what did not match.
    const result = await this.#chat.generate(
      {
        model: request.model,
        messages: [{ role: 'user', content }],
        maxTokens: MAX_TAG_TOKENS,
        temperature: 0,
        responseFormat: { type: 'json_schema', name: 'quicktag', schema: schema.json },
      },
      signal,
    );
    return JSON.parse(result.text) as unknown;
  }

  async #transcribe(path: string, hasAudio: boolean, signal: AbortSignal): Promise<string> {
    if (this.#transcriber === undefined || !hasAudio) return '';
    const wav = await toWav16kMono(path, this.#ffmpeg, signal);
    const transcript = await this.#transcriber.transcribe({ data: wav, mediaType: 'audio/wav', filename: 'audio.wav' }, signal);
    const text = transcript.text.replace(/\s+/g, ' ').trim();
    return text.length > MAX_TRANSCRIPT_CHARS ? `${text.slice(0, MAX_TRANSCRIPT_CHARS - 1)}…` : text;
  }
}
