// Original file: proto/grpo/trainer/v1/trainer.proto

import type { StepReport as _grpo_trainer_v1_StepReport, StepReport__Output as _grpo_trainer_v1_StepReport__Output } from '../../../grpo/trainer/v1/StepReport';
import type { RunStatus as _grpo_trainer_v1_RunStatus, RunStatus__Output as _grpo_trainer_v1_RunStatus__Output } from '../../../grpo/trainer/v1/RunStatus';
import type { CompletionSample as _grpo_trainer_v1_CompletionSample, CompletionSample__Output as _grpo_trainer_v1_CompletionSample__Output } from '../../../grpo/trainer/v1/CompletionSample';

/**
 * The answer to StepStatus.
 */
export interface StepStatusResponse {
  /**
   * The step asked for; unset when no step has run yet and the latest was asked for.
   */
  'step'?: (_grpo_trainer_v1_StepReport | null);
  /**
   * The run beside it.
   */
  'run'?: (_grpo_trainer_v1_RunStatus | null);
  /**
   * With `include_samples`: some of the step's completions as the reward backends scored them (config
   * `training.samples_per_step`, one completion of each prompt in turn). Kept for the latest
   * `training.samples_keep_steps` steps; empty for older steps, a running step and a failed one.
   */
  'samples'?: (_grpo_trainer_v1_CompletionSample)[];
  /**
   * How many of the step's kept samples were left out of `samples` (the last ones) so that the response
   * fits in 4 MiB, the receive limit gRPC clients have by default, and in the server's
   * `limits.max_message_bytes`. 0 when all are here.
   */
  'samplesLeftOut'?: (number);
}

/**
 * The answer to StepStatus.
 */
export interface StepStatusResponse__Output {
  /**
   * The step asked for; unset when no step has run yet and the latest was asked for.
   */
  'step': (_grpo_trainer_v1_StepReport__Output | null);
  /**
   * The run beside it.
   */
  'run': (_grpo_trainer_v1_RunStatus__Output | null);
  /**
   * With `include_samples`: some of the step's completions as the reward backends scored them (config
   * `training.samples_per_step`, one completion of each prompt in turn). Kept for the latest
   * `training.samples_keep_steps` steps; empty for older steps, a running step and a failed one.
   */
  'samples': (_grpo_trainer_v1_CompletionSample__Output)[];
  /**
   * How many of the step's kept samples were left out of `samples` (the last ones) so that the response
   * fits in 4 MiB, the receive limit gRPC clients have by default, and in the server's
   * `limits.max_message_bytes`. 0 when all are here.
   */
  'samplesLeftOut': (number);
}
