// Original file: proto/grpo/trainer/v1/trainer.proto

import type { Message as _grpo_reward_v1_Message, Message__Output as _grpo_reward_v1_Message__Output } from '../../../grpo/reward/v1/Message';
import type { CodeTests as _grpo_reward_v1_CodeTests, CodeTests__Output as _grpo_reward_v1_CodeTests__Output } from '../../../grpo/reward/v1/CodeTests';
import type { RewardSpec as _grpo_trainer_v1_RewardSpec, RewardSpec__Output as _grpo_trainer_v1_RewardSpec__Output } from '../../../grpo/trainer/v1/RewardSpec';

/**
 * One training prompt.
 */
export interface Prompt {
  /**
   * Caller-chosen identifier, unique within the request; at most 256 bytes of printable ASCII.
   * Resubmitting an id that is already queued or leased is rejected; a trained id may be submitted again.
   */
  'id'?: (string);
  /**
   * The chat messages, oldest first; at least one. Roles: "system", "user", "assistant"; the last
   * message must not be "assistant". The trainer applies the model's chat template.
   */
  'messages'?: (_grpo_reward_v1_Message)[];
  /**
   * The gold final answer (math).
   */
  'answer'?: (string);
  /**
   * Tests (code).
   */
  'code'?: (_grpo_reward_v1_CodeTests | null);
  /**
   * The reward backends and weights for this prompt. Empty means the trainer's configured default
   * (`rewards.default` in its config). The total reward of a completion is sum(weight * score) over
   * the backends that scored it.
   */
  'rewards'?: (_grpo_trainer_v1_RewardSpec)[];
  /**
   * Free-form key/value pairs passed through to the reward backends; at most 32 pairs of 1 KiB each.
   */
  'metadata'?: ({[key: string]: string});
  /**
   * What a correct completion must match, passed to the reward backends unchanged.
   */
  'reference'?: "answer"|"code";
}

/**
 * One training prompt.
 */
export interface Prompt__Output {
  /**
   * Caller-chosen identifier, unique within the request; at most 256 bytes of printable ASCII.
   * Resubmitting an id that is already queued or leased is rejected; a trained id may be submitted again.
   */
  'id': (string);
  /**
   * The chat messages, oldest first; at least one. Roles: "system", "user", "assistant"; the last
   * message must not be "assistant". The trainer applies the model's chat template.
   */
  'messages': (_grpo_reward_v1_Message__Output)[];
  /**
   * The gold final answer (math).
   */
  'answer'?: (string);
  /**
   * Tests (code).
   */
  'code'?: (_grpo_reward_v1_CodeTests__Output | null);
  /**
   * The reward backends and weights for this prompt. Empty means the trainer's configured default
   * (`rewards.default` in its config). The total reward of a completion is sum(weight * score) over
   * the backends that scored it.
   */
  'rewards': (_grpo_trainer_v1_RewardSpec__Output)[];
  /**
   * Free-form key/value pairs passed through to the reward backends; at most 32 pairs of 1 KiB each.
   */
  'metadata': ({[key: string]: string});
  /**
   * What a correct completion must match, passed to the reward backends unchanged.
   */
  'reference'?: "answer"|"code";
}
