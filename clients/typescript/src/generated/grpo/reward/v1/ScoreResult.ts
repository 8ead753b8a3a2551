// Original file: proto/grpo/reward/v1/reward.proto

import type { ScoreStatus as _grpo_reward_v1_ScoreStatus, ScoreStatus__Output as _grpo_reward_v1_ScoreStatus__Output } from '../../../grpo/reward/v1/ScoreStatus';

/**
 * The score of one item.
 */
export interface ScoreResult {
  /**
   * The `id` of the item this result belongs to.
   */
  'id'?: (string);
  /**
   * The reward, usually in [0, 1] (1 = correct). Learned reward models return an unbounded real.
   * Meaningful when `status` is SCORE_STATUS_OK, or SCORE_STATUS_TIMEOUT or
   * SCORE_STATUS_RESOURCE_EXHAUSTED for a code item (see ScoreStatus); callers must not use it otherwise.
   */
  'score'?: (number | string);
  /**
   * Process supervision: one score per reasoning step of the completion, in order. Empty when the
   * backend does not score steps.
   */
  'stepScores'?: (number | string)[];
  /**
   * Where each step of `step_scores` ends: the character (Unicode code point) offset in `completion`
   * one past the step's last character. Same length as `step_scores`; non-decreasing; within
   * 0..len(completion); the last equals the completion's length. The trainer masks a result that breaks
   * this (as SCORE_STATUS_INTERNAL) rather than guess where its steps lie.
   */
  'stepEndOffsets'?: (number)[];
  /**
   * Why the item scored as it did, for people and for self-distillation (SDPO): the expected and the
   * found answer, the first failing test with a trimmed traceback. At most 4 KiB. May be empty.
   */
  'feedback'?: (string);
  /**
   * How scoring went. Items whose status is not OK (and not a code item's TIMEOUT or
   * RESOURCE_EXHAUSTED) are masked out of the trainer's loss and counted, never scored as 0.
   */
  'status'?: (_grpo_reward_v1_ScoreStatus);
  /**
   * Sub-scores and facts, such as "tests_passed", "tests_total", "truncated" (1.0 when the input was
   * truncated), "extracted" (1.0 when an answer was found).
   */
  'components'?: ({[key: string]: number | string});
  /**
   * A short machine-oriented explanation when `status` is not OK; empty otherwise.
   */
  'statusMessage'?: (string);
}

/**
 * The score of one item.
 */
export interface ScoreResult__Output {
  /**
   * The `id` of the item this result belongs to.
   */
  'id': (string);
  /**
   * The reward, usually in [0, 1] (1 = correct). Learned reward models return an unbounded real.
   * Meaningful when `status` is SCORE_STATUS_OK, or SCORE_STATUS_TIMEOUT or
   * SCORE_STATUS_RESOURCE_EXHAUSTED for a code item (see ScoreStatus); callers must not use it otherwise.
   */
  'score': (number);
  /**
   * Process supervision: one score per reasoning step of the completion, in order. Empty when the
   * backend does not score steps.
   */
  'stepScores': (number)[];
  /**
   * Where each step of `step_scores` ends: the character (Unicode code point) offset in `completion`
   * one past the step's last character. Same length as `step_scores`; non-decreasing; within
   * 0..len(completion); the last equals the completion's length. The trainer masks a result that breaks
   * this (as SCORE_STATUS_INTERNAL) rather than guess where its steps lie.
   */
  'stepEndOffsets': (number)[];
  /**
   * Why the item scored as it did, for people and for self-distillation (SDPO): the expected and the
   * found answer, the first failing test with a trimmed traceback. At most 4 KiB. May be empty.
   */
  'feedback': (string);
  /**
   * How scoring went. Items whose status is not OK (and not a code item's TIMEOUT or
   * RESOURCE_EXHAUSTED) are masked out of the trainer's loss and counted, never scored as 0.
   */
  'status': (_grpo_reward_v1_ScoreStatus__Output);
  /**
   * Sub-scores and facts, such as "tests_passed", "tests_total", "truncated" (1.0 when the input was
   * truncated), "extracted" (1.0 when an answer was found).
   */
  'components': ({[key: string]: number});
  /**
   * A short machine-oriented explanation when `status` is not OK; empty otherwise.
   */
  'statusMessage': (string);
}
