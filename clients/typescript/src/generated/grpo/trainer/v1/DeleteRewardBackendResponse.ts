// Original file: proto/grpo/trainer/v1/trainer.proto

import type { Long } from '@grpc/proto-loader';

/**
 * The answer to DeleteRewardBackend.
 */
export interface DeleteRewardBackendResponse {
  /**
   * The registry version after the change.
   */
  'registryVersion'?: (number | string | Long);
}

/**
 * The answer to DeleteRewardBackend.
 */
export interface DeleteRewardBackendResponse__Output {
  /**
   * The registry version after the change.
   */
  'registryVersion': (number);
}
