// Original file: proto/grpo/trainer/v1/trainer.proto

/**
 * Where a registry entry came from.
 */
export const BackendSource = {
  /**
   * Not used.
   */
  BACKEND_SOURCE_UNSPECIFIED: 'BACKEND_SOURCE_UNSPECIFIED',
  /**
   * The trainer's config file.
   */
  BACKEND_SOURCE_CONFIG: 'BACKEND_SOURCE_CONFIG',
  /**
   * The registry file (reloaded on change).
   */
  BACKEND_SOURCE_REGISTRY_FILE: 'BACKEND_SOURCE_REGISTRY_FILE',
  /**
   * A `--reward-backend` flag.
   */
  BACKEND_SOURCE_FLAG: 'BACKEND_SOURCE_FLAG',
  /**
   * SetRewardBackend.
   */
  BACKEND_SOURCE_API: 'BACKEND_SOURCE_API',
} as const;

/**
 * Where a registry entry came from.
 */
export type BackendSource =
  /**
   * Not used.
   */
  | 'BACKEND_SOURCE_UNSPECIFIED'
  | 0
  /**
   * The trainer's config file.
   */
  | 'BACKEND_SOURCE_CONFIG'
  | 1
  /**
   * The registry file (reloaded on change).
   */
  | 'BACKEND_SOURCE_REGISTRY_FILE'
  | 2
  /**
   * A `--reward-backend` flag.
   */
  | 'BACKEND_SOURCE_FLAG'
  | 3
  /**
   * SetRewardBackend.
   */
  | 'BACKEND_SOURCE_API'
  | 4

/**
 * Where a registry entry came from.
 */
export type BackendSource__Output = typeof BackendSource[keyof typeof BackendSource]
