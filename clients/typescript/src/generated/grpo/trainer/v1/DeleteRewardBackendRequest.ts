// Original file: proto/grpo/trainer/v1/trainer.proto


/**
 * Remove one backend.
 */
export interface DeleteRewardBackendRequest {
  /**
   * The registry name.
   */
  'name'?: (string);
}

/**
 * Remove one backend.
 */
export interface DeleteRewardBackendRequest__Output {
  /**
   * The registry name.
   */
  'name': (string);
}
