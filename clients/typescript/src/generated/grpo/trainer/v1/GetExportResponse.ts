// Original file: proto/grpo/trainer/v1/trainer.proto

import type { Export as _grpo_trainer_v1_Export, Export__Output as _grpo_trainer_v1_Export__Output } from '../../../grpo/trainer/v1/Export';

/**
 * The answer to GetExport.
 */
export interface GetExportResponse {
  /**
   * The export.
   */
  'export'?: (_grpo_trainer_v1_Export | null);
}

/**
 * The answer to GetExport.
 */
export interface GetExportResponse__Output {
  /**
   * The export.
   */
  'export': (_grpo_trainer_v1_Export__Output | null);
}
