// How well a segment's text matches a query, judged word by word. The full-text indexes find candidates; these
// functions give each one a relevance in 0..1 on an absolute scale (the share of the query found in it), which
// is what lets fused search scores mean something for `threshold`.
import type { WordTerm } from '../store/segment-search.ts';

/** Words a query is cut to: longer queries are prose, and the first words carry them. */
export const MAX_QUERY_WORDS = 32;
/** Characters of a word that count (a longer run is noise or a URL). */
const MAX_WORD_LENGTH = 32;
/** Substrings sent to the trigram index, so a query stays one bounded lookup. */
export const MAX_QUERY_PIECES = 48;
/** A word found only inside a longer word, or split in two (OCR merged or split the text), counts this much. */
const JOINED_CREDIT = 0.8;

/** A text cut into words: in order (to see words OCR split in two), and as a set. */
export interface Words {
  list: readonly string[];
  set: ReadonlySet<string>;
}

/**
 * Lower-cased words with diacritics removed: runs of letters and digits, as the FTS5 unicode61 tokenizer
 * (`remove_diacritics 2`) cuts them, so what the word index matched and what is judged here agree.
 */
export function toWords(text: string): string[] {
  // Decomposing is only needed for text with accents, and costs more than the rest on long ASCII text.
  const plain = /[^\x00-\x7f]/.test(text) ? text.normalize('NFKD').replace(/\p{M}/gu, '') : text;
  const words = plain.toLowerCase().match(/[\p{L}\p{N}]+/gu);
  return words === null ? [] : words.map((word) => (word.length > MAX_WORD_LENGTH ? word.slice(0, MAX_WORD_LENGTH) : word));
}

export function prepareWords(text: string): Words {
  const list = toWords(text);
  return { list, set: new Set(list) };
}

/** The query's distinct words, in order, at most MAX_QUERY_WORDS. */
export function queryWords(text: string): string[] {
  return [...new Set(toWords(text))].slice(0, MAX_QUERY_WORDS);
}

/**
 * The word-index query for a text's words: any of them (the rank puts segments holding more of them, and rarer
 * ones, first), the last one also as a prefix, since a query typed or cut short ends mid-word (`quartz falc`).
 */
export function toWordTerms(words: readonly string[]): WordTerm[] {
  return words.map((word, index) => ({ word, prefix: index === words.length - 1 }));
}

/** Edits a word of this length may differ by and still count as found (the usual fuzzy-search steps). */
function allowedEdits(length: number): number {
  return length <= 3 ? 0 : length <= 7 ? 1 : 2;
}

/**
 * The substrings to look up in the trigram index to find every segment holding a query word within its edit
 * allowance: each word is cut into pieces of at least three characters, one more piece than edits allowed
 * (two more where the word is long enough, so a swap of two letters is covered too), and a text within the
 * allowance holds at least one piece unchanged. Words of four or five letters are too short to cut and send
 * their trigrams instead; words of two letters or fewer cannot be looked up by trigram at all.
 */
export function toTrigramPieces(words: readonly string[]): string[] | undefined {
  const pieces = new Set<string>();
  for (const word of words) {
    const characters = Array.from(word);
    const length = characters.length;
    if (length < 3) continue;
    const count = Math.min(allowedEdits(length) + 2, Math.floor(length / 3));
    if (allowedEdits(length) === 0) {
      pieces.add(word);
    } else if (count < 2) {
      for (let index = 0; index + 3 <= length; index++) pieces.add(characters.slice(index, index + 3).join(''));
    } else {
      for (let piece = 0; piece < count; piece++) {
        pieces.add(characters.slice(Math.round((piece * length) / count), Math.round(((piece + 1) * length) / count)).join(''));
      }
    }
  }
  if (pieces.size === 0) return undefined;
  return [...pieces].slice(0, MAX_QUERY_PIECES);
}

/**
 * The share of the query's words that the text holds exactly (the last word may also begin a longer word), in
 * 0..1: the relevance of a word-index match.
 */
export function wordCoverage(words: readonly string[], text: Words): number {
  if (words.length === 0) return 0;
  const last = words.length - 1;
  let found = 0;
  for (const [index, word] of words.entries()) {
    if (text.set.has(word)) found += 1;
    else if (index === last && text.list.some((token) => token.startsWith(word))) found += 1;
  }
  return found / words.length;
}

/**
 * The fewest edits (insert, delete, substitute, swap two neighbours) turning `pattern` into a prefix of `text`
 * (`anchored`) or into any run inside it; undefined when that takes more than `limit`.
 */
export function editDistanceWithin(pattern: string, text: string, anchored: boolean, limit: number): number | undefined {
  const m = pattern.length;
  const n = text.length;
  if (m === 0) return 0;
  // Rows i-2, i-1 and i of the edit table over text positions 0..n; row 0 is free to start anywhere unless anchored.
  let before = new Array<number>(n + 1).fill(0);
  let previous = new Array<number>(n + 1);
  for (let j = 0; j <= n; j++) previous[j] = anchored ? j : 0;
  let current = new Array<number>(n + 1);
  for (let i = 1; i <= m; i++) {
    current[0] = i;
    let rowBest = current[0];
    for (let j = 1; j <= n; j++) {
      const cost = pattern.charCodeAt(i - 1) === text.charCodeAt(j - 1) ? 0 : 1;
      let value = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
      if (i > 1 && j > 1 && pattern.charCodeAt(i - 1) === text.charCodeAt(j - 2) && pattern.charCodeAt(i - 2) === text.charCodeAt(j - 1)) {
        value = Math.min(value, before[j - 2]! + 1);
      }
      current[j] = value;
      if (value < rowBest) rowBest = value;
    }
    if (rowBest > limit) return undefined; // every later row is at least this
    [before, previous, current] = [previous, current, before];
  }
  let best = Number.POSITIVE_INFINITY;
  for (let j = 0; j <= n; j++) best = Math.min(best, previous[j]!);
  return best <= limit ? best : undefined;
}

/** How well `word` matches one token: 1 exact or as its start, less per edit; inside a longer token, less again. */
function tokenSimilarity(word: string, token: string, limit: number): number {
  if (limit === 0) return token.startsWith(word) ? 1 : token.includes(word) ? JOINED_CREDIT : 0;
  if (token.length < word.length - limit) return 0;
  const anchored = editDistanceWithin(word, token, true, limit);
  if (anchored !== undefined) return 1 - anchored / word.length;
  if (token.length <= word.length) return 0;
  const inside = editDistanceWithin(word, token, false, limit);
  return inside === undefined ? 0 : JOINED_CREDIT * (1 - inside / word.length);
}

/**
 * A judge of how well texts match one query: the mean over the query's words of how well each is found,
 * tolerating a typo or an OCR slip per few letters (one edit up to 7 letters, two beyond; none in words of
 * three or fewer), and words OCR ran together or split in two, for less. Returns 0..1, the relevance of a
 * trigram-index match. Token results are remembered across the texts judged, since segments of one library
 * share most of their words.
 */
export function createFuzzyJudge(words: readonly string[]): (text: Words) => number {
  const memo = words.map(() => new Map<string, number>());
  const limits = words.map((word) => allowedEdits(word.length));
  return (text) => {
    if (words.length === 0) return 0;
    let total = 0;
    for (const [index, word] of words.entries()) {
      if (text.set.has(word)) {
        total += 1;
        continue;
      }
      const limit = limits[index]!;
      const known = memo[index]!;
      let best = 0;
      for (const token of text.set) {
        let similarity = known.get(token);
        if (similarity === undefined) {
          similarity = tokenSimilarity(word, token, limit);
          known.set(token, similarity);
        }
        if (similarity > best) best = similarity;
      }
      // A word OCR split in two: two neighbours, each shorter than the word, about as long as it together.
      if (best < JOINED_CREDIT) {
        for (let position = 0; position + 1 < text.list.length; position++) {
          const first = text.list[position]!;
          const second = text.list[position + 1]!;
          if (first.length >= word.length || second.length >= word.length) continue;
          if (Math.abs(first.length + second.length - word.length) > limit) continue;
          const edits = editDistanceWithin(word, first + second, true, limit);
          if (edits !== undefined) best = Math.max(best, JOINED_CREDIT * (1 - edits / word.length));
        }
      }
      total += best;
    }
    return total / words.length;
  };
}

/** One-off `createFuzzyJudge(words)(prepareWords(text))`. */
export function fuzzyRelevance(words: readonly string[], text: string): number {
  return createFuzzyJudge(words)(prepareWords(text));
}
