import type { ChatService } from '../../chat/chat-service.ts';
import { formatTimestamp } from '../../media/video.ts';
import type { VideoStore } from '../../store/video-store.ts';
import type { VideoSummaryStore } from '../../store/video-summary-store.ts';

/** Segments read for a summary at most, spread over the video: a 2-hour video costs what a 10-minute one does. */
const MAX_SEGMENTS = 60;
const MAX_LINE_CHARS = 300;
const MAX_SUMMARY_TOKENS = 400;

const INSTRUCTIONS =
  'Below are time-stamped notes on a video, one per excerpt, in order: what is visible, on-screen text and speech. ' +
  'Write a summary of the whole video in at most six sentences: what it is about, its main parts in order, and ' +
  'the people, places and text that matter. Do not guess beyond the notes.';

/** Writes a video's whole-video summary for QA's global questions; a no-op when one exists. */
export type VideoSummarizer = (videoId: string, signal: AbortSignal) => Promise<void>;

function clip(text: string, max: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/**
 * Summarises an indexed video through the caption model (via the chat service): from the captions, on-screen
 * text and transcripts of at most MAX_SEGMENTS segments spread over it, made once per video at indexing time.
 */
export function createVideoSummarizer(chat: ChatService, model: string, store: VideoStore, summaries: VideoSummaryStore): VideoSummarizer {
  return async (videoId, signal) => {
    if ((await summaries.get(videoId)) !== undefined) return;
    const total = await store.countSegments(videoId);
    if (total === 0) return;
    const count = Math.min(total, MAX_SEGMENTS);
    const notes: string[] = [];
    for (let index = 0; index < count; index++) {
      const segment = await store.getSegment(videoId, Math.floor(((index + 0.5) * total) / count));
      if (!segment) continue;
      const parts = [segment.caption, segment.ocrText && `text: ${segment.ocrText}`, segment.transcript && `speech: ${segment.transcript}`];
      const line = clip(parts.filter((part) => part.trim() !== '').join(' | '), MAX_LINE_CHARS);
      if (line !== '') notes.push(`[${formatTimestamp(segment.startSeconds)}] ${line}`);
    }
    if (notes.length === 0) return;
    const result = await chat.generate(
      {
        model,
        maxTokens: MAX_SUMMARY_TOKENS,
        temperature: 0,
        messages: [{ role: 'user', content: [{ type: 'text', text: `${INSTRUCTIONS}\n\n${notes.join('\n')}` }] }],
      },
      signal,
    );
    const summary = result.text.trim();
    if (summary !== '') await summaries.put(videoId, summary, result.model);
  };
}
