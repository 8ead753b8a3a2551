// Original file: proto/grpo/trainer/v1/trainer.proto

/**
 * The run as a whole.
 */
export const RunState = {
  /**
   * Not used.
   */
  RUN_STATE_UNSPECIFIED: 'RUN_STATE_UNSPECIFIED',
  /**
   * Loading the model and engines; health is NOT_SERVING.
   */
  RUN_STATE_STARTING: 'RUN_STATE_STARTING',
  /**
   * Ready, no step running: waiting for enough queued prompts to start one, or, when `waiting_for`
   * says so, for a reward backend that was down to be tried again.
   */
  RUN_STATE_IDLE: 'RUN_STATE_IDLE',
  /**
   * A step is running.
   */
  RUN_STATE_TRAINING: 'RUN_STATE_TRAINING',
  /**
   * Paused by PauseTraining (a step in progress finishes first; see `pause_requested`).
   */
  RUN_STATE_PAUSED: 'RUN_STATE_PAUSED',
  /**
   * Shutting down: finishing or abandoning the current step, writing a checkpoint.
   */
  RUN_STATE_DRAINING: 'RUN_STATE_DRAINING',
  /**
   * The training loop stopped on an error it cannot recover from; see `error`.
   */
  RUN_STATE_FAILED: 'RUN_STATE_FAILED',
  /**
   * The run reached its configured `max_steps`.
   */
  RUN_STATE_FINISHED: 'RUN_STATE_FINISHED',
} as const;

/**
 * The run as a whole.
 */
export type RunState =
  /**
   * Not used.
   */
  | 'RUN_STATE_UNSPECIFIED'
  | 0
  /**
   * Loading the model and engines; health is NOT_SERVING.
   */
  | 'RUN_STATE_STARTING'
  | 1
  /**
   * Ready, no step running: waiting for enough queued prompts to start one, or, when `waiting_for`
   * says so, for a reward backend that was down to be tried again.
   */
  | 'RUN_STATE_IDLE'
  | 2
  /**
   * A step is running.
   */
  | 'RUN_STATE_TRAINING'
  | 3
  /**
   * Paused by PauseTraining (a step in progress finishes first; see `pause_requested`).
   */
  | 'RUN_STATE_PAUSED'
  | 4
  /**
   * Shutting down: finishing or abandoning the current step, writing a checkpoint.
   */
  | 'RUN_STATE_DRAINING'
  | 5
  /**
   * The training loop stopped on an error it cannot recover from; see `error`.
   */
  | 'RUN_STATE_FAILED'
  | 6
  /**
   * The run reached its configured `max_steps`.
   */
  | 'RUN_STATE_FINISHED'
  | 7

/**
 * The run as a whole.
 */
export type RunState__Output = typeof RunState[keyof typeof RunState]
