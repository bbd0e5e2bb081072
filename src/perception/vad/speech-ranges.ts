/**
 * Per-window speech probabilities to speech ranges: the hysteresis of Silero's reference
 * `get_speech_timestamps` (silero-vad `src/silero_vad/utils_vad.py`), without its `max_speech_duration_s`
 * splitting. Pure, so the rules can be tested without a model.
 */

export interface SpeechRangeRules {
  /** Samples per probability (one model window). */
  windowSamples: number;
  /** A window at or above this starts (or continues) speech. */
  threshold: number;
  /** A window below this, while in speech, may end it (the reference's `threshold - 0.15`, at least 0.01). */
  negThreshold: number;
  /** Speech shorter than this is dropped. */
  minSpeechSamples: number;
  /** Silence shorter than this does not end speech. */
  minSilenceSamples: number;
  /** Added before and after each range (halved between ranges closer than twice this). */
  padSamples: number;
}

/** A range in samples, `end` exclusive. */
export interface SampleRange {
  start: number;
  end: number;
}

/**
 * Speech ranges in samples for `probabilities` (one per window of `rules.windowSamples`, the last one zero-padded)
 * over audio of `sampleCount` samples.
 */
export function collectSpeechRanges(probabilities: ArrayLike<number>, sampleCount: number, rules: SpeechRangeRules): SampleRange[] {
  const { windowSamples, threshold, negThreshold, minSpeechSamples, minSilenceSamples, padSamples } = rules;
  const ranges: SampleRange[] = [];
  let start: number | undefined;
  // Where the current run of silence began, while in speech; 0 when there is none (as in the reference, which
  // cannot start a silence at sample 0 because speech cannot have started before it).
  let silenceStart = 0;
  for (let index = 0; index < probabilities.length; index += 1) {
    const probability = probabilities[index]!;
    const position = windowSamples * index;
    if (probability >= threshold) {
      silenceStart = 0;
      start ??= position;
      continue;
    }
    if (start === undefined || probability >= negThreshold) continue;
    if (silenceStart === 0) silenceStart = position;
    if (position - silenceStart < minSilenceSamples) continue;
    if (silenceStart - start > minSpeechSamples) ranges.push({ start, end: silenceStart });
    start = undefined;
    silenceStart = 0;
  }
  if (start !== undefined && sampleCount - start > minSpeechSamples) ranges.push({ start, end: sampleCount });

  // Padding: never past the audio, and split evenly where two ranges are closer than two pads.
  for (const [index, range] of ranges.entries()) {
    if (index === 0) range.start = Math.max(0, range.start - padSamples);
    const next = ranges[index + 1];
    if (next === undefined) {
      range.end = Math.min(sampleCount, range.end + padSamples);
    } else {
      const gap = next.start - range.end;
      const pad = gap < 2 * padSamples ? Math.floor(gap / 2) : padSamples;
      range.end = Math.min(sampleCount, range.end + pad);
      next.start = Math.max(0, next.start - pad);
    }
  }
  return ranges;
}
