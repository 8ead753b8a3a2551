// Original file: proto/grpo/trainer/v1/trainer.proto

import type { RewardBackend as _grpo_trainer_v1_RewardBackend, RewardBackend__Output as _grpo_trainer_v1_RewardBackend__Output } from '../../../grpo/trainer/v1/RewardBackend';
import type { Long } from '@grpc/proto-loader';

/**
 * The answer to ListRewardBackends.
 */
export interface ListRewardBackendsResponse {
  /**
   * The registry, sorted by name.
   */
  'backends'?: (_grpo_trainer_v1_RewardBackend)[];
  /**
   * Increases by one on every change of the registry.
   */
  'registryVersion'?: (number | string | Long);
}

/**
 * The answer to ListRewardBackends.
 */
export interface ListRewardBackendsResponse__Output {
  /**
   * The registry, sorted by name.
   */
  'backends': (_grpo_trainer_v1_RewardBackend__Output)[];
  /**
   * Increases by one on every change of the registry.
   */
  'registryVersion': (number);
}
