// Written against src/server/wire/speech.ts (`POST /v1/transcription_or_translation`, Reka Speech).
import type { Ocular, RequestOptions } from '../client.ts';

export interface SpeechTranscribeParams {
  /** http(s), or `data:audio/...;base64,...` */
  audio_url: string;
  /** The audio's sampling rate in Hz (containers carry their own). @default 16000 */
  sampling_rate?: number | null | undefined;
  /** Translate the transcript into this language (`french`, `French` or `fr`). */
  target_language?: string | null | undefined;
  /** Also speak the translation (`audio_base64` in the answer). */
  return_translation_audio?: boolean | null | undefined;
  temperature?: number | null | undefined;
  max_tokens?: number | null | undefined;
  /** The chat model that translates. @default the server's default model */
  model?: string | null | undefined;
}

export interface TimedTranscript {
  start: number;
  end: number;
  transcript: string;
}

export interface SpeechTranscribeResponse {
  transcript: string;
  /** The translation's segments with their times when translating, else the transcript's. */
  transcript_translation_with_timestamp: TimedTranscript[];
  translation?: string | undefined;
  /** WAV of the spoken translation, with `return_translation_audio`. */
  audio_base64?: string | undefined;
  /** The spoken language detected. */
  language?: string | undefined;
  /** Seconds of audio. */
  duration: number;
}

/** Transcription, translation and spoken translation of audio (`POST /v1/transcription_or_translation`). */
export class Speech {
  readonly #client: Ocular;

  constructor(client: Ocular) {
    this.#client = client;
  }

  transcribe(params: SpeechTranscribeParams, options: RequestOptions = {}): Promise<SpeechTranscribeResponse> {
    return this.#client.request({ ...options, method: 'POST', path: '/v1/transcription_or_translation', body: params });
  }
}
