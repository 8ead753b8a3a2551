// Original file: proto/grpo/trainer/v1/trainer.proto


/**
 * One reward backend's answer for a sampled completion.
 */
export interface SampleScore {
  /**
   * The backend's name in the registry, and the prompt's weight for it.
   */
  'backend'?: (string);
  'weight'?: (number | string);
  /**
   * The score; `scored` is false when none came back (see `status`).
   */
  'score'?: (number | string);
  'scored'?: (boolean);
  /**
   * How the call went: "ok", "invalid_input", "timeout", "resource_exhausted", "internal",
   * "unavailable", "deadline_exceeded" or "unknown_backend".
   */
  'status'?: (string);
  /**
   * The backend's feedback on the item (cut at 1 KiB), and its error message when it failed.
   */
  'feedback'?: (string);
  'message'?: (string);
}

/**
 * One reward backend's answer for a sampled completion.
 */
export interface SampleScore__Output {
  /**
   * The backend's name in the registry, and the prompt's weight for it.
   */
  'backend': (string);
  'weight': (number);
  /**
   * The score; `scored` is false when none came back (see `status`).
   */
  'score': (number);
  'scored': (boolean);
  /**
   * How the call went: "ok", "invalid_input", "timeout", "resource_exhausted", "internal",
   * "unavailable", "deadline_exceeded" or "unknown_backend".
   */
  'status': (string);
  /**
   * The backend's feedback on the item (cut at 1 KiB), and its error message when it failed.
   */
  'feedback': (string);
  'message': (string);
}
