// Original file: proto/grpo/trainer/v1/trainer.proto

import type { BackendSource as _grpo_trainer_v1_BackendSource, BackendSource__Output as _grpo_trainer_v1_BackendSource__Output } from '../../../grpo/trainer/v1/BackendSource';
import type { CircuitState as _grpo_trainer_v1_CircuitState, CircuitState__Output as _grpo_trainer_v1_CircuitState__Output } from '../../../grpo/trainer/v1/CircuitState';
import type { DescribeResponse as _grpo_reward_v1_DescribeResponse, DescribeResponse__Output as _grpo_reward_v1_DescribeResponse__Output } from '../../../grpo/reward/v1/DescribeResponse';
import type { ReferenceKind as _grpo_reward_v1_ReferenceKind, ReferenceKind__Output as _grpo_reward_v1_ReferenceKind__Output } from '../../../grpo/reward/v1/ReferenceKind';

/**
 * One reward backend of the registry.
 */
export interface RewardBackend {
  /**
   * The registry name prompts refer to in RewardSpec.backend: 1-63 characters of [a-z0-9_-].
   */
  'name'?: (string);
  /**
   * host:port of its RewardService.
   */
  'address'?: (string);
  /**
   * Deadline of one Score call in seconds. 0 means the default (30 s).
   */
  'timeoutSeconds'?: (number | string);
  /**
   * The most items per Score call. 0 means the backend's own Describe value (or 64).
   */
  'maxBatchSize'?: (number);
  /**
   * The most Score calls in flight to this backend at once. 0 means the default (4).
   */
  'maxConcurrency'?: (number);
  /**
   * Connect with TLS.
   */
  'tls'?: (boolean);
  /**
   * Path of a file, on the trainer, holding the bearer token to send. Never returned with the token.
   */
  'tokenFile'?: (string);
  /**
   * Output only: where this entry came from.
   */
  'source'?: (_grpo_trainer_v1_BackendSource);
  /**
   * Output only: the circuit breaker's state.
   */
  'circuit'?: (_grpo_trainer_v1_CircuitState);
  /**
   * Output only: the backend's Describe answer, when it could be reached.
   */
  'description'?: (_grpo_reward_v1_DescribeResponse | null);
  /**
   * Output only: the backend's name-able reference kinds (copied from `description` for convenience).
   */
  'referenceKinds'?: (_grpo_reward_v1_ReferenceKind)[];
  /**
   * With `tls`: path of a PEM file, on the trainer, of the roots that verify the backend's certificate.
   * Empty: gRPC's default roots.
   */
  'caFile'?: (string);
  /**
   * With `tls`: path of the trainer's client certificate chain (a PEM file on the trainer), for a
   * backend that requires client certificates (mTLS). Given with `key_file`, or neither.
   */
  'certFile'?: (string);
  /**
   * With `tls`: path of the private key of `cert_file` (a PEM file on the trainer; the path is listed,
   * never the key).
   */
  'keyFile'?: (string);
}

/**
 * One reward backend of the registry.
 */
export interface RewardBackend__Output {
  /**
   * The registry name prompts refer to in RewardSpec.backend: 1-63 characters of [a-z0-9_-].
   */
  'name': (string);
  /**
   * host:port of its RewardService.
   */
  'address': (string);
  /**
   * Deadline of one Score call in seconds. 0 means the default (30 s).
   */
  'timeoutSeconds': (number);
  /**
   * The most items per Score call. 0 means the backend's own Describe value (or 64).
   */
  'maxBatchSize': (number);
  /**
   * The most Score calls in flight to this backend at once. 0 means the default (4).
   */
  'maxConcurrency': (number);
  /**
   * Connect with TLS.
   */
  'tls': (boolean);
  /**
   * Path of a file, on the trainer, holding the bearer token to send. Never returned with the token.
   */
  'tokenFile': (string);
  /**
   * Output only: where this entry came from.
   */
  'source': (_grpo_trainer_v1_BackendSource__Output);
  /**
   * Output only: the circuit breaker's state.
   */
  'circuit': (_grpo_trainer_v1_CircuitState__Output);
  /**
   * Output only: the backend's Describe answer, when it could be reached.
   */
  'description': (_grpo_reward_v1_DescribeResponse__Output | null);
  /**
   * Output only: the backend's name-able reference kinds (copied from `description` for convenience).
   */
  'referenceKinds': (_grpo_reward_v1_ReferenceKind__Output)[];
  /**
   * With `tls`: path of a PEM file, on the trainer, of the roots that verify the backend's certificate.
   * Empty: gRPC's default roots.
   */
  'caFile': (string);
  /**
   * With `tls`: path of the trainer's client certificate chain (a PEM file on the trainer), for a
   * backend that requires client certificates (mTLS). Given with `key_file`, or neither.
   */
  'certFile': (string);
  /**
   * With `tls`: path of the private key of `cert_file` (a PEM file on the trainer; the path is listed,
   * never the key).
   */
  'keyFile': (string);
}
