import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import type { Job } from '../../jobs/job-queue.ts';
import { PermanentJobError, type JobContext, type JobHandler, type JobLog } from '../../jobs/job-runner.ts';
import type { AnalyzerImage, DetectedObject, ImageLabel, ReadText } from '../../perception/analyzers.ts';
import { isAbortError, isOcularError } from '../../spec/errors.ts';
import type { ImageBlobStore } from '../../store/image-blob-store.ts';
import type { ImageStore } from '../../store/image-store.ts';
import type { IndexingAnalyzers } from './analyzers.ts';
import { buildFactualCaption, mergeLabels, mergeObjects, mergeText } from './describe-segment.ts';

export interface ImageIndexerOptions {
  store: ImageStore;
  blobs: ImageBlobStore;
  analyzers: IndexingAnalyzers;
  log: JobLog;
  /** Called once an image's findings are saved (the embedding job is queued then). */
  onIndexed?: (() => void) | undefined;
}

const NO_TEXT: ReadText = { text: '', lines: [] };

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

/**
 * The `image.index` job: the analyzers a keyframe gets (OCR, objects with their boxes, scene labels, then a
 * caption by the caption model when one is configured, else the factual one), written to the image's row in
 * one update, which makes it searchable. A job whose image was deleted meanwhile ends quietly.
 */
export function createIndexImageHandler(options: ImageIndexerOptions): JobHandler {
  const { store, blobs, analyzers } = options;
  return async (job: Job, context: JobContext) => {
    const { imageId } = z.object({ imageId: z.string() }).parse(job.payload);
    const image = await store.getById(imageId);
    if (image === undefined || image.status === 'indexed') return;
    const { signal } = context;
    try {
      await store.setStatus(imageId, 'indexing');
      const data = await blobs.read(imageId);
      const input: AnalyzerImage = { data, width: image.width, height: image.height };
      const [text, objects, labels] = await Promise.all([
        analyzers.textReader?.read(input, signal) ?? Promise.resolve(NO_TEXT),
        analyzers.objectDetector?.detect(input, signal) ?? Promise.resolve<DetectedObject[]>([]),
        analyzers.labeler?.label(input, signal) ?? Promise.resolve<ImageLabel[]>([]),
      ]);
      const findings = {
        ocrText: mergeText([text]),
        objects: mergeObjects([objects]),
        labels: mergeLabels([labels]),
        transcript: '',
        hasSpeech: null,
      };
      let caption = buildFactualCaption(findings);
      if (analyzers.captioner)
        caption = await analyzers.captioner.caption(
          [input],
          { findings: caption, startSeconds: 0, endSeconds: 0, subject: 'image' },
          signal,
        );
      signal.throwIfAborted();
      await store.saveFindings(imageId, {
        caption,
        ocrText: findings.ocrText,
        detections: objects.map((object) => ({
          label: object.label,
          score: round(object.score),
          box: { x: round(object.box.x), y: round(object.box.y), width: round(object.box.width), height: round(object.box.height) },
        })),
        labels: findings.labels,
      });
      context.reportProgress(1);
      options.onIndexed?.();
    } catch (error) {
      if (signal.aborted || isAbortError(error)) throw error;
      if (!(await store.has(imageId))) return; // deleted mid-way: nothing left to index
      const message = isOcularError(error) ? error.message : `indexing failed: ${(error as Error)?.message ?? String(error)}`;
      // The stored image is one we decoded at upload: a decoder refusing it now will refuse it on every retry.
      const permanent = isOcularError(error) && (error.type === 'unsupported_media_type' || error.type === 'validation_error');
      if (permanent || job.attempts >= job.maxAttempts) {
        await store.setStatus(imageId, 'failed', message);
        if (permanent) throw new PermanentJobError(message, { cause: error });
      } else {
        await store.setStatus(imageId, 'pending');
        options.log.warn('image indexing attempt failed; it will be retried', { imageId, attempt: job.attempts, error: message });
      }
      throw error;
    }
  };
}
