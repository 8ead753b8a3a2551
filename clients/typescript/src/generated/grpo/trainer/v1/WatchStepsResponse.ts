// Original file: proto/grpo/trainer/v1/trainer.proto

import type { StepReport as _grpo_trainer_v1_StepReport, StepReport__Output as _grpo_trainer_v1_StepReport__Output } from '../../../grpo/trainer/v1/StepReport';
import type { RunStatus as _grpo_trainer_v1_RunStatus, RunStatus__Output as _grpo_trainer_v1_RunStatus__Output } from '../../../grpo/trainer/v1/RunStatus';
import type { Long } from '@grpc/proto-loader';

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
  /**
   * Set on a report that follows a gap: the reports of the steps after the stream's place (`after_step`,
   * or the last step it sent) up to this step number were deleted under `retention.step_reports_seconds`
   * and are not sent. 0 when nothing the stream would have sent was deleted.
   */
  'forgottenThrough'?: (number | string | Long);
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
  /**
   * Set on a report that follows a gap: the reports of the steps after the stream's place (`after_step`,
   * or the last step it sent) up to this step number were deleted under `retention.step_reports_seconds`
   * and are not sent. 0 when nothing the stream would have sent was deleted.
   */
  'forgottenThrough': (number);
}
