// Original file: proto/grpo/trainer/v1/trainer.proto

import type { Long } from '@grpc/proto-loader';

/**
 * The numbers of one step. Rewards are the weighted totals over a prompt's backends. Lengths are in
 * tokens; times in seconds; KL in nats per token.
 */
export interface StepMetrics {
  /**
   * Mean total reward over the scored (unmasked) completions.
   */
  'rewardMean'?: (number | string);
  /**
   * Population standard deviation of the total reward over the scored completions.
   */
  'rewardStd'?: (number | string);
  /**
   * Mean score per backend name, over the items that backend scored.
   */
  'backendRewardMeans'?: ({[key: string]: number | string});
  /**
   * Mean k3 KL estimate to the reference model over completion tokens; 0 when beta is 0.
   */
  'kl'?: (number | string);
  /**
   * The policy (clipped surrogate) part of the loss, as aggregated.
   */
  'policyLoss'?: (number | string);
  /**
   * The total loss that was back-propagated (policy loss + beta * KL, and any extra terms).
   */
  'loss'?: (number | string);
  /**
   * Fraction of completion tokens whose ratio was clipped below (negative advantage, ratio < 1 - eps_low).
   */
  'clipFractionLow'?: (number | string);
  /**
   * Fraction of completion tokens whose ratio was clipped above (positive advantage, ratio > 1 + eps_high).
   */
  'clipFractionHigh'?: (number | string);
  /**
   * Mean per-token entropy of the policy over completion tokens, in nats.
   */
  'entropy'?: (number | string);
  /**
   * The global gradient L2 norm before clipping.
   */
  'gradNorm'?: (number | string);
  /**
   * Mean completion length in tokens.
   */
  'completionLengthMean'?: (number | string);
  /**
   * Shortest completion, in tokens.
   */
  'completionLengthMin'?: (number | string);
  /**
   * Longest completion, in tokens.
   */
  'completionLengthMax'?: (number | string);
  /**
   * Fraction of completions cut off at the maximum length (no end-of-sequence token).
   */
  'truncatedFraction'?: (number | string);
  /**
   * Number of groups whose rewards were all equal (they carry no learning signal).
   */
  'zeroVarianceGroups'?: (number | string | Long);
  /**
   * Number of completions whose reward could not be obtained and that were masked out of the loss.
   */
  'maskedRewardFailures'?: (number | string | Long);
  /**
   * Completion tokens generated per second of rollout time.
   */
  'tokensPerSecond'?: (number | string);
  /**
   * Wall-clock seconds of the whole step.
   */
  'stepSeconds'?: (number | string);
  /**
   * Seconds spent generating completions.
   */
  'rolloutSeconds'?: (number | string);
  /**
   * Seconds spent waiting for reward backends.
   */
  'rewardSeconds'?: (number | string);
  /**
   * Seconds spent computing old and reference log-probs.
   */
  'logprobSeconds'?: (number | string);
  /**
   * Seconds spent in forward and backward passes of the update.
   */
  'backwardSeconds'?: (number | string);
  /**
   * Seconds spent in optimizer steps.
   */
  'optimizerSeconds'?: (number | string);
  /**
   * Seconds spent pushing the new weights into the rollout engine.
   */
  'weightSyncSeconds'?: (number | string);
  /**
   * The learning rate used by this step.
   */
  'learningRate'?: (number | string);
  /**
   * Number of prompts in the step.
   */
  'prompts'?: (number | string | Long);
  /**
   * Number of completions in the step (prompts x group size).
   */
  'completions'?: (number | string | Long);
  /**
   * Mean importance ratio pi_theta / pi_old over completion tokens.
   */
  'ratioMean'?: (number | string);
  /**
   * Mean absolute difference between the rollout engine's and the trainer's per-token log-probs.
   */
  'samplerLogprobDiff'?: (number | string);
  /**
   * Other named numbers of algorithm variants (SDPO: "sdpo/distill_loss", "sdpo/distilled_fraction").
   */
  'extra'?: ({[key: string]: number | string});
}

/**
 * The numbers of one step. Rewards are the weighted totals over a prompt's backends. Lengths are in
 * tokens; times in seconds; KL in nats per token.
 */
export interface StepMetrics__Output {
  /**
   * Mean total reward over the scored (unmasked) completions.
   */
  'rewardMean': (number);
  /**
   * Population standard deviation of the total reward over the scored completions.
   */
  'rewardStd': (number);
  /**
   * Mean score per backend name, over the items that backend scored.
   */
  'backendRewardMeans': ({[key: string]: number});
  /**
   * Mean k3 KL estimate to the reference model over completion tokens; 0 when beta is 0.
   */
  'kl': (number);
  /**
   * The policy (clipped surrogate) part of the loss, as aggregated.
   */
  'policyLoss': (number);
  /**
   * The total loss that was back-propagated (policy loss + beta * KL, and any extra terms).
   */
  'loss': (number);
  /**
   * Fraction of completion tokens whose ratio was clipped below (negative advantage, ratio < 1 - eps_low).
   */
  'clipFractionLow': (number);
  /**
   * Fraction of completion tokens whose ratio was clipped above (positive advantage, ratio > 1 + eps_high).
   */
  'clipFractionHigh': (number);
  /**
   * Mean per-token entropy of the policy over completion tokens, in nats.
   */
  'entropy': (number);
  /**
   * The global gradient L2 norm before clipping.
   */
  'gradNorm': (number);
  /**
   * Mean completion length in tokens.
   */
  'completionLengthMean': (number);
  /**
   * Shortest completion, in tokens.
   */
  'completionLengthMin': (number);
  /**
   * Longest completion, in tokens.
   */
  'completionLengthMax': (number);
  /**
   * Fraction of completions cut off at the maximum length (no end-of-sequence token).
   */
  'truncatedFraction': (number);
  /**
   * Number of groups whose rewards were all equal (they carry no learning signal).
   */
  'zeroVarianceGroups': (number);
  /**
   * Number of completions whose reward could not be obtained and that were masked out of the loss.
   */
  'maskedRewardFailures': (number);
  /**
   * Completion tokens generated per second of rollout time.
   */
  'tokensPerSecond': (number);
  /**
   * Wall-clock seconds of the whole step.
   */
  'stepSeconds': (number);
  /**
   * Seconds spent generating completions.
   */
  'rolloutSeconds': (number);
  /**
   * Seconds spent waiting for reward backends.
   */
  'rewardSeconds': (number);
  /**
   * Seconds spent computing old and reference log-probs.
   */
  'logprobSeconds': (number);
  /**
   * Seconds spent in forward and backward passes of the update.
   */
  'backwardSeconds': (number);
  /**
   * Seconds spent in optimizer steps.
   */
  'optimizerSeconds': (number);
  /**
   * Seconds spent pushing the new weights into the rollout engine.
   */
  'weightSyncSeconds': (number);
  /**
   * The learning rate used by this step.
   */
  'learningRate': (number);
  /**
   * Number of prompts in the step.
   */
  'prompts': (number);
  /**
   * Number of completions in the step (prompts x group size).
   */
  'completions': (number);
  /**
   * Mean importance ratio pi_theta / pi_old over completion tokens.
   */
  'ratioMean': (number);
  /**
   * Mean absolute difference between the rollout engine's and the trainer's per-token log-probs.
   */
  'samplerLogprobDiff': (number);
  /**
   * Other named numbers of algorithm variants (SDPO: "sdpo/distill_loss", "sdpo/distilled_fraction").
   */
  'extra': ({[key: string]: number});
}
