// Original file: proto/grpo/trainer/v1/trainer.proto

import type { RunState as _grpo_trainer_v1_RunState, RunState__Output as _grpo_trainer_v1_RunState__Output } from '../../../grpo/trainer/v1/RunState';
import type { ServerLimits as _grpo_trainer_v1_ServerLimits, ServerLimits__Output as _grpo_trainer_v1_ServerLimits__Output } from '../../../grpo/trainer/v1/ServerLimits';
import type { Long } from '@grpc/proto-loader';

/**
 * The state of the run beside a step.
 */
export interface RunStatus {
  /**
   * The run's state.
   */
  'state'?: (_grpo_trainer_v1_RunState);
  /**
   * The number of prompts waiting in the queue.
   */
  'queueDepth'?: (number | string | Long);
  /**
   * The latest step number (0 before the first step).
   */
  'latestStep'?: (number | string | Long);
  /**
   * The step of the latest durable checkpoint (0 when none).
   */
  'checkpointStep'?: (number | string | Long);
  /**
   * True when a pause was asked for and takes effect when the current step ends.
   */
  'pauseRequested'?: (boolean);
  /**
   * Why the run failed, when `state` is RUN_STATE_FAILED.
   */
  'error'?: (string);
  /**
   * Prompts trained (contained in a durable checkpoint) since the store was created.
   */
  'promptsTrained'?: (number | string | Long);
  /**
   * Prompts that failed for good since the store was created.
   */
  'promptsFailed'?: (number | string | Long);
  /**
   * Prompts taken out of the queue by CancelPrompts since the store was created.
   */
  'promptsCancelled'?: (number | string | Long);
  /**
   * What this trainer accepts (its `limits` config), so that a client can size its requests before
   * sending them instead of learning the limits from refusals.
   */
  'limits'?: (_grpo_trainer_v1_ServerLimits | null);
  /**
   * What holds the next step back while `state` is RUN_STATE_IDLE, in words: fewer prompts queued than
   * a step takes (how many more, or how long without a submission, start one), or, after a step
   * skipped because its reward backends were down, those backends and the seconds until the next try,
   * such as "reward backend 'math' is down (circuit open): the next step waits for the trial call in
   * 4.2 s". Empty otherwise (an empty queue says it all).
   */
  'waitingFor'?: (string);
}

/**
 * The state of the run beside a step.
 */
export interface RunStatus__Output {
  /**
   * The run's state.
   */
  'state': (_grpo_trainer_v1_RunState__Output);
  /**
   * The number of prompts waiting in the queue.
   */
  'queueDepth': (number);
  /**
   * The latest step number (0 before the first step).
   */
  'latestStep': (number);
  /**
   * The step of the latest durable checkpoint (0 when none).
   */
  'checkpointStep': (number);
  /**
   * True when a pause was asked for and takes effect when the current step ends.
   */
  'pauseRequested': (boolean);
  /**
   * Why the run failed, when `state` is RUN_STATE_FAILED.
   */
  'error': (string);
  /**
   * Prompts trained (contained in a durable checkpoint) since the store was created.
   */
  'promptsTrained': (number);
  /**
   * Prompts that failed for good since the store was created.
   */
  'promptsFailed': (number);
  /**
   * Prompts taken out of the queue by CancelPrompts since the store was created.
   */
  'promptsCancelled': (number);
  /**
   * What this trainer accepts (its `limits` config), so that a client can size its requests before
   * sending them instead of learning the limits from refusals.
   */
  'limits': (_grpo_trainer_v1_ServerLimits__Output | null);
  /**
   * What holds the next step back while `state` is RUN_STATE_IDLE, in words: fewer prompts queued than
   * a step takes (how many more, or how long without a submission, start one), or, after a step
   * skipped because its reward backends were down, those backends and the seconds until the next try,
   * such as "reward backend 'math' is down (circuit open): the next step waits for the trial call in
   * 4.2 s". Empty otherwise (an empty queue says it all).
   */
  'waitingFor': (string);
}
