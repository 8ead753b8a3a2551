// Original file: proto/grpo/trainer/v1/trainer.proto

import type { RewardBackend as _grpo_trainer_v1_RewardBackend, RewardBackend__Output as _grpo_trainer_v1_RewardBackend__Output } from '../../../grpo/trainer/v1/RewardBackend';
import type { Long } from '@grpc/proto-loader';

/**
 * The answer to SetRewardBackend.
 */
export interface SetRewardBackendResponse {
  /**
   * The backend as stored.
   */
  'backend'?: (_grpo_trainer_v1_RewardBackend | null);
  /**
   * The registry version after the change.
   */
  'registryVersion'?: (number | string | Long);
}

/**
 * The answer to SetRewardBackend.
 */
export interface SetRewardBackendResponse__Output {
  /**
   * The backend as stored.
   */
  'backend': (_grpo_trainer_v1_RewardBackend__Output | null);
  /**
   * The registry version after the change.
   */
  'registryVersion': (number);
}
