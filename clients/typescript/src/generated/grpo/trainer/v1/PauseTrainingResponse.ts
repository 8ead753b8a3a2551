// Original file: proto/grpo/trainer/v1/trainer.proto

import type { RunStatus as _grpo_trainer_v1_RunStatus, RunStatus__Output as _grpo_trainer_v1_RunStatus__Output } from '../../../grpo/trainer/v1/RunStatus';

/**
 * The answer to PauseTraining.
 */
export interface PauseTrainingResponse {
  /**
   * The run after the request.
   */
  'run'?: (_grpo_trainer_v1_RunStatus | null);
}

/**
 * The answer to PauseTraining.
 */
export interface PauseTrainingResponse__Output {
  /**
   * The run after the request.
   */
  'run': (_grpo_trainer_v1_RunStatus__Output | null);
}
