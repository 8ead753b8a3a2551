// Original file: proto/grpo/trainer/v1/trainer.proto


/**
 * Which export to report.
 */
export interface GetExportRequest {
  /**
   * The id from ExportCheckpoint.
   */
  'exportId'?: (string);
}

/**
 * Which export to report.
 */
export interface GetExportRequest__Output {
  /**
   * The id from ExportCheckpoint.
   */
  'exportId': (string);
}
