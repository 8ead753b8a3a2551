// Original file: proto/grpo/trainer/v1/trainer.proto

import type { Long } from '@grpc/proto-loader';

/**
 * Which step to report.
 */
export interface StepStatusRequest {
  /**
   * The step number; 0 (unset) means the latest step.
   */
  'step'?: (number | string | Long);
  /**
   * Also return the completions the trainer kept of that step (`samples`).
   */
  'includeSamples'?: (boolean);
}

/**
 * Which step to report.
 */
export interface StepStatusRequest__Output {
  /**
   * The step number; 0 (unset) means the latest step.
   */
  'step': (number);
  /**
   * Also return the completions the trainer kept of that step (`samples`).
   */
  'includeSamples': (boolean);
}
