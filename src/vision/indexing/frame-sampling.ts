import sharp from 'sharp';

/** Which of a segment's keyframes (by position) each analyzer reads. */
export interface AnalysisFrames {
  ocr: number[];
  objects: number[];
}

/**
 * The keyframes OCR reads: the segment's first, then the next one at least `ocrIntervalSeconds` after the last
 * read. Objects and labels get `objectFrames` keyframes spread evenly over the segment. Pure: a resumed job
 * picks the same frames.
 */
export function chooseAnalysisFrames(
  keyframeTimes: readonly number[],
  options: { ocrIntervalSeconds: number; objectFrames: number },
): AnalysisFrames {
  const ocr: number[] = [];
  let lastRead = Number.NEGATIVE_INFINITY;
  // A hair of tolerance: keyframe times are rounded, and 3.999 s after the last read counts as 4.
  const tolerance = 1e-3;
  for (const [index, time] of keyframeTimes.entries()) {
    if (time - lastRead >= options.ocrIntervalSeconds - tolerance) {
      ocr.push(index);
      lastRead = time;
    }
  }
  const count = keyframeTimes.length;
  const wanted = Math.min(count, Math.max(1, options.objectFrames));
  const objects = [...new Set(Array.from({ length: wanted }, (_, slot) => Math.floor(((slot + 0.5) * count) / wanted)))];
  return { ocr, objects };
}

/** A keyframe's thumbprint for telling whether the picture changed: 32x18 grey levels. */
export type FrameSignature = Uint8Array;

const SIGNATURE_WIDTH = 32;
const SIGNATURE_HEIGHT = 18;
/**
 * A change this large in any one cell (out of 255) counts as a different picture. Per-cell rather than
 * average, so that a caption appearing over a still background counts even though it covers little of it.
 */
const CHANGED_CELL = 20;

export async function frameSignature(jpeg: Buffer): Promise<FrameSignature> {
  // JPEG shrink-on-load decodes at 1/8 scale, so this costs a few milliseconds even for 1280x720 frames.
  const { data } = await sharp(jpeg)
    .resize(SIGNATURE_WIDTH, SIGNATURE_HEIGHT, { fit: 'fill', kernel: 'linear' })
    .greyscale()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return new Uint8Array(data.buffer, data.byteOffset, data.length);
}

/** Whether two keyframes show the same picture, so one's analysis stands for the other's. */
export function isSamePicture(a: FrameSignature, b: FrameSignature): boolean {
  if (a.length !== b.length) return false;
  for (let index = 0; index < a.length; index++) if (Math.abs(a[index]! - b[index]!) > CHANGED_CELL) return false;
  return true;
}
