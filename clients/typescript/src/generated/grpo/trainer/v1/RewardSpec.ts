// Original file: proto/grpo/trainer/v1/trainer.proto


/**
 * How one prompt is to be rewarded: a backend of the registry and the weight of its score.
 */
export interface RewardSpec {
  /**
   * The registry name of the backend, such as "math". Must be known to the trainer at submit time.
   */
  'backend'?: (string);
  /**
   * The weight of this backend's score in the prompt's total reward: finite and > 0. 0 (unset) means 1.
   */
  'weight'?: (number | string);
}

/**
 * How one prompt is to be rewarded: a backend of the registry and the weight of its score.
 */
export interface RewardSpec__Output {
  /**
   * The registry name of the backend, such as "math". Must be known to the trainer at submit time.
   */
  'backend': (string);
  /**
   * The weight of this backend's score in the prompt's total reward: finite and > 0. 0 (unset) means 1.
   */
  'weight': (number);
}
