// Original file: proto/grpo/trainer/v1/trainer.proto

import type { RewardBackend as _grpo_trainer_v1_RewardBackend, RewardBackend__Output as _grpo_trainer_v1_RewardBackend__Output } from '../../../grpo/trainer/v1/RewardBackend';

/**
 * Add or replace one backend.
 */
export interface SetRewardBackendRequest {
  /**
   * The backend; the output-only fields are ignored.
   */
  'backend'?: (_grpo_trainer_v1_RewardBackend | null);
}

/**
 * Add or replace one backend.
 */
export interface SetRewardBackendRequest__Output {
  /**
   * The backend; the output-only fields are ignored.
   */
  'backend': (_grpo_trainer_v1_RewardBackend__Output | null);
}
