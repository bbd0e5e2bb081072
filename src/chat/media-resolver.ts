import { writeFile, readFile } from 'node:fs/promises';
import pLimit from 'p-limit';
import type { MediaSettings } from '../config/schema.ts';
import { decodeDataUrl, isDataUrl } from '../media/data-url.ts';
import type { MediaFetcher } from '../media/fetch-media.ts';
import { normalizeImage } from '../media/image.ts';
import { extractPdf } from '../media/pdf.ts';
import { Scratch } from '../media/scratch.ts';
import { assertKind, sniffBuffer, sniffFile } from '../media/sniff.ts';
import { extractAudioTrack, toWav16kMono } from '../media/audio.ts';
import { formatTimestamp, probeMedia, sampleFrames } from '../media/video.ts';
import type { FfmpegContext } from '../media/binaries.ts';
import { formatTranscript, type Transcriber } from '../perception/speech/transcriber.ts';
import { OcularError, validationError } from '../spec/errors.ts';
import type { ChatMessage, MediaContent, MediaReference, PromptMessage, TextPart } from '../spec/messages.ts';
import type { Capabilities } from '../spec/provider.ts';

export interface MediaTarget {
  /** The model name the client used, for error messages. */
  name: string;
  capabilities: Capabilities;
}

export interface MediaResolverOptions {
  settings: MediaSettings;
  fetcher: MediaFetcher;
  ffmpeg: FfmpegContext;
  transcriber?: Transcriber | undefined;
}

type ResolvedPart = TextPart | MediaContent;

/** Where a media item's bytes are: in memory (data: URLs) or in a scratch file (downloads). */
type Acquired = { data: Buffer; path?: undefined } | { path: string; data?: undefined };

const text = (value: string): TextPart => ({ type: 'text', text: value });
const base64 = (data: Buffer): string => data.toString('base64');

const EXTENSIONS: Record<string, string> = {
  'video/mp4': '.mp4',
  'video/webm': '.webm',
  'video/quicktime': '.mov',
  'video/x-matroska': '.mkv',
  'audio/wav': '.wav',
  'audio/mpeg': '.mp3',
  'application/pdf': '.pdf',
};

/**
 * Turns the media parts of a conversation into what the chosen model can take: images normalised, videos as
 * the video itself or as timestamped frames (plus a transcript of their sound), audio as audio or as a
 * transcript, PDFs as the document or as page text (plus rendered pages). Parts are processed concurrently
 * with a bound; the first failure cancels the rest and everything written to disk is removed.
 */
export class MediaResolver {
  readonly #settings: MediaSettings;
  readonly #fetcher: MediaFetcher;
  readonly #ffmpeg: FfmpegContext;
  readonly #transcriber: Transcriber | undefined;

  constructor(options: MediaResolverOptions) {
    this.#settings = options.settings;
    this.#fetcher = options.fetcher;
    this.#ffmpeg = options.ffmpeg;
    this.#transcriber = options.transcriber;
  }

  /** True when the conversation has media parts (the common text-only case skips all of this). */
  static hasMedia(messages: readonly ChatMessage[]): boolean {
    return messages.some((message) => message.role === 'user' && message.content.some((part) => part.type === 'media'));
  }

  async resolve(messages: readonly ChatMessage[], target: MediaTarget, signal: AbortSignal): Promise<PromptMessage[]> {
    const failed = new AbortController();
    const partSignal = AbortSignal.any([signal, failed.signal]);
    const limit = pLimit(this.#settings.concurrency);
    const scratch = await Scratch.create();
    try {
      // Every part's task, flat, so that nothing is still running when the scratch directory goes away.
      const tasks = messages.map((message, messageIndex) =>
        message.role !== 'user'
          ? []
          : message.content.map((part, partIndex) => {
              if (part.type === 'text') return Promise.resolve([part]);
              const label = `messages.${messageIndex}.content.${partIndex}`;
              return limit(() => this.#resolvePart(part, label, target, scratch, partSignal)).catch((error: unknown) => {
                failed.abort(error);
                throw error;
              });
            }),
      );
      const settled = await Promise.all(tasks.map((parts) => Promise.allSettled(parts)));
      if (settled.some((parts) => parts.some((part) => part.status === 'rejected'))) {
        // Report the first real failure, not the cancellations it caused in the other parts.
        throw signal.aborted ? signal.reason : failed.signal.reason;
      }
      return messages.map((message, index): PromptMessage => {
        if (message.role !== 'user') return message;
        const parts = settled[index]!.map((part) => (part as PromiseFulfilledResult<ResolvedPart[]>).value);
        return { role: 'user', content: parts.flat() };
      });
    } finally {
      limit.clearQueue();
      await scratch.dispose();
    }
  }

  async #resolvePart(
    part: MediaReference,
    label: string,
    target: MediaTarget,
    scratch: Scratch,
    signal: AbortSignal,
  ): Promise<ResolvedPart[]> {
    try {
      return await this.#processPart(part, label, target, scratch, signal);
    } catch (error) {
      // Analyzers deep down (ffmpeg, pdf.js) do not know which part they worked on: name it for the client.
      if (error instanceof OcularError && error.param === undefined) {
        throw new OcularError(error.type, `${label}: ${error.message}`, { param: label, cause: error });
      }
      throw error;
    }
  }

  async #processPart(
    part: MediaReference,
    label: string,
    target: MediaTarget,
    scratch: Scratch,
    signal: AbortSignal,
  ): Promise<ResolvedPart[]> {
    this.#checkCapability(part, label, target);
    let acquired: Acquired;
    if (part.localPath !== undefined) {
      acquired = { path: part.localPath };
    } else if (part.localData !== undefined) {
      acquired = { data: await part.localData() };
    } else if (isDataUrl(part.url)) {
      const decoded = decodeDataUrl(part.url, { maxBytes: this.#settings.maxBytes, label });
      if (decoded.type === 'frames') {
        if (part.kind !== 'video') throw validationError(`${label}: only video parts may carry several frames`, label);
        return this.#framesFromImages(decoded.frames, label, target);
      }
      acquired = { data: decoded.data };
    } else {
      const fetched = await this.#fetcher.fetch(part.url, label, scratch, signal);
      acquired = { path: fetched.path };
    }
    const sniffed = acquired.data ? await sniffBuffer(acquired.data) : await sniffFile(acquired.path);
    const { mediaType } = assertKind(sniffed, part.kind, label);
    switch (part.kind) {
      case 'image': {
        const image = await normalizeImage(acquired.data ?? acquired.path, this.#imageOptions(label));
        return [{ type: 'media', kind: 'image', mediaType: image.mediaType, data: base64(image.data) }];
      }
      case 'video':
        return this.#video(await this.#toFile(acquired, mediaType, scratch), mediaType, label, target, scratch, signal);
      case 'audio':
        return this.#audio(acquired, mediaType, label, target, scratch, signal);
      case 'pdf':
        return this.#pdf(acquired, label, target, scratch, signal);
    }
  }

  /**
   * The sound of an audio URL (http(s) through the safe fetcher, or a data: URL) or of a local file, as 16 kHz
   * mono WAV for speech-to-text. Anything whose bytes are not audio (or a container that may hold it) is 415.
   */
  async audioAsWav(source: { url: string } | { path: string }, label: string, signal: AbortSignal): Promise<Buffer> {
    const scratch = await Scratch.create();
    try {
      let acquired: Acquired;
      if ('path' in source) acquired = { path: source.path };
      else if (isDataUrl(source.url)) {
        const decoded = decodeDataUrl(source.url, { maxBytes: this.#settings.maxBytes, label });
        if (decoded.type === 'frames') throw validationError(`${label}: expected audio, not image frames`, label);
        acquired = { data: decoded.data };
      } else {
        acquired = { path: (await this.#fetcher.fetch(source.url, label, scratch, signal)).path };
      }
      const sniffed = acquired.data ? await sniffBuffer(acquired.data) : await sniffFile(acquired.path);
      const { mediaType } = assertKind(sniffed, 'audio', label);
      try {
        return await toWav16kMono(await this.#toFile(acquired, mediaType, scratch), this.#ffmpeg, signal);
      } catch (error) {
        if (error instanceof OcularError && error.param === undefined) {
          throw new OcularError(error.type, `${label}: ${error.message}`, { param: label, cause: error });
        }
        throw error;
      }
    } finally {
      await scratch.dispose();
    }
  }

  #checkCapability(part: MediaReference, label: string, target: MediaTarget): void {
    const { capabilities } = target;
    if (part.kind === 'image' && !capabilities.image) {
      throw validationError(`${label}: model "${target.name}" does not accept images`, label);
    }
    if (part.kind === 'video' && !capabilities.video && !capabilities.image) {
      throw validationError(`${label}: model "${target.name}" accepts neither video nor images, so it cannot see a video`, label);
    }
    if (part.kind === 'audio' && !capabilities.audio && !this.#transcriber) {
      throw validationError(
        `${label}: model "${target.name}" does not accept audio and no transcriber is configured; add ` +
          '"transcriber": {"provider": "openai-compatible", "baseUrl": "...", "model": "whisper-1"} to the config (see README, "Media")',
        label,
      );
    }
  }

  #imageOptions(label: string) {
    return { maxSide: this.#settings.maxImageSide, maxPixels: this.#settings.maxImagePixels, label };
  }

  async #toFile(acquired: Acquired, mediaType: string, scratch: Scratch): Promise<string> {
    if (acquired.path !== undefined) return acquired.path;
    const path = scratch.path(EXTENSIONS[mediaType] ?? '');
    await writeFile(path, acquired.data);
    return path;
  }

  async #framesFromImages(frames: Buffer[], label: string, target: MediaTarget): Promise<ResolvedPart[]> {
    if (!target.capabilities.image) {
      throw validationError(`${label}: model "${target.name}" does not accept images, so it cannot take a video given as frames`, label);
    }
    const parts: ResolvedPart[] = [text(`Video given as ${frames.length} frames:`)];
    for (const [index, frame] of frames.entries()) {
      assertKind(await sniffBuffer(frame), 'image', `${label} frame ${index + 1}`);
      const image = await normalizeImage(frame, this.#imageOptions(label));
      parts.push(text(`frame ${index + 1} of ${frames.length}`), {
        type: 'media',
        kind: 'image',
        mediaType: image.mediaType,
        data: base64(image.data),
      });
    }
    return parts;
  }

  async #video(
    path: string,
    mediaType: string,
    label: string,
    target: MediaTarget,
    scratch: Scratch,
    signal: AbortSignal,
  ): Promise<ResolvedPart[]> {
    if (target.capabilities.video) return [{ type: 'media', kind: 'video', mediaType, data: base64(await readFile(path)) }];
    const probe = await probeMedia(path, this.#ffmpeg, signal);
    const frames = await sampleFrames(
      path,
      { maxFrames: this.#settings.videoFrames, fps: this.#settings.videoFps, maxSide: this.#settings.maxImageSide, probe },
      this.#ffmpeg,
      signal,
    );
    const parts: ResolvedPart[] = [text(`Video (${formatTimestamp(probe.durationSeconds)} long), ${frames.length} frames:`)];
    for (const frame of frames) {
      parts.push(text(`frame at ${formatTimestamp(frame.timestampSeconds)}`), {
        type: 'media',
        kind: 'image',
        mediaType: 'image/jpeg',
        data: base64(frame.jpeg),
      });
    }
    if (this.#transcriber && probe.audio) {
      const audioPath = await extractAudioTrack(path, scratch, this.#ffmpeg, signal);
      if (audioPath !== undefined) parts.push(text(`Audio track transcript:\n${await this.#transcribe(audioPath, signal)}`));
    }
    return parts;
  }

  async #audio(
    acquired: Acquired,
    mediaType: string,
    label: string,
    target: MediaTarget,
    scratch: Scratch,
    signal: AbortSignal,
  ): Promise<ResolvedPart[]> {
    // OpenAI-style upstreams take wav and mp3 only; anything else is converted to 16 kHz mono wav.
    if (target.capabilities.audio) {
      if (mediaType === 'audio/wav' || mediaType === 'audio/mpeg') {
        return [{ type: 'media', kind: 'audio', mediaType, data: base64(acquired.data ?? (await readFile(acquired.path))) }];
      }
      const wav = await toWav16kMono(await this.#toFile(acquired, mediaType, scratch), this.#ffmpeg, signal);
      return [{ type: 'media', kind: 'audio', mediaType: 'audio/wav', data: base64(wav) }];
    }
    const transcript = await this.#transcribe(await this.#toFile(acquired, mediaType, scratch), signal);
    return [text(`Audio transcript (${label}):\n${transcript}`)];
  }

  async #transcribe(path: string, signal: AbortSignal): Promise<string> {
    const wav = await toWav16kMono(path, this.#ffmpeg, signal);
    const transcript = await this.#transcriber!.transcribe({ data: wav, mediaType: 'audio/wav', filename: 'audio.wav' }, signal);
    return formatTranscript(transcript);
  }

  async #pdf(acquired: Acquired, label: string, target: MediaTarget, scratch: Scratch, signal: AbortSignal): Promise<ResolvedPart[]> {
    if (target.capabilities.pdf) {
      return [{ type: 'media', kind: 'pdf', mediaType: 'application/pdf', data: base64(acquired.data ?? (await readFile(acquired.path))) }];
    }
    const renderPages = target.capabilities.image ? this.#settings.pdfRenderPages : 0;
    const pdf = await extractPdf(
      await this.#toFile(acquired, 'application/pdf', scratch),
      { maxPages: this.#settings.pdfMaxPages, renderPages, maxSide: this.#settings.maxImageSide, label },
      signal,
    );
    const pageText = pdf.pages.map((page) => `[page ${page.number}]\n${page.text}`).join('\n\n');
    const shown = pdf.pages.length < pdf.pageCount ? ` (text of the first ${pdf.pages.length})` : '';
    const parts: ResolvedPart[] = [text(`PDF document, ${pdf.pageCount} pages${shown}:\n\n${pageText}`)];
    for (const image of pdf.images) {
      parts.push(text(`PDF page ${image.page}:`), { type: 'media', kind: 'image', mediaType: 'image/png', data: base64(image.png) });
    }
    return parts;
  }
}
