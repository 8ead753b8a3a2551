// Original file: proto/grpo/trainer/v1/trainer.proto

import type { SampleScore as _grpo_trainer_v1_SampleScore, SampleScore__Output as _grpo_trainer_v1_SampleScore__Output } from '../../../grpo/trainer/v1/SampleScore';
import type { Long } from '@grpc/proto-loader';

/**
 * One completion of a step, with its rewards.
 */
export interface CompletionSample {
  /**
   * The prompt it completes.
   */
  'promptId'?: (string);
  /**
   * Its place in the prompt's group (0 to group_size - 1).
   */
  'index'?: (number);
  /**
   * The completion's text, cut at 8 KiB (UTF-8) when longer (`text_truncated`).
   */
  'text'?: (string);
  'textTruncated'?: (boolean);
  /**
   * "stop" (end of sequence or a stop string) or "length" (cut off at max_new_tokens).
   */
  'finishReason'?: (string);
  /**
   * The number of tokens generated.
   */
  'completionTokens'?: (number | string | Long);
  /**
   * The total weighted reward; `reward_valid` is false when a backend failed it (masked, no reward).
   */
  'reward'?: (number | string);
  'rewardValid'?: (boolean);
  /**
   * Each backend's answer.
   */
  'scores'?: (_grpo_trainer_v1_SampleScore)[];
}

/**
 * One completion of a step, with its rewards.
 */
export interface CompletionSample__Output {
  /**
   * The prompt it completes.
   */
  'promptId': (string);
  /**
   * Its place in the prompt's group (0 to group_size - 1).
   */
  'index': (number);
  /**
   * The completion's text, cut at 8 KiB (UTF-8) when longer (`text_truncated`).
   */
  'text': (string);
  'textTruncated': (boolean);
  /**
   * "stop" (end of sequence or a stop string) or "length" (cut off at max_new_tokens).
   */
  'finishReason': (string);
  /**
   * The number of tokens generated.
   */
  'completionTokens': (number);
  /**
   * The total weighted reward; `reward_valid` is false when a backend failed it (masked, no reward).
   */
  'reward': (number);
  'rewardValid': (boolean);
  /**
   * Each backend's answer.
   */
  'scores': (_grpo_trainer_v1_SampleScore__Output)[];
}
