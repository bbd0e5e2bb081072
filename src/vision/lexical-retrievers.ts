import type { SegmentSearchStore, WordTerm } from '../store/segment-search.ts';
import { createFuzzyJudge, prepareWords, queryWords, toTrigramPieces, toWordTerms, wordCoverage, type Words } from './text-match.ts';
import type { SegmentRetriever } from './video-search.ts';

/** The lexical retriever's name, as the `X-Ocular-Retrievers` header lists it. */
export const LEXICAL_RETRIEVER = 'lexical';

/**
 * Candidates judged word by word with edit distances when the exact words fall short: those of the trigram
 * index, and the best of the word index's. A typo rarely leaves the right segment far down either ranking.
 */
const FUZZY_CANDIDATES = 200;
/** A segment only the trigram index found must hold at least this share of the query (fuzzily) to be listed. */
const MIN_FUZZY_RELEVANCE = 0.5;
/**
 * Longer queries are not looked up in the trigram index: they are prose, whose other words find the segment
 * (and its misspelt word is then judged fuzzily), and their pieces would match most of the library.
 */
const MAX_TRIGRAM_WORDS = 4;

/**
 * A word in at least this share of the library's segments (and in at least COMMON_MIN_SEGMENTS) is common: like
 * a stopword, it does not bring in candidates by itself when the query has rarer words, though it still counts
 * in every candidate's relevance. Its bm25 weight is near nothing anyway, and ranking every segment holding
 * "the" is most of what such a query would cost.
 */
const COMMON_SHARE = 0.05;
const COMMON_MIN_SEGMENTS = 200;

/** The word-index query: the query's words that occur but are not common, else all of them. */
async function anchoredWordQuery(store: SegmentSearchStore, words: readonly string[]): Promise<WordTerm[]> {
  const terms = toWordTerms(words);
  if (terms.length > 1) {
    const common = Math.max(COMMON_MIN_SEGMENTS, Math.ceil((await store.segmentCount()) * COMMON_SHARE));
    const counts = await Promise.all(terms.map((term) => store.countWordMatches(term, common)));
    const anchors = terms.filter((_, index) => counts[index]! > 0 && counts[index]! < common);
    if (anchors.length > 0) return anchors;
  }
  return terms;
}

interface Candidate {
  segmentId: number;
  relevance: number;
  /** Rank in the word index (lower is better); undefined for a segment only the trigram index found. */
  wordRank: number | undefined;
  /** Rank in the trigram index, for a segment only it found (0 otherwise). */
  trigramRank: number;
  words: Words;
}

/** Higher relevance first; among equals, word-index matches by rank, then trigram-only ones, then older rows. */
function byRelevance(a: Candidate, b: Candidate): number {
  return (
    b.relevance - a.relevance ||
    (a.wordRank ?? Number.POSITIVE_INFINITY) - (b.wordRank ?? Number.POSITIVE_INFINITY) ||
    a.trigramRank - b.trigramRank ||
    a.segmentId - b.segmentId
  );
}

/**
 * Lexical search over segment text (caption, on-screen text, object and label names, transcript), tolerant of
 * typos and OCR noise. First the database's full-text rank over the word index (segments holding any of the query's words, its common
 * ones aside when it has others): relevance is the share of the query's words a segment holds (the last word
 * may be cut short: `quartz falc`). When no segment holds them all (a typo, or OCR that
 * misread, merged or split the words on screen), the best word matches, and for a short query the segments
 * the trigram index finds for its words (text-match.ts, toTrigramPieces), are judged word by word with an edit
 * allowance (`falcn` and `qaurtz` find QUARTZ FALCON, `quartz falcon` finds QUARTZFALC0N); a segment's
 * relevance is then the better of the two judgments. Exact queries never pay for that pass.
 */
export function createLexicalRetriever(store: SegmentSearchStore): SegmentRetriever {
  return {
    name: LEXICAL_RETRIEVER,
    async retrieve({ text, scope, limit }) {
      const words = queryWords(text);
      if (words.length === 0) return [];
      const wordQuery = await anchoredWordQuery(store, words);
      const candidates = new Map<number, Candidate>();
      // Every match of a one-word query holds that word (or begins with it): no text to read and judge.
      const single = words.length === 1;
      for (const match of await store.matchWords(scope, wordQuery, limit, !single)) {
        const matched = prepareWords(match.text);
        candidates.set(match.segmentId, {
          segmentId: match.segmentId,
          relevance: single ? 1 : wordCoverage(words, matched),
          wordRank: match.rank,
          trigramRank: 0,
          words: matched,
        });
      }
      const complete = [...candidates.values()].some((candidate) => candidate.relevance >= 1);
      if (!complete) {
        const judge = createFuzzyJudge(words);
        for (const candidate of [...candidates.values()].sort(byRelevance).slice(0, FUZZY_CANDIDATES)) {
          candidate.relevance = Math.max(candidate.relevance, judge(candidate.words));
        }
        const pieces = words.length > MAX_TRIGRAM_WORDS ? undefined : toTrigramPieces(words);
        const trigramMatches = pieces === undefined ? [] : await store.matchTrigrams(scope, pieces, Math.min(limit, FUZZY_CANDIDATES));
        for (const match of trigramMatches) {
          if (candidates.has(match.segmentId)) continue;
          const matched = prepareWords(match.text);
          const relevance = judge(matched);
          if (relevance < MIN_FUZZY_RELEVANCE) continue;
          candidates.set(match.segmentId, {
            segmentId: match.segmentId,
            relevance,
            wordRank: undefined,
            trigramRank: match.rank,
            words: matched,
          });
        }
      }
      return [...candidates.values()]
        .filter((candidate) => candidate.relevance > 0)
        .sort(byRelevance)
        .slice(0, limit)
        .map((candidate) => ({ segmentId: candidate.segmentId, score: candidate.relevance, relevance: candidate.relevance }));
    },
  };
}
