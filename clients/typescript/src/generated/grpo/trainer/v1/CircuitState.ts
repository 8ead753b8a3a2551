// Original file: proto/grpo/trainer/v1/trainer.proto

/**
 * The circuit breaker's view of a backend.
 */
export const CircuitState = {
  /**
   * Not used.
   */
  CIRCUIT_STATE_UNSPECIFIED: 'CIRCUIT_STATE_UNSPECIFIED',
  /**
   * Calls go through.
   */
  CIRCUIT_STATE_CLOSED: 'CIRCUIT_STATE_CLOSED',
  /**
   * Calls fail fast after repeated failures; items are masked.
   */
  CIRCUIT_STATE_OPEN: 'CIRCUIT_STATE_OPEN',
  /**
   * One trial call is allowed through.
   */
  CIRCUIT_STATE_HALF_OPEN: 'CIRCUIT_STATE_HALF_OPEN',
} as const;

/**
 * The circuit breaker's view of a backend.
 */
export type CircuitState =
  /**
   * Not used.
   */
  | 'CIRCUIT_STATE_UNSPECIFIED'
  | 0
  /**
   * Calls go through.
   */
  | 'CIRCUIT_STATE_CLOSED'
  | 1
  /**
   * Calls fail fast after repeated failures; items are masked.
   */
  | 'CIRCUIT_STATE_OPEN'
  | 2
  /**
   * One trial call is allowed through.
   */
  | 'CIRCUIT_STATE_HALF_OPEN'
  | 3

/**
 * The circuit breaker's view of a backend.
 */
export type CircuitState__Output = typeof CircuitState[keyof typeof CircuitState]
