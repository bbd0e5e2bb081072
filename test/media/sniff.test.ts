import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import sharp, { type Sharp } from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Scratch } from '../../src/media/scratch.ts';
import { assertKind, sniffBuffer, sniffFile, type SniffedMedia } from '../../src/media/sniff.ts';
import { OcularError } from '../../src/spec/errors.ts';

const run = promisify(execFile);

let scratch: Scratch;
beforeAll(async () => {
  scratch = await Scratch.create();
});
afterAll(async () => {
  await scratch.dispose();
});

const base = (): Sharp => sharp({ create: { width: 32, height: 24, channels: 3, background: '#3366cc' } });

describe('sniffBuffer: images (written by sharp)', () => {
  const cases: Array<[string, () => Promise<Buffer>, string]> = [
    ['JPEG', () => base().jpeg().toBuffer(), 'image/jpeg'],
    ['PNG', () => base().png().toBuffer(), 'image/png'],
    ['GIF', () => base().gif().toBuffer(), 'image/gif'],
    ['WebP', () => base().webp().toBuffer(), 'image/webp'],
    ['TIFF', () => base().tiff().toBuffer(), 'image/tiff'],
    ['AVIF', () => base().avif().toBuffer(), 'image/avif'],
  ];
  it.each(cases)('%s', async (_name, make, mediaType) => {
    expect(await sniffBuffer(await make())).toEqual({ mediaType, kind: 'image' });
  });
});

describe('sniffFile', () => {
  it('judges by the bytes, not the name: a PNG named .jpg is a PNG', async () => {
    const path = scratch.path('.jpg');
    await writeFile(path, await base().png().toBuffer());
    expect(await sniffFile(path)).toEqual({ mediaType: 'image/png', kind: 'image' });
  });

  it('recognises a PDF', async () => {
    const path = scratch.path('.bin');
    await writeFile(path, '%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n');
    expect(await sniffFile(path)).toEqual({ mediaType: 'application/pdf', kind: 'pdf' });
  });

  it('returns undefined for text, for an empty file, and for formats Ocular does not accept', async () => {
    const text = scratch.path('.png');
    await writeFile(text, 'just some text, not an image\n'.repeat(20));
    expect(await sniffFile(text)).toBeUndefined();
    const empty = scratch.path('.png');
    await writeFile(empty, '');
    expect(await sniffFile(empty)).toBeUndefined();
    // A ZIP: recognised by file-type, but not media.
    expect(await sniffBuffer(Buffer.from('504b0304140000000800', 'hex'))).toBeUndefined();
    expect(await sniffBuffer(Buffer.from('{"json": true}'))).toBeUndefined();
  });
});

describe('sniffFile: audio and video (written by ffmpeg)', () => {
  const tone = ['-f', 'lavfi', '-i', 'sine=frequency=440:duration=0.5'];
  const picture = ['-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=25:duration=0.5'];
  const cases: Array<[string, string[], SniffedMedia]> = [
    ['wav', [...tone, '-c:a', 'pcm_s16le', '-f', 'wav'], { mediaType: 'audio/wav', kind: 'audio' }],
    ['mp3', [...tone, '-c:a', 'libmp3lame', '-f', 'mp3'], { mediaType: 'audio/mpeg', kind: 'audio' }],
    [
      'mp3 without an ID3 tag',
      [...tone, '-c:a', 'libmp3lame', '-id3v2_version', '0', '-f', 'mp3'],
      { mediaType: 'audio/mpeg', kind: 'audio' },
    ],
    ['flac', [...tone, '-c:a', 'flac', '-f', 'flac'], { mediaType: 'audio/flac', kind: 'audio' }],
    ['ogg vorbis', [...tone, '-c:a', 'libvorbis', '-f', 'ogg'], { mediaType: 'audio/ogg', kind: 'audio' }],
    ['ogg opus', [...tone, '-c:a', 'libopus', '-f', 'ogg'], { mediaType: 'audio/ogg', kind: 'audio' }],
    ['m4a', [...tone, '-c:a', 'aac', '-f', 'ipod'], { mediaType: 'audio/mp4', kind: 'audio' }],
    ['aac (ADTS)', [...tone, '-c:a', 'aac', '-f', 'adts'], { mediaType: 'audio/aac', kind: 'audio' }],
    ['mp4', [...picture, '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-f', 'mp4'], { mediaType: 'video/mp4', kind: 'video' }],
    ['webm', [...picture, '-c:v', 'libvpx', '-f', 'webm'], { mediaType: 'video/webm', kind: 'video' }],
    ['mkv', [...picture, '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-f', 'matroska'], { mediaType: 'video/matroska', kind: 'video' }],
    ['mov', [...picture, '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-f', 'mov'], { mediaType: 'video/quicktime', kind: 'video' }],
    ['avi', [...picture, '-c:v', 'mpeg4', '-f', 'avi'], { mediaType: 'video/vnd.avi', kind: 'video' }],
    ['MPEG-1 program stream', [...picture, '-c:v', 'mpeg1video', '-f', 'mpeg'], { mediaType: 'video/mpeg', kind: 'video' }],
    ['MPEG-2 program stream', [...picture, '-c:v', 'mpeg2video', '-f', 'vob'], { mediaType: 'video/mpeg', kind: 'video' }],
    // The limit sniffing lives with: an audio-only WebM still reads as video (see assertKind below).
    ['audio-only webm', [...tone, '-c:a', 'libopus', '-f', 'webm'], { mediaType: 'video/webm', kind: 'video' }],
  ];

  it.each(cases)('%s', async (_name, args, expected) => {
    const path = scratch.path();
    await run(ffmpegInstaller.path, ['-hide_banner', '-loglevel', 'error', '-y', ...args, path]);
    expect(await sniffFile(path)).toEqual(expected);
    expect(await sniffBuffer(await readFile(path))).toEqual(expected);
  });
});

describe('assertKind', () => {
  const label = 'messages.0.content.1';

  function expectRefused(action: () => unknown): OcularError {
    let thrown: unknown;
    try {
      action();
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(OcularError);
    const error = thrown as OcularError;
    expect(error.type).toBe('unsupported_media_type');
    expect(error.status).toBe(415);
    expect(error.param).toBe(label);
    return error;
  }

  it('passes matching media through', () => {
    expect(assertKind({ mediaType: 'image/png', kind: 'image' }, 'image', label)).toEqual({ mediaType: 'image/png', kind: 'image' });
    expect(assertKind({ mediaType: 'application/pdf', kind: 'pdf' }, 'pdf', label)).toEqual({ mediaType: 'application/pdf', kind: 'pdf' });
  });

  it('refuses bytes of another kind, naming what was declared and what arrived', () => {
    const error = expectRefused(() => assertKind({ mediaType: 'video/mp4', kind: 'video' }, 'image', label));
    expect(error.message).toContain(label);
    expect(error.message).toContain('an image');
    expect(error.message).toContain('video/mp4');
    expectRefused(() => assertKind({ mediaType: 'audio/mp4', kind: 'audio' }, 'video', label));
    expectRefused(() => assertKind({ mediaType: 'image/png', kind: 'image' }, 'pdf', label));
  });

  it('refuses unknown bytes', () => {
    expectRefused(() => assertKind(undefined, 'audio', label));
  });

  it('accepts audio declared in a container that sniffs as video, and relabels it', () => {
    expect(assertKind({ mediaType: 'video/mp4', kind: 'video' }, 'audio', label)).toEqual({ mediaType: 'audio/mp4', kind: 'audio' });
    expect(assertKind({ mediaType: 'video/webm', kind: 'video' }, 'audio', label)).toEqual({ mediaType: 'audio/webm', kind: 'audio' });
    // AVI and MPEG program streams are not used for audio alone.
    expectRefused(() => assertKind({ mediaType: 'video/vnd.avi', kind: 'video' }, 'audio', label));
  });
});
