import { z } from 'zod';
import type { ChatService } from '../chat/chat-service.ts';
import type { MediaResolver } from '../chat/media-resolver.ts';
import { Scratch } from '../media/scratch.ts';
import { MAX_SPEECH_CHARS, type SpeechLanguage, type Synthesizer } from '../perception/speech/synthesizer.ts';
import type { Transcriber } from '../perception/speech/transcriber.ts';
import { OcularError, validationError } from '../spec/errors.ts';

/** A stretch of speech; seconds from the start of the audio. */
export interface TimedText {
  start: number;
  end: number;
  text: string;
}

export interface SpeechRequest {
  /** A URL (http(s) or data:) or a file already on this machine (a multipart upload). */
  audio: { url: string } | { path: string };
  /** The request field the audio came in, for errors. */
  label: string;
  /** Translate the transcript into this language. */
  targetLanguage?: SpeechLanguage | undefined;
  /** Also speak the translation (needs `targetLanguage` and a text-to-speech backend). */
  speakTranslation?: boolean | undefined;
  /** The chat model that translates; the default model when absent. */
  model?: string | undefined;
  temperature?: number | undefined;
  /** Tokens the translation may take in all. */
  maxTokens?: number | undefined;
}

export interface SpeechResult {
  transcript: string;
  /** As the transcriber named it (`en`, `english`), when it said. */
  language: string | undefined;
  /** Seconds of audio heard. */
  durationSeconds: number;
  segments: TimedText[];
  /** With a target language: the transcript translated, whole and per segment. */
  translation?: { text: string; segments: TimedText[] } | undefined;
  /** With `speakTranslation`: the translation spoken, as WAV. */
  speech?: Buffer | undefined;
}

export interface SpeechServiceOptions {
  media: MediaResolver;
  chat: ChatService;
  transcriber: Transcriber | undefined;
  synthesizer: Synthesizer | undefined;
}

/** Segments translated per chat call: small enough that a model keeps the count, large enough to keep context. */
const SEGMENTS_PER_CALL = 40;
const CHARS_PER_CALL = 4_000;
/** Output tokens allowed per call when the client sets no `max_tokens`: ample for CHARS_PER_CALL of text. */
const DEFAULT_TOKENS_PER_CALL = 4_096;

const LANGUAGE_NAMES: Readonly<Record<SpeechLanguage, string>> = {
  english: 'English',
  french: 'French',
  spanish: 'Spanish',
  japanese: 'Japanese',
  chinese: 'Chinese (Simplified)',
  korean: 'Korean',
  italian: 'Italian',
  portuguese: 'Portuguese',
  german: 'German',
};

/** 16 kHz, mono, 16-bit samples after a 44-byte header (what `toWav16kMono` writes). */
const wavSeconds = (wav: Buffer): number => Math.max(0, wav.length - 44) / 32_000;

/** Groups of consecutive segments, each within the per-call bounds. */
function batches(segments: readonly TimedText[]): TimedText[][] {
  const groups: TimedText[][] = [];
  let current: TimedText[] = [];
  let chars = 0;
  for (const segment of segments) {
    if (current.length > 0 && (current.length >= SEGMENTS_PER_CALL || chars + segment.text.length > CHARS_PER_CALL)) {
      groups.push(current);
      current = [];
      chars = 0;
    }
    current.push(segment);
    chars += segment.text.length;
  }
  if (current.length > 0) groups.push(current);
  return groups;
}

/** The first JSON array in a model's answer (models wrap JSON in prose or code fences). */
function parseStringArray(text: string, length: number): string[] | undefined {
  const start = text.indexOf('[');
  const end = text.lastIndexOf(']');
  if (start < 0 || end <= start) return undefined;
  try {
    const parsed = z
      .array(z.string())
      .length(length)
      .safeParse(JSON.parse(text.slice(start, end + 1)));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The Speech API: transcription through the configured transcriber, translation through the chat service (any
 * configured model), speech through the configured synthesizer. No second way of calling a model.
 */
export class SpeechService {
  readonly #options: SpeechServiceOptions;

  constructor(options: SpeechServiceOptions) {
    this.#options = options;
  }

  /** Whether speech can be synthesised (for a 400 before any work when it cannot). */
  get canSpeak(): boolean {
    return this.#options.synthesizer !== undefined;
  }

  async run(request: SpeechRequest, signal: AbortSignal): Promise<SpeechResult> {
    const { transcriber, synthesizer, media } = this.#options;
    if (transcriber === undefined) {
      throw validationError(
        'no transcriber is configured: add "transcriber": {"provider": "whisper", ...} or {"provider": "openai-compatible", ...} to the config (see README, "Speech API")',
        request.label,
      );
    }
    if (request.speakTranslation && request.targetLanguage === undefined) {
      throw validationError('return_translation_audio needs a target_language to speak', 'return_translation_audio');
    }
    if (request.speakTranslation && synthesizer === undefined) {
      throw validationError(
        'no text-to-speech backend: install espeak-ng, or set "textToSpeech": {"provider": "openai-compatible", ...} in the config',
        'return_translation_audio',
      );
    }
    const wav = await media.audioAsWav(request.audio, request.label, signal);
    const durationSeconds = wavSeconds(wav);
    const heard = await transcriber.transcribe({ data: wav, mediaType: 'audio/wav', filename: 'audio.wav' }, signal);
    const segments: TimedText[] =
      heard.segments.length > 0
        ? heard.segments.map((segment) => ({ start: segment.startSeconds, end: segment.endSeconds, text: segment.text }))
        : heard.text === ''
          ? []
          : [{ start: 0, end: durationSeconds, text: heard.text }];
    const result: SpeechResult = { transcript: heard.text, language: heard.language, durationSeconds, segments };
    if (request.targetLanguage === undefined || segments.length === 0) {
      if (request.targetLanguage !== undefined) result.translation = { text: '', segments: [] };
      return result;
    }
    const translated = await this.translate(segments, request.targetLanguage, request, signal);
    result.translation = { text: translated.map((segment) => segment.text).join(' '), segments: translated };
    if (request.speakTranslation && synthesizer !== undefined) {
      if (result.translation.text.length > MAX_SPEECH_CHARS) {
        throw validationError(
          `the translation is over ${MAX_SPEECH_CHARS} characters, too long to speak in one answer`,
          'return_translation_audio',
        );
      }
      const scratch = await Scratch.create();
      try {
        result.speech = await synthesizer.synthesize(result.translation.text, request.targetLanguage, scratch, signal);
      } finally {
        await scratch.dispose();
      }
    }
    return result;
  }

  /**
   * Each segment translated, times kept. The model answers a JSON array per batch; an answer that is not one
   * (or has the wrong length) is asked for once more, then reported as the model's failure.
   */
  async translate(
    segments: readonly TimedText[],
    language: SpeechLanguage,
    options: Pick<SpeechRequest, 'model' | 'temperature' | 'maxTokens'>,
    signal: AbortSignal,
  ): Promise<TimedText[]> {
    const groups = batches(segments);
    const tokensPerCall =
      options.maxTokens === undefined ? DEFAULT_TOKENS_PER_CALL : Math.max(16, Math.floor(options.maxTokens / groups.length));
    const out: TimedText[] = [];
    for (const group of groups) {
      const texts = group.map((segment) => segment.text);
      let translated: string[] | undefined;
      for (let attempt = 0; attempt < 2 && translated === undefined; attempt++) {
        const answer = await this.#options.chat.generate(
          {
            model: options.model,
            maxTokens: tokensPerCall,
            temperature: options.temperature ?? 0,
            messages: [
              {
                role: 'system',
                content:
                  `You translate speech transcripts into ${LANGUAGE_NAMES[language]}. The user sends a JSON array of ` +
                  `${texts.length} transcript segments in order. Answer with only a JSON array of exactly ${texts.length} ` +
                  `strings: each segment translated into ${LANGUAGE_NAMES[language]}, in the same order, nothing added.`,
              },
              { role: 'user', content: [{ type: 'text', text: JSON.stringify(texts) }] },
            ],
          },
          signal,
        );
        translated = parseStringArray(answer.text, texts.length);
      }
      if (translated === undefined) {
        throw new OcularError(
          'upstream_error',
          `the model did not answer a JSON array of ${texts.length} translated segments, twice; try another model`,
        );
      }
      group.forEach((segment, index) => out.push({ start: segment.start, end: segment.end, text: translated[index]!.trim() }));
    }
    return out;
  }
}
