// Original file: proto/grpo/trainer/v1/trainer.proto


/**
 * Where and how to export.
 */
export interface ExportCheckpointRequest {
  /**
   * The directory to write, on the trainer's file system. Must not exist, or be empty. Empty means
   * `<store-dir>/exports/step-<N>`.
   */
  'destination'?: (string);
  /**
   * Return only when the export is done (or failed), instead of at once.
   */
  'wait'?: (boolean);
}

/**
 * Where and how to export.
 */
export interface ExportCheckpointRequest__Output {
  /**
   * The directory to write, on the trainer's file system. Must not exist, or be empty. Empty means
   * `<store-dir>/exports/step-<N>`.
   */
  'destination': (string);
  /**
   * Return only when the export is done (or failed), instead of at once.
   */
  'wait': (boolean);
}
