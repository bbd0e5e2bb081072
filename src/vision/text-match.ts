// How well a segment's text matches a query, judged word by word. The full-text indexes find candidates; these
// functions give each one a relevance in 0..1 on an absolute scale (the share of the query found in it), which
// is what lets fused search scores mean something for `threshold`.

/** Words a query is cut to: longer queries are prose, and the first words carry them. */
export const MAX_QUERY_WORDS = 32;
/** Characters of a word that count (a longer run is noise or a URL). */
const MAX_WORD_LENGTH = 32;
/** Trigrams sent to the trigram index, so a long query stays one bounded FTS lookup. */
export const MAX_QUERY_TRIGRAMS = 48;
/** A word found only inside a longer run of text (OCR merged it with its neighbour) counts this much. */
const INFIX_CREDIT = 0.8;

/**
 * Lower-cased words with diacritics removed: runs of letters and digits, as the FTS5 unicode61 tokenizer
 * (`remove_diacritics 2`) cuts them, so what the word index matched and what is judged here agree.
 */
export function toWords(text: string): string[] {
  const words = text
    .normalize('NFKD')
    .replace(/\p{M}/gu, '')
    .toLowerCase()
    .match(/[\p{L}\p{N}]+/gu);
  return words === null ? [] : words.map((word) => (word.length > MAX_WORD_LENGTH ? word.slice(0, MAX_WORD_LENGTH) : word));
}

/** The query's distinct words, in order, at most MAX_QUERY_WORDS. */
export function queryWords(text: string): string[] {
  return [...new Set(toWords(text))].slice(0, MAX_QUERY_WORDS);
}

/**
 * An FTS5 query for the word index: any of the words (bm25 ranks segments holding more of them, and rarer ones,
 * first), the last one also as a prefix, since a query typed or cut short ends mid-word (`quartz falc`).
 * Only letters and digits reach FTS5, quoted, so no query syntax leaks through.
 */
export function toWordQuery(words: readonly string[]): string | undefined {
  if (words.length === 0) return undefined;
  return words.map((word, index) => (index === words.length - 1 ? `"${word}"*` : `"${word}"`)).join(' OR ');
}

/** An FTS5 query for the trigram index: any trigram of the query's words of three or more characters. */
export function toTrigramQuery(words: readonly string[]): string | undefined {
  const trigrams = new Set<string>();
  for (const word of words) {
    const characters = Array.from(word);
    for (let index = 0; index + 3 <= characters.length && trigrams.size < MAX_QUERY_TRIGRAMS; index++) {
      trigrams.add(characters.slice(index, index + 3).join(''));
    }
  }
  if (trigrams.size === 0) return undefined;
  return [...trigrams].map((trigram) => `"${trigram}"`).join(' OR ');
}

/**
 * The share of the query's words that the text holds exactly (the last word may also begin a longer word), in
 * 0..1: the relevance of a word-index match.
 */
export function wordCoverage(words: readonly string[], text: string): number {
  if (words.length === 0) return 0;
  const tokens = new Set(toWords(text));
  const last = words.length - 1;
  let found = 0;
  for (const [index, word] of words.entries()) {
    if (tokens.has(word)) found += 1;
    else if (index === last && [...tokens].some((token) => token.startsWith(word))) found += 1;
  }
  return found / words.length;
}

/** Edits a word of this length may differ by and still count as found (the usual fuzzy-search steps). */
function allowedEdits(length: number): number {
  return length <= 3 ? 0 : length <= 7 ? 1 : 2;
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

/** How well one query word is found in the text: 1 exact or as the start of a word, less per edit, 0 not found. */
function wordSimilarity(word: string, tokens: ReadonlySet<string>, joined: string): number {
  if (tokens.has(word)) return 1;
  const limit = allowedEdits(word.length);
  let best = 0;
  for (const token of tokens) {
    if (token.length < word.length - limit) continue;
    const edits = editDistanceWithin(word, token, true, limit);
    if (edits !== undefined) best = Math.max(best, 1 - edits / word.length);
    if (best === 1) return 1;
  }
  // OCR splits and merges words ("QUARTZFALCON", "FAL CON"): look for the word anywhere in the text run together.
  if (best < INFIX_CREDIT) {
    const edits = editDistanceWithin(word, joined, false, limit);
    if (edits !== undefined) best = Math.max(best, INFIX_CREDIT * (1 - edits / word.length));
  }
  return best;
}

/**
 * The mean over the query's words of how well each is found in the text, tolerating a typo or an OCR slip per
 * few letters (one edit up to 7 letters, two beyond; none in words of three or fewer): the relevance of a
 * trigram-index match, in 0..1.
 */
export function fuzzyRelevance(words: readonly string[], text: string): number {
  if (words.length === 0) return 0;
  const tokenList = toWords(text);
  const tokens = new Set(tokenList);
  const joined = tokenList.join('');
  let total = 0;
  for (const word of words) total += wordSimilarity(word, tokens, joined);
  return total / words.length;
}
