import { stat } from 'node:fs/promises';
import { OcularError } from '../spec/errors.ts';
import type { FfmpegContext } from './binaries.ts';
import { buildMp3Args, buildWav16kMonoArgs } from './ffmpeg-commands.ts';
import { ProcessError, runProcess, toMediaError } from './run-process.ts';
import type { Scratch } from './scratch.ts';
import { probeMedia } from './video.ts';

/** Bytes per second of 16 kHz mono 16-bit PCM. */
const WAV_16K_MONO_BYTES_PER_SECOND = 32_000;
const WAV_HEADER_BYTES = 44;

/**
 * Fills in the RIFF and `data` sizes of a WAV that ffmpeg wrote to a pipe (it cannot seek back, so it leaves
 * 0xFFFFFFFF, which some readers reject). Patches the buffer in place and returns it.
 */
export function patchWavSizes(wav: Buffer): Buffer {
  if (wav.length < 12 || wav.toString('latin1', 0, 4) !== 'RIFF' || wav.toString('latin1', 8, 12) !== 'WAVE') {
    throw new OcularError('server_error', 'ffmpeg did not produce a WAV file');
  }
  wav.writeUInt32LE(Math.min(0xffffffff, wav.length - 8), 4);
  let offset = 12;
  while (offset + 8 <= wav.length) {
    const id = wav.toString('latin1', offset, offset + 4);
    if (id === 'data') {
      wav.writeUInt32LE(Math.min(0xffffffff, wav.length - offset - 8), offset + 4);
      return wav;
    }
    const size = wav.readUInt32LE(offset + 4);
    offset += 8 + size + (size % 2);
  }
  throw new OcularError('server_error', 'ffmpeg produced a WAV file without a data chunk');
}

/** After a failed conversion: "no audio stream" is a clearer answer than ffmpeg's stream-map message. */
async function explainFailure(
  error: unknown,
  path: string,
  action: string,
  context: FfmpegContext,
  signal?: AbortSignal,
): Promise<unknown> {
  if (error instanceof ProcessError && error.failure === 'exit') {
    const probe = await probeMedia(path, context, signal); // throws its own 415 when the file cannot be read at all
    if (probe.audio === undefined) return new OcularError('unsupported_media_type', 'the file has no audio stream', { cause: error });
  }
  return toMediaError(error, action, path);
}

async function convertToStdout(
  path: string,
  args: string[],
  action: string,
  context: FfmpegContext,
  signal?: AbortSignal,
): Promise<Buffer> {
  try {
    const { stdout } = await runProcess(context.binaries.ffmpeg, args, {
      timeoutMs: context.timeoutMs,
      signal,
      maxStdoutBytes: context.maxOutputBytes,
    });
    return stdout;
  } catch (error) {
    throw await explainFailure(error, path, action, context, signal);
  }
}

/**
 * The first audio stream of any audio or video file as 16 kHz mono 16-bit PCM WAV (what speech-to-text
 * models expect), with a canonical 44-byte header. Output above `context.maxOutputBytes` is `payload_too_large`.
 */
export async function toWav16kMono(path: string, context: FfmpegContext, signal?: AbortSignal): Promise<Buffer> {
  const wav = await convertToStdout(path, buildWav16kMonoArgs({ inputPath: path }), 'converting the audio to WAV', context, signal);
  return patchWavSizes(wav);
}

/** The first audio stream as mono 24 kHz 64 kbit/s MP3. */
export async function toMp3(path: string, context: FfmpegContext, signal?: AbortSignal): Promise<Buffer> {
  const mp3 = await convertToStdout(path, buildMp3Args({ inputPath: path }), 'converting the audio to MP3', context, signal);
  if (mp3.length === 0) throw new OcularError('unsupported_media_type', 'the file has no decodable audio');
  return mp3;
}

/**
 * Writes a video's first audio stream to a 16 kHz mono WAV file in `scratch` and returns its path, or
 * undefined when the video has no audio stream. The size is checked against `context.maxOutputBytes` from
 * the probed duration before anything is decoded, and again after.
 */
export async function extractAudioTrack(
  videoPath: string,
  scratch: Scratch,
  context: FfmpegContext,
  signal?: AbortSignal,
): Promise<string | undefined> {
  const probe = await probeMedia(videoPath, context, signal);
  if (probe.audio === undefined) return undefined;
  const expectedBytes = WAV_HEADER_BYTES + Math.ceil(probe.durationSeconds * WAV_16K_MONO_BYTES_PER_SECOND);
  const tooLarge = (): OcularError =>
    new OcularError(
      'payload_too_large',
      `the audio track is too long: as 16 kHz WAV it would exceed ${context.maxOutputBytes} bytes (${Math.round(probe.durationSeconds)} s of audio)`,
    );
  if (expectedBytes > context.maxOutputBytes) throw tooLarge();
  const outputPath = scratch.path('.wav');
  try {
    await runProcess(context.binaries.ffmpeg, buildWav16kMonoArgs({ inputPath: videoPath, outputPath, streamIndex: probe.audio.index }), {
      timeoutMs: context.timeoutMs,
      signal,
      stdout: 'ignore',
    });
  } catch (error) {
    throw toMediaError(error, 'extracting the audio track', videoPath);
  }
  if ((await stat(outputPath)).size > context.maxOutputBytes) throw tooLarge();
  return outputPath;
}
