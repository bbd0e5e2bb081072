import { describe, expect, it } from 'vitest';
import {
  buildCopyCutArgs,
  buildEncodeArgs,
  buildFitChain,
  buildKeyframeProbeArgs,
  buildSubtitleChain,
  escapeFilterValue,
  formatSrt,
  outputFrameSize,
  subtitleFilterIn,
} from '../../src/media/clip-commands.ts';
import { chooseRenderMode, isKeyframeTime, type RenderRequest } from '../../src/media/render-clip.ts';

describe('clip command builders', () => {
  it('sizes the output by height and aspect ratio, in even pixels', () => {
    const source = { width: 1280, height: 720 };
    expect(outputFrameSize(source, undefined, undefined)).toEqual({ width: 1280, height: 720 });
    expect(outputFrameSize(source, undefined, 480)).toEqual({ width: 854, height: 480 });
    expect(outputFrameSize(source, '9:16', 720)).toEqual({ width: 406, height: 720 });
    expect(outputFrameSize(source, '1:1', 1080)).toEqual({ width: 1080, height: 1080 });
    expect(outputFrameSize(source, '16:9', 240)).toEqual({ width: 426, height: 240 });
    expect(outputFrameSize({ width: 321, height: 241 }, undefined, undefined)).toEqual({ width: 322, height: 242 });
  });

  it('crops to fill or pads to fit', () => {
    expect(buildFitChain({ width: 406, height: 720 }, 'crop')).toBe(
      'scale=406:720:force_original_aspect_ratio=increase,crop=406:720,setsar=1',
    );
    expect(buildFitChain({ width: 240, height: 240 }, 'pad')).toBe(
      'scale=240:240:force_original_aspect_ratio=decrease,pad=240:240:(ow-iw)/2:(oh-ih)/2,setsar=1',
    );
  });

  it('escapes file names for a filter option inside a filtergraph', () => {
    expect(escapeFilterValue('/data/clips/a.srt')).toBe('/data/clips/a.srt');
    // Option level first (`:` and `'` get a backslash), then graph level (backslashes doubled, `'[],;` escaped).
    expect(escapeFilterValue("/d:ir/it's,[x];y")).toBe(String.raw`/d\\:ir/it\\\'s\,\[x\]\;y`);
  });

  it('opens inputs as files only and cuts with a stream copy', () => {
    const args = buildCopyCutArgs({ inputPath: '/v/source', startSeconds: 4, durationSeconds: 3, outputPath: '/c/out.mp4' });
    expect(args).toEqual(expect.arrayContaining(['-protocol_whitelist', 'file', 'file:/v/source', '-c', 'copy', 'file:/c/out.mp4']));
    expect(args.indexOf('-ss')).toBeLessThan(args.indexOf('-i'));
    expect(args[args.indexOf('-t') + 1]).toBe('3.000');
    expect(buildKeyframeProbeArgs('/v/source', 1, 2.5)).toEqual(
      expect.arrayContaining(['-read_intervals', '1.000%2.500', 'file:/v/source']),
    );
  });

  it('joins pieces with the concat filter and burns subtitles after joining', () => {
    const args = buildEncodeArgs({
      pieces: [
        { inputPath: '/v/a', startSeconds: 1, durationSeconds: 2 },
        { inputPath: '/v/b', startSeconds: 5, durationSeconds: 3 },
      ],
      size: { width: 240, height: 240 },
      fit: 'crop',
      audio: true,
      fps: 25,
      subtitles: { kind: 'subtitles', srtPath: '/s/1.srt' },
      videoEncoder: 'libx264',
      outputPath: '/c/out.mp4',
    });
    const graph = args[args.indexOf('-filter_complex') + 1]!;
    expect(graph).toContain('[v0][a0][v1][a1]concat=n=2:v=1:a=1[vj][aj]');
    expect(graph).toContain('[vj]subtitles=filename=/s/1.srt[vs]');
    expect(args).toEqual(expect.arrayContaining(['-map', '[vs]', '-map', '[aj]', '-c:v', 'libx264']));
    // Each input seeks on its own, before it is opened.
    expect(args.filter((arg) => arg === '-ss')).toHaveLength(2);
    const silent = buildEncodeArgs({
      pieces: [{ inputPath: '/v/a', startSeconds: 0, durationSeconds: 2 }],
      size: { width: 320, height: 240 },
      fit: 'pad',
      audio: false,
      videoEncoder: 'mpeg4',
      outputPath: '/c/out.mp4',
    });
    expect(silent).toContain('-an');
    expect(silent[silent.indexOf('-filter_complex') + 1]).not.toContain('concat');
  });

  it('draws subtitles with libass when the build has it, else one drawtext per cue', () => {
    const listing = (names: string[]) =>
      ` ... null              V->V       Pass.\n${names.map((name) => ` ... ${name.padEnd(17)} V->V       x`).join('\n')}\n`;
    expect(subtitleFilterIn(listing(['drawtext', 'subtitles']))).toBe('subtitles');
    expect(subtitleFilterIn(listing(['drawtext']))).toBe('drawtext');
    expect(subtitleFilterIn(listing(['ass']))).toBeUndefined();
    const chain = buildSubtitleChain({
      kind: 'drawtext',
      cues: [
        { startSeconds: 0, endSeconds: 1.5, textPath: '/s/1.txt' },
        { startSeconds: 1.5, endSeconds: 3, textPath: '/s/2.txt' },
      ],
    });
    expect(chain.split(',drawtext=')).toHaveLength(2);
    expect(chain).toContain('textfile=/s/1.txt');
    // The commas of the expression are escaped for the graph, so they do not split the chain.
    expect(chain).toContain(String.raw`enable=between(t\,0.000\,1.500)`);
  });

  it('writes SubRip cues', () => {
    expect(
      formatSrt([
        { startSeconds: 0, endSeconds: 1.5, text: 'hello\n\nthere' },
        { startSeconds: 61.25, endSeconds: 3725.004, text: 'later' },
      ]),
    ).toBe('1\n00:00:00,000 --> 00:00:01,500\nhello there\n\n2\n00:01:01,250 --> 01:02:05,004\nlater\n');
  });

  it('copies only a single unchanged piece that starts on a keyframe', () => {
    const request = (settings: RenderRequest['settings'], pieces = 1): RenderRequest => ({
      pieces: Array.from({ length: pieces }, () => ({
        inputPath: '/v/a',
        startSeconds: 2,
        endSeconds: 4,
        source: { width: 320, height: 240, hasAudio: true, fps: 25 },
      })),
      settings,
      outputPath: '/c/out.mp4',
    });
    expect(chooseRenderMode(request({ fit: 'crop' }), true)).toBe('copy');
    expect(chooseRenderMode(request({ fit: 'crop', resolution: 240 }), true)).toBe('copy');
    expect(chooseRenderMode(request({ fit: 'crop' }), false)).toBe('encode');
    expect(chooseRenderMode(request({ fit: 'crop' }, 2), true)).toBe('encode');
    expect(chooseRenderMode(request({ fit: 'crop', resolution: 480 }), true)).toBe('encode');
    expect(chooseRenderMode(request({ fit: 'crop', aspectRatio: '1:1' }), true)).toBe('encode');
    expect(chooseRenderMode(request({ fit: 'crop', cues: [{ startSeconds: 0, endSeconds: 1, text: 'x' }] }), true)).toBe('encode');
    expect(isKeyframeTime(2, [0, 2.0004, 4])).toBe(true);
    expect(isKeyframeTime(3, [0, 2, 4])).toBe(false);
    expect(isKeyframeTime(0, [])).toBe(true);
  });
});
