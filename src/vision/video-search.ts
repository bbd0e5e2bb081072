import { OcularError } from '../spec/errors.ts';
import type { SegmentScope, SegmentSearchStore, SegmentSpan } from '../store/segment-search.ts';
import type { VideoStore } from '../store/video-store.ts';

/** What a retriever is asked for. */
export interface RetrievalRequest {
  /** The query as the client sent it (trimmed, at most 2,000 characters); empty for a search by image. */
  text: string;
  /** The query picture of a search by image (decoded and normalised), for retrievers whose `input` is `image`. */
  image?: Buffer | undefined;
  /** The owner and filters; a retriever must return only segments inside it. */
  scope: SegmentScope;
  /** The most segments to return. */
  limit: number;
  signal: AbortSignal;
}

/** One segment in a retriever's ranking. */
export interface RetrievedSegment {
  /** The segment's rowid (SegmentSearchStore's key; a vector index keys its entries the same way). */
  segmentId: number;
  /** The retriever's own score, larger is better (negated bm25, a cosine...), kept for debugging. */
  score: number;
  /**
   * How well the segment matches on the retriever's own absolute scale, 0..1 (the share of the query found, a
   * calibrated similarity). It weights the segment's share of the fused score, so `threshold` has a meaning.
   */
  relevance: number;
}

/**
 * One way of finding segments for a query: the full-text indexes (lexical-retrievers.ts), and later text or
 * image embeddings in a vector index. Each returns its own ranking, best first; the search fuses them.
 */
export interface SegmentRetriever {
  /** Listed in the `X-Ocular-Retrievers` response header. */
  readonly name: string;
  /** Its share in the fusion, relative to the others. @default 1 */
  readonly weight?: number;
  /** What it searches with: the query's text, or the query picture of a search by image. @default 'text' */
  readonly input?: 'text' | 'image';
  retrieve(request: RetrievalRequest): Promise<RetrievedSegment[]>;
}

export interface VideoSearchRequest {
  owner: string;
  /** The words searched for; absent for a search by image. */
  query?: string | undefined;
  /** The picture searched for (`image_url`, fetched and normalised), instead of `query`. */
  image?: Buffer | undefined;
  maxResults: number;
  offset: number;
  /** Results scoring below this (0..1) are left out. @default 0 */
  threshold?: number | undefined;
  videoIds?: readonly string[] | undefined;
  /** Each must be one of the owner's groups (404 otherwise). */
  groupIds?: readonly string[] | undefined;
  /** ISO 8601, against each video's `video_start_absolute_timestamp` (see SegmentScope). */
  startTime?: string | undefined;
  endTime?: string | undefined;
}

/** A time range of one video: one matching segment, or neighbouring ones merged. */
export interface VideoSearchHit {
  /** `<video id>:<first seq>-<last seq>`: stable for the same range of the same indexing. */
  chunkId: string;
  videoId: string;
  videoName: string;
  /** 0..1, the best of the merged segments' scores. */
  score: number;
  startSeconds: number;
  endSeconds: number;
  /** The merged segments' captions, in time order. */
  caption: string;
  transcript: string;
  /** The segment of the range that scored best: its thumbnail stands for the result. */
  bestSeq: number;
}

export interface VideoSearchOutcome {
  hits: VideoSearchHit[];
  /** Merged results above the threshold among the candidates considered (see CANDIDATES). */
  total: number;
  /** Names of the retrievers that ran, in order. */
  retrievers: string[];
}

export interface VideoSearchOptions {
  segments: SegmentSearchStore;
  videos: VideoStore;
  /** Each runs for every query, in order. */
  retrievers: readonly SegmentRetriever[];
}

/**
 * Segments each retriever may return. Bounds the work per query whatever the library's size, and so bounds
 * `total_results`: paging reaches the merged results of the best CANDIDATES segments of each ranking.
 */
export const CANDIDATES = 500;

/** The usual reciprocal rank fusion constant (Cormack et al. 2009): rank 1 and rank 10 differ by 13 %. */
const RRF_K = 60;

/** Segments whose ranges touch within this many seconds are neighbours (plans are cut on float seconds). */
const ADJACENT_SECONDS = 1e-3;

/**
 * A neighbour joins a range only when it matches about as well as the range's best segment: the text shown
 * across a cut is one match, while a segment that holds one word of the query next to one that holds all of
 * it is not, and merging it would stretch the range over time the query is not about.
 */
const MERGE_RATIO = 0.8;

/**
 * Reciprocal rank fusion with each entry weighted by its relevance: a segment's score is
 * Σ weight × relevance / (K + rank) over the rankings that list it, divided by the same sum for a segment
 * ranked first with full relevance by every ranking that found anything. So 1 means "first and complete
 * everywhere", and a retriever that found nothing (the word index, for a misspelt query) does not cap the rest.
 */
export function fuseRankings(rankings: ReadonlyArray<{ weight: number; hits: readonly RetrievedSegment[] }>): Map<number, number> {
  const fused = new Map<number, number>();
  let best = 0;
  for (const { weight, hits } of rankings) {
    if (hits.length === 0) continue;
    best += weight / (RRF_K + 1);
    for (const [index, hit] of hits.entries()) {
      fused.set(hit.segmentId, (fused.get(hit.segmentId) ?? 0) + (weight * hit.relevance) / (RRF_K + index + 1));
    }
  }
  for (const [id, value] of fused) fused.set(id, best > 0 ? Math.min(1, value / best) : 0);
  return fused;
}

interface Run {
  videoId: string;
  members: SegmentSpan[];
  score: number;
  bestSeq: number;
  startSeconds: number;
  endSeconds: number;
}

/** Merges each video's touching or overlapping segments that score alike (MERGE_RATIO) into runs, best run first. */
export function mergeNeighbours(spans: readonly SegmentSpan[], scores: ReadonlyMap<number, number>): Run[] {
  const ordered = [...spans].sort((a, b) => (a.videoId < b.videoId ? -1 : a.videoId > b.videoId ? 1 : a.startSeconds - b.startSeconds));
  const runs: Run[] = [];
  let run: Run | undefined;
  for (const span of ordered) {
    const score = scores.get(span.segmentId) ?? 0;
    if (
      run !== undefined &&
      run.videoId === span.videoId &&
      span.startSeconds <= run.endSeconds + ADJACENT_SECONDS &&
      Math.min(score, run.score) >= MERGE_RATIO * Math.max(score, run.score)
    ) {
      run.members.push(span);
      run.endSeconds = Math.max(run.endSeconds, span.endSeconds);
      if (score > run.score) {
        run.score = score;
        run.bestSeq = span.seq;
      }
      continue;
    }
    run = {
      videoId: span.videoId,
      members: [span],
      score,
      bestSeq: span.seq,
      startSeconds: span.startSeconds,
      endSeconds: span.endSeconds,
    };
    runs.push(run);
  }
  // Ties keep a stable order: earlier video id, then earlier in the video.
  return runs.sort(
    (a, b) => b.score - a.score || (a.videoId < b.videoId ? -1 : a.videoId > b.videoId ? 1 : 0) || a.startSeconds - b.startSeconds,
  );
}

const joinDistinct = (texts: readonly string[]): string =>
  [...new Set(texts.map((text) => text.trim()).filter((text) => text !== ''))].join(' ');

/** The answer to `image_url` when no image embedding model is configured. */
export function imageSearchUnavailable(): OcularError {
  return new OcularError(
    'validation_error',
    'search by image needs an image embedding model: set indexing.imageEmbeddingModel in the config to a folder holding ' +
      'a CLIP ONNX export (such as Xenova/clip-vit-base-patch32), then restart',
    { param: 'image_url' },
  );
}

/**
 * Video search: runs the retrievers over the owner's segments (inside the request's filters), fuses their
 * rankings (fuseRankings), drops what scores under the threshold, merges neighbouring segments of a video
 * into one time range, and pages through the ranges best first.
 */
export class VideoSearch {
  readonly #segments: SegmentSearchStore;
  readonly #videos: VideoStore;
  readonly #retrievers: readonly SegmentRetriever[];

  constructor(options: VideoSearchOptions) {
    this.#segments = options.segments;
    this.#videos = options.videos;
    this.#retrievers = options.retrievers;
  }

  /** Whether a search by image can run (an image embedding model is configured). */
  get searchesByImage(): boolean {
    return this.#retrievers.some((retriever) => retriever.input === 'image');
  }

  async search(request: VideoSearchRequest, signal: AbortSignal): Promise<VideoSearchOutcome> {
    const { owner } = request;
    for (const [index, groupId] of (request.groupIds ?? []).entries()) {
      if (!(await this.#videos.getGroup(owner, groupId))) {
        throw new OcularError('not_found_error', `no group with id "${groupId}"`, { param: `group_ids.${index}` });
      }
    }
    const scope: SegmentScope = {
      owner,
      videoIds: request.videoIds,
      groupIds: request.groupIds,
      from: request.startTime,
      to: request.endTime,
    };

    const input = request.image === undefined ? 'text' : 'image';
    const retrievers = this.#retrievers.filter((retriever) => (retriever.input ?? 'text') === input);
    if (retrievers.length === 0) throw imageSearchUnavailable();
    const ran: Array<{ weight: number; hits: readonly RetrievedSegment[] }> = [];
    for (const retriever of retrievers) {
      signal.throwIfAborted();
      const hits = await retriever.retrieve({ text: request.query ?? '', image: request.image, scope, limit: CANDIDATES, signal });
      ran.push({ weight: retriever.weight ?? 1, hits });
    }

    const threshold = request.threshold ?? 0;
    const scores = fuseRankings(ran);
    for (const [id, score] of scores) if (score <= 0 || score < threshold) scores.delete(id);
    const runs = mergeNeighbours(await this.#segments.spans(owner, [...scores.keys()]), scores);
    const page = runs.slice(request.offset, request.offset + request.maxResults);

    const rows = await this.#segments.details(
      owner,
      page.flatMap((run) => run.members.map((member) => member.segmentId)),
    );
    const details = new Map(rows.map((row) => [row.segmentId, row]));
    const hits = page.map((run): VideoSearchHit => {
      const members = run.members.map((member) => details.get(member.segmentId)).filter((row) => row !== undefined);
      const seqs = run.members.map((member) => member.seq);
      return {
        chunkId: `${run.videoId}:${Math.min(...seqs)}-${Math.max(...seqs)}`,
        videoId: run.videoId,
        videoName: members[0]?.videoName ?? '',
        score: run.score,
        startSeconds: run.startSeconds,
        endSeconds: run.endSeconds,
        caption: joinDistinct(members.map((member) => member.caption)),
        transcript: joinDistinct(members.map((member) => member.transcript)),
        bestSeq: run.bestSeq,
      };
    });
    return { hits, total: runs.length, retrievers: retrievers.map((retriever) => retriever.name) };
  }
}
