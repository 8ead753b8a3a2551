// Original file: proto/grpo/reward/v1/reward.proto

import type { ReferenceKind as _grpo_reward_v1_ReferenceKind, ReferenceKind__Output as _grpo_reward_v1_ReferenceKind__Output } from '../../../grpo/reward/v1/ReferenceKind';

/**
 * What a backend can do.
 */
export interface Capabilities {
  /**
   * True when results carry `feedback`.
   */
  'feedback'?: (boolean);
  /**
   * True when results carry `step_scores`.
   */
  'stepScores'?: (boolean);
  /**
   * The most items one Score call may carry. Larger requests are rejected with INVALID_ARGUMENT.
   */
  'maxBatchSize'?: (number);
  /**
   * The reference kinds this backend accepts.
   */
  'referenceKinds'?: (_grpo_reward_v1_ReferenceKind)[];
  /**
   * Lower and upper bounds of `score` when the backend guarantees them (both 0 when unbounded).
   */
  'scoreMin'?: (number | string);
  /**
   * See `score_min`.
   */
  'scoreMax'?: (number | string);
}

/**
 * What a backend can do.
 */
export interface Capabilities__Output {
  /**
   * True when results carry `feedback`.
   */
  'feedback': (boolean);
  /**
   * True when results carry `step_scores`.
   */
  'stepScores': (boolean);
  /**
   * The most items one Score call may carry. Larger requests are rejected with INVALID_ARGUMENT.
   */
  'maxBatchSize': (number);
  /**
   * The reference kinds this backend accepts.
   */
  'referenceKinds': (_grpo_reward_v1_ReferenceKind__Output)[];
  /**
   * Lower and upper bounds of `score` when the backend guarantees them (both 0 when unbounded).
   */
  'scoreMin': (number);
  /**
   * See `score_min`.
   */
  'scoreMax': (number);
}
