import type { DetectedObject, ImageLabel, ReadText, SpeechRange } from '../../perception/analyzers.ts';
import type { Transcript } from '../../perception/speech/transcriber.ts';
import type { SegmentLabel, SegmentObject } from '../../store/video-store.ts';

/** Labels kept per segment, and the least confidence for one to count. */
const MAX_LABELS = 5;
const MIN_LABEL_SCORE = 0.15;

/** Every distinct line of on-screen text over the segment's keyframes, in the order first seen. */
export function mergeText(reads: readonly ReadText[]): string {
  const seen = new Set<string>();
  const lines: string[] = [];
  for (const read of reads) {
    for (const line of read.lines) {
      const text = line.text.trim();
      const key = text.toLowerCase().replace(/\s+/g, ' ');
      if (text === '' || seen.has(key)) continue;
      seen.add(key);
      lines.push(text);
    }
  }
  return lines.join('\n');
}

/** Per label: the most instances seen in one keyframe and the best confidence; most frequent first. */
export function mergeObjects(detections: readonly (readonly DetectedObject[])[]): SegmentObject[] {
  const merged = new Map<string, SegmentObject>();
  for (const frame of detections) {
    const counts = new Map<string, { count: number; score: number }>();
    for (const object of frame) {
      const entry = counts.get(object.label) ?? { count: 0, score: 0 };
      entry.count += 1;
      entry.score = Math.max(entry.score, object.score);
      counts.set(object.label, entry);
    }
    for (const [label, { count, score }] of counts) {
      const previous = merged.get(label);
      merged.set(label, { label, count: Math.max(count, previous?.count ?? 0), score: Math.max(score, previous?.score ?? 0) });
    }
  }
  return [...merged.values()]
    .map((object) => ({ ...object, score: Math.round(object.score * 1000) / 1000 }))
    .sort((a, b) => b.count - a.count || b.score - a.score || a.label.localeCompare(b.label));
}

/** The best score of each label over the keyframes, the strongest few. */
export function mergeLabels(labelings: readonly (readonly ImageLabel[])[]): SegmentLabel[] {
  const best = new Map<string, number>();
  for (const labels of labelings) for (const { label, score } of labels) best.set(label, Math.max(score, best.get(label) ?? 0));
  return [...best]
    .filter(([, score]) => score >= MIN_LABEL_SCORE)
    .sort((a, b) => b[1] - a[1])
    .slice(0, MAX_LABELS)
    .map(([label, score]) => ({ label, score: Math.round(score * 1000) / 1000 }));
}

/** The parts of `ranges` inside [start, end). */
export function clipRanges(ranges: readonly SpeechRange[], startSeconds: number, endSeconds: number): SpeechRange[] {
  return ranges
    .filter((range) => range.endSeconds > startSeconds && range.startSeconds < endSeconds)
    .map((range) => ({
      startSeconds: Math.max(range.startSeconds, startSeconds),
      endSeconds: Math.min(range.endSeconds, endSeconds),
    }));
}

/**
 * The transcript's words spoken in [start, end): each timed piece goes to the segment holding its midpoint, so
 * a sentence across a boundary is indexed once. A transcript without timings goes to the first segment.
 */
export function transcriptFor(transcript: Transcript | undefined, startSeconds: number, endSeconds: number, isFirst: boolean): string {
  if (transcript === undefined) return '';
  if (transcript.segments.length === 0) return isFirst ? transcript.text.trim() : '';
  return transcript.segments
    .filter((piece) => {
      const middle = (piece.startSeconds + piece.endSeconds) / 2;
      return middle >= startSeconds && middle < endSeconds;
    })
    .map((piece) => piece.text.trim())
    .filter((text) => text !== '')
    .join(' ');
}

function describeObjects(objects: readonly SegmentObject[]): string {
  const words = objects.slice(0, 6).map(({ label, count }) => (count > 1 ? `${count} ${pluralize(label)}` : `a ${label}`));
  if (words.length <= 1) return words.join('');
  return `${words.slice(0, -1).join(', ')} and ${words.at(-1)}`;
}

function pluralize(label: string): string {
  if (label === 'person') return 'people';
  if (/(?:s|sh|ch|x)$/.test(label)) return `${label}es`;
  return `${label}s`;
}

function quote(text: string, maxLength: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return `"${flat.length > maxLength ? `${flat.slice(0, maxLength - 1)}…` : flat}"`;
}

export interface SegmentFindings {
  ocrText: string;
  objects: readonly SegmentObject[];
  labels: readonly SegmentLabel[];
  transcript: string;
  /** Null when no voice activity detector ran. */
  hasSpeech: boolean | null;
}

/**
 * A caption made only of what the analyzers found, for when no captioning model is configured: it states
 * findings and never guesses at what the scene means.
 */
export function buildFactualCaption(findings: SegmentFindings): string {
  const sentences: string[] = [];
  if (findings.objects.length > 0) sentences.push(`Visible: ${describeObjects(findings.objects)}.`);
  if (findings.labels.length > 0 && findings.objects.length === 0) {
    sentences.push(`The frames resemble: ${findings.labels.map((label) => label.label).join(', ')}.`);
  }
  if (findings.ocrText !== '') sentences.push(`On-screen text: ${quote(findings.ocrText, 200)}.`);
  if (findings.transcript !== '') sentences.push(`Speech: ${quote(findings.transcript, 200)}.`);
  else if (findings.hasSpeech === true) sentences.push('Someone speaks.');
  if (sentences.length === 0) return findings.hasSpeech === false ? 'No objects, text or speech detected.' : 'No objects or text detected.';
  return sentences.join(' ');
}
