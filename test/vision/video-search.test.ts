import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { migrate } from '../../src/store/database.ts';
import { SegmentSearchStore } from '../../src/store/segment-search.ts';
import { openSqlDatabase, sqliteDatabase, type SqlDatabase } from '../../src/store/sql.ts';
import { VideoStore } from '../../src/store/video-store.ts';
import { createLexicalRetriever } from '../../src/vision/lexical-retrievers.ts';
import {
  editDistanceWithin,
  fuzzyRelevance,
  prepareWords,
  queryWords,
  toTrigramPieces,
  toWordTerms,
  wordCoverage,
} from '../../src/vision/text-match.ts';
import { CANDIDATES, fuseRankings, mergeNeighbours, VideoSearch, type SegmentRetriever } from '../../src/vision/video-search.ts';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../helpers/databases.ts';
import { insertIndexedVideo } from '../helpers/library-fixtures.ts';

describe('text matching', () => {
  it('counts edits to a prefix or to any run of the text, giving up past the limit', () => {
    expect(editDistanceWithin('falc', 'falcon', true, 0)).toBe(0);
    expect(editDistanceWithin('falcn', 'falcon', true, 1)).toBe(1);
    expect(editDistanceWithin('qaurtz', 'quartz', true, 1)).toBe(1); // a swap is one edit
    expect(editDistanceWithin('falcon', 'quartzfalcon', true, 1)).toBeUndefined();
    expect(editDistanceWithin('falcon', 'quartzfalcon', false, 0)).toBe(0);
    expect(editDistanceWithin('falcon', 'otter', false, 2)).toBeUndefined();
  });

  it('judges a segment by the share of the query it holds', () => {
    const text = 'On-screen text: QUARTZ FALCON\nperson';
    expect(wordCoverage(queryWords('Quartz Falcon'), prepareWords(text))).toBe(1);
    expect(wordCoverage(queryWords('quartz falc'), prepareWords(text))).toBe(1);
    expect(wordCoverage(queryWords('falc quartz'), prepareWords(text))).toBe(0.5); // only the last word may be cut short
    expect(wordCoverage(queryWords('quartz falcn'), prepareWords(text))).toBe(0.5);
    expect(fuzzyRelevance(queryWords('quartz falcon'), text)).toBe(1);
    expect(fuzzyRelevance(queryWords('quartz falcn'), text)).toBeCloseTo(0.9, 5);
    expect(fuzzyRelevance(queryWords('falcn'), text)).toBeCloseTo(0.8, 5);
    expect(fuzzyRelevance(queryWords('quartzfalcon'), text)).toBeGreaterThan(0.7); // OCR ran the words together
    expect(fuzzyRelevance(queryWords('falcon'), 'FAL CON')).toBeGreaterThan(0.7); // or split one
    expect(fuzzyRelevance(queryWords('cat'), 'a cut')).toBe(0); // short words must match exactly
    expect(fuzzyRelevance(queryWords('hello world'), text)).toBe(0);
    expect(fuzzyRelevance(queryWords('Café'), 'CAFE')).toBe(1);
  });

  it('builds full-text queries of plain words only, bounded in size', () => {
    expect(toWordTerms(queryWords('"quartz" NEAR(falc*'))).toEqual([
      { word: 'quartz', prefix: false },
      { word: 'near', prefix: false },
      { word: 'falc', prefix: true },
    ]);
    expect(toWordTerms(queryWords('?!'))).toEqual([]);
    expect(toTrigramPieces(queryWords('a falcn'))).toEqual(['fal', 'alc', 'lcn']);
    expect(toTrigramPieces(queryWords('ab'))).toBeUndefined();
    expect(queryWords('word '.repeat(10) + Array.from({ length: 40 }, (_, index) => `w${index}`).join(' '))).toHaveLength(32);
    // Words cut into distinct pieces (`000100` into `000` and `100`), more of them than are sent.
    const many = Array.from({ length: 40 }, (_, index) => `${String(index).padStart(3, '0')}${index + 100}`).join(' ');
    expect(toTrigramPieces(queryWords(many))).toHaveLength(48);
    expect(toTrigramPieces(queryWords('falcon qaurtzite'))).toEqual(['fal', 'con', 'qau', 'rtz', 'ite']);
  });
});

describe('fusion and merging', () => {
  it('scores 1 for first and complete in every ranking that found anything', () => {
    const fused = fuseRankings([
      {
        weight: 1,
        hits: [
          { segmentId: 1, score: 9, relevance: 1 },
          { segmentId: 2, score: 8, relevance: 0.5 },
        ],
      },
      { weight: 1, hits: [] },
    ]);
    expect(fused.get(1)).toBe(1);
    expect(fused.get(2)).toBeCloseTo((0.5 * 61) / 62, 10);

    const both = fuseRankings([
      { weight: 1, hits: [{ segmentId: 1, score: 1, relevance: 1 }] },
      {
        weight: 3,
        hits: [
          { segmentId: 2, score: 1, relevance: 1 },
          { segmentId: 1, score: 1, relevance: 1 },
        ],
      },
    ]);
    // Segment 2 is first in the heavier ranking only; segment 1 is in both.
    expect(both.get(2)).toBeCloseTo(3 / 4, 10);
    expect(both.get(1)).toBeCloseTo((1 / 61 + 3 / 62) / (4 / 61), 10);
    expect(fuseRankings([])).toEqual(new Map());
  });

  it('merges touching and overlapping segments of one video that score alike, keeping the best score and its segment', () => {
    const span = (segmentId: number, videoId: string, seq: number, startSeconds: number, endSeconds: number) => ({
      segmentId,
      videoId,
      seq,
      startSeconds,
      endSeconds,
    });
    const runs = mergeNeighbours(
      [
        span(1, 'a', 0, 0, 5),
        span(2, 'a', 1, 5, 10),
        span(5, 'a', 2, 9, 12),
        span(3, 'a', 3, 15, 20),
        span(4, 'b', 1, 5, 10),
        span(6, 'a', 4, 20, 25),
        span(7, 'a', 5, 25, 30),
      ],
      new Map([
        [1, 0.8],
        [2, 0.9],
        [5, 0.85],
        [3, 0.95],
        [4, 0.5],
        [6, 0.3], // touches 15-20 but matches far worse: a range of its own
        [7, 0.3],
      ]),
    );
    expect(runs.map((run) => [run.videoId, run.startSeconds, run.endSeconds, run.score, run.bestSeq])).toEqual([
      ['a', 15, 20, 0.95, 3],
      ['a', 0, 12, 0.9, 1],
      ['b', 5, 10, 0.5, 1],
      ['a', 20, 30, 0.3, 4],
    ]);
  });
});

describe.each(DIALECTS)('segment search on %s', (dialect) => {
  let target: TestDatabase;
  let database: SqlDatabase;
  let videos: VideoStore;
  let segments: SegmentSearchStore;

  beforeEach(async () => {
    target = await createTestDatabase(dialect);
    database = await target.open();
    videos = new VideoStore(database);
    segments = new SegmentSearchStore(database);
  });

  afterEach(async () => {
    await target.drop();
    rmSync(target.dataDir, { recursive: true, force: true });
  });

  /** On SQLite in one transaction (hundreds of rows): the store's queries run on the same handle. */
  async function addVideo(owner: string, texts: readonly string[]): Promise<string> {
    const add = () =>
      insertIndexedVideo(
        videos,
        owner,
        texts.map((ocrText) => ({ ocrText })),
        { name: 'v' },
      );
    const handle = database.sqlite;
    if (handle === undefined) return add();
    handle.exec('BEGIN');
    try {
      const id = await add();
      handle.exec('COMMIT');
      return id;
    } catch (error) {
      handle.exec('ROLLBACK');
      throw error;
    }
  }

  it('applies the owner inside the query, so other owners’ matches never use up the candidate cap', async () => {
    await addVideo(
      'crowd',
      Array.from({ length: CANDIDATES + 100 }, () => 'AMBER FALCON'),
    );
    const mine = await addVideo('me', ['AMBER FALCON']);
    const amber = [{ word: 'amber', prefix: false }];
    for (const match of [await segments.matchWords({ owner: 'me' }, amber, 5), await segments.matchTrigrams({ owner: 'me' }, ['amb'], 5)]) {
      expect(match).toHaveLength(1);
      const spans = await segments.spans(
        'me',
        match.map((hit) => hit.segmentId),
      );
      expect(spans[0]!.videoId).toBe(mine);
    }
    expect(await segments.matchWords({ owner: 'nobody' }, amber, 5)).toEqual([]);
    // Lookups by id are owner-checked too.
    const theirs = (await segments.matchWords({ owner: 'crowd' }, amber, 1))[0]!.segmentId;
    expect(await segments.spans('me', [theirs])).toEqual([]);
    expect(await segments.details('me', [theirs])).toEqual([]);
    expect(await segments.inScope({ owner: 'me' }, [theirs])).toEqual(new Set());
  });

  it('keeps the trigram index in step with segments written, rewritten and deleted', async () => {
    const id = await addVideo('me', ['COBALT HERON']);
    expect(await segments.matchTrigrams({ owner: 'me' }, ['balt'], 10)).toHaveLength(1);
    await videos.saveSegment({ ...(await videos.listSegments(id))[0]!, ocrText: 'SCARLET IBIS' });
    expect(await segments.matchTrigrams({ owner: 'me' }, ['balt'], 10)).toEqual([]);
    expect(await segments.matchTrigrams({ owner: 'me' }, ['rlet'], 10)).toHaveLength(1);
    // The segment holding more of the pieces ranks first.
    const other = await addVideo('me', ['SCARLET OTTER']);
    const both = await segments.matchTrigrams({ owner: 'me' }, ['rlet', 'ibis'], 10);
    expect((await segments.spans('me', [both[0]!.segmentId]))[0]!.videoId).toBe(id);
    expect(both).toHaveLength(2);
    await videos.deleteVideo('me', id);
    expect(await segments.matchTrigrams({ owner: 'me' }, ['rlet', 'ibis'], 10)).toHaveLength(1);
    await videos.deleteVideo('me', other);
    expect(await segments.matchTrigrams({ owner: 'me' }, ['rlet'], 10)).toEqual([]);
  });

  it.skipIf(dialect !== 'sqlite')('fills the trigram index from segments indexed before it existed', async () => {
    // A database as the Ocular before the trigram index left it (schema version 3), holding an indexed segment.
    const old = join(target.dataDir, 'old');
    mkdirSync(old);
    const db = new Database(join(old, 'ocular.db'));
    migrate(db, 3);
    const legacy = sqliteDatabase(db);
    await insertIndexedVideo(new VideoStore(legacy), 'me', [{ ocrText: 'VIOLET CONDOR' }]);
    expect(db.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'video_segments_trigram'").pluck().get()).toBe(0);
    await legacy.close();
    const upgraded = await openSqlDatabase({ database: 'sqlite' }, { dataDir: old });
    try {
      expect(upgraded.sqlite!.pragma('user_version', { simple: true })).toBeGreaterThanOrEqual(4);
      expect(await new SegmentSearchStore(upgraded).matchTrigrams({ owner: 'me' }, ['ondo'], 10)).toHaveLength(1);
    } finally {
      await upgraded.close();
    }
  });

  it('filters by video, group and absolute time inside the query, and takes any text as words', async () => {
    const early = await addVideo('me', ['JADE ORCHID', 'JADE ORCHID']);
    const late = await addVideo('me', ['JADE ORCHID']);
    const { db } = database;
    await db.updateTable('videos').set({ start_timestamp: '2025-04-12T10:00:00Z' }).where('id', '=', early).execute();
    await db.updateTable('videos').set({ start_timestamp: '2025-04-12T12:00:00+02:00' }).where('id', '=', late).execute();
    const jade = [{ word: 'jade', prefix: false }];
    const found = async (scope: Omit<Parameters<SegmentSearchStore['matchWords']>[0], 'owner'>) => {
      const matches = await segments.matchWords({ owner: 'me', ...scope }, jade, 10);
      const spans = await segments.spans(
        'me',
        matches.map((match) => match.segmentId),
      );
      return spans.map((span) => `${span.videoId === early ? 'early' : 'late'}:${span.seq}`).sort();
    };
    expect(await found({})).toEqual(['early:0', 'early:1', 'late:0']);
    expect(await found({ videoIds: [late] })).toEqual(['late:0']);
    expect(await found({ videoIds: [] })).toEqual([]);
    expect(await found({ groupIds: ['default'] })).toHaveLength(3);
    expect(await found({ groupIds: ['elsewhere'] })).toEqual([]);
    // Segments are 5 s long: the early video's second one runs 10:00:05-10:00:10 (UTC); the late video starts at 10:00 UTC too.
    expect(await found({ from: '2025-04-12T10:00:07Z' })).toEqual(['early:1']);
    expect(await found({ to: '2025-04-12T10:00:04' })).toEqual(['early:0', 'late:0']); // no offset: UTC
    expect(await found({ from: '2025-04-12T12:00:00+02:00', to: '2025-04-12T12:00:01+02:00' })).toEqual(['early:0', 'late:0']);
    expect(await found({ from: '2030-01-01T00:00:00Z' })).toEqual([]);
    // A prefix term finds longer words; every term is plain text, never query syntax.
    expect(await segments.matchWords({ owner: 'me' }, [{ word: 'orch', prefix: true }], 10)).toHaveLength(3);
    expect(await segments.countWordMatches({ word: 'jade', prefix: false }, 2)).toBe(2);
    expect(await segments.countWordMatches({ word: 'nothing', prefix: false }, 10)).toBe(0);
    expect(await segments.segmentCount()).toBe(3);
  });

  it('matches without regard to case or diacritics, as the query words are folded', async () => {
    const id = await addVideo('me', ['Crème BRÛLÉE au CAFÉ']);
    for (const word of ['creme', 'brulee', 'cafe']) {
      const found = await segments.matchWords({ owner: 'me' }, [{ word, prefix: false }], 5);
      expect(
        (
          await segments.spans(
            'me',
            found.map((match) => match.segmentId),
          )
        )[0]?.videoId,
        word,
      ).toBe(id);
    }
    expect(await segments.matchTrigrams({ owner: 'me' }, ['rule'], 5)).toHaveLength(1);
    const retriever = createLexicalRetriever(segments);
    const hits = await retriever.retrieve({ text: 'Creme brulee', scope: { owner: 'me' }, limit: 5, signal: new AbortController().signal });
    expect(hits.map((hit) => hit.relevance)).toEqual([1]);
  });

  it('ranks segments holding the whole query first, OCR slips and typos included', async () => {
    await addVideo('me', ['SCARLET BRONZE PELICAN', 'nothing', 'SCARLETVELVET PELICAN', 'nothing', 'VELVET OTTER']);
    const retriever = createLexicalRetriever(segments);
    const rank = async (text: string) => {
      const hits = await retriever.retrieve({ text, scope: { owner: 'me' }, limit: 10, signal: new AbortController().signal });
      const details = await segments.details(
        'me',
        hits.map((hit) => hit.segmentId),
      );
      return details.map((detail) => [detail.seq, hits.find((hit) => hit.segmentId === detail.segmentId)!.relevance]);
    };
    const ordered = async (text: string) => (await rank(text)).sort((a, b) => b[1]! - a[1]!).map(([seq]) => seq);
    expect(await ordered('scarlet velvet pelican')).toEqual([2, 0, 4]);
    expect(await ordered('scarlet velvet pelicna')).toEqual([2, 0, 4]);
    // A segment holding the whole query exactly answers it; the typo-tolerant pass does not run.
    expect(await ordered('velvet ott')).toEqual([4]);
    expect((await rank('bronze pelican')).map(([seq, relevance]) => [seq, relevance])).toEqual([
      [0, 1],
      [2, 0.5],
    ]);
    expect(await rank('zebra')).toEqual([]);
  });

  it('lets rarer words bring in the candidates when a query mixes them with words found everywhere', async () => {
    await addVideo('me', [...Array.from({ length: 300 }, () => 'a PERSON walking'), 'FALCON', 'PERSON and FALCON']);
    const retriever = createLexicalRetriever(segments);
    const retrieve = (text: string) =>
      retriever.retrieve({ text, scope: { owner: 'me' }, limit: 50, signal: new AbortController().signal });
    const mixed = await retrieve('person falcon');
    const details = await segments.details(
      'me',
      mixed.map((hit) => hit.segmentId),
    );
    expect(details.map((detail) => detail.seq).sort()).toEqual([300, 301]);
    expect(mixed.map((hit) => hit.relevance)).toEqual([1, 0.5]);
    // Words found everywhere, and nothing rarer: they are searched as they are.
    expect(await retrieve('person walking')).toHaveLength(50);
    expect((await retrieve('person')).every((hit) => hit.relevance === 1)).toBe(true);
  });

  it('runs one more retriever as one more ranking in the fusion (the slot semantic search plugs into)', async () => {
    const id = await addVideo('me', ['GRANITE LYNX', 'nothing', 'nothing', 'a picture of a cat']);
    const picture = (await segments.matchWords({ owner: 'me' }, [{ word: 'cat', prefix: false }], 1))[0]!.segmentId;
    const calls: string[] = [];
    const semantic: SegmentRetriever = {
      name: 'semantic',
      async retrieve({ scope }) {
        calls.push(scope.owner);
        return [{ segmentId: picture, score: 0.8, relevance: 0.8 }];
      },
    };
    const search = new VideoSearch({
      segments,
      videos,
      retrievers: [createLexicalRetriever(segments), semantic],
    });
    const request = { owner: 'me', maxResults: 10, offset: 0 };
    const exact = await search.search({ ...request, query: 'granite lynx' }, new AbortController().signal);
    expect(exact.retrievers).toEqual(['lexical', 'semantic']);
    expect(exact.hits.map((hit) => [hit.videoId, hit.startSeconds])).toEqual([
      [id, 0],
      [id, 15],
    ]);
    // Found by the word index only, or by the other ranking only: each half of the best possible.
    expect(exact.hits[0]!.score).toBeCloseTo(0.5, 10);
    expect(exact.hits[1]!.score).toBeCloseTo(0.4, 10);
    expect(calls).toEqual(['me']);

    const aborted = new AbortController();
    aborted.abort(new Error('gone'));
    await expect(search.search({ ...request, query: 'granite' }, aborted.signal)).rejects.toThrow('gone');
  });
});
