// Original file: proto/grpo/trainer/v1/trainer.proto

import type { ExportState as _grpo_trainer_v1_ExportState, ExportState__Output as _grpo_trainer_v1_ExportState__Output } from '../../../grpo/trainer/v1/ExportState';

/**
 * Which exports to list.
 */
export interface ListExportsRequest {
  /**
   * Only exports in this state; EXPORT_STATE_UNSPECIFIED: any state.
   */
  'state'?: (_grpo_trainer_v1_ExportState);
  /**
   * At most this many exports in the answer, 1 to 1000; 0 means 100.
   */
  'pageSize'?: (number);
  /**
   * The `next_page_token` of the previous answer, to read on from there; empty: from the newest. Pass it
   * with the same `state` as the request that returned it (INVALID_ARGUMENT otherwise); `page_size` may
   * change.
   */
  'pageToken'?: (string);
}

/**
 * Which exports to list.
 */
export interface ListExportsRequest__Output {
  /**
   * Only exports in this state; EXPORT_STATE_UNSPECIFIED: any state.
   */
  'state': (_grpo_trainer_v1_ExportState__Output);
  /**
   * At most this many exports in the answer, 1 to 1000; 0 means 100.
   */
  'pageSize': (number);
  /**
   * The `next_page_token` of the previous answer, to read on from there; empty: from the newest. Pass it
   * with the same `state` as the request that returned it (INVALID_ARGUMENT otherwise); `page_size` may
   * change.
   */
  'pageToken': (string);
}
