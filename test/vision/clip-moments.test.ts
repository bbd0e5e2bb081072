import { describe, expect, it } from 'vitest';
import type { ClipRequest } from '../../src/store/clip-store.ts';
import { planMoments, titleFor, type MomentCandidate, type VideoBounds } from '../../src/vision/clip-moments.ts';
import { buildCues } from '../../src/vision/clip-job.ts';
import type { SegmentRecord } from '../../src/store/video-store.ts';

const generation = (overrides: Partial<ClipRequest['generation']> = {}): ClipRequest['generation'] => ({
  template: 'moments',
  numGenerations: 1,
  minDurationSeconds: 0,
  maxDurationSeconds: 30,
  sourceStartSeconds: null,
  sourceEndSeconds: null,
  ...overrides,
});

const bounds = new Map<string, VideoBounds>([
  ['a', { videoId: 'a', durationSeconds: 60 }],
  ['b', { videoId: 'b', durationSeconds: 20 }],
]);

const candidate = (videoId: string, startSeconds: number, endSeconds: number, text = ''): MomentCandidate => ({
  videoId,
  startSeconds,
  endSeconds,
  text,
});

const length = (piece: { startSeconds: number; endSeconds: number }): number => piece.endSeconds - piece.startSeconds;

describe('planMoments', () => {
  it('widens short moments and narrows long ones around their middle', () => {
    const plan = planMoments(
      [candidate('a', 10, 12), candidate('a', 30, 58), candidate('b', 0, 1)],
      bounds,
      generation({ numGenerations: 3, minDurationSeconds: 6, maxDurationSeconds: 10 }),
    );
    expect(plan.map((moment) => moment.pieces)).toEqual([
      [{ videoId: 'a', startSeconds: 8, endSeconds: 14 }],
      [{ videoId: 'a', startSeconds: 39, endSeconds: 49 }],
      // At the start of the video: moved right to fit inside it.
      [{ videoId: 'b', startSeconds: 0, endSeconds: 6 }],
    ]);
  });

  it('keeps to the source range and skips overlapping moments', () => {
    const plan = planMoments(
      [candidate('a', 0, 10), candidate('a', 20, 30), candidate('a', 24, 26), candidate('a', 40, 50)],
      bounds,
      generation({ numGenerations: 3, minDurationSeconds: 4, maxDurationSeconds: 8, sourceStartSeconds: 18, sourceEndSeconds: 45 }),
    );
    expect(plan.map((moment) => moment.pieces[0])).toEqual([
      { videoId: 'a', startSeconds: 21, endSeconds: 29 },
      { videoId: 'a', startSeconds: 40, endSeconds: 45 },
    ]);
    for (const moment of plan) expect(length(moment.pieces[0]!)).toBeGreaterThanOrEqual(4);
  });

  it('makes nothing when the source range is shorter than the minimum', () => {
    expect(planMoments([candidate('b', 0, 20)], bounds, generation({ minDurationSeconds: 10, sourceStartSeconds: 15 }))).toEqual([]);
  });

  it('fills a compilation up to the maximum with distinct pieces in time order, one file per generation', () => {
    const plan = planMoments(
      [candidate('a', 40, 45, 'best'), candidate('a', 5, 10), candidate('b', 0, 5), candidate('a', 20, 25), candidate('a', 50, 55)],
      bounds,
      generation({ template: 'compilation', numGenerations: 2, minDurationSeconds: 8, maxDurationSeconds: 12 }),
    );
    expect(plan).toHaveLength(2);
    const [first, second] = plan;
    expect(first!.title).toBe('best');
    expect(first!.pieces).toEqual([
      { videoId: 'a', startSeconds: 5, endSeconds: 10 },
      { videoId: 'a', startSeconds: 40, endSeconds: 45 },
      { videoId: 'b', startSeconds: 1.5, endSeconds: 3.5 },
    ]);
    expect(first!.pieces.reduce((sum, piece) => sum + length(piece), 0)).toBeCloseTo(12, 6);
    // The second compilation uses what the first left, widened to reach the minimum.
    const total = second!.pieces.reduce((sum, piece) => sum + length(piece), 0);
    expect(total).toBeGreaterThanOrEqual(8);
    expect(total).toBeLessThanOrEqual(12);
    for (const piece of second!.pieces) {
      for (const other of first!.pieces) {
        if (piece.videoId === other.videoId)
          expect(piece.startSeconds >= other.endSeconds || piece.endSeconds <= other.startSeconds).toBe(true);
      }
    }
  });

  it('titles a moment from its text, else from its time', () => {
    expect(titleFor(candidate('a', 0, 1, 'A red balloon rises. Then it pops.'))).toBe('A red balloon rises.');
    expect(titleFor(candidate('a', 75, 80))).toBe('Moment at 1:15');
    expect(titleFor({ ...candidate('a', 0, 1, 'x'), title: 'Chosen' })).toBe('Chosen');
  });
});

describe('buildCues', () => {
  const segment = (startSeconds: number, endSeconds: number, transcript: string): SegmentRecord => ({
    videoId: 'a',
    seq: 0,
    startSeconds,
    endSeconds,
    keyframes: [],
    ocrText: '',
    objects: [],
    labels: [],
    transcript,
    speech: [],
    hasSpeech: null,
    caption: '',
    thumbnail: null,
  });

  it('spreads each transcript over its segment and shifts the lines onto the output timeline', () => {
    const words = Array.from({ length: 20 }, (_, index) => `w${index}`).join(' ');
    const cues = buildCues(
      [
        { videoId: 'a', startSeconds: 5, endSeconds: 10 },
        { videoId: 'a', startSeconds: 20, endSeconds: 22 },
      ],
      () => [segment(0, 10, words), segment(10, 20, ''), segment(20, 30, 'last words')],
    );
    expect(cues).toEqual([
      { startSeconds: 0, endSeconds: 5, text: words.split(' ').slice(10).join(' ') },
      { startSeconds: 5, endSeconds: 7, text: 'last words' },
    ]);
  });
});
