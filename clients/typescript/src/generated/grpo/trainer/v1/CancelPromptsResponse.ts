// Original file: proto/grpo/trainer/v1/trainer.proto

import type { PromptStatus as _grpo_trainer_v1_PromptStatus, PromptStatus__Output as _grpo_trainer_v1_PromptStatus__Output } from '../../../grpo/trainer/v1/PromptStatus';
import type { Long } from '@grpc/proto-loader';

/**
 * The answer to CancelPrompts.
 */
export interface CancelPromptsResponse {
  /**
   * The ids this call took out of the queue (now CANCELLED), in request order.
   */
  'cancelledIds'?: (string)[];
  /**
   * The other ids the trainer knows, each as its latest submission stands (LEASED: a step has it and it
   * can no longer be cancelled; TRAINED, FAILED, or CANCELLED before), in request order.
   */
  'notCancelled'?: (_grpo_trainer_v1_PromptStatus)[];
  /**
   * The ids the trainer does not know, in request order: never submitted, or their rows were deleted
   * under retention.prompt_rows_seconds.
   */
  'unknownIds'?: (string)[];
  /**
   * The number of prompts waiting in the queue after this request.
   */
  'queueDepth'?: (number | string | Long);
}

/**
 * The answer to CancelPrompts.
 */
export interface CancelPromptsResponse__Output {
  /**
   * The ids this call took out of the queue (now CANCELLED), in request order.
   */
  'cancelledIds': (string)[];
  /**
   * The other ids the trainer knows, each as its latest submission stands (LEASED: a step has it and it
   * can no longer be cancelled; TRAINED, FAILED, or CANCELLED before), in request order.
   */
  'notCancelled': (_grpo_trainer_v1_PromptStatus__Output)[];
  /**
   * The ids the trainer does not know, in request order: never submitted, or their rows were deleted
   * under retention.prompt_rows_seconds.
   */
  'unknownIds': (string)[];
  /**
   * The number of prompts waiting in the queue after this request.
   */
  'queueDepth': (number);
}
