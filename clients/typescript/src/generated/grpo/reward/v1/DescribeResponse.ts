// Original file: proto/grpo/reward/v1/reward.proto

import type { Capabilities as _grpo_reward_v1_Capabilities, Capabilities__Output as _grpo_reward_v1_Capabilities__Output } from '../../../grpo/reward/v1/Capabilities';

/**
 * Who this backend is.
 */
export interface DescribeResponse {
  /**
   * A short stable name, such as "math-verifier", "code-sandbox", "reward-model".
   */
  'name'?: (string);
  /**
   * The backend's version (its package version, or the model's identity for a reward model).
   */
  'version'?: (string);
  /**
   * What it can do.
   */
  'capabilities'?: (_grpo_reward_v1_Capabilities | null);
}

/**
 * Who this backend is.
 */
export interface DescribeResponse__Output {
  /**
   * A short stable name, such as "math-verifier", "code-sandbox", "reward-model".
   */
  'name': (string);
  /**
   * The backend's version (its package version, or the model's identity for a reward model).
   */
  'version': (string);
  /**
   * What it can do.
   */
  'capabilities': (_grpo_reward_v1_Capabilities__Output | null);
}
