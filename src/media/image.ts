import sharp, { type Metadata, type Sharp } from 'sharp';
import { OcularError } from '../spec/errors.ts';

export interface NormalizeImageOptions {
  /** The longest side of the output, in pixels. Larger images are downscaled; smaller ones are never upscaled. */
  maxSide: number;
  /**
   * The most pixels (width x height, first frame) an input may have. Checked on the header before any
   * decoding, and again by libvips while decoding, so a small file that inflates to a huge bitmap is refused.
   */
  maxPixels: number;
  /** The request field the image came from, as a dotted path (`messages.0.content.1`), for errors. */
  label: string;
}

export interface NormalizedImage {
  /** The re-encoded image, upright, with no metadata (EXIF, XMP, ICC) left in it. */
  data: Buffer;
  /** PNG when the image has transparent pixels, JPEG otherwise. */
  mediaType: 'image/jpeg' | 'image/png';
  width: number;
  height: number;
}

/**
 * Container formats (as sharp's `metadata().format` names them) that we decode. libvips can also read SVG,
 * its own `.v` files and raw pixel dumps; those are not client image formats, and SVG rendering is an attack
 * surface we do not need. `heif` covers AVIF and HEIC; HEIC needs an HEVC decoder (see `describeDecodeFailure`).
 */
const DECODABLE_FORMATS: ReadonlySet<string> = new Set(['jpeg', 'png', 'gif', 'webp', 'tiff', 'heif']);

const JPEG_QUALITY = 85;

/**
 * Decodes an image (a path or its bytes), turns it upright by its EXIF orientation, takes the first frame of
 * an animation, downscales it to fit `maxSide`, and re-encodes it as JPEG, or PNG when it has transparency.
 * Throws `validation_error` when the image has more than `maxPixels` pixels and `unsupported_media_type`
 * when it cannot be decoded (corrupt, truncated, or a format we do not read).
 */
export async function normalizeImage(input: string | Buffer, options: NormalizeImageOptions): Promise<NormalizedImage> {
  const { maxSide, maxPixels, label } = options;
  if (!Number.isInteger(maxSide) || maxSide < 1) throw new RangeError(`maxSide must be a positive integer, got ${maxSide}`);
  // sharp reads `limitInputPixels: 0` as "no limit": refuse it rather than open the door to bombs.
  if (!Number.isInteger(maxPixels) || maxPixels < 1) throw new RangeError(`maxPixels must be a positive integer, got ${maxPixels}`);

  // The header read decodes no pixels, so it runs without a pixel limit; the size check below is ours, with our message.
  let metadata: Metadata;
  try {
    metadata = await sharp(input, { limitInputPixels: false, failOn: 'error' }).metadata();
  } catch (error) {
    throw decodeError(error, options, undefined);
  }
  if (!DECODABLE_FORMATS.has(metadata.format)) {
    throw new OcularError(
      'unsupported_media_type',
      `${label}: ${metadata.format} images are not supported; send JPEG, PNG, GIF, WebP, TIFF or AVIF`,
      { param: label },
    );
  }
  // For animations, `height` is one frame's: with the default `pages: 1` that is all we decode.
  const pixels = metadata.width * metadata.height;
  if (pixels > maxPixels) throw tooManyPixels(label, `${metadata.width}x${metadata.height}`, maxPixels);

  const pipeline = sharp(input, {
    // libvips enforces the same limit while decoding, in case the header and the data disagree.
    limitInputPixels: maxPixels,
    // 'error' refuses truncated and corrupt data but tolerates the harmless warnings many cameras trigger.
    failOn: 'error',
    // Decode in strips rather than into one whole bitmap, where the operations allow it.
    sequentialRead: true,
    pages: 1,
  })
    .rotate()
    .resize({ width: maxSide, height: maxSide, fit: 'inside', withoutEnlargement: true });
  // sharp writes no metadata unless asked (`keepMetadata`, `withMetadata`), so none of the input's survives.

  try {
    if (!metadata.hasAlpha) return await encodeJpeg(pipeline);
    // An alpha channel is often fully opaque (screenshots): look at the pixels before paying for PNG.
    const { data, info } = await pipeline.toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    const raw = { raw: { width: info.width, height: info.height, channels: info.channels } };
    if (info.channels === 4 && !isOpaque(data, info.channels)) {
      const png = await sharp(data, raw).png().toBuffer({ resolveWithObject: true });
      return { data: png.data, mediaType: 'image/png', width: png.info.width, height: png.info.height };
    }
    return await encodeJpeg(sharp(data, raw).removeAlpha());
  } catch (error) {
    throw decodeError(error, options, metadata);
  }
}

async function encodeJpeg(image: Sharp): Promise<NormalizedImage> {
  const { data, info } = await image.jpeg({ quality: JPEG_QUALITY }).toBuffer({ resolveWithObject: true });
  return { data, mediaType: 'image/jpeg', width: info.width, height: info.height };
}

/** Whether every pixel's alpha (the last of `channels` interleaved bytes) is 255. */
function isOpaque(pixels: Buffer, channels: number): boolean {
  for (let index = channels - 1; index < pixels.length; index += channels) {
    if (pixels[index] !== 255) return false;
  }
  return true;
}

function tooManyPixels(label: string, size: string, maxPixels: number): OcularError {
  return new OcularError(
    'validation_error',
    `${label}: the image has too many pixels (${size}); the limit is ${maxPixels.toLocaleString('en-US')} pixels`,
    { param: label },
  );
}

function decodeError(error: unknown, { label, maxPixels }: NormalizeImageOptions, metadata: Metadata | undefined): Error {
  const message = error instanceof Error ? error.message : String(error);
  // A path we were handed that does not exist is our bug, not the client's media.
  if (message.startsWith('Input file is missing')) return error instanceof Error ? error : new Error(message);
  if (message.includes('exceeds pixel limit')) {
    return tooManyPixels(label, metadata === undefined ? 'unknown size' : `${metadata.width}x${metadata.height}`, maxPixels);
  }
  return new OcularError('unsupported_media_type', `${label}: ${describeDecodeFailure(metadata)}`, { param: label, cause: error });
}

function describeDecodeFailure(metadata: Metadata | undefined): string {
  // sharp's prebuilt libheif carries the AV1 decoder (AVIF) but no HEVC one, so HEIC headers parse and pixels do not.
  if (metadata?.format === 'heif' && metadata.compression === 'hevc') {
    return 'HEIC images are not supported by this server (no HEVC decoder); convert the image to JPEG or PNG';
  }
  return 'the image could not be decoded: it is corrupt, truncated, or not a JPEG, PNG, GIF, WebP, TIFF or AVIF image';
}
