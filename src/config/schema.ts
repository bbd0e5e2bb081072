import { z } from 'zod';

/** Entries of `models`: common fields here; each provider validates the rest with its own schema at boot. */
export const modelEntrySchema = z.looseObject({
  id: z
    .string()
    .min(1)
    .regex(/^[\w.:/@-]+$/, 'use letters, digits and . _ - : / @ only'),
  provider: z.string().min(1),
});

export const limitsSchema = z.strictObject({
  /** Media parts allowed in one user turn. @default 6 */
  maxMediaPerTurn: z.int().min(0).max(1000).default(6),
  /** Largest request body accepted, in bytes. @default 52428800 (50 MiB) */
  maxRequestBytes: z
    .int()
    .min(1024)
    .max(2 ** 31)
    .default(52_428_800),
  /** Largest `max_tokens` a client may ask for. @default 32768 */
  maxOutputTokens: z.int().min(1).max(10_000_000).default(32_768),
  /** Messages allowed in one request. @default 1000 */
  maxMessages: z.int().min(1).max(100_000).default(1000),
});

export const configFileSchema = z.strictObject({
  $schema: z.string().optional(),
  /** Model used when a request names none. @default the first entry of `models` */
  defaultModel: z.string().min(1).optional(),
  models: z.array(modelEntrySchema).default([]),
  /** Extra names for models: alias -> model id. */
  aliases: z.record(z.string().min(1), z.string().min(1)).default({}),
  limits: limitsSchema.prefault({}),
});

export type ConfigFile = z.infer<typeof configFileSchema>;
export type ModelEntry = z.infer<typeof modelEntrySchema>;
export type Limits = z.infer<typeof limitsSchema>;
