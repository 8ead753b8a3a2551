// Original file: proto/grpo/trainer/v1/trainer.proto

import type { Prompt as _grpo_trainer_v1_Prompt, Prompt__Output as _grpo_trainer_v1_Prompt__Output } from '../../../grpo/trainer/v1/Prompt';

/**
 * A batch of prompts to queue.
 */
export interface SubmitPromptsRequest {
  /**
   * The prompts, at least 1 and at most the trainer's `limits.max_prompts_per_request` (default 1024).
   */
  'prompts'?: (_grpo_trainer_v1_Prompt)[];
  /**
   * Optional idempotency key (at most 128 bytes). A request whose `request_id` was already accepted,
   * sent again with the same prompts, returns the first answer again (with `duplicate` set) and stores
   * nothing; with other prompts it is INVALID_ARGUMENT naming `request_id`.
   */
  'requestId'?: (string);
}

/**
 * A batch of prompts to queue.
 */
export interface SubmitPromptsRequest__Output {
  /**
   * The prompts, at least 1 and at most the trainer's `limits.max_prompts_per_request` (default 1024).
   */
  'prompts': (_grpo_trainer_v1_Prompt__Output)[];
  /**
   * Optional idempotency key (at most 128 bytes). A request whose `request_id` was already accepted,
   * sent again with the same prompts, returns the first answer again (with `duplicate` set) and stores
   * nothing; with other prompts it is INVALID_ARGUMENT naming `request_id`.
   */
  'requestId': (string);
}
