// The playground's pure helpers, in Node: citations in answers and what may be attached to a chat message.
import { describe, expect, it } from 'vitest';
import { findCitations, formatTime } from '../../web/src/citations.ts';
import { kindOf, MAX_CONVERSATION_BYTES, MAX_FILE_BYTES, MAX_FILES_PER_MESSAGE, refusal } from '../../web/src/attachments.ts';
import { errorFrom } from '../../web/src/api.ts';

describe('citations', () => {
  it('finds [mm:ss], [h:mm:ss] and ranges, with their start in seconds', () => {
    const text = 'At [0:05] the title, at [01:10] a car, at [1:02:03] the end, and [0:10-0:15] or [2:00 – 2:30].';
    expect(findCitations(text).map(({ text: cited, seconds }) => [cited, seconds])).toEqual([
      ['[0:05]', 5],
      ['[01:10]', 70],
      ['[1:02:03]', 3723],
      ['[0:10-0:15]', 10],
      ['[2:00 – 2:30]', 120],
    ]);
    const [first] = findCitations(text);
    expect(text.slice(first!.index, first!.index + first!.length)).toBe('[0:05]');
  });

  it('leaves alone what is not a time', () => {
    expect(findCitations('[0:75] [a:05] [5] 0:05 [123:45:67] [link](0:05)')).toEqual([]);
  });

  it('formats times as m:ss, or h:mm:ss past an hour', () => {
    expect([formatTime(0), formatTime(5.9), formatTime(65), formatTime(3723), formatTime(-1)]).toEqual([
      '0:00',
      '0:05',
      '1:05',
      '1:02:03',
      '0:00',
    ]);
  });
});

describe('attachments', () => {
  const file = (name: string, type: string, size: number) => ({ name, type, size }) as File;

  it('knows images, videos, audio and PDFs, and nothing else', () => {
    expect(kindOf(file('a.png', 'image/png', 1))).toBe('image');
    expect(kindOf(file('a.mp4', 'video/mp4', 1))).toBe('video');
    expect(kindOf(file('a.wav', 'audio/wav', 1))).toBe('audio');
    expect(kindOf(file('a.pdf', 'application/pdf', 1))).toBe('pdf');
    expect(kindOf(file('report.PDF', '', 1))).toBe('pdf');
    expect(kindOf(file('a.zip', 'application/zip', 1))).toBeUndefined();
  });

  it('refuses other types, large files, too many files and an overfull conversation', () => {
    expect(refusal(file('a.png', 'image/png', 1000), 0, 0)).toBeUndefined();
    expect(refusal(file('a.zip', 'application/zip', 1000), 0, 0)).toBeDefined();
    expect(refusal(file('a.png', 'image/png', MAX_FILE_BYTES + 1), 0, 0)).toBeDefined();
    expect(refusal(file('a.png', 'image/png', 1000), MAX_FILES_PER_MESSAGE, 0)).toBeDefined();
    expect(refusal(file('a.png', 'image/png', 1000), 0, MAX_CONVERSATION_BYTES - 999)).toBeDefined();
    expect(refusal(file('a.png', 'image/png', 1000), 0, MAX_CONVERSATION_BYTES - 1000)).toBeUndefined();
  });

  it('keeps a conversation of attachments inside the default request limit once base64-encoded', () => {
    expect(Math.ceil(MAX_CONVERSATION_BYTES / 3) * 4).toBeLessThan(50 * 1024 * 1024 - 64 * 1024);
  });
});

describe('API errors', () => {
  it('reads the error envelope, and copes with bodies that are not one', () => {
    expect(errorFrom(409, '{"error":{"type":"conflict_error","message":"busy"}}')).toMatchObject({ status: 409, type: 'conflict_error' });
    expect(errorFrom(502, '<html>Bad gateway</html>')).toMatchObject({ status: 502, type: 'error' });
    expect(errorFrom(500, '')).toMatchObject({ status: 500, type: 'error' });
  });
});
