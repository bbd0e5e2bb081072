import { z } from 'zod';
import { SPEECH_LANGUAGES, type SpeechLanguage } from '../../perception/speech/synthesizer.ts';
import type { SpeechResult, TimedText } from '../../speech/speech-service.ts';

const LANGUAGE_NAMES = Object.keys(SPEECH_LANGUAGES) as [SpeechLanguage, ...SpeechLanguage[]];

/** `english`, `English` or the ISO code `en` all name English. */
const targetLanguage = z
  .string()
  .trim()
  .toLowerCase()
  .transform((value, context) => {
    const byCode = Object.entries(SPEECH_LANGUAGES).find(([, code]) => code === value)?.[0];
    const name = (LANGUAGE_NAMES as string[]).includes(value) ? value : byCode;
    if (name === undefined) {
      context.addIssue({ code: 'custom', message: `use one of ${LANGUAGE_NAMES.join(', ')}` });
      return z.NEVER;
    }
    return name as SpeechLanguage;
  });

/** `POST /v1/transcription_or_translation` (Reka Speech). Optional fields may be null, as Python clients send them. */
export const speechRequestSchema = z.strictObject({
  /** http(s), or `data:audio/...;base64,...` */
  audio_url: z.string().trim().min(1, 'audio_url is required'),
  /** The audio's sampling rate in Hz; containers carry their own, and audio is resampled for the transcriber. @default 16000 */
  sampling_rate: z.int().min(8_000).max(192_000).nullish(),
  target_language: targetLanguage.nullish(),
  return_translation_audio: z.boolean().nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  max_tokens: z.int().min(1).max(200_000).nullish(),
  /** Ocular's own: the chat model that translates. @default the default model */
  model: z.string().min(1).max(256).nullish(),
});

const round = (seconds: number): number => Math.round(seconds * 1000) / 1000;
const timed = (segments: readonly TimedText[]) =>
  segments.map((segment) => ({ start: round(segment.start), end: round(segment.end), transcript: segment.text }));

export function toWireSpeech(result: SpeechResult) {
  return {
    transcript: result.transcript,
    transcript_translation_with_timestamp: timed(result.translation?.segments ?? result.segments),
    ...(result.translation === undefined ? {} : { translation: result.translation.text }),
    ...(result.speech === undefined ? {} : { audio_base64: result.speech.toString('base64') }),
    ...(result.language === undefined ? {} : { language: result.language }),
    duration: round(result.durationSeconds),
  };
}

// ---- OpenAI audio API (multipart) ----

export const OPENAI_AUDIO_FORMATS = ['json', 'text', 'srt', 'verbose_json', 'vtt'] as const;

export const openAiAudioFieldsSchema = z.strictObject({
  /** Any name (`whisper-1`): the configured transcriber answers. */
  model: z.string().trim().min(1, 'model is required').max(256),
  language: z.string().trim().min(2).max(16).optional(),
  prompt: z.string().max(4_000).optional(),
  response_format: z.enum(OPENAI_AUDIO_FORMATS).default('json'),
  temperature: z.coerce.number().min(0).max(1).optional(),
  'timestamp_granularities[]': z.enum(['segment', 'word']).optional(),
});

export const OPENAI_AUDIO_FIELD_NAMES = [
  'model',
  'language',
  'prompt',
  'response_format',
  'temperature',
  'timestamp_granularities[]',
  'file',
] as const;

function clock(seconds: number, separator: ',' | '.'): string {
  const ms = Math.round(seconds * 1000);
  const pad = (value: number, width = 2) => String(value).padStart(width, '0');
  return `${pad(Math.floor(ms / 3_600_000))}:${pad(Math.floor(ms / 60_000) % 60)}:${pad(Math.floor(ms / 1000) % 60)}${separator}${pad(ms % 1000, 3)}`;
}

/** The body of an OpenAI transcription or translation answer in the asked format, with its content type. */
export function toOpenAiAudio(
  format: (typeof OPENAI_AUDIO_FORMATS)[number],
  task: 'transcribe' | 'translate',
  text: string,
  segments: readonly TimedText[],
  result: SpeechResult,
): { body: string; contentType: string } {
  switch (format) {
    case 'json':
      return { body: JSON.stringify({ text }), contentType: 'application/json' };
    case 'text':
      return { body: `${text}\n`, contentType: 'text/plain; charset=utf-8' };
    case 'srt':
      return {
        body: segments
          .map((segment, index) => `${index + 1}\n${clock(segment.start, ',')} --> ${clock(segment.end, ',')}\n${segment.text}\n`)
          .join('\n'),
        contentType: 'text/plain; charset=utf-8',
      };
    case 'vtt':
      return {
        body: `WEBVTT\n\n${segments.map((segment) => `${clock(segment.start, '.')} --> ${clock(segment.end, '.')}\n${segment.text}\n`).join('\n')}`,
        contentType: 'text/vtt; charset=utf-8',
      };
    case 'verbose_json':
      return {
        body: JSON.stringify({
          task,
          language: task === 'translate' ? 'english' : (result.language ?? 'unknown'),
          duration: round(result.durationSeconds),
          text,
          segments: segments.map((segment, id) => ({
            id,
            seek: 0,
            start: round(segment.start),
            end: round(segment.end),
            text: segment.text,
            tokens: [],
            temperature: 0,
          })),
        }),
        contentType: 'application/json',
      };
  }
}
