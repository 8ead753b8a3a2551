// Original file: proto/grpo/trainer/v1/trainer.proto

import type { PromptStatus as _grpo_trainer_v1_PromptStatus, PromptStatus__Output as _grpo_trainer_v1_PromptStatus__Output } from '../../../grpo/trainer/v1/PromptStatus';

/**
 * The answer to ListPrompts.
 */
export interface ListPromptsResponse {
  /**
   * The prompts of this page, in submission order.
   */
  'prompts'?: (_grpo_trainer_v1_PromptStatus)[];
  /**
   * Pass as `page_token` to read the next page; empty when there are no more prompts.
   */
  'nextPageToken'?: (string);
}

/**
 * The answer to ListPrompts.
 */
export interface ListPromptsResponse__Output {
  /**
   * The prompts of this page, in submission order.
   */
  'prompts': (_grpo_trainer_v1_PromptStatus__Output)[];
  /**
   * Pass as `page_token` to read the next page; empty when there are no more prompts.
   */
  'nextPageToken': (string);
}
