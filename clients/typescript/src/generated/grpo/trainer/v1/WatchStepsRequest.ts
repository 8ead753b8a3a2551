// Original file: proto/grpo/trainer/v1/trainer.proto

import type { Long } from '@grpc/proto-loader';

/**
 * Which steps to stream.
 */
export interface WatchStepsRequest {
  /**
   * Send the finished steps after this one first (0 = from the first step), then live steps.
   */
  'afterStep'?: (number | string | Long);
  /**
   * Also send a report when a step starts (state RUNNING), not only when it ends.
   */
  'includeRunning'?: (boolean);
}

/**
 * Which steps to stream.
 */
export interface WatchStepsRequest__Output {
  /**
   * Send the finished steps after this one first (0 = from the first step), then live steps.
   */
  'afterStep': (number);
  /**
   * Also send a report when a step starts (state RUNNING), not only when it ends.
   */
  'includeRunning': (boolean);
}
