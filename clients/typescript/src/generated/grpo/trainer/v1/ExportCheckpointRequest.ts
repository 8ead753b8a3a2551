// Original file: proto/grpo/trainer/v1/trainer.proto


/**
 * Where and how to export.
 */
export interface ExportCheckpointRequest {
  /**
   * The directory to write, on the trainer's file system. Must not exist, or be empty. Empty means
   * `<store-dir>/exports/step-<N>`, or `step-<N>.2`, `.3`... when that is taken (the same step exported
   * again, or run again after a restart).
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
   * `<store-dir>/exports/step-<N>`, or `step-<N>.2`, `.3`... when that is taken (the same step exported
   * again, or run again after a restart).
   */
  'destination': (string);
  /**
   * Return only when the export is done (or failed), instead of at once.
   */
  'wait': (boolean);
}
