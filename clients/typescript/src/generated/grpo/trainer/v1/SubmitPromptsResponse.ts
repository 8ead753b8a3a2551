// Original file: proto/grpo/trainer/v1/trainer.proto

import type { Long } from '@grpc/proto-loader';

/**
 * The answer to SubmitPrompts.
 */
export interface SubmitPromptsResponse {
  /**
   * The ids of the prompts now queued, in request order.
   */
  'acceptedIds'?: (string)[];
  /**
   * The number of prompts waiting in the queue after this request.
   */
  'queueDepth'?: (number | string | Long);
  /**
   * True when this answer is a replay for an already-seen `request_id`.
   */
  'duplicate'?: (boolean);
}

/**
 * The answer to SubmitPrompts.
 */
export interface SubmitPromptsResponse__Output {
  /**
   * The ids of the prompts now queued, in request order.
   */
  'acceptedIds': (string)[];
  /**
   * The number of prompts waiting in the queue after this request.
   */
  'queueDepth': (number);
  /**
   * True when this answer is a replay for an already-seen `request_id`.
   */
  'duplicate': (boolean);
}
