import type { SegmentSearchStore } from '../store/segment-search.ts';
import { fuzzyRelevance, queryWords, toTrigramQuery, toWordQuery, wordCoverage } from './text-match.ts';
import type { RetrievedSegment, SegmentRetriever } from './video-search.ts';

/** Name of the exact-word retriever, as the `X-Ocular-Retrievers` header lists it. */
export const LEXICAL_RETRIEVER = 'lexical';
/** Name of the typo-tolerant retriever. */
export const TRIGRAM_RETRIEVER = 'trigram';

/**
 * Trigram candidates judged word by word. Fewer than the word index's: each is checked with an edit-distance
 * pass, and a typo rarely leaves the right segment far down a trigram ranking.
 */
const TRIGRAM_CANDIDATES = 200;
/** A trigram candidate must hold at least this share of the query (fuzzily) to be listed at all. */
const MIN_FUZZY_RELEVANCE = 0.5;

/** Higher relevance first, then better bm25 (lower), then older rows, so equal inputs always rank the same. */
function byRelevance(a: RetrievedSegment & { bm25: number }, b: RetrievedSegment & { bm25: number }): number {
  return b.relevance - a.relevance || a.bm25 - b.bm25 || a.segmentId - b.segmentId;
}

/**
 * BM25 over the word index (caption, on-screen text, object and label names, transcript): segments holding
 * more of the query's words first (the last word may be cut short), bm25 among equals. Relevance is the share
 * of the query's words found.
 */
export function createLexicalRetriever(store: SegmentSearchStore): SegmentRetriever {
  return {
    name: LEXICAL_RETRIEVER,
    async retrieve({ text, scope, limit }) {
      const words = queryWords(text);
      const query = toWordQuery(words);
      if (query === undefined) return [];
      return store
        .matchWords(scope, query, limit)
        .map((match) => ({
          segmentId: match.segmentId,
          score: -match.bm25,
          bm25: match.bm25,
          relevance: wordCoverage(words, match.text),
        }))
        .sort(byRelevance)
        .map(({ bm25: _bm25, ...hit }) => hit);
    },
  };
}

/**
 * Typo- and OCR-noise-tolerant matching: the query's character trigrams against the trigram index, then each
 * candidate judged word by word with an edit-distance allowance (`falcn` finds FALCON, `quartz falc` finds
 * QUARTZ FALCON, `QUARTZFALC0N` read off the screen is still found). It runs only when the word index found no
 * segment holding the whole query, so exact queries do not pay for it.
 */
export function createTrigramRetriever(store: SegmentSearchStore): SegmentRetriever {
  return {
    name: TRIGRAM_RETRIEVER,
    shouldRun: (earlier) => !(earlier.get(LEXICAL_RETRIEVER) ?? []).some((hit) => hit.relevance >= 1),
    async retrieve({ text, scope, limit }) {
      const words = queryWords(text);
      const query = toTrigramQuery(words);
      if (query === undefined) return [];
      return store
        .matchTrigrams(scope, query, Math.min(limit, TRIGRAM_CANDIDATES))
        .map((match) => ({
          segmentId: match.segmentId,
          score: -match.bm25,
          bm25: match.bm25,
          relevance: fuzzyRelevance(words, match.text),
        }))
        .filter((hit) => hit.relevance >= MIN_FUZZY_RELEVANCE)
        .sort(byRelevance)
        .map(({ bm25: _bm25, ...hit }) => hit);
    },
  };
}
