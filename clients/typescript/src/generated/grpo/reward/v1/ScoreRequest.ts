// Original file: proto/grpo/reward/v1/reward.proto

import type { ScoreItem as _grpo_reward_v1_ScoreItem, ScoreItem__Output as _grpo_reward_v1_ScoreItem__Output } from '../../../grpo/reward/v1/ScoreItem';

/**
 * A batch of items to score.
 */
export interface ScoreRequest {
  /**
   * The items, at least 1 and at most the backend's `capabilities.max_batch_size`.
   */
  'items'?: (_grpo_reward_v1_ScoreItem)[];
}

/**
 * A batch of items to score.
 */
export interface ScoreRequest__Output {
  /**
   * The items, at least 1 and at most the backend's `capabilities.max_batch_size`.
   */
  'items': (_grpo_reward_v1_ScoreItem__Output)[];
}
