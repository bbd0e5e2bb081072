import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createFfmpegContext, findOnPath, locateMediaBinaries, resolveMediaBinaries } from '../../src/media/binaries.ts';
import {
  buildFitFilter,
  buildFrameArgs,
  buildMeasureDurationArgs,
  buildMp3Args,
  buildProbeArgs,
  buildWav16kMonoArgs,
  formatSeconds,
} from '../../src/media/ffmpeg-commands.ts';

const BASE = ['-nostdin', '-hide_banner', '-loglevel', 'error'];
const INPUT = ['-protocol_whitelist', 'file', '-i', 'file:/data/in put.mp4'];

describe('ffmpeg command builders', () => {
  it('probes with ffprobe as JSON, format and streams', () => {
    expect(buildProbeArgs('/data/in put.mp4')).toEqual([
      '-v',
      'error',
      '-protocol_whitelist',
      'file',
      '-print_format',
      'json',
      '-show_format',
      '-show_streams',
      'file:/data/in put.mp4',
    ]);
  });

  it('extracts one frame with -ss before -i (input seeking), fitted inside maxSide, as one MJPEG on stdout', () => {
    const args = buildFrameArgs({ inputPath: '/data/in put.mp4', timestampSeconds: 12.5, maxSide: 768 });
    expect(args).toEqual([
      ...BASE,
      '-threads',
      '1',
      '-ss',
      '12.500',
      ...INPUT,
      '-map',
      '0:v:0',
      '-frames:v',
      '1',
      '-vf',
      "scale=w='min(iw,768)':h='min(ih,768)':force_original_aspect_ratio=decrease",
      '-f',
      'image2pipe',
      '-vcodec',
      'mjpeg',
      '-q:v',
      '3',
      '-',
    ]);
    // The property the whole design rests on: seeking happens in the demuxer, before decoding.
    expect(args.indexOf('-ss')).toBeLessThan(args.indexOf('-i'));
  });

  it('maps an explicit stream and thread count when given', () => {
    const args = buildFrameArgs({ inputPath: 'a.mkv', timestampSeconds: 0, maxSide: 100.7, streamIndex: 2, threads: 3 });
    expect(args.slice(4, 8)).toEqual(['-threads', '3', '-ss', '0.000']);
    expect(args[args.indexOf('-map') + 1]).toBe('0:2');
    expect(args[args.indexOf('-vf') + 1]).toBe(buildFitFilter(100));
  });

  it('converts audio to 16 kHz mono PCM WAV, on stdout or into a file', () => {
    expect(buildWav16kMonoArgs({ inputPath: '/data/in put.mp4' })).toEqual([
      ...BASE,
      ...INPUT,
      '-map',
      '0:a:0',
      '-ac',
      '1',
      '-ar',
      '16000',
      '-c:a',
      'pcm_s16le',
      '-bitexact',
      '-f',
      'wav',
      '-',
    ]);
    expect(buildWav16kMonoArgs({ inputPath: '/data/in put.mp4', outputPath: '/tmp/out.wav', streamIndex: 1 })).toEqual([
      ...BASE,
      ...INPUT,
      '-map',
      '0:1',
      '-ac',
      '1',
      '-ar',
      '16000',
      '-c:a',
      'pcm_s16le',
      '-bitexact',
      '-f',
      'wav',
      '-y',
      'file:/tmp/out.wav',
    ]);
  });

  it('converts audio to mono MP3', () => {
    expect(buildMp3Args({ inputPath: '/data/in put.mp4' })).toEqual([
      ...BASE,
      ...INPUT,
      '-map',
      '0:a:0',
      '-ac',
      '1',
      '-ar',
      '24000',
      '-c:a',
      'libmp3lame',
      '-b:a',
      '64k',
      '-f',
      'mp3',
      '-',
    ]);
  });

  it('measures duration by copying packets to the null muxer with progress on stdout', () => {
    expect(buildMeasureDurationArgs('/data/in put.mp4')).toEqual([
      ...BASE,
      ...INPUT,
      '-map',
      '0:v?',
      '-map',
      '0:a?',
      '-c',
      'copy',
      '-f',
      'null',
      '-progress',
      'pipe:1',
      '-nostats',
      '-',
    ]);
  });

  it('keeps option-like and protocol-like names from being read as options or protocols', () => {
    expect(buildProbeArgs('-y').at(-1)).toBe('file:-y');
    expect(buildFrameArgs({ inputPath: 'concat:a|b', timestampSeconds: 1, maxSide: 10 })).toContain('file:concat:a|b');
  });

  it('formats seconds to the millisecond and never negative', () => {
    expect(formatSeconds(1 / 3)).toBe('0.333');
    expect(formatSeconds(-2)).toBe('0.000');
    expect(formatSeconds(3600)).toBe('3600.000');
  });
});

describe('resolving ffmpeg and ffprobe', () => {
  const root = mkdtempSync(join(tmpdir(), 'ocular-binaries-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  function fakeBinary(directory: string, name: string, executable = true): string {
    mkdirSync(directory, { recursive: true });
    const path = join(directory, name);
    writeFileSync(path, '#!/bin/sh\nexit 0\n');
    chmodSync(path, executable ? 0o755 : 0o644);
    return path;
  }

  it('falls back to the bundled static binaries with no override and nothing on PATH', () => {
    const located = locateMediaBinaries({ searchPath: join(root, 'empty') });
    expect(located.sources).toEqual({ ffmpeg: 'bundled', ffprobe: 'bundled' });
    expect(located.ffmpeg).toMatch(/@ffmpeg-installer/);
    expect(located.ffprobe).toMatch(/@ffprobe-installer/);
  });

  it('prefers a binary on PATH, skipping non-executable files, relative and empty entries', () => {
    const first = join(root, 'first');
    const second = join(root, 'second');
    fakeBinary(first, 'ffmpeg', false);
    const ffmpeg = fakeBinary(second, 'ffmpeg');
    fakeBinary(join(root, 'relative'), 'ffprobe');
    const searchPath = ['', 'relative', first, second].join(delimiter);
    expect(findOnPath('ffmpeg', searchPath)).toBe(ffmpeg);
    const located = locateMediaBinaries({ searchPath });
    expect(located).toMatchObject({ ffmpeg, sources: { ffmpeg: 'path', ffprobe: 'bundled' } });
  });

  it('prefers an explicit path over PATH, and refuses one that is not executable', () => {
    const onPath = join(root, 'path-dir');
    fakeBinary(onPath, 'ffmpeg');
    const explicit = fakeBinary(join(root, 'explicit'), 'my-ffmpeg');
    expect(locateMediaBinaries({ ffmpeg: explicit, searchPath: onPath })).toMatchObject({
      ffmpeg: explicit,
      sources: { ffmpeg: 'option' },
    });
    expect(locateMediaBinaries({ ffmpeg: 'my-ffmpeg', searchPath: join(root, 'explicit') }).ffmpeg).toBe(explicit);
    expect(() => locateMediaBinaries({ ffprobe: join(root, 'missing', 'ffprobe') })).toThrow(/OCULAR_FFPROBE/);
    const notExecutable = fakeBinary(join(root, 'plain'), 'ffprobe', false);
    expect(() => locateMediaBinaries({ ffprobe: notExecutable })).toThrow(/OCULAR_FFPROBE/);
  });

  it('resolves once per configuration', () => {
    const directory = join(root, 'cached');
    const ffmpeg = fakeBinary(directory, 'ffmpeg');
    const first = resolveMediaBinaries({ searchPath: directory });
    expect(first.ffmpeg).toBe(ffmpeg);
    rmSync(ffmpeg);
    expect(resolveMediaBinaries({ searchPath: directory })).toBe(first);
    expect(locateMediaBinaries({ searchPath: directory }).sources.ffmpeg).toBe('bundled');
  });

  it('builds a frozen context with the limits', () => {
    const context = createFfmpegContext({ timeoutMs: 5000, maxOutputBytes: 1234 });
    expect(context).toMatchObject({ timeoutMs: 5000, maxOutputBytes: 1234 });
    expect(Object.isFrozen(context)).toBe(true);
    expect(createFfmpegContext()).toMatchObject({ timeoutMs: 120_000, maxOutputBytes: 104_857_600 });
  });
});
