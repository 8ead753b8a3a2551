// Original file: proto/grpo/trainer/v1/trainer.proto

import type { PromptState as _grpo_trainer_v1_PromptState, PromptState__Output as _grpo_trainer_v1_PromptState__Output } from '../../../grpo/trainer/v1/PromptState';

/**
 * Which prompts to list.
 */
export interface ListPromptsRequest {
  /**
   * Only these ids (at most 1000); empty: every prompt. An id submitted again after it was trained or
   * failed is listed once per submission.
   */
  'ids'?: (string)[];
  /**
   * Only prompts in this state; PROMPT_STATE_UNSPECIFIED: any state.
   */
  'state'?: (_grpo_trainer_v1_PromptState);
  /**
   * At most this many prompts in the answer, 1 to 1000; 0 means 100.
   */
  'pageSize'?: (number);
  /**
   * The `next_page_token` of the previous answer, to read on from there; empty: from the start. Pass it
   * with the same `ids` and `state` as the request that returned it (INVALID_ARGUMENT otherwise);
   * `page_size` may change.
   */
  'pageToken'?: (string);
}

/**
 * Which prompts to list.
 */
export interface ListPromptsRequest__Output {
  /**
   * Only these ids (at most 1000); empty: every prompt. An id submitted again after it was trained or
   * failed is listed once per submission.
   */
  'ids': (string)[];
  /**
   * Only prompts in this state; PROMPT_STATE_UNSPECIFIED: any state.
   */
  'state': (_grpo_trainer_v1_PromptState__Output);
  /**
   * At most this many prompts in the answer, 1 to 1000; 0 means 100.
   */
  'pageSize': (number);
  /**
   * The `next_page_token` of the previous answer, to read on from there; empty: from the start. Pass it
   * with the same `ids` and `state` as the request that returned it (INVALID_ARGUMENT otherwise);
   * `page_size` may change.
   */
  'pageToken': (string);
}
