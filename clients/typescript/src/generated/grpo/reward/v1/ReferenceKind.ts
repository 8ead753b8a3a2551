// Original file: proto/grpo/reward/v1/reward.proto

/**
 * A kind of reference a backend can score against.
 */
export const ReferenceKind = {
  /**
   * Not used.
   */
  REFERENCE_KIND_UNSPECIFIED: 'REFERENCE_KIND_UNSPECIFIED',
  /**
   * Works with no reference at all (a learned reward model).
   */
  REFERENCE_KIND_NONE: 'REFERENCE_KIND_NONE',
  /**
   * `ScoreItem.answer`.
   */
  REFERENCE_KIND_ANSWER: 'REFERENCE_KIND_ANSWER',
  /**
   * `ScoreItem.code`.
   */
  REFERENCE_KIND_CODE: 'REFERENCE_KIND_CODE',
} as const;

/**
 * A kind of reference a backend can score against.
 */
export type ReferenceKind =
  /**
   * Not used.
   */
  | 'REFERENCE_KIND_UNSPECIFIED'
  | 0
  /**
   * Works with no reference at all (a learned reward model).
   */
  | 'REFERENCE_KIND_NONE'
  | 1
  /**
   * `ScoreItem.answer`.
   */
  | 'REFERENCE_KIND_ANSWER'
  | 2
  /**
   * `ScoreItem.code`.
   */
  | 'REFERENCE_KIND_CODE'
  | 3

/**
 * A kind of reference a backend can score against.
 */
export type ReferenceKind__Output = typeof ReferenceKind[keyof typeof ReferenceKind]
