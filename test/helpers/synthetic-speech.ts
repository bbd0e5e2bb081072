// A speech-like signal for voice activity tests, generated at test time (no recordings in the repository).

const SAMPLE_RATE = 16_000;

/** A deterministic pseudo-random source, so the synthetic voice is the same on every run. */
export function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) >>> 0;
    return state / 2 ** 32;
  };
}

/** Vowel formants (F1, F2, F3 in Hz) of an adult voice: a, i, u, e, o. */
const VOWELS = [
  [730, 1090, 2440],
  [270, 2290, 3010],
  [300, 870, 2240],
  [530, 1840, 2480],
  [570, 840, 2410],
] as const;
const SYLLABLE = 0.2 * SAMPLE_RATE;
const CONSONANT = 0.04 * SAMPLE_RATE;

/**
 * A speech-like signal, peak 0.5. Silero ignores pure tones and noise, and fires only now and then on a
 * steady vowel; what makes it fire throughout (measured) is the rhythm of speech: 200 ms syllables whose
 * formants glide from one vowel to the next, each ending in 40 ms of faint noise, a voiceless consonant. The
 * voice is a glottal pulse train with a wandering pitch around 120 Hz, differentiated (lip radiation), through
 * three two-pole formant resonators.
 */
export function syntheticVoice(seconds: number, seed = 1): Float32Array {
  const length = Math.round(seconds * SAMPLE_RATE);
  const next = random(seed);
  const targets = Array.from({ length: Math.ceil(length / SYLLABLE) + 1 }, () => VOWELS[Math.floor(next() * VOWELS.length)]!);
  const voice = new Float32Array(length);
  const filters = VOWELS[0].map(() => ({ previous: 0, beforeThat: 0 }));
  let [phase, lastPulse] = [0, 0];
  for (let index = 0; index < length; index += 1) {
    const time = index / SAMPLE_RATE;
    const syllable = Math.floor(index / SYLLABLE);
    const progress = (index % SYLLABLE) / SYLLABLE;
    const pitch = 120 * (1 + 0.15 * Math.sin(2 * Math.PI * 0.7 * time) + 0.08 * Math.sin(2 * Math.PI * 3 * time));
    phase = (phase + pitch / SAMPLE_RATE) % 1;
    const pulse = phase < 0.6 ? Math.sin((Math.PI * phase) / 0.6) ** 2 : 0;
    const excitation = pulse - lastPulse;
    lastPulse = pulse;
    let sample = 0;
    for (const [order, filter] of filters.entries()) {
      const from = targets[syllable]![order]!;
      const frequency = from + (targets[syllable + 1]![order]! - from) * progress;
      const radius = Math.exp((-Math.PI * (80 + 40 * order)) / SAMPLE_RATE);
      const value =
        (1 - radius) * excitation +
        2 * radius * Math.cos((2 * Math.PI * frequency) / SAMPLE_RATE) * filter.previous -
        radius * radius * filter.beforeThat;
      [filter.beforeThat, filter.previous] = [filter.previous, value];
      sample += (order === 0 ? 1 : 0.5) * value;
    }
    voice[index] = sample * Math.sin(Math.PI * progress) ** 0.5;
  }
  const peak = voice.reduce((max, value) => Math.max(max, Math.abs(value)), 0);
  for (let index = 0; index < length; index += 1) {
    voice[index] = index % SYLLABLE >= SYLLABLE - CONSONANT ? 0.07 * (next() - 0.5) : (voice[index]! / peak) * 0.5;
  }
  return voice;
}
