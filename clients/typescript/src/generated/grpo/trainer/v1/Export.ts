// Original file: proto/grpo/trainer/v1/trainer.proto

import type { ExportState as _grpo_trainer_v1_ExportState, ExportState__Output as _grpo_trainer_v1_ExportState__Output } from '../../../grpo/trainer/v1/ExportState';
import type { ExportedFile as _grpo_trainer_v1_ExportedFile, ExportedFile__Output as _grpo_trainer_v1_ExportedFile__Output } from '../../../grpo/trainer/v1/ExportedFile';
import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from '../../../google/protobuf/Timestamp';
import type { Long } from '@grpc/proto-loader';

/**
 * The progress of one export.
 */
export interface Export {
  /**
   * The export's id, for GetExport.
   */
  'exportId'?: (string);
  /**
   * Where it stands.
   */
  'state'?: (_grpo_trainer_v1_ExportState);
  /**
   * The directory written.
   */
  'destination'?: (string);
  /**
   * The training step whose weights are exported.
   */
  'step'?: (number | string | Long);
  /**
   * Fraction done, 0..1.
   */
  'progress'?: (number | string);
  /**
   * The files written so far (all of them once done), also listed in `manifest.json`.
   */
  'files'?: (_grpo_trainer_v1_ExportedFile)[];
  /**
   * Why it failed.
   */
  'error'?: (string);
  /**
   * When ExportCheckpoint started it. Unset for an export a trainer recorded before this field existed.
   */
  'startedAt'?: (_google_protobuf_Timestamp | null);
  /**
   * When it became DONE or FAILED (for one a stopped trainer left unfinished: when the next start found
   * it); unset before, and for an export recorded before this field existed.
   */
  'finishedAt'?: (_google_protobuf_Timestamp | null);
}

/**
 * The progress of one export.
 */
export interface Export__Output {
  /**
   * The export's id, for GetExport.
   */
  'exportId': (string);
  /**
   * Where it stands.
   */
  'state': (_grpo_trainer_v1_ExportState__Output);
  /**
   * The directory written.
   */
  'destination': (string);
  /**
   * The training step whose weights are exported.
   */
  'step': (number);
  /**
   * Fraction done, 0..1.
   */
  'progress': (number);
  /**
   * The files written so far (all of them once done), also listed in `manifest.json`.
   */
  'files': (_grpo_trainer_v1_ExportedFile__Output)[];
  /**
   * Why it failed.
   */
  'error': (string);
  /**
   * When ExportCheckpoint started it. Unset for an export a trainer recorded before this field existed.
   */
  'startedAt': (_google_protobuf_Timestamp__Output | null);
  /**
   * When it became DONE or FAILED (for one a stopped trainer left unfinished: when the next start found
   * it); unset before, and for an export recorded before this field existed.
   */
  'finishedAt': (_google_protobuf_Timestamp__Output | null);
}
