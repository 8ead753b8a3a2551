// Original file: proto/grpo/trainer/v1/trainer.proto

import type { StepState as _grpo_trainer_v1_StepState, StepState__Output as _grpo_trainer_v1_StepState__Output } from '../../../grpo/trainer/v1/StepState';
import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from '../../../google/protobuf/Timestamp';
import type { StepMetrics as _grpo_trainer_v1_StepMetrics, StepMetrics__Output as _grpo_trainer_v1_StepMetrics__Output } from '../../../grpo/trainer/v1/StepMetrics';
import type { Long } from '@grpc/proto-loader';

/**
 * The report of one step.
 */
export interface StepReport {
  /**
   * The step number, from 1.
   */
  'step'?: (number | string | Long);
  /**
   * Where the step is.
   */
  'state'?: (_grpo_trainer_v1_StepState);
  /**
   * When the step started.
   */
  'startedAt'?: (_google_protobuf_Timestamp | null);
  /**
   * When the step ended; unset while running.
   */
  'finishedAt'?: (_google_protobuf_Timestamp | null);
  /**
   * The step's numbers; partial while running.
   */
  'metrics'?: (_grpo_trainer_v1_StepMetrics | null);
  /**
   * The rollout engine that generated this step's completions: "vllm" or "hf".
   */
  'rolloutEngine'?: (string);
  /**
   * The ids of the prompts trained in this step.
   */
  'promptIds'?: (string)[];
  /**
   * Why the step was skipped or failed; empty otherwise.
   */
  'error'?: (string);
  /**
   * The prompts of `prompt_ids` that DAPO dynamic sampling (`algorithm.dynamic_sampling`) dropped
   * because every reward of their group was equal: the step consumed them (they are not retried) but
   * left them out of its update. Empty without dynamic sampling, and when no group of the step had
   * differing rewards (the step then trains on every group).
   */
  'droppedPromptIds'?: (string)[];
}

/**
 * The report of one step.
 */
export interface StepReport__Output {
  /**
   * The step number, from 1.
   */
  'step': (number);
  /**
   * Where the step is.
   */
  'state': (_grpo_trainer_v1_StepState__Output);
  /**
   * When the step started.
   */
  'startedAt': (_google_protobuf_Timestamp__Output | null);
  /**
   * When the step ended; unset while running.
   */
  'finishedAt': (_google_protobuf_Timestamp__Output | null);
  /**
   * The step's numbers; partial while running.
   */
  'metrics': (_grpo_trainer_v1_StepMetrics__Output | null);
  /**
   * The rollout engine that generated this step's completions: "vllm" or "hf".
   */
  'rolloutEngine': (string);
  /**
   * The ids of the prompts trained in this step.
   */
  'promptIds': (string)[];
  /**
   * Why the step was skipped or failed; empty otherwise.
   */
  'error': (string);
  /**
   * The prompts of `prompt_ids` that DAPO dynamic sampling (`algorithm.dynamic_sampling`) dropped
   * because every reward of their group was equal: the step consumed them (they are not retried) but
   * left them out of its update. Empty without dynamic sampling, and when no group of the step had
   * differing rewards (the step then trains on every group).
   */
  'droppedPromptIds': (string)[];
}
