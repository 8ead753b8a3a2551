// Original file: proto/grpo/trainer/v1/trainer.proto

import type { StepReport as _grpo_trainer_v1_StepReport, StepReport__Output as _grpo_trainer_v1_StepReport__Output } from '../../../grpo/trainer/v1/StepReport';
import type { RunStatus as _grpo_trainer_v1_RunStatus, RunStatus__Output as _grpo_trainer_v1_RunStatus__Output } from '../../../grpo/trainer/v1/RunStatus';

/**
 * One report in the stream.
 */
export interface WatchStepsResponse {
  /**
   * The step.
   */
  'step'?: (_grpo_trainer_v1_StepReport | null);
  /**
   * The run at the time of this report.
   */
  'run'?: (_grpo_trainer_v1_RunStatus | null);
}

/**
 * One report in the stream.
 */
export interface WatchStepsResponse__Output {
  /**
   * The step.
   */
  'step': (_grpo_trainer_v1_StepReport__Output | null);
  /**
   * The run at the time of this report.
   */
  'run': (_grpo_trainer_v1_RunStatus__Output | null);
}
