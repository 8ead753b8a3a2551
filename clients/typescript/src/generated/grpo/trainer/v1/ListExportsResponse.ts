// Original file: proto/grpo/trainer/v1/trainer.proto

import type { Export as _grpo_trainer_v1_Export, Export__Output as _grpo_trainer_v1_Export__Output } from '../../../grpo/trainer/v1/Export';

/**
 * The answer to ListExports.
 */
export interface ListExportsResponse {
  /**
   * The exports of this page, the newest first (in the order ExportCheckpoint started them). An
   * export's state is as GetExport would answer now, so a page filtered by state may hold fewer than
   * `page_size` exports and still have a next page.
   */
  'exports'?: (_grpo_trainer_v1_Export)[];
  /**
   * Pass as `page_token` to read the next page; empty when there are no more exports.
   */
  'nextPageToken'?: (string);
}

/**
 * The answer to ListExports.
 */
export interface ListExportsResponse__Output {
  /**
   * The exports of this page, the newest first (in the order ExportCheckpoint started them). An
   * export's state is as GetExport would answer now, so a page filtered by state may hold fewer than
   * `page_size` exports and still have a next page.
   */
  'exports': (_grpo_trainer_v1_Export__Output)[];
  /**
   * Pass as `page_token` to read the next page; empty when there are no more exports.
   */
  'nextPageToken': (string);
}
