// Original file: proto/grpo/reward/v1/reward.proto

import type { IOCase as _grpo_reward_v1_IOCase, IOCase__Output as _grpo_reward_v1_IOCase__Output } from '../../../grpo/reward/v1/IOCase';

/**
 * Tests for a code completion.
 */
export interface CodeTests {
  /**
   * The language of the completion. Only "python" is accepted today; empty means "python".
   */
  'language'?: (string);
  /**
   * HumanEval-style test code: defines `check(candidate)` that asserts on the candidate function.
   * Optional when `io_cases` is set.
   */
  'testCode'?: (string);
  /**
   * The name of the function `check` is called with, for example "add". Required with `test_code`.
   */
  'entryPoint'?: (string);
  /**
   * Standard-input/output cases; each one counts as one test. Optional when `test_code` is set.
   */
  'ioCases'?: (_grpo_reward_v1_IOCase)[];
  /**
   * Wall-clock limit for running ALL tests of this item, in seconds. 0 means the backend's default
   * (10 s for the code sandbox); values above the backend's maximum (60 s) are clamped.
   */
  'timeoutSeconds'?: (number | string);
}

/**
 * Tests for a code completion.
 */
export interface CodeTests__Output {
  /**
   * The language of the completion. Only "python" is accepted today; empty means "python".
   */
  'language': (string);
  /**
   * HumanEval-style test code: defines `check(candidate)` that asserts on the candidate function.
   * Optional when `io_cases` is set.
   */
  'testCode': (string);
  /**
   * The name of the function `check` is called with, for example "add". Required with `test_code`.
   */
  'entryPoint': (string);
  /**
   * Standard-input/output cases; each one counts as one test. Optional when `test_code` is set.
   */
  'ioCases': (_grpo_reward_v1_IOCase__Output)[];
  /**
   * Wall-clock limit for running ALL tests of this item, in seconds. 0 means the backend's default
   * (10 s for the code sandbox); values above the backend's maximum (60 s) are clamped.
   */
  'timeoutSeconds': (number);
}
