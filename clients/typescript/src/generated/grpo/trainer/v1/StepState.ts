// Original file: proto/grpo/trainer/v1/trainer.proto

/**
 * One step's lifecycle.
 */
export const StepState = {
  /**
   * Not used.
   */
  STEP_STATE_UNSPECIFIED: 'STEP_STATE_UNSPECIFIED',
  /**
   * Rolling out, scoring or updating.
   */
  STEP_STATE_RUNNING: 'STEP_STATE_RUNNING',
  /**
   * The optimizer step was taken.
   */
  STEP_STATE_COMPLETED: 'STEP_STATE_COMPLETED',
  /**
   * No update was taken (every reward failed, or an error); the step's prompts went back to the queue.
   */
  STEP_STATE_SKIPPED: 'STEP_STATE_SKIPPED',
  /**
   * The step failed with an error; see `StepReport.error`.
   */
  STEP_STATE_FAILED: 'STEP_STATE_FAILED',
} as const;

/**
 * One step's lifecycle.
 */
export type StepState =
  /**
   * Not used.
   */
  | 'STEP_STATE_UNSPECIFIED'
  | 0
  /**
   * Rolling out, scoring or updating.
   */
  | 'STEP_STATE_RUNNING'
  | 1
  /**
   * The optimizer step was taken.
   */
  | 'STEP_STATE_COMPLETED'
  | 2
  /**
   * No update was taken (every reward failed, or an error); the step's prompts went back to the queue.
   */
  | 'STEP_STATE_SKIPPED'
  | 3
  /**
   * The step failed with an error; see `StepReport.error`.
   */
  | 'STEP_STATE_FAILED'
  | 4

/**
 * One step's lifecycle.
 */
export type StepState__Output = typeof StepState[keyof typeof StepState]
