// Original file: proto/grpo/trainer/v1/trainer.proto

import type { Long } from '@grpc/proto-loader';

/**
 * The trainer's request limits (config section `limits`). Sizes are UTF-8 bytes. A request over one of
 * them is refused with INVALID_ARGUMENT naming the field (RESOURCE_EXHAUSTED for the queue and the
 * WatchSteps streams).
 */
export interface ServerLimits {
  /**
   * The largest gRPC message the trainer receives or sends.
   */
  'maxMessageBytes'?: (number | string | Long);
  /**
   * Prompts in one SubmitPrompts request.
   */
  'maxPromptsPerRequest'?: (number | string | Long);
  /**
   * Tokens of a prompt after the model's chat template is applied; 0 = no check. Whatever it says, a
   * prompt must also leave room for the trainer's completion length in the model's context.
   */
  'maxPromptTokens'?: (number | string | Long);
  /**
   * Chat messages in one prompt.
   */
  'maxMessages'?: (number | string | Long);
  /**
   * Bytes of one chat message's content.
   */
  'maxChatMessageBytes'?: (number | string | Long);
  /**
   * Bytes of a prompt's reference answer.
   */
  'maxAnswerBytes'?: (number | string | Long);
  /**
   * Bytes of a prompt's code tests (test_code plus every io case).
   */
  'maxCodeBytes'?: (number | string | Long);
  /**
   * Reward specs in one prompt.
   */
  'maxRewardsPerPrompt'?: (number | string | Long);
  /**
   * Metadata key/value pairs in one prompt.
   */
  'maxMetadataPairs'?: (number | string | Long);
  /**
   * Bytes of one metadata key, and of one value.
   */
  'maxMetadataBytes'?: (number | string | Long);
  /**
   * Bytes of a prompt id.
   */
  'maxIdBytes'?: (number | string | Long);
  /**
   * Bytes of a request_id.
   */
  'maxRequestIdBytes'?: (number | string | Long);
  /**
   * Prompts waiting in the queue at most.
   */
  'maxQueueDepth'?: (number | string | Long);
  /**
   * WatchSteps streams open at once.
   */
  'maxWatchStreams'?: (number | string | Long);
}

/**
 * The trainer's request limits (config section `limits`). Sizes are UTF-8 bytes. A request over one of
 * them is refused with INVALID_ARGUMENT naming the field (RESOURCE_EXHAUSTED for the queue and the
 * WatchSteps streams).
 */
export interface ServerLimits__Output {
  /**
   * The largest gRPC message the trainer receives or sends.
   */
  'maxMessageBytes': (number);
  /**
   * Prompts in one SubmitPrompts request.
   */
  'maxPromptsPerRequest': (number);
  /**
   * Tokens of a prompt after the model's chat template is applied; 0 = no check. Whatever it says, a
   * prompt must also leave room for the trainer's completion length in the model's context.
   */
  'maxPromptTokens': (number);
  /**
   * Chat messages in one prompt.
   */
  'maxMessages': (number);
  /**
   * Bytes of one chat message's content.
   */
  'maxChatMessageBytes': (number);
  /**
   * Bytes of a prompt's reference answer.
   */
  'maxAnswerBytes': (number);
  /**
   * Bytes of a prompt's code tests (test_code plus every io case).
   */
  'maxCodeBytes': (number);
  /**
   * Reward specs in one prompt.
   */
  'maxRewardsPerPrompt': (number);
  /**
   * Metadata key/value pairs in one prompt.
   */
  'maxMetadataPairs': (number);
  /**
   * Bytes of one metadata key, and of one value.
   */
  'maxMetadataBytes': (number);
  /**
   * Bytes of a prompt id.
   */
  'maxIdBytes': (number);
  /**
   * Bytes of a request_id.
   */
  'maxRequestIdBytes': (number);
  /**
   * Prompts waiting in the queue at most.
   */
  'maxQueueDepth': (number);
  /**
   * WatchSteps streams open at once.
   */
  'maxWatchStreams': (number);
}
