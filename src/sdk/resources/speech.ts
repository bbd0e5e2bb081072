import type { Ocular, RequestOptions } from '../client.ts';

export interface SpeechParams {
  /** http(s), or `data:audio/...;base64,...` */
  audio_url: string;
  sampling_rate?: number | undefined;
  target_language?: 'english' | 'french' | 'spanish' | 'japanese' | 'chinese' | 'korean' | 'italian' | 'portuguese' | 'german' | undefined;
  return_translation_audio?: boolean | undefined;
  temperature?: number | undefined;
  max_tokens?: number | undefined;
  /** The chat model that translates. */
  model?: string | undefined;
}

export interface SpeechResult {
  transcript: string;
  transcript_translation_with_timestamp: Array<{ start: number; end: number; transcript: string }>;
  translation?: string;
  /** WAV, base64. */
  audio_base64?: string;
  language?: string;
  duration: number;
}

/** The Speech API (`POST /v1/transcription_or_translation`). */
export class Speech {
  readonly #client: Ocular;

  constructor(client: Ocular) {
    this.#client = client;
  }

  transcribe(params: SpeechParams, options: RequestOptions = {}): Promise<SpeechResult> {
    return this.#client.request({ ...options, method: 'POST', path: '/v1/transcription_or_translation', body: params });
  }
}
