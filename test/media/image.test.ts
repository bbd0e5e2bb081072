import { writeFile } from 'node:fs/promises';
import { deflateSync } from 'node:zlib';
import sharp, { type Sharp } from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normalizeImage, type NormalizeImageOptions } from '../../src/media/image.ts';
import { Scratch } from '../../src/media/scratch.ts';
import { OcularError } from '../../src/spec/errors.ts';

const label = 'messages.0.content.0';
const options: NormalizeImageOptions = { maxSide: 1024, maxPixels: 50_000_000, label };

let scratch: Scratch;
beforeAll(async () => {
  scratch = await Scratch.create();
});
afterAll(async () => {
  await scratch.dispose();
});

type Rgb = [number, number, number];

function solid(width: number, height: number, colour: string): Sharp {
  return sharp({ create: { width, height, channels: 3, background: colour } });
}

/** The colour of one pixel of an encoded image. */
async function pixel(image: Buffer, x: number, y: number): Promise<number[]> {
  const { data, info } = await sharp(image).raw().toBuffer({ resolveWithObject: true });
  const offset = (y * info.width + x) * info.channels;
  return [...data.subarray(offset, offset + info.channels)];
}

function expectColour(actual: number[], expected: Rgb): void {
  expected.forEach((value, index) => expect(Math.abs(actual[index]! - value)).toBeLessThan(24));
}

async function refusal(promise: Promise<unknown>): Promise<OcularError> {
  const error = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(OcularError);
  expect((error as OcularError).param).toBe(label);
  return error as OcularError;
}

describe('normalizeImage', () => {
  it('turns a 4000x3000 JPEG upright by its EXIF orientation and downscales it to maxSide', async () => {
    // Red left half, blue right half. Orientation 6 says "rotate 90 degrees clockwise to display",
    // which brings the left (red) half to the top.
    const input = await solid(4000, 3000, '#ff0000')
      .composite([{ input: { create: { width: 2000, height: 3000, channels: 3, background: '#0000ff' } }, left: 2000, top: 0 }])
      .jpeg()
      .withExif({ IFD0: { Make: 'Ocular test camera' } })
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const inputMetadata = await sharp(input).metadata();
    expect(inputMetadata.orientation).toBe(6);
    expect(inputMetadata.exif).toBeDefined();

    const output = await normalizeImage(input, options);
    expect(output.mediaType).toBe('image/jpeg');
    expect([output.width, output.height]).toEqual([768, 1024]);
    const metadata = await sharp(output.data).metadata();
    expect(metadata.format).toBe('jpeg');
    expect([metadata.width, metadata.height]).toEqual([768, 1024]);
    // Metadata stripped: no orientation left to apply twice, no camera data.
    expect(metadata.orientation).toBeUndefined();
    expect(metadata.exif).toBeUndefined();
    expect(metadata.icc).toBeUndefined();
    expectColour(await pixel(output.data, 384, 100), [255, 0, 0]);
    expectColour(await pixel(output.data, 384, 924), [0, 0, 255]);
  });

  it('reads from a path as well as from bytes', async () => {
    const path = scratch.path('.webp');
    await writeFile(path, await solid(300, 200, '#00ff00').webp().toBuffer());
    const output = await normalizeImage(path, options);
    expect(output).toMatchObject({ mediaType: 'image/jpeg', width: 300, height: 200 });
  });

  it('never upscales', async () => {
    const output = await normalizeImage(await solid(100, 50, '#808080').png().toBuffer(), options);
    expect([output.width, output.height]).toEqual([100, 50]);
  });

  it('keeps PNG with transparency as PNG, alpha intact', async () => {
    const input = await sharp({ create: { width: 2048, height: 1024, channels: 4, background: { r: 255, g: 0, b: 0, alpha: 0.5 } } })
      .png()
      .toBuffer();
    const output = await normalizeImage(input, options);
    expect(output).toMatchObject({ mediaType: 'image/png', width: 1024, height: 512 });
    const metadata = await sharp(output.data).metadata();
    expect(metadata.format).toBe('png');
    expect(metadata.hasAlpha).toBe(true);
    const [r, , , alpha] = await pixel(output.data, 10, 10);
    expect(r).toBe(255);
    expect(Math.abs(alpha! - 128)).toBeLessThanOrEqual(1);
  });

  it('sends an opaque PNG, with or without an alpha channel, as JPEG', async () => {
    const rgb = await solid(200, 100, '#123456').png().toBuffer();
    expect((await normalizeImage(rgb, options)).mediaType).toBe('image/jpeg');
    const opaqueRgba = await sharp({ create: { width: 200, height: 100, channels: 4, background: { r: 18, g: 52, b: 86, alpha: 1 } } })
      .png()
      .toBuffer();
    expect((await sharp(opaqueRgba).metadata()).hasAlpha).toBe(true);
    const output = await normalizeImage(opaqueRgba, options);
    expect(output.mediaType).toBe('image/jpeg');
    expectColour(await pixel(output.data, 50, 50), [0x12, 0x34, 0x56]);
  });

  it('takes the first frame of an animated GIF', async () => {
    const frames = await Promise.all(['#ff0000', '#00ff00', '#0000ff'].map((colour) => solid(64, 48, colour).png().toBuffer()));
    const gif = await sharp(frames, { join: { animated: true } })
      .gif({ delay: [100, 100, 100], loop: 0 })
      .toBuffer();
    expect((await sharp(gif).metadata()).pages).toBe(3);
    const output = await normalizeImage(gif, options);
    expect([output.width, output.height]).toEqual([64, 48]);
    expectColour(await pixel(output.data, 32, 24), [255, 0, 0]);
  });

  it('takes the first frame of an animated WebP', async () => {
    const frames = await Promise.all(['#0000ff', '#ffff00'].map((colour) => solid(80, 60, colour).png().toBuffer()));
    const webp = await sharp(frames, { join: { animated: true } })
      .webp({ delay: [100, 100], loop: 0 })
      .toBuffer();
    expect((await sharp(webp).metadata()).pages).toBe(2);
    const output = await normalizeImage(webp, options);
    expect([output.width, output.height]).toEqual([80, 60]);
    expectColour(await pixel(output.data, 40, 30), [0, 0, 255]);
  });

  it.each([
    ['WebP', (image: Sharp) => image.webp()],
    ['TIFF', (image: Sharp) => image.tiff()],
    ['AVIF', (image: Sharp) => image.avif()],
  ])('decodes %s', async (_name, encode) => {
    const output = await normalizeImage(await encode(solid(1600, 400, '#ff8000')).toBuffer(), options);
    expect(output).toMatchObject({ mediaType: 'image/jpeg', width: 1024, height: 256 });
    expectColour(await pixel(output.data, 500, 100), [255, 128, 0]);
  });

  it('refuses a decompression bomb: a small PNG that decodes to 100 million pixels', async () => {
    const bomb = await solid(10_000, 10_000, '#ffffff').greyscale().png({ compressionLevel: 9 }).toBuffer();
    expect(bomb.length).toBeLessThan(1_000_000);
    const error = await refusal(normalizeImage(bomb, options));
    expect(error.type).toBe('validation_error');
    expect(error.status).toBe(400);
    expect(error.message).toContain('too many pixels');
    expect(error.message).toContain('50,000,000');
  });

  it('refuses a PNG whose header declares 10 billion pixels before decoding anything', async () => {
    const bomb = pngWithHeaderOnly(100_000, 100_000);
    expect(bomb.length).toBeLessThan(100);
    expect((await refusal(normalizeImage(bomb, options))).type).toBe('validation_error');
  });

  it('refuses a truncated JPEG as unsupported media', async () => {
    const jpeg = await solid(640, 480, '#ff0000')
      .composite([{ input: await solid(320, 240, '#00ff00').png().toBuffer(), left: 100, top: 100 }])
      .jpeg()
      .toBuffer();
    const error = await refusal(normalizeImage(jpeg.subarray(0, Math.floor(jpeg.length * 0.6)), options));
    expect(error.type).toBe('unsupported_media_type');
    expect(error.status).toBe(415);
  });

  it('refuses a truncated PNG, garbage, and SVG as unsupported media', async () => {
    const png = await solid(640, 480, '#ff0000').png({ compressionLevel: 0 }).toBuffer();
    expect((await refusal(normalizeImage(png.subarray(0, Math.floor(png.length / 2)), options))).type).toBe('unsupported_media_type');
    expect((await refusal(normalizeImage(Buffer.from('this is not an image at all'), options))).type).toBe('unsupported_media_type');
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>');
    expect((await refusal(normalizeImage(svg, options))).type).toBe('unsupported_media_type');
  });

  it('rejects limits that would switch the pixel check off', async () => {
    const png = await solid(10, 10, '#000000').png().toBuffer();
    await expect(normalizeImage(png, { ...options, maxPixels: 0 })).rejects.toThrow(RangeError);
    await expect(normalizeImage(png, { ...options, maxSide: 0 })).rejects.toThrow(RangeError);
  });
});

/** A PNG signature, an IHDR chunk declaring `width` x `height` RGB, and a token IDAT: a header with no image behind it. */
function pngWithHeaderOnly(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit, truecolour, deflate, adaptive filtering, no interlace
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(Buffer.alloc(16))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

function crc32(bytes: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit += 1) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return (crc ^ 0xffffffff) >>> 0;
}
