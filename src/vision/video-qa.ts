import { readFile } from 'node:fs/promises';
import type { ChatService } from '../chat/chat-service.ts';
import { formatTimestamp } from '../media/video.ts';
import { OcularError, validationError } from '../spec/errors.ts';
import type { ChatMessage, ChatRequest, MediaReference, TextPart } from '../spec/messages.ts';
import type { StreamPart } from '../spec/stream-parts.ts';
import type { BlobStore } from '../store/blob-store.ts';
import type { SegmentRecord, VideoRecord, VideoStore } from '../store/video-store.ts';
import type { VideoSummaryStore } from '../store/video-summary-store.ts';
import type { IndexingEvent, VideoLibrary } from './video-library.ts';
import type { VideoSearch } from './video-search.ts';

/** A video QA turn as the service takes it: text only (the video is the media). */
export interface QaMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** Which video to ask about: one of the owner's, or a URL to fetch, store and index first. */
export type QaVideoSource = { kind: 'id'; videoId: string } | { kind: 'url'; url: string };

export interface VideoQaRequest {
  owner: string;
  videoId: string;
  messages: readonly QaMessage[];
  /** The model id or alias; the server's default when absent. */
  model?: string | undefined;
  /** Wait (up to `maxWaitSeconds`) for a video still being indexed instead of answering 409. */
  wait?: boolean | undefined;
  /** @default 1024 */
  maxTokens?: number | undefined;
  temperature?: number | undefined;
}

export interface VideoQaAnswer {
  videoId: string;
  model: string;
  /** The answer, with `[mm:ss]` citations that point outside the video removed. */
  text: string;
}

export interface VideoQaStream {
  videoId: string;
  model: string;
  /** Text deltas (citations outside the video already removed), then `finish` or `error`. */
  parts: ReadableStream<StreamPart>;
}

export interface VideoQaSettings {
  /** Longest `wait: true` waits for indexing, in seconds. */
  maxWaitSeconds: number;
  /** Segments sent per question at most (with one keyframe each for a model with image input). */
  maxSegments: number;
  /** Media parts allowed in one user turn (`limits.maxMediaPerTurn`). */
  maxMediaPerTurn: number;
}

export interface VideoQaOptions {
  chat: ChatService;
  library: VideoLibrary;
  search: VideoSearch;
  store: VideoStore;
  summaries: VideoSummaryStore;
  blobs: BlobStore;
  settings: VideoQaSettings;
}

/** Characters of retrieved text per segment, and in all: the context stays the same size for a 2-hour video. */
const MAX_SEGMENT_CHARS = 1_200;
const MAX_CONTEXT_CHARS = 12_000;
const MAX_SUMMARY_CHARS = 2_000;
/** Characters of the last question used as the search query (video search's own bound). */
const MAX_QUERY_CHARS = 2_000;
/** A hit counts as relevant when it scores at least this share of the best hit's score (a hit that shares only "the" with the question scores about half). */
const RELEVANCE_RATIO = 0.7;
const DEFAULT_MAX_TOKENS = 1024;
/** A citation may round up past the end by this much. */
const CITATION_SLACK_SECONDS = 1;

const INSTRUCTIONS =
  'You answer questions about one video. Below are a summary of the video (when available) and excerpts of it, each ' +
  'with its time range, what is visible (caption), the on-screen text and the speech transcript; keyframes may be ' +
  'attached, each labelled with its time. Answer from this material only; if it does not hold the answer, say so. ' +
  'Cite the moments you rely on with their time as [mm:ss] (or [h:mm:ss] past an hour), e.g. "the logo appears [01:05]".';

/** `[mm:ss]` or `[h:mm:ss]`, with an optional space before it (removed with it). */
const CITATION = / ?\[(?:(\d{1,2}):)?(\d{1,3}):(\d{2})\]/g;
/** A trailing fragment that may still become a citation (or the space before one): held back while streaming. */
const PARTIAL_CITATION = / ?(?:\[[\d:]{0,9})?$/;

/** Removes `[mm:ss]` citations past the end of the video (a model's invented moments). */
export function removeCitationsOutside(text: string, durationSeconds: number): string {
  return text.replace(CITATION, (match, hours: string | undefined, minutes: string, seconds: string) => {
    const time = Number(hours ?? 0) * 3600 + Number(minutes) * 60 + Number(seconds);
    return Number(seconds) < 60 && time <= durationSeconds + CITATION_SLACK_SECONDS ? match : '';
  });
}

/**
 * Applies `removeCitationsOutside` to a stream of text deltas: text that may be the start of a citation is
 * held back until it is complete, so a citation split over deltas is judged whole.
 */
export function filterCitationStream(parts: ReadableStream<StreamPart>, durationSeconds: number): ReadableStream<StreamPart> {
  let pending = '';
  return parts.pipeThrough(
    new TransformStream<StreamPart, StreamPart>({
      transform(part, controller) {
        if (part.type !== 'text-delta') {
          if (pending !== '') {
            const text = removeCitationsOutside(pending, durationSeconds);
            pending = '';
            if (text !== '') controller.enqueue({ type: 'text-delta', text });
          }
          controller.enqueue(part);
          return;
        }
        pending += part.text;
        const partial = PARTIAL_CITATION.exec(pending);
        const cut = partial ? partial.index : pending.length;
        const ready = removeCitationsOutside(pending.slice(0, cut), durationSeconds);
        pending = pending.slice(cut);
        if (ready !== '') controller.enqueue({ type: 'text-delta', text: ready });
      },
      flush(controller) {
        const text = removeCitationsOutside(pending, durationSeconds);
        if (text !== '') controller.enqueue({ type: 'text-delta', text });
      },
    }),
  );
}

function clip(text: string, max: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

const range = (segment: Pick<SegmentRecord, 'startSeconds' | 'endSeconds'>): string =>
  `[${formatTimestamp(segment.startSeconds)}-${formatTimestamp(segment.endSeconds)}]`;

/** One excerpt as the model reads it, within MAX_SEGMENT_CHARS. */
function describeSegment(segment: SegmentRecord): string {
  const lines = [range(segment)];
  if (segment.caption.trim() !== '') lines.push(`Caption: ${clip(segment.caption, 400)}`);
  if (segment.ocrText.trim() !== '') lines.push(`On-screen text: ${clip(segment.ocrText, 300)}`);
  if (segment.transcript.trim() !== '') lines.push(`Transcript: ${clip(segment.transcript, 600)}`);
  if (segment.objects.length > 0) lines.push(`Objects: ${segment.objects.map((object) => object.label).join(', ')}`);
  return lines.join('\n').slice(0, MAX_SEGMENT_CHARS);
}

/** `count` indexes spread evenly over 0..total-1 (all of them when there are fewer). */
function spread(total: number, count: number): number[] {
  if (total <= count) return Array.from({ length: total }, (_, index) => index);
  return Array.from({ length: count }, (_, index) => Math.floor(((index + 0.5) * total) / count));
}

/** Why a video cannot be answered about yet, with where its indexing is. */
function notIndexed(video: Pick<VideoRecord, 'id' | 'status' | 'progress' | 'error' | 'indexRequested'>, waited: boolean): OcularError {
  const where =
    video.status === 'failed'
      ? `its indexing failed: ${video.error ?? 'unknown error'}`
      : video.status === 'pending' && !video.indexRequested
        ? 'it was uploaded without indexing (index=false)'
        : `its indexing status is "${video.status}" (${Math.round(video.progress * 100)} %)` +
          (waited ? ', still so after the longest wait' : '; ask again later, or pass "wait": true');
  return new OcularError('conflict_error', `video "${video.id}" is not indexed yet: ${where}`, { param: 'video_id' });
}

/**
 * Video QA: answers questions about one of the owner's videos from its index. For each question it searches
 * the video's segments for the last user question (video search, scoped to the one video), keeps the few
 * most relevant (`maxSegments`, so a long video does not make a longer prompt), adds the whole-video summary
 * indexing made (when a caption model was configured), and asks the model through the chat service with
 * their text and timestamps, plus one keyframe each when the model takes images. Citations of moments
 * outside the video are removed from the answer.
 */
export class VideoQa {
  readonly #chat: ChatService;
  readonly #library: VideoLibrary;
  readonly #search: VideoSearch;
  readonly #store: VideoStore;
  readonly #summaries: VideoSummaryStore;
  readonly #blobs: BlobStore;
  readonly #settings: VideoQaSettings;

  constructor(options: VideoQaOptions) {
    this.#chat = options.chat;
    this.#library = options.library;
    this.#search = options.search;
    this.#store = options.store;
    this.#summaries = options.summaries;
    this.#blobs = options.blobs;
    this.#settings = options.settings;
  }

  /**
   * The video a request is about: the owner's video (404 when it is not theirs), or, for a URL, a new video in
   * the owner's default group, fetched through the safe media fetcher and queued for indexing.
   */
  async resolveVideo(owner: string, source: QaVideoSource, signal: AbortSignal): Promise<VideoRecord> {
    if (source.kind === 'id') return this.#library.getVideo(owner, source.videoId);
    const name = decodeURIComponent(new URL(source.url).pathname.split('/').at(-1) ?? '') || 'video';
    return this.#library.addVideo(
      owner,
      {
        source: { kind: 'url', url: source.url },
        name: name.slice(0, 200),
        index: true,
        thumbnails: false,
        groupId: 'default',
        startTimestamp: undefined,
        webhookUrl: undefined,
        webhookSecret: undefined,
      },
      signal,
    );
  }

  async answer(request: VideoQaRequest, signal: AbortSignal): Promise<VideoQaAnswer> {
    const { chatRequest, durationSeconds } = await this.#prepare(request, signal);
    const result = await this.#chat.generate(chatRequest, signal);
    return { videoId: request.videoId, model: result.model, text: removeCitationsOutside(result.text, durationSeconds) };
  }

  /** Rejects (before anything is streamed) when the video is not ready, the request is invalid or the upstream fails early. */
  async stream(request: VideoQaRequest, signal: AbortSignal): Promise<VideoQaStream> {
    const { chatRequest, durationSeconds } = await this.#prepare(request, signal);
    const { modelName, parts } = await this.#chat.stream(chatRequest, signal);
    return { videoId: request.videoId, model: modelName, parts: filterCitationStream(parts, durationSeconds) };
  }

  async #prepare(request: VideoQaRequest, signal: AbortSignal): Promise<{ chatRequest: ChatRequest; durationSeconds: number }> {
    const last = request.messages.at(-1);
    if (last?.role !== 'user') throw validationError('the last message must be the user question', 'messages');
    if (last.content.trim() === '') throw validationError('the question is empty', `messages.${request.messages.length - 1}.content`);
    const { capabilities } = this.#chat.describeModel(request.model);
    const video = await this.#ready(request.owner, request.videoId, request.wait ?? false, signal);

    const total = await this.#store.countSegments(video.id);
    const lastSegment = total > 0 ? await this.#store.getSegment(video.id, total - 1) : undefined;
    const durationSeconds = video.metadata?.durationSeconds ?? lastSegment?.endSeconds ?? 0;
    const segments = await this.#retrieve(request.owner, video.id, last.content, total, signal);
    const summary = (await this.#summaries.get(video.id))?.summary;

    const excerpts: string[] = [];
    let used = 0;
    for (const segment of segments) {
      const block = describeSegment(segment);
      if (used + block.length > MAX_CONTEXT_CHARS) break;
      excerpts.push(block);
      used += block.length;
    }
    const clientSystem = request.messages.filter((message) => message.role === 'system').map((message) => message.content);
    const system = [
      INSTRUCTIONS,
      `Video: "${video.name}", ${formatTimestamp(durationSeconds)} long.`,
      ...(summary ? [`Summary of the whole video:\n${clip(summary, MAX_SUMMARY_CHARS)}`] : []),
      excerpts.length > 0 ? `Excerpts (most relevant first):\n\n${excerpts.join('\n\n')}` : 'No excerpt of the video matches the question.',
      ...(clientSystem.length > 0 ? [`Further instructions:\n${clientSystem.join('\n')}`] : []),
    ].join('\n\n');

    const images = capabilities.image ? await this.#keyframes(video.id, segments.slice(0, excerpts.length)) : [];
    const messages: ChatMessage[] = [{ role: 'system', content: system }];
    const turns = request.messages.filter((message) => message.role !== 'system');
    turns.forEach((message, index) => {
      if (message.role === 'assistant') {
        messages.push({ role: 'assistant', content: message.content });
        return;
      }
      const content: Array<TextPart | MediaReference> = [];
      if (index === turns.length - 1 && images.length > 0) {
        content.push({ type: 'text', text: `Keyframes, in order, at ${images.map((image) => `[${image.time}]`).join(', ')}:` });
        for (const image of images) content.push({ type: 'media', kind: 'image', url: image.url });
      }
      content.push({ type: 'text', text: message.content });
      messages.push({ role: 'user', content });
    });
    return {
      chatRequest: {
        model: request.model,
        messages,
        maxTokens: request.maxTokens ?? DEFAULT_MAX_TOKENS,
        temperature: request.temperature,
      },
      durationSeconds,
    };
  }

  /** The owner's video once it is indexed: at once, or after waiting (bounded) when asked; 409 otherwise. */
  async #ready(owner: string, videoId: string, wait: boolean, signal: AbortSignal): Promise<VideoRecord> {
    let video = await this.#library.getVideo(owner, videoId);
    if (video.status === 'indexed') return video;
    const waitable = video.status === 'indexing' || (video.status === 'pending' && video.indexRequested);
    if (!wait || !waitable) throw notIndexed(video, false);
    const settled = new Promise<void>((resolve) => {
      const stop = this.#library.subscribe(videoId, (event: IndexingEvent) => {
        if (event.status === 'indexed' || event.status === 'failed') finish();
      });
      const timer = setTimeout(() => finish(), this.#settings.maxWaitSeconds * 1000);
      const finish = (): void => {
        clearTimeout(timer);
        stop();
        signal.removeEventListener('abort', finish);
        resolve();
      };
      signal.addEventListener('abort', finish, { once: true });
      // Indexing may have ended between the first read and the subscription.
      this.#store.getVideo(owner, videoId).then(
        (now) => {
          if (now === undefined || now.status === 'indexed' || now.status === 'failed') finish();
        },
        () => finish(),
      );
    });
    await settled;
    signal.throwIfAborted();
    video = await this.#library.getVideo(owner, videoId);
    if (video.status !== 'indexed') throw notIndexed(video, true);
    return video;
  }

  /**
   * The segments for a question: the video's best search hits (those scoring near the best one), else, when
   * nothing matches (a global question), segments spread over the whole video. At most `maxSegments` either way.
   */
  async #retrieve(owner: string, videoId: string, question: string, total: number, signal: AbortSignal): Promise<SegmentRecord[]> {
    const limit = this.#settings.maxSegments;
    const outcome = await this.#search.search(
      { owner, query: question.slice(0, MAX_QUERY_CHARS), maxResults: limit, offset: 0, videoIds: [videoId] },
      signal,
    );
    const best = outcome.hits[0]?.score ?? 0;
    const seqs = outcome.hits.filter((hit) => hit.score >= best * RELEVANCE_RATIO).map((hit) => hit.bestSeq);
    const picked = seqs.length > 0 ? seqs : spread(total, limit);
    const segments = await Promise.all(picked.map((seq) => this.#store.getSegment(videoId, seq)));
    return segments.filter((segment) => segment !== undefined);
  }

  /** The middle keyframe of each segment as a data URL, within the media limit per turn. */
  async #keyframes(videoId: string, segments: readonly SegmentRecord[]): Promise<Array<{ time: string; url: string }>> {
    const images: Array<{ time: string; url: string }> = [];
    for (const segment of segments) {
      if (images.length >= this.#settings.maxMediaPerTurn) break;
      const frame = segment.keyframes[Math.floor(segment.keyframes.length / 2)];
      if (frame === undefined) continue;
      try {
        const data = await this.#blobs.read(videoId, frame.file);
        images.push({ time: formatTimestamp(frame.timeSeconds), url: `data:image/jpeg;base64,${data.toString('base64')}` });
      } catch {
        // A keyframe file that is gone (a re-index in progress) leaves that segment text-only.
      }
    }
    return images;
  }
}
