// Original file: proto/grpo/trainer/v1/trainer.proto

import type { PromptState as _grpo_trainer_v1_PromptState, PromptState__Output as _grpo_trainer_v1_PromptState__Output } from '../../../grpo/trainer/v1/PromptState';
import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from '../../../google/protobuf/Timestamp';
import type { Long } from '@grpc/proto-loader';

/**
 * One submission of a prompt and where it is.
 */
export interface PromptStatus {
  /**
   * The prompt's id.
   */
  'id'?: (string);
  /**
   * Where it is.
   */
  'state'?: (_grpo_trainer_v1_PromptState);
  /**
   * The step of its latest lease; 0 when it was never leased.
   */
  'step'?: (number | string | Long);
  /**
   * The checkpoint step that contains its update when TRAINED; 0 otherwise.
   */
  'checkpointStep'?: (number | string | Long);
  /**
   * Steps that took no update from it and counted against `training.max_prompt_attempts`.
   */
  'attempts'?: (number);
  /**
   * Why it was given up on, when FAILED; empty otherwise.
   */
  'reason'?: (string);
  /**
   * When it was accepted.
   */
  'submittedAt'?: (_google_protobuf_Timestamp | null);
  /**
   * When its state last changed.
   */
  'updatedAt'?: (_google_protobuf_Timestamp | null);
}

/**
 * One submission of a prompt and where it is.
 */
export interface PromptStatus__Output {
  /**
   * The prompt's id.
   */
  'id': (string);
  /**
   * Where it is.
   */
  'state': (_grpo_trainer_v1_PromptState__Output);
  /**
   * The step of its latest lease; 0 when it was never leased.
   */
  'step': (number);
  /**
   * The checkpoint step that contains its update when TRAINED; 0 otherwise.
   */
  'checkpointStep': (number);
  /**
   * Steps that took no update from it and counted against `training.max_prompt_attempts`.
   */
  'attempts': (number);
  /**
   * Why it was given up on, when FAILED; empty otherwise.
   */
  'reason': (string);
  /**
   * When it was accepted.
   */
  'submittedAt': (_google_protobuf_Timestamp__Output | null);
  /**
   * When its state last changed.
   */
  'updatedAt': (_google_protobuf_Timestamp__Output | null);
}
