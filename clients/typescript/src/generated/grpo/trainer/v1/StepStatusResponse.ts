// Original file: proto/grpo/trainer/v1/trainer.proto

import type { StepReport as _grpo_trainer_v1_StepReport, StepReport__Output as _grpo_trainer_v1_StepReport__Output } from '../../../grpo/trainer/v1/StepReport';
import type { RunStatus as _grpo_trainer_v1_RunStatus, RunStatus__Output as _grpo_trainer_v1_RunStatus__Output } from '../../../grpo/trainer/v1/RunStatus';

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
}
