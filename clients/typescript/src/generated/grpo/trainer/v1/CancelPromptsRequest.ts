// Original file: proto/grpo/trainer/v1/trainer.proto


/**
 * Which queued prompts to cancel.
 */
export interface CancelPromptsRequest {
  /**
   * The ids, 1 to 1000, each at most once.
   */
  'ids'?: (string)[];
}

/**
 * Which queued prompts to cancel.
 */
export interface CancelPromptsRequest__Output {
  /**
   * The ids, 1 to 1000, each at most once.
   */
  'ids': (string)[];
}
