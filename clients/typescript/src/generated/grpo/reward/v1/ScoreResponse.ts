// Original file: proto/grpo/reward/v1/reward.proto

import type { ScoreResult as _grpo_reward_v1_ScoreResult, ScoreResult__Output as _grpo_reward_v1_ScoreResult__Output } from '../../../grpo/reward/v1/ScoreResult';

/**
 * The results of a batch.
 */
export interface ScoreResponse {
  /**
   * One result per request item, in request order.
   */
  'results'?: (_grpo_reward_v1_ScoreResult)[];
}

/**
 * The results of a batch.
 */
export interface ScoreResponse__Output {
  /**
   * One result per request item, in request order.
   */
  'results': (_grpo_reward_v1_ScoreResult__Output)[];
}
