// Original file: proto/grpo/reward/v1/reward.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { DescribeRequest as _grpo_reward_v1_DescribeRequest, DescribeRequest__Output as _grpo_reward_v1_DescribeRequest__Output } from '../../../grpo/reward/v1/DescribeRequest';
import type { DescribeResponse as _grpo_reward_v1_DescribeResponse, DescribeResponse__Output as _grpo_reward_v1_DescribeResponse__Output } from '../../../grpo/reward/v1/DescribeResponse';
import type { ScoreRequest as _grpo_reward_v1_ScoreRequest, ScoreRequest__Output as _grpo_reward_v1_ScoreRequest__Output } from '../../../grpo/reward/v1/ScoreRequest';
import type { ScoreResponse as _grpo_reward_v1_ScoreResponse, ScoreResponse__Output as _grpo_reward_v1_ScoreResponse__Output } from '../../../grpo/reward/v1/ScoreResponse';

/**
 * RewardService scores batches of completions.
 * 
 * Errors: a malformed request as a whole (no items, too many items, a duplicate or missing id, an
 * oversize field) fails with INVALID_ARGUMENT and a google.rpc.BadRequest detail naming
 * `items[i].field`. A problem with one item that the backend can still report on (unparseable answer,
 * a program that timed out) is NOT an RPC error: it comes back as that item's `status`.
 * RESOURCE_EXHAUSTED means the backend is at its concurrency limit; callers retry with backoff.
 */
export interface RewardServiceClient extends grpc.Client {
  /**
   * Describe this backend: its name, version and what it can do.
   */
  Describe(argument: _grpo_reward_v1_DescribeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_reward_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  Describe(argument: _grpo_reward_v1_DescribeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_reward_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  Describe(argument: _grpo_reward_v1_DescribeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_reward_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  Describe(argument: _grpo_reward_v1_DescribeRequest, callback: grpc.requestCallback<_grpo_reward_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Describe this backend: its name, version and what it can do.
   */
  describe(argument: _grpo_reward_v1_DescribeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_reward_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  describe(argument: _grpo_reward_v1_DescribeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_reward_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  describe(argument: _grpo_reward_v1_DescribeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_reward_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  describe(argument: _grpo_reward_v1_DescribeRequest, callback: grpc.requestCallback<_grpo_reward_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Score a batch of items. Results come back in the order of the request's items, one per item, each
   * echoing its item's `id`.
   */
  Score(argument: _grpo_reward_v1_ScoreRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_reward_v1_ScoreResponse__Output>): grpc.ClientUnaryCall;
  Score(argument: _grpo_reward_v1_ScoreRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_reward_v1_ScoreResponse__Output>): grpc.ClientUnaryCall;
  Score(argument: _grpo_reward_v1_ScoreRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_reward_v1_ScoreResponse__Output>): grpc.ClientUnaryCall;
  Score(argument: _grpo_reward_v1_ScoreRequest, callback: grpc.requestCallback<_grpo_reward_v1_ScoreResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Score a batch of items. Results come back in the order of the request's items, one per item, each
   * echoing its item's `id`.
   */
  score(argument: _grpo_reward_v1_ScoreRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_reward_v1_ScoreResponse__Output>): grpc.ClientUnaryCall;
  score(argument: _grpo_reward_v1_ScoreRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_reward_v1_ScoreResponse__Output>): grpc.ClientUnaryCall;
  score(argument: _grpo_reward_v1_ScoreRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_reward_v1_ScoreResponse__Output>): grpc.ClientUnaryCall;
  score(argument: _grpo_reward_v1_ScoreRequest, callback: grpc.requestCallback<_grpo_reward_v1_ScoreResponse__Output>): grpc.ClientUnaryCall;
  
}

/**
 * RewardService scores batches of completions.
 * 
 * Errors: a malformed request as a whole (no items, too many items, a duplicate or missing id, an
 * oversize field) fails with INVALID_ARGUMENT and a google.rpc.BadRequest detail naming
 * `items[i].field`. A problem with one item that the backend can still report on (unparseable answer,
 * a program that timed out) is NOT an RPC error: it comes back as that item's `status`.
 * RESOURCE_EXHAUSTED means the backend is at its concurrency limit; callers retry with backoff.
 */
export interface RewardServiceHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Describe this backend: its name, version and what it can do.
   */
  Describe: grpc.handleUnaryCall<_grpo_reward_v1_DescribeRequest__Output, _grpo_reward_v1_DescribeResponse>;
  
  /**
   * Score a batch of items. Results come back in the order of the request's items, one per item, each
   * echoing its item's `id`.
   */
  Score: grpc.handleUnaryCall<_grpo_reward_v1_ScoreRequest__Output, _grpo_reward_v1_ScoreResponse>;
  
}

export interface RewardServiceDefinition extends grpc.ServiceDefinition {
  Describe: MethodDefinition<_grpo_reward_v1_DescribeRequest, _grpo_reward_v1_DescribeResponse, _grpo_reward_v1_DescribeRequest__Output, _grpo_reward_v1_DescribeResponse__Output>
  Score: MethodDefinition<_grpo_reward_v1_ScoreRequest, _grpo_reward_v1_ScoreResponse, _grpo_reward_v1_ScoreRequest__Output, _grpo_reward_v1_ScoreResponse__Output>
}
