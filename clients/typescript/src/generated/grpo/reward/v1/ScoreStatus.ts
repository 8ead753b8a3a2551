// Original file: proto/grpo/reward/v1/reward.proto

/**
 * How scoring one item went.
 */
export const ScoreStatus = {
  /**
   * Never sent by a conforming backend; a caller treats it as SCORE_STATUS_INTERNAL.
   */
  SCORE_STATUS_UNSPECIFIED: 'SCORE_STATUS_UNSPECIFIED',
  /**
   * Scored: `score` is meaningful.
   */
  SCORE_STATUS_OK: 'SCORE_STATUS_OK',
  /**
   * The item could not be scored as given (no reference, completion too long, unsupported language).
   */
  SCORE_STATUS_INVALID_INPUT: 'SCORE_STATUS_INVALID_INPUT',
  /**
   * Scoring ran out of time. For the code sandbox this is the program's own fault and `score` is still
   * meaningful (tests that did not finish count as failed); for the math verifier it means the
   * verification itself could not finish and the item has no score.
   */
  SCORE_STATUS_TIMEOUT: 'SCORE_STATUS_TIMEOUT',
  /**
   * The backend lacked resources for this item (memory, workers). For the code sandbox it means the
   * program ran past its own memory, process or output limit: as with TIMEOUT, `score` is still
   * meaningful (the tests it did not finish count as failed).
   */
  SCORE_STATUS_RESOURCE_EXHAUSTED: 'SCORE_STATUS_RESOURCE_EXHAUSTED',
  /**
   * The backend failed on this item (a bug, a crashed worker).
   */
  SCORE_STATUS_INTERNAL: 'SCORE_STATUS_INTERNAL',
} as const;

/**
 * How scoring one item went.
 */
export type ScoreStatus =
  /**
   * Never sent by a conforming backend; a caller treats it as SCORE_STATUS_INTERNAL.
   */
  | 'SCORE_STATUS_UNSPECIFIED'
  | 0
  /**
   * Scored: `score` is meaningful.
   */
  | 'SCORE_STATUS_OK'
  | 1
  /**
   * The item could not be scored as given (no reference, completion too long, unsupported language).
   */
  | 'SCORE_STATUS_INVALID_INPUT'
  | 2
  /**
   * Scoring ran out of time. For the code sandbox this is the program's own fault and `score` is still
   * meaningful (tests that did not finish count as failed); for the math verifier it means the
   * verification itself could not finish and the item has no score.
   */
  | 'SCORE_STATUS_TIMEOUT'
  | 3
  /**
   * The backend lacked resources for this item (memory, workers). For the code sandbox it means the
   * program ran past its own memory, process or output limit: as with TIMEOUT, `score` is still
   * meaningful (the tests it did not finish count as failed).
   */
  | 'SCORE_STATUS_RESOURCE_EXHAUSTED'
  | 4
  /**
   * The backend failed on this item (a bug, a crashed worker).
   */
  | 'SCORE_STATUS_INTERNAL'
  | 5

/**
 * How scoring one item went.
 */
export type ScoreStatus__Output = typeof ScoreStatus[keyof typeof ScoreStatus]
