// Original file: proto/grpo/trainer/v1/trainer.proto

/**
 * Where a submitted prompt is.
 */
export const PromptState = {
  /**
   * Not used in answers; in ListPromptsRequest.state it means any state.
   */
  PROMPT_STATE_UNSPECIFIED: 'PROMPT_STATE_UNSPECIFIED',
  /**
   * Waiting in the queue.
   */
  PROMPT_STATE_QUEUED: 'PROMPT_STATE_QUEUED',
  /**
   * Taken by the step in progress (or by a step not yet in a checkpoint).
   */
  PROMPT_STATE_LEASED: 'PROMPT_STATE_LEASED',
  /**
   * Its update is in a durable checkpoint.
   */
  PROMPT_STATE_TRAINED: 'PROMPT_STATE_TRAINED',
  /**
   * Given up on after `training.max_prompt_attempts` steps that took no update from it; see `reason`.
   */
  PROMPT_STATE_FAILED: 'PROMPT_STATE_FAILED',
  /**
   * Taken out of the queue by CancelPrompts; never trained (unless submitted again).
   */
  PROMPT_STATE_CANCELLED: 'PROMPT_STATE_CANCELLED',
} as const;

/**
 * Where a submitted prompt is.
 */
export type PromptState =
  /**
   * Not used in answers; in ListPromptsRequest.state it means any state.
   */
  | 'PROMPT_STATE_UNSPECIFIED'
  | 0
  /**
   * Waiting in the queue.
   */
  | 'PROMPT_STATE_QUEUED'
  | 1
  /**
   * Taken by the step in progress (or by a step not yet in a checkpoint).
   */
  | 'PROMPT_STATE_LEASED'
  | 2
  /**
   * Its update is in a durable checkpoint.
   */
  | 'PROMPT_STATE_TRAINED'
  | 3
  /**
   * Given up on after `training.max_prompt_attempts` steps that took no update from it; see `reason`.
   */
  | 'PROMPT_STATE_FAILED'
  | 4
  /**
   * Taken out of the queue by CancelPrompts; never trained (unless submitted again).
   */
  | 'PROMPT_STATE_CANCELLED'
  | 5

/**
 * Where a submitted prompt is.
 */
export type PromptState__Output = typeof PromptState[keyof typeof PromptState]
