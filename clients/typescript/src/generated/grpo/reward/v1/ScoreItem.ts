// Original file: proto/grpo/reward/v1/reward.proto

import type { Message as _grpo_reward_v1_Message, Message__Output as _grpo_reward_v1_Message__Output } from '../../../grpo/reward/v1/Message';
import type { CodeTests as _grpo_reward_v1_CodeTests, CodeTests__Output as _grpo_reward_v1_CodeTests__Output } from '../../../grpo/reward/v1/CodeTests';

/**
 * One completion to score.
 */
export interface ScoreItem {
  /**
   * Caller-chosen identifier, echoed back in the result. Required, unique within a request,
   * at most 256 bytes.
   */
  'id'?: (string);
  /**
   * The chat prompt the completion answers, oldest message first.
   */
  'prompt'?: (_grpo_reward_v1_Message)[];
  /**
   * The model's completion (the assistant turn), UTF-8. Backends cap its length (the math verifier
   * at 64 KiB by default) and report longer ones as SCORE_STATUS_INVALID_INPUT.
   */
  'completion'?: (string);
  /**
   * The gold final answer for math: "42", "\\frac{1}{2}", "[1, 3)", "x = 2", "B".
   */
  'answer'?: (string);
  /**
   * Tests for code.
   */
  'code'?: (_grpo_reward_v1_CodeTests | null);
  /**
   * Free-form key/value pairs passed through from the prompt (task name, difficulty...).
   */
  'metadata'?: ({[key: string]: string});
  /**
   * What a correct completion must match. Which kinds a backend accepts is in its Describe answer.
   */
  'reference'?: "answer"|"code";
}

/**
 * One completion to score.
 */
export interface ScoreItem__Output {
  /**
   * Caller-chosen identifier, echoed back in the result. Required, unique within a request,
   * at most 256 bytes.
   */
  'id': (string);
  /**
   * The chat prompt the completion answers, oldest message first.
   */
  'prompt': (_grpo_reward_v1_Message__Output)[];
  /**
   * The model's completion (the assistant turn), UTF-8. Backends cap its length (the math verifier
   * at 64 KiB by default) and report longer ones as SCORE_STATUS_INVALID_INPUT.
   */
  'completion': (string);
  /**
   * The gold final answer for math: "42", "\\frac{1}{2}", "[1, 3)", "x = 2", "B".
   */
  'answer'?: (string);
  /**
   * Tests for code.
   */
  'code'?: (_grpo_reward_v1_CodeTests__Output | null);
  /**
   * Free-form key/value pairs passed through from the prompt (task name, difficulty...).
   */
  'metadata': ({[key: string]: string});
  /**
   * What a correct completion must match. Which kinds a backend accepts is in its Describe answer.
   */
  'reference'?: "answer"|"code";
}
