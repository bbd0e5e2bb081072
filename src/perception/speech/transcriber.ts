import { z } from 'zod';
import { OpenAiCompatibleTranscriber, openAiCompatibleTranscriberSettingsSchema } from './openai-compatible.ts';
import { WhisperTranscriber, whisperTranscriberSettingsSchema } from './whisper.ts';

/** What a speech-to-text backend heard. Times are seconds from the start of the audio it was given. */
export interface Transcript {
  /** The whole transcript as one string. */
  text: string;
  /** The language the upstream detected or was told, as it names it (`en`, or `english` from OpenAI). */
  language?: string;
  /** Timed segments; empty when the backend returns text only. */
  segments: Array<{ startSeconds: number; endSeconds: number; text: string }>;
}

/** The audio to transcribe, already in a container the backend accepts (wav, mp3, m4a, ogg, webm, flac). */
export interface TranscriberAudio {
  data: Buffer;
  /** e.g. `audio/wav` */
  mediaType: string;
  /** Sent as the multipart filename; some servers pick the decoder from its extension. */
  filename: string;
}

/**
 * One speech-to-text backend, built once from config. `transcribe` rejects with `OcularError`
 * (upstream_error, rate_limit_error, timeout_error) and honours `signal`.
 */
export interface Transcriber {
  /** The backend name, e.g. `openai-compatible`. */
  readonly name: string;
  transcribe(audio: TranscriberAudio, signal: AbortSignal): Promise<Transcript>;
  /** Releases pooled connections or loaded weights. */
  close?(): Promise<void>;
}

/** Speech-to-text turned off: audio gets no transcript. */
export const noTranscriberSettingsSchema = z.strictObject({ provider: z.literal('none') });

/**
 * The `speech` settings: one member per backend, told apart by `provider`. A new backend (a local whisper
 * GGUF/ggml binding, pocketsphinx) adds its strict schema here and a case in `createTranscriber`.
 */
export const transcriberSettingsSchema = z.discriminatedUnion('provider', [
  openAiCompatibleTranscriberSettingsSchema,
  whisperTranscriberSettingsSchema,
  noTranscriberSettingsSchema,
]);

export type TranscriberSettings = z.infer<typeof transcriberSettingsSchema>;

/** Builds the configured backend once at boot; undefined when speech-to-text is off. */
export function createTranscriber(settings: TranscriberSettings): Transcriber | undefined {
  switch (settings.provider) {
    case 'openai-compatible':
      return new OpenAiCompatibleTranscriber(settings);
    case 'whisper':
      return new WhisperTranscriber(settings);
    case 'none':
      return undefined;
    default: {
      const unknown: never = settings;
      throw new Error(`unknown transcriber provider ${JSON.stringify(unknown)}`);
    }
  }
}

export interface FormatTranscriptOptions {
  /** Added to every timestamp, for a transcript of audio cut from later in a file. @default 0 */
  offsetSeconds?: number | undefined;
}

/** `mm:ss` below an hour, `h:mm:ss` from there; seconds are truncated, as a player's clock shows them. */
function formatTimestamp(seconds: number): string {
  const whole = Math.max(0, Math.floor(Number.isFinite(seconds) ? seconds : 0));
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const rest = whole % 60;
  const mmss = `${String(minutes).padStart(2, '0')}:${String(rest).padStart(2, '0')}`;
  return hours > 0 ? `${hours}:${mmss}` : mmss;
}

/**
 * One line per segment, `[00:03 - 00:07] hello there`, for a model's prompt or a search index; the plain
 * text when the transcript has no segments. Segments with no words are left out.
 */
export function formatTranscript(transcript: Transcript, options: FormatTranscriptOptions = {}): string {
  const offset = options.offsetSeconds ?? 0;
  if (transcript.segments.length === 0) return transcript.text.trim();
  return transcript.segments
    .map((segment) => ({ ...segment, text: segment.text.replace(/\s+/g, ' ').trim() }))
    .filter((segment) => segment.text !== '')
    .map(
      (segment) => `[${formatTimestamp(segment.startSeconds + offset)} - ${formatTimestamp(segment.endSeconds + offset)}] ${segment.text}`,
    )
    .join('\n');
}
