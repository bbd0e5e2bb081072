import type { ProviderDefinition } from '../provider-utils/provider-definition.ts';
import { anthropic } from './anthropic/index.ts';
import { gemini } from './gemini/index.ts';
import { llama } from './llama/index.ts';
import { openAiCompatible } from './openai-compatible/index.ts';
import { reka } from './reka/index.ts';

const DEFINITIONS = [openAiCompatible, anthropic, gemini, reka, llama] as unknown as ProviderDefinition<never>[];

/**
 * Every provider Ocular can build models from, by the `provider` value used in config. Adding a backend
 * is a folder under `providers/` plus one entry here.
 */
export const PROVIDERS: ReadonlyMap<string, ProviderDefinition<never>> = new Map(
  DEFINITIONS.map((definition) => [definition.name, definition]),
);
