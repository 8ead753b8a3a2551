// Original file: proto/grpo/trainer/v1/trainer.proto

/**
 * An export's progress.
 */
export const ExportState = {
  /**
   * Not used.
   */
  EXPORT_STATE_UNSPECIFIED: 'EXPORT_STATE_UNSPECIFIED',
  /**
   * Waiting for the state copy.
   */
  EXPORT_STATE_PENDING: 'EXPORT_STATE_PENDING',
  /**
   * Writing files.
   */
  EXPORT_STATE_WRITING: 'EXPORT_STATE_WRITING',
  /**
   * Every file written and the manifest is in place.
   */
  EXPORT_STATE_DONE: 'EXPORT_STATE_DONE',
  /**
   * Failed; see `error`.
   */
  EXPORT_STATE_FAILED: 'EXPORT_STATE_FAILED',
} as const;

/**
 * An export's progress.
 */
export type ExportState =
  /**
   * Not used.
   */
  | 'EXPORT_STATE_UNSPECIFIED'
  | 0
  /**
   * Waiting for the state copy.
   */
  | 'EXPORT_STATE_PENDING'
  | 1
  /**
   * Writing files.
   */
  | 'EXPORT_STATE_WRITING'
  | 2
  /**
   * Every file written and the manifest is in place.
   */
  | 'EXPORT_STATE_DONE'
  | 3
  /**
   * Failed; see `error`.
   */
  | 'EXPORT_STATE_FAILED'
  | 4

/**
 * An export's progress.
 */
export type ExportState__Output = typeof ExportState[keyof typeof ExportState]
