import { readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { extractAudioTrack, patchWavSizes, toMp3, toWav16kMono } from '../../src/media/audio.ts';
import { Scratch } from '../../src/media/scratch.ts';
import { probeMedia } from '../../src/media/video.ts';
import { OcularError } from '../../src/spec/errors.ts';
import { ffmpegContext, fixturePath, garbage, makeAudio, makeVideo, removeMediaFixtures } from '../helpers/media-fixtures.ts';

afterAll(removeMediaFixtures);

async function expectOcularError(promise: Promise<unknown>, type: OcularError['type']): Promise<OcularError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(OcularError);
  expect((error as OcularError).type).toBe(type);
  return error as OcularError;
}

/** The fields of a canonical 44-byte PCM WAV header. */
function readWavHeader(wav: Buffer) {
  return {
    riff: wav.toString('latin1', 0, 4),
    riffSize: wav.readUInt32LE(4),
    wave: wav.toString('latin1', 8, 12),
    fmt: wav.toString('latin1', 12, 16),
    format: wav.readUInt16LE(20),
    channels: wav.readUInt16LE(22),
    sampleRate: wav.readUInt32LE(24),
    byteRate: wav.readUInt32LE(28),
    bitsPerSample: wav.readUInt16LE(34),
    data: wav.toString('latin1', 36, 40),
    dataSize: wav.readUInt32LE(40),
  };
}

function expectWav16kMono(wav: Buffer, seconds: number): void {
  expect(readWavHeader(wav)).toEqual({
    riff: 'RIFF',
    riffSize: wav.length - 8,
    wave: 'WAVE',
    fmt: 'fmt ',
    format: 1,
    channels: 1,
    sampleRate: 16_000,
    byteRate: 32_000,
    bitsPerSample: 16,
    data: 'data',
    dataSize: wav.length - 44,
  });
  expect((wav.length - 44) / 32_000).toBeCloseTo(seconds, 1);
}

describe('toWav16kMono', () => {
  it('converts stereo 44.1 kHz MP3 to 16 kHz mono PCM with correct header sizes', async () => {
    const wav = await toWav16kMono(await makeAudio({ seconds: 3, format: 'mp3', channels: 2 }), ffmpegContext);
    expectWav16kMono(wav, 3);
    // The samples are the tone, not silence.
    expect(Math.max(...Array.from({ length: 1000 }, (_, index) => Math.abs(wav.readInt16LE(44 + 2 * (8000 + index)))))).toBeGreaterThan(
      1000,
    );
    const written = fixturePath('.wav');
    await writeFile(written, wav);
    expect((await probeMedia(written, ffmpegContext)).audio).toMatchObject({ codec: 'pcm_s16le', sampleRate: 16_000, channels: 1 });
  });

  it('takes the soundtrack of a video', async () => {
    expectWav16kMono(await toWav16kMono(await makeVideo({ seconds: 4, withAudio: true }), ffmpegContext), 4);
  });

  it('says so when the file has no audio stream, and rejects non-media bytes', async () => {
    const error = await expectOcularError(toWav16kMono(await makeVideo({ seconds: 4 }), ffmpegContext), 'unsupported_media_type');
    expect(error.message).toMatch(/no audio stream/);
    await expectOcularError(toWav16kMono(await garbage(20_000, '.mp3'), ffmpegContext), 'unsupported_media_type');
  });

  it('refuses output above the size cap', async () => {
    const audio = await makeAudio({ seconds: 3, format: 'wav' });
    await expectOcularError(toWav16kMono(audio, { ...ffmpegContext, maxOutputBytes: 10_000 }), 'payload_too_large');
  });

  it('rejects with the abort reason', async () => {
    const controller = new AbortController();
    const reason = new Error('gone');
    const running = toWav16kMono(await makeAudio({ seconds: 3, format: 'mp3' }), ffmpegContext, controller.signal);
    controller.abort(reason);
    await expect(running).rejects.toBe(reason);
  });
});

describe('patchWavSizes', () => {
  it('fills in the sizes ffmpeg leaves open on a pipe, after any chunk before data', () => {
    const fmt = Buffer.alloc(24);
    fmt.write('fmt ', 0, 'latin1');
    fmt.writeUInt32LE(16, 4);
    const list = Buffer.concat([Buffer.from('LIST', 'latin1'), Buffer.from([5, 0, 0, 0]), Buffer.from('INFOx\0', 'latin1')]);
    const data = Buffer.concat([Buffer.from('data', 'latin1'), Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.alloc(10)]);
    const wav = Buffer.concat([Buffer.from('RIFF\xff\xff\xff\xffWAVE', 'latin1'), fmt, list, data]);
    patchWavSizes(wav);
    expect(wav.readUInt32LE(4)).toBe(wav.length - 8);
    expect(wav.readUInt32LE(wav.length - 14)).toBe(10);
  });

  it('refuses bytes that are not a WAV', () => {
    expect(() => patchWavSizes(Buffer.from('not a wav at all'))).toThrow(OcularError);
  });
});

describe('toMp3', () => {
  it('converts to mono 24 kHz MP3', async () => {
    const mp3 = await toMp3(await makeAudio({ seconds: 3, format: 'wav' }), ffmpegContext);
    const written = fixturePath('.mp3');
    await writeFile(written, mp3);
    const probe = await probeMedia(written, ffmpegContext);
    expect(probe.audio).toMatchObject({ codec: 'mp3', sampleRate: 24_000, channels: 1 });
    expect(probe.durationSeconds).toBeCloseTo(3, 0);
  });

  it('rejects a video without sound', async () => {
    await expectOcularError(toMp3(await makeVideo({ seconds: 4 }), ffmpegContext), 'unsupported_media_type');
  });
});

describe('extractAudioTrack', () => {
  it('is undefined for a video without audio', async () => {
    const scratch = await Scratch.create();
    try {
      expect(await extractAudioTrack(await makeVideo({ seconds: 4 }), scratch, ffmpegContext)).toBeUndefined();
    } finally {
      await scratch.dispose();
    }
  });

  it('writes the soundtrack as a 16 kHz mono WAV file inside the scratch directory', async () => {
    const scratch = await Scratch.create();
    try {
      const path = await extractAudioTrack(await makeVideo({ seconds: 4, withAudio: true }), scratch, ffmpegContext);
      expect(path).toBeDefined();
      expect(dirname(path!)).toBe(scratch.dir);
      expectWav16kMono(await readFile(path!), 4);
    } finally {
      await scratch.dispose();
    }
  });

  it('refuses a soundtrack too long for the size cap before decoding it', async () => {
    const scratch = await Scratch.create();
    try {
      const video = await makeVideo({ seconds: 4, withAudio: true });
      await expectOcularError(extractAudioTrack(video, scratch, { ...ffmpegContext, maxOutputBytes: 64_000 }), 'payload_too_large');
      expect(await readdir(scratch.dir)).toEqual([]);
    } finally {
      await scratch.dispose();
    }
  });

  it('rejects non-media bytes', async () => {
    const scratch = await Scratch.create();
    try {
      await expectOcularError(extractAudioTrack(await garbage(30_000), scratch, ffmpegContext), 'unsupported_media_type');
    } finally {
      await scratch.dispose();
    }
  });
});
