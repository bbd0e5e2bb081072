import type { ClipMomentRecord, ClipPieceRecord, ClipRequest } from '../store/clip-store.ts';

/** A time range worth showing, from the search (best first) or, when nothing matched, the index in time order. */
export interface MomentCandidate {
  videoId: string;
  startSeconds: number;
  endSeconds: number;
  /** What the index says about it (caption, transcript), for titles and the model. */
  text: string;
  /** A title the model gave it. */
  title?: string | undefined;
}

/** Where a video's pieces may come from: the source range of the request, inside the video. */
export interface VideoBounds {
  videoId: string;
  durationSeconds: number;
}

/** Pieces a compilation joins at most: more makes a montage of flashes. */
export const MAX_COMPILATION_PIECES = 8;

interface Range {
  lo: number;
  hi: number;
}

/** The part of the video the request allows: `[source_start_time, source_end_time]` inside `[0, duration]`. */
export function allowedRange(bounds: VideoBounds, generation: ClipRequest['generation']): Range {
  const lo = Math.max(0, generation.sourceStartSeconds ?? 0);
  const hi = Math.min(bounds.durationSeconds, generation.sourceEndSeconds ?? bounds.durationSeconds);
  return { lo, hi };
}

const overlaps = (a: ClipPieceRecord, b: ClipPieceRecord): boolean =>
  a.videoId === b.videoId && a.startSeconds < b.endSeconds && b.startSeconds < a.endSeconds;

/**
 * Moves `[start, end]` to length `length` around its middle, kept inside `range`. The caller has checked that
 * the range holds `length`.
 */
function fitAround(start: number, end: number, length: number, range: Range): { start: number; end: number } {
  const middle = (start + end) / 2;
  let from = middle - length / 2;
  from = Math.min(Math.max(from, range.lo), range.hi - length);
  return { start: from, end: from + length };
}

/** Milliseconds are as fine as a cut goes; more digits are float noise. */
const round = (seconds: number): number => Math.round(seconds * 1000) / 1000;

function piece(videoId: string, start: number, end: number): ClipPieceRecord {
  return { videoId, startSeconds: round(start), endSeconds: round(end) };
}

/** A title from the index's text: its first sentence, shortened; else where the moment is. */
export function titleFor(candidate: MomentCandidate): string {
  if (candidate.title !== undefined) return candidate.title;
  const sentence =
    candidate.text
      .replace(/\s+/g, ' ')
      .trim()
      .split(/(?<=[.!?])\s/)[0] ?? '';
  if (sentence !== '') return sentence.length <= 80 ? sentence : `${sentence.slice(0, 77).trimEnd()}...`;
  return `Moment at ${formatClock(candidate.startSeconds)}`;
}

export function formatClock(seconds: number): string {
  const whole = Math.max(0, Math.floor(seconds));
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, '0')}`;
}

/**
 * Picks the outputs from ranked candidates, inside each video's allowed range and the duration bounds:
 * - `moments`: one output per candidate, widened or narrowed around its middle to [min, max] seconds, none
 *   overlapping another, up to `num_generations`;
 * - `compilation`: per generation, the best unused candidates (each at most what is left of `max`) until the
 *   total reaches `max` or MAX_COMPILATION_PIECES; a total under `min` is made up by widening the pieces.
 *   Pieces play in time order.
 * Returns fewer outputs than asked when the videos hold fewer distinct moments; none when no allowed range
 * can hold `min` seconds.
 */
export function planMoments(
  candidates: readonly MomentCandidate[],
  bounds: ReadonlyMap<string, VideoBounds>,
  generation: ClipRequest['generation'],
): ClipMomentRecord[] {
  const { minDurationSeconds: min, maxDurationSeconds: max } = generation;
  const usable = candidates
    .map((candidate) => {
      const video = bounds.get(candidate.videoId);
      if (video === undefined) return undefined;
      const range = allowedRange(video, generation);
      const start = Math.max(candidate.startSeconds, range.lo);
      const end = Math.min(candidate.endSeconds, range.hi);
      return end > start ? { candidate, range, start, end } : undefined;
    })
    .filter((entry) => entry !== undefined);

  const taken: ClipPieceRecord[] = [];
  const outputs: ClipMomentRecord[] = [];
  if (generation.template === 'moments') {
    for (const { candidate, range, start, end } of usable) {
      if (outputs.length >= generation.numGenerations) break;
      if (range.hi - range.lo < min) continue;
      const length = Math.min(max, Math.max(min, end - start), range.hi - range.lo);
      const fitted = fitAround(start, end, length, range);
      const chosen = piece(candidate.videoId, fitted.start, fitted.end);
      if (taken.some((other) => overlaps(other, chosen))) continue;
      taken.push(chosen);
      outputs.push({ title: titleFor(candidate), pieces: [chosen] });
    }
    return outputs;
  }

  const used = new Set<number>();
  for (let generationIndex = 0; generationIndex < generation.numGenerations; generationIndex++) {
    const pieces: Array<{ piece: ClipPieceRecord; range: Range }> = [];
    let total = 0;
    let title: string | undefined;
    for (const [index, { candidate, range, start, end }] of usable.entries()) {
      if (total >= max - 0.001 || pieces.length >= MAX_COMPILATION_PIECES) break;
      if (used.has(index)) continue;
      const length = Math.min(end - start, max - total);
      const fitted = fitAround(start, end, length, range);
      const chosen = piece(candidate.videoId, fitted.start, fitted.end);
      if (chosen.endSeconds <= chosen.startSeconds || taken.some((other) => overlaps(other, chosen))) continue;
      used.add(index);
      taken.push(chosen);
      pieces.push({ piece: chosen, range });
      total += chosen.endSeconds - chosen.startSeconds;
      title ??= titleFor(candidate);
    }
    if (pieces.length === 0) break;
    // Too short: widen each piece into free time around it until the total reaches min.
    for (const entry of pieces) {
      if (total >= min) break;
      const others = taken.filter((other) => other !== entry.piece);
      const grown = growPiece(entry.piece, min - total, entry.range, others);
      taken[taken.indexOf(entry.piece)] = grown;
      total += grown.endSeconds - grown.startSeconds - (entry.piece.endSeconds - entry.piece.startSeconds);
      entry.piece = grown;
    }
    if (total < min - 0.001) {
      for (const entry of pieces) taken.splice(taken.indexOf(entry.piece), 1);
      break;
    }
    const ordered = pieces
      .map((entry) => entry.piece)
      .sort((a, b) => (a.videoId === b.videoId ? a.startSeconds - b.startSeconds : a.videoId < b.videoId ? -1 : 1));
    outputs.push({ title: title ?? 'Compilation', pieces: ordered });
  }
  return outputs;
}

/** `target` seconds longer, taken after the piece then before it, without entering `others` or leaving `range`. */
function growPiece(target: ClipPieceRecord, extra: number, range: Range, others: readonly ClipPieceRecord[]): ClipPieceRecord {
  const sameVideo = others.filter((other) => other.videoId === target.videoId);
  const limitAfter = Math.min(
    range.hi,
    ...sameVideo.filter((other) => other.startSeconds >= target.endSeconds).map((other) => other.startSeconds),
  );
  const limitBefore = Math.max(
    range.lo,
    ...sameVideo.filter((other) => other.endSeconds <= target.startSeconds).map((other) => other.endSeconds),
  );
  const after = Math.min(extra, Math.max(0, limitAfter - target.endSeconds));
  const before = Math.min(extra - after, Math.max(0, target.startSeconds - limitBefore));
  return piece(target.videoId, target.startSeconds - before, target.endSeconds + after);
}
