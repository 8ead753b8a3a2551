// Original file: proto/grpo/trainer/v1/trainer.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { CancelPromptsRequest as _grpo_trainer_v1_CancelPromptsRequest, CancelPromptsRequest__Output as _grpo_trainer_v1_CancelPromptsRequest__Output } from '../../../grpo/trainer/v1/CancelPromptsRequest';
import type { CancelPromptsResponse as _grpo_trainer_v1_CancelPromptsResponse, CancelPromptsResponse__Output as _grpo_trainer_v1_CancelPromptsResponse__Output } from '../../../grpo/trainer/v1/CancelPromptsResponse';
import type { DeleteRewardBackendRequest as _grpo_trainer_v1_DeleteRewardBackendRequest, DeleteRewardBackendRequest__Output as _grpo_trainer_v1_DeleteRewardBackendRequest__Output } from '../../../grpo/trainer/v1/DeleteRewardBackendRequest';
import type { DeleteRewardBackendResponse as _grpo_trainer_v1_DeleteRewardBackendResponse, DeleteRewardBackendResponse__Output as _grpo_trainer_v1_DeleteRewardBackendResponse__Output } from '../../../grpo/trainer/v1/DeleteRewardBackendResponse';
import type { ExportCheckpointRequest as _grpo_trainer_v1_ExportCheckpointRequest, ExportCheckpointRequest__Output as _grpo_trainer_v1_ExportCheckpointRequest__Output } from '../../../grpo/trainer/v1/ExportCheckpointRequest';
import type { ExportCheckpointResponse as _grpo_trainer_v1_ExportCheckpointResponse, ExportCheckpointResponse__Output as _grpo_trainer_v1_ExportCheckpointResponse__Output } from '../../../grpo/trainer/v1/ExportCheckpointResponse';
import type { GetExportRequest as _grpo_trainer_v1_GetExportRequest, GetExportRequest__Output as _grpo_trainer_v1_GetExportRequest__Output } from '../../../grpo/trainer/v1/GetExportRequest';
import type { GetExportResponse as _grpo_trainer_v1_GetExportResponse, GetExportResponse__Output as _grpo_trainer_v1_GetExportResponse__Output } from '../../../grpo/trainer/v1/GetExportResponse';
import type { ListExportsRequest as _grpo_trainer_v1_ListExportsRequest, ListExportsRequest__Output as _grpo_trainer_v1_ListExportsRequest__Output } from '../../../grpo/trainer/v1/ListExportsRequest';
import type { ListExportsResponse as _grpo_trainer_v1_ListExportsResponse, ListExportsResponse__Output as _grpo_trainer_v1_ListExportsResponse__Output } from '../../../grpo/trainer/v1/ListExportsResponse';
import type { ListPromptsRequest as _grpo_trainer_v1_ListPromptsRequest, ListPromptsRequest__Output as _grpo_trainer_v1_ListPromptsRequest__Output } from '../../../grpo/trainer/v1/ListPromptsRequest';
import type { ListPromptsResponse as _grpo_trainer_v1_ListPromptsResponse, ListPromptsResponse__Output as _grpo_trainer_v1_ListPromptsResponse__Output } from '../../../grpo/trainer/v1/ListPromptsResponse';
import type { ListRewardBackendsRequest as _grpo_trainer_v1_ListRewardBackendsRequest, ListRewardBackendsRequest__Output as _grpo_trainer_v1_ListRewardBackendsRequest__Output } from '../../../grpo/trainer/v1/ListRewardBackendsRequest';
import type { ListRewardBackendsResponse as _grpo_trainer_v1_ListRewardBackendsResponse, ListRewardBackendsResponse__Output as _grpo_trainer_v1_ListRewardBackendsResponse__Output } from '../../../grpo/trainer/v1/ListRewardBackendsResponse';
import type { PauseTrainingRequest as _grpo_trainer_v1_PauseTrainingRequest, PauseTrainingRequest__Output as _grpo_trainer_v1_PauseTrainingRequest__Output } from '../../../grpo/trainer/v1/PauseTrainingRequest';
import type { PauseTrainingResponse as _grpo_trainer_v1_PauseTrainingResponse, PauseTrainingResponse__Output as _grpo_trainer_v1_PauseTrainingResponse__Output } from '../../../grpo/trainer/v1/PauseTrainingResponse';
import type { ResumeTrainingRequest as _grpo_trainer_v1_ResumeTrainingRequest, ResumeTrainingRequest__Output as _grpo_trainer_v1_ResumeTrainingRequest__Output } from '../../../grpo/trainer/v1/ResumeTrainingRequest';
import type { ResumeTrainingResponse as _grpo_trainer_v1_ResumeTrainingResponse, ResumeTrainingResponse__Output as _grpo_trainer_v1_ResumeTrainingResponse__Output } from '../../../grpo/trainer/v1/ResumeTrainingResponse';
import type { SetRewardBackendRequest as _grpo_trainer_v1_SetRewardBackendRequest, SetRewardBackendRequest__Output as _grpo_trainer_v1_SetRewardBackendRequest__Output } from '../../../grpo/trainer/v1/SetRewardBackendRequest';
import type { SetRewardBackendResponse as _grpo_trainer_v1_SetRewardBackendResponse, SetRewardBackendResponse__Output as _grpo_trainer_v1_SetRewardBackendResponse__Output } from '../../../grpo/trainer/v1/SetRewardBackendResponse';
import type { StepStatusRequest as _grpo_trainer_v1_StepStatusRequest, StepStatusRequest__Output as _grpo_trainer_v1_StepStatusRequest__Output } from '../../../grpo/trainer/v1/StepStatusRequest';
import type { StepStatusResponse as _grpo_trainer_v1_StepStatusResponse, StepStatusResponse__Output as _grpo_trainer_v1_StepStatusResponse__Output } from '../../../grpo/trainer/v1/StepStatusResponse';
import type { SubmitPromptsRequest as _grpo_trainer_v1_SubmitPromptsRequest, SubmitPromptsRequest__Output as _grpo_trainer_v1_SubmitPromptsRequest__Output } from '../../../grpo/trainer/v1/SubmitPromptsRequest';
import type { SubmitPromptsResponse as _grpo_trainer_v1_SubmitPromptsResponse, SubmitPromptsResponse__Output as _grpo_trainer_v1_SubmitPromptsResponse__Output } from '../../../grpo/trainer/v1/SubmitPromptsResponse';
import type { WatchStepsRequest as _grpo_trainer_v1_WatchStepsRequest, WatchStepsRequest__Output as _grpo_trainer_v1_WatchStepsRequest__Output } from '../../../grpo/trainer/v1/WatchStepsRequest';
import type { WatchStepsResponse as _grpo_trainer_v1_WatchStepsResponse, WatchStepsResponse__Output as _grpo_trainer_v1_WatchStepsResponse__Output } from '../../../grpo/trainer/v1/WatchStepsResponse';

/**
 * TrainerService drives one GRPO training run.
 * 
 * Errors carry a google.rpc.Status in the `grpc-status-details-bin` trailer:
 * - INVALID_ARGUMENT with google.rpc.BadRequest, one FieldViolation per bad field, the field named as a
 * path into the request (`prompts[3].messages[0].role`). Nothing of a rejected request is stored.
 * - RESOURCE_EXHAUSTED with google.rpc.RetryInfo when the prompt queue is full.
 * - UNAUTHENTICATED for a missing or unknown bearer token, PERMISSION_DENIED for a token without the
 * role the RPC needs (roles: "submit", "read", "admin"; see each RPC).
 * - NOT_FOUND for a step or export that does not exist; FAILED_PRECONDITION for a run-control call that
 * does not apply in the run's state.
 */
export interface TrainerServiceClient extends grpc.Client {
  /**
   * Take queued prompts out of the queue before a step leases them, by id: a bad submission retracted.
   * Only a QUEUED prompt can be cancelled; the answer says where each other id is. Cancelling again is
   * harmless. Role: submit.
   */
  CancelPrompts(argument: _grpo_trainer_v1_CancelPromptsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_CancelPromptsResponse__Output>): grpc.ClientUnaryCall;
  CancelPrompts(argument: _grpo_trainer_v1_CancelPromptsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_CancelPromptsResponse__Output>): grpc.ClientUnaryCall;
  CancelPrompts(argument: _grpo_trainer_v1_CancelPromptsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_CancelPromptsResponse__Output>): grpc.ClientUnaryCall;
  CancelPrompts(argument: _grpo_trainer_v1_CancelPromptsRequest, callback: grpc.requestCallback<_grpo_trainer_v1_CancelPromptsResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Take queued prompts out of the queue before a step leases them, by id: a bad submission retracted.
   * Only a QUEUED prompt can be cancelled; the answer says where each other id is. Cancelling again is
   * harmless. Role: submit.
   */
  cancelPrompts(argument: _grpo_trainer_v1_CancelPromptsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_CancelPromptsResponse__Output>): grpc.ClientUnaryCall;
  cancelPrompts(argument: _grpo_trainer_v1_CancelPromptsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_CancelPromptsResponse__Output>): grpc.ClientUnaryCall;
  cancelPrompts(argument: _grpo_trainer_v1_CancelPromptsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_CancelPromptsResponse__Output>): grpc.ClientUnaryCall;
  cancelPrompts(argument: _grpo_trainer_v1_CancelPromptsRequest, callback: grpc.requestCallback<_grpo_trainer_v1_CancelPromptsResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Remove a reward backend. Role: admin.
   */
  DeleteRewardBackend(argument: _grpo_trainer_v1_DeleteRewardBackendRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_DeleteRewardBackendResponse__Output>): grpc.ClientUnaryCall;
  DeleteRewardBackend(argument: _grpo_trainer_v1_DeleteRewardBackendRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_DeleteRewardBackendResponse__Output>): grpc.ClientUnaryCall;
  DeleteRewardBackend(argument: _grpo_trainer_v1_DeleteRewardBackendRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_DeleteRewardBackendResponse__Output>): grpc.ClientUnaryCall;
  DeleteRewardBackend(argument: _grpo_trainer_v1_DeleteRewardBackendRequest, callback: grpc.requestCallback<_grpo_trainer_v1_DeleteRewardBackendResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Remove a reward backend. Role: admin.
   */
  deleteRewardBackend(argument: _grpo_trainer_v1_DeleteRewardBackendRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_DeleteRewardBackendResponse__Output>): grpc.ClientUnaryCall;
  deleteRewardBackend(argument: _grpo_trainer_v1_DeleteRewardBackendRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_DeleteRewardBackendResponse__Output>): grpc.ClientUnaryCall;
  deleteRewardBackend(argument: _grpo_trainer_v1_DeleteRewardBackendRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_DeleteRewardBackendResponse__Output>): grpc.ClientUnaryCall;
  deleteRewardBackend(argument: _grpo_trainer_v1_DeleteRewardBackendRequest, callback: grpc.requestCallback<_grpo_trainer_v1_DeleteRewardBackendResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Start writing a Hugging Face checkpoint directory of the current weights. Returns at once (or when
   * done, with `wait`); progress is pollable with GetExport. Training is stalled only for a copy of the
   * weights. Role: admin.
   */
  ExportCheckpoint(argument: _grpo_trainer_v1_ExportCheckpointRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_ExportCheckpointResponse__Output>): grpc.ClientUnaryCall;
  ExportCheckpoint(argument: _grpo_trainer_v1_ExportCheckpointRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_ExportCheckpointResponse__Output>): grpc.ClientUnaryCall;
  ExportCheckpoint(argument: _grpo_trainer_v1_ExportCheckpointRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_ExportCheckpointResponse__Output>): grpc.ClientUnaryCall;
  ExportCheckpoint(argument: _grpo_trainer_v1_ExportCheckpointRequest, callback: grpc.requestCallback<_grpo_trainer_v1_ExportCheckpointResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Start writing a Hugging Face checkpoint directory of the current weights. Returns at once (or when
   * done, with `wait`); progress is pollable with GetExport. Training is stalled only for a copy of the
   * weights. Role: admin.
   */
  exportCheckpoint(argument: _grpo_trainer_v1_ExportCheckpointRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_ExportCheckpointResponse__Output>): grpc.ClientUnaryCall;
  exportCheckpoint(argument: _grpo_trainer_v1_ExportCheckpointRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_ExportCheckpointResponse__Output>): grpc.ClientUnaryCall;
  exportCheckpoint(argument: _grpo_trainer_v1_ExportCheckpointRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_ExportCheckpointResponse__Output>): grpc.ClientUnaryCall;
  exportCheckpoint(argument: _grpo_trainer_v1_ExportCheckpointRequest, callback: grpc.requestCallback<_grpo_trainer_v1_ExportCheckpointResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * The progress of an export started by ExportCheckpoint, also one started before the trainer restarted
   * (an export it was writing when it stopped is FAILED, "interrupted: ..."). Role: read.
   */
  GetExport(argument: _grpo_trainer_v1_GetExportRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_GetExportResponse__Output>): grpc.ClientUnaryCall;
  GetExport(argument: _grpo_trainer_v1_GetExportRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_GetExportResponse__Output>): grpc.ClientUnaryCall;
  GetExport(argument: _grpo_trainer_v1_GetExportRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_GetExportResponse__Output>): grpc.ClientUnaryCall;
  GetExport(argument: _grpo_trainer_v1_GetExportRequest, callback: grpc.requestCallback<_grpo_trainer_v1_GetExportResponse__Output>): grpc.ClientUnaryCall;
  /**
   * The progress of an export started by ExportCheckpoint, also one started before the trainer restarted
   * (an export it was writing when it stopped is FAILED, "interrupted: ..."). Role: read.
   */
  getExport(argument: _grpo_trainer_v1_GetExportRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_GetExportResponse__Output>): grpc.ClientUnaryCall;
  getExport(argument: _grpo_trainer_v1_GetExportRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_GetExportResponse__Output>): grpc.ClientUnaryCall;
  getExport(argument: _grpo_trainer_v1_GetExportRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_GetExportResponse__Output>): grpc.ClientUnaryCall;
  getExport(argument: _grpo_trainer_v1_GetExportRequest, callback: grpc.requestCallback<_grpo_trainer_v1_GetExportResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * The exports this trainer's store knows of, the newest first, a page at a time, also those started
   * before the trainer restarted; filtered by state. Role: read.
   */
  ListExports(argument: _grpo_trainer_v1_ListExportsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_ListExportsResponse__Output>): grpc.ClientUnaryCall;
  ListExports(argument: _grpo_trainer_v1_ListExportsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_ListExportsResponse__Output>): grpc.ClientUnaryCall;
  ListExports(argument: _grpo_trainer_v1_ListExportsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_ListExportsResponse__Output>): grpc.ClientUnaryCall;
  ListExports(argument: _grpo_trainer_v1_ListExportsRequest, callback: grpc.requestCallback<_grpo_trainer_v1_ListExportsResponse__Output>): grpc.ClientUnaryCall;
  /**
   * The exports this trainer's store knows of, the newest first, a page at a time, also those started
   * before the trainer restarted; filtered by state. Role: read.
   */
  listExports(argument: _grpo_trainer_v1_ListExportsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_ListExportsResponse__Output>): grpc.ClientUnaryCall;
  listExports(argument: _grpo_trainer_v1_ListExportsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_ListExportsResponse__Output>): grpc.ClientUnaryCall;
  listExports(argument: _grpo_trainer_v1_ListExportsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_ListExportsResponse__Output>): grpc.ClientUnaryCall;
  listExports(argument: _grpo_trainer_v1_ListExportsRequest, callback: grpc.requestCallback<_grpo_trainer_v1_ListExportsResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Submitted prompts and where each one is (queued, leased to a step, trained, or failed and why), in
   * submission order, a page at a time; filtered by id and by state. Role: read.
   */
  ListPrompts(argument: _grpo_trainer_v1_ListPromptsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_ListPromptsResponse__Output>): grpc.ClientUnaryCall;
  ListPrompts(argument: _grpo_trainer_v1_ListPromptsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_ListPromptsResponse__Output>): grpc.ClientUnaryCall;
  ListPrompts(argument: _grpo_trainer_v1_ListPromptsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_ListPromptsResponse__Output>): grpc.ClientUnaryCall;
  ListPrompts(argument: _grpo_trainer_v1_ListPromptsRequest, callback: grpc.requestCallback<_grpo_trainer_v1_ListPromptsResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Submitted prompts and where each one is (queued, leased to a step, trained, or failed and why), in
   * submission order, a page at a time; filtered by id and by state. Role: read.
   */
  listPrompts(argument: _grpo_trainer_v1_ListPromptsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_ListPromptsResponse__Output>): grpc.ClientUnaryCall;
  listPrompts(argument: _grpo_trainer_v1_ListPromptsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_ListPromptsResponse__Output>): grpc.ClientUnaryCall;
  listPrompts(argument: _grpo_trainer_v1_ListPromptsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_ListPromptsResponse__Output>): grpc.ClientUnaryCall;
  listPrompts(argument: _grpo_trainer_v1_ListPromptsRequest, callback: grpc.requestCallback<_grpo_trainer_v1_ListPromptsResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * The reward backends in the registry. Role: read.
   */
  ListRewardBackends(argument: _grpo_trainer_v1_ListRewardBackendsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_ListRewardBackendsResponse__Output>): grpc.ClientUnaryCall;
  ListRewardBackends(argument: _grpo_trainer_v1_ListRewardBackendsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_ListRewardBackendsResponse__Output>): grpc.ClientUnaryCall;
  ListRewardBackends(argument: _grpo_trainer_v1_ListRewardBackendsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_ListRewardBackendsResponse__Output>): grpc.ClientUnaryCall;
  ListRewardBackends(argument: _grpo_trainer_v1_ListRewardBackendsRequest, callback: grpc.requestCallback<_grpo_trainer_v1_ListRewardBackendsResponse__Output>): grpc.ClientUnaryCall;
  /**
   * The reward backends in the registry. Role: read.
   */
  listRewardBackends(argument: _grpo_trainer_v1_ListRewardBackendsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_ListRewardBackendsResponse__Output>): grpc.ClientUnaryCall;
  listRewardBackends(argument: _grpo_trainer_v1_ListRewardBackendsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_ListRewardBackendsResponse__Output>): grpc.ClientUnaryCall;
  listRewardBackends(argument: _grpo_trainer_v1_ListRewardBackendsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_ListRewardBackendsResponse__Output>): grpc.ClientUnaryCall;
  listRewardBackends(argument: _grpo_trainer_v1_ListRewardBackendsRequest, callback: grpc.requestCallback<_grpo_trainer_v1_ListRewardBackendsResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Pause training: the step in progress finishes, no new step starts; the API stays up. Role: admin.
   */
  PauseTraining(argument: _grpo_trainer_v1_PauseTrainingRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_PauseTrainingResponse__Output>): grpc.ClientUnaryCall;
  PauseTraining(argument: _grpo_trainer_v1_PauseTrainingRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_PauseTrainingResponse__Output>): grpc.ClientUnaryCall;
  PauseTraining(argument: _grpo_trainer_v1_PauseTrainingRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_PauseTrainingResponse__Output>): grpc.ClientUnaryCall;
  PauseTraining(argument: _grpo_trainer_v1_PauseTrainingRequest, callback: grpc.requestCallback<_grpo_trainer_v1_PauseTrainingResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Pause training: the step in progress finishes, no new step starts; the API stays up. Role: admin.
   */
  pauseTraining(argument: _grpo_trainer_v1_PauseTrainingRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_PauseTrainingResponse__Output>): grpc.ClientUnaryCall;
  pauseTraining(argument: _grpo_trainer_v1_PauseTrainingRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_PauseTrainingResponse__Output>): grpc.ClientUnaryCall;
  pauseTraining(argument: _grpo_trainer_v1_PauseTrainingRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_PauseTrainingResponse__Output>): grpc.ClientUnaryCall;
  pauseTraining(argument: _grpo_trainer_v1_PauseTrainingRequest, callback: grpc.requestCallback<_grpo_trainer_v1_PauseTrainingResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Resume a paused run. Role: admin.
   */
  ResumeTraining(argument: _grpo_trainer_v1_ResumeTrainingRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_ResumeTrainingResponse__Output>): grpc.ClientUnaryCall;
  ResumeTraining(argument: _grpo_trainer_v1_ResumeTrainingRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_ResumeTrainingResponse__Output>): grpc.ClientUnaryCall;
  ResumeTraining(argument: _grpo_trainer_v1_ResumeTrainingRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_ResumeTrainingResponse__Output>): grpc.ClientUnaryCall;
  ResumeTraining(argument: _grpo_trainer_v1_ResumeTrainingRequest, callback: grpc.requestCallback<_grpo_trainer_v1_ResumeTrainingResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Resume a paused run. Role: admin.
   */
  resumeTraining(argument: _grpo_trainer_v1_ResumeTrainingRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_ResumeTrainingResponse__Output>): grpc.ClientUnaryCall;
  resumeTraining(argument: _grpo_trainer_v1_ResumeTrainingRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_ResumeTrainingResponse__Output>): grpc.ClientUnaryCall;
  resumeTraining(argument: _grpo_trainer_v1_ResumeTrainingRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_ResumeTrainingResponse__Output>): grpc.ClientUnaryCall;
  resumeTraining(argument: _grpo_trainer_v1_ResumeTrainingRequest, callback: grpc.requestCallback<_grpo_trainer_v1_ResumeTrainingResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Add or replace a reward backend. The step in progress keeps the registry it started with; the next
   * step uses the new one. Role: admin.
   */
  SetRewardBackend(argument: _grpo_trainer_v1_SetRewardBackendRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_SetRewardBackendResponse__Output>): grpc.ClientUnaryCall;
  SetRewardBackend(argument: _grpo_trainer_v1_SetRewardBackendRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_SetRewardBackendResponse__Output>): grpc.ClientUnaryCall;
  SetRewardBackend(argument: _grpo_trainer_v1_SetRewardBackendRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_SetRewardBackendResponse__Output>): grpc.ClientUnaryCall;
  SetRewardBackend(argument: _grpo_trainer_v1_SetRewardBackendRequest, callback: grpc.requestCallback<_grpo_trainer_v1_SetRewardBackendResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Add or replace a reward backend. The step in progress keeps the registry it started with; the next
   * step uses the new one. Role: admin.
   */
  setRewardBackend(argument: _grpo_trainer_v1_SetRewardBackendRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_SetRewardBackendResponse__Output>): grpc.ClientUnaryCall;
  setRewardBackend(argument: _grpo_trainer_v1_SetRewardBackendRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_SetRewardBackendResponse__Output>): grpc.ClientUnaryCall;
  setRewardBackend(argument: _grpo_trainer_v1_SetRewardBackendRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_SetRewardBackendResponse__Output>): grpc.ClientUnaryCall;
  setRewardBackend(argument: _grpo_trainer_v1_SetRewardBackendRequest, callback: grpc.requestCallback<_grpo_trainer_v1_SetRewardBackendResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * The state and metrics of one step (the latest by default) and of the run. Role: read.
   */
  StepStatus(argument: _grpo_trainer_v1_StepStatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_StepStatusResponse__Output>): grpc.ClientUnaryCall;
  StepStatus(argument: _grpo_trainer_v1_StepStatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_StepStatusResponse__Output>): grpc.ClientUnaryCall;
  StepStatus(argument: _grpo_trainer_v1_StepStatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_StepStatusResponse__Output>): grpc.ClientUnaryCall;
  StepStatus(argument: _grpo_trainer_v1_StepStatusRequest, callback: grpc.requestCallback<_grpo_trainer_v1_StepStatusResponse__Output>): grpc.ClientUnaryCall;
  /**
   * The state and metrics of one step (the latest by default) and of the run. Role: read.
   */
  stepStatus(argument: _grpo_trainer_v1_StepStatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_StepStatusResponse__Output>): grpc.ClientUnaryCall;
  stepStatus(argument: _grpo_trainer_v1_StepStatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_StepStatusResponse__Output>): grpc.ClientUnaryCall;
  stepStatus(argument: _grpo_trainer_v1_StepStatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_StepStatusResponse__Output>): grpc.ClientUnaryCall;
  stepStatus(argument: _grpo_trainer_v1_StepStatusRequest, callback: grpc.requestCallback<_grpo_trainer_v1_StepStatusResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Queue prompts for training. Role: submit.
   */
  SubmitPrompts(argument: _grpo_trainer_v1_SubmitPromptsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_SubmitPromptsResponse__Output>): grpc.ClientUnaryCall;
  SubmitPrompts(argument: _grpo_trainer_v1_SubmitPromptsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_SubmitPromptsResponse__Output>): grpc.ClientUnaryCall;
  SubmitPrompts(argument: _grpo_trainer_v1_SubmitPromptsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_SubmitPromptsResponse__Output>): grpc.ClientUnaryCall;
  SubmitPrompts(argument: _grpo_trainer_v1_SubmitPromptsRequest, callback: grpc.requestCallback<_grpo_trainer_v1_SubmitPromptsResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Queue prompts for training. Role: submit.
   */
  submitPrompts(argument: _grpo_trainer_v1_SubmitPromptsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_SubmitPromptsResponse__Output>): grpc.ClientUnaryCall;
  submitPrompts(argument: _grpo_trainer_v1_SubmitPromptsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_grpo_trainer_v1_SubmitPromptsResponse__Output>): grpc.ClientUnaryCall;
  submitPrompts(argument: _grpo_trainer_v1_SubmitPromptsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_grpo_trainer_v1_SubmitPromptsResponse__Output>): grpc.ClientUnaryCall;
  submitPrompts(argument: _grpo_trainer_v1_SubmitPromptsRequest, callback: grpc.requestCallback<_grpo_trainer_v1_SubmitPromptsResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Stream step reports: first the finished steps after `after_step`, then each step as it finishes,
   * until the client cancels or the server shuts down. Role: read.
   */
  WatchSteps(argument: _grpo_trainer_v1_WatchStepsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_grpo_trainer_v1_WatchStepsResponse__Output>;
  WatchSteps(argument: _grpo_trainer_v1_WatchStepsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_grpo_trainer_v1_WatchStepsResponse__Output>;
  /**
   * Stream step reports: first the finished steps after `after_step`, then each step as it finishes,
   * until the client cancels or the server shuts down. Role: read.
   */
  watchSteps(argument: _grpo_trainer_v1_WatchStepsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_grpo_trainer_v1_WatchStepsResponse__Output>;
  watchSteps(argument: _grpo_trainer_v1_WatchStepsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_grpo_trainer_v1_WatchStepsResponse__Output>;
  
}

/**
 * TrainerService drives one GRPO training run.
 * 
 * Errors carry a google.rpc.Status in the `grpc-status-details-bin` trailer:
 * - INVALID_ARGUMENT with google.rpc.BadRequest, one FieldViolation per bad field, the field named as a
 * path into the request (`prompts[3].messages[0].role`). Nothing of a rejected request is stored.
 * - RESOURCE_EXHAUSTED with google.rpc.RetryInfo when the prompt queue is full.
 * - UNAUTHENTICATED for a missing or unknown bearer token, PERMISSION_DENIED for a token without the
 * role the RPC needs (roles: "submit", "read", "admin"; see each RPC).
 * - NOT_FOUND for a step or export that does not exist; FAILED_PRECONDITION for a run-control call that
 * does not apply in the run's state.
 */
export interface TrainerServiceHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Take queued prompts out of the queue before a step leases them, by id: a bad submission retracted.
   * Only a QUEUED prompt can be cancelled; the answer says where each other id is. Cancelling again is
   * harmless. Role: submit.
   */
  CancelPrompts: grpc.handleUnaryCall<_grpo_trainer_v1_CancelPromptsRequest__Output, _grpo_trainer_v1_CancelPromptsResponse>;
  
  /**
   * Remove a reward backend. Role: admin.
   */
  DeleteRewardBackend: grpc.handleUnaryCall<_grpo_trainer_v1_DeleteRewardBackendRequest__Output, _grpo_trainer_v1_DeleteRewardBackendResponse>;
  
  /**
   * Start writing a Hugging Face checkpoint directory of the current weights. Returns at once (or when
   * done, with `wait`); progress is pollable with GetExport. Training is stalled only for a copy of the
   * weights. Role: admin.
   */
  ExportCheckpoint: grpc.handleUnaryCall<_grpo_trainer_v1_ExportCheckpointRequest__Output, _grpo_trainer_v1_ExportCheckpointResponse>;
  
  /**
   * The progress of an export started by ExportCheckpoint, also one started before the trainer restarted
   * (an export it was writing when it stopped is FAILED, "interrupted: ..."). Role: read.
   */
  GetExport: grpc.handleUnaryCall<_grpo_trainer_v1_GetExportRequest__Output, _grpo_trainer_v1_GetExportResponse>;
  
  /**
   * The exports this trainer's store knows of, the newest first, a page at a time, also those started
   * before the trainer restarted; filtered by state. Role: read.
   */
  ListExports: grpc.handleUnaryCall<_grpo_trainer_v1_ListExportsRequest__Output, _grpo_trainer_v1_ListExportsResponse>;
  
  /**
   * Submitted prompts and where each one is (queued, leased to a step, trained, or failed and why), in
   * submission order, a page at a time; filtered by id and by state. Role: read.
   */
  ListPrompts: grpc.handleUnaryCall<_grpo_trainer_v1_ListPromptsRequest__Output, _grpo_trainer_v1_ListPromptsResponse>;
  
  /**
   * The reward backends in the registry. Role: read.
   */
  ListRewardBackends: grpc.handleUnaryCall<_grpo_trainer_v1_ListRewardBackendsRequest__Output, _grpo_trainer_v1_ListRewardBackendsResponse>;
  
  /**
   * Pause training: the step in progress finishes, no new step starts; the API stays up. Role: admin.
   */
  PauseTraining: grpc.handleUnaryCall<_grpo_trainer_v1_PauseTrainingRequest__Output, _grpo_trainer_v1_PauseTrainingResponse>;
  
  /**
   * Resume a paused run. Role: admin.
   */
  ResumeTraining: grpc.handleUnaryCall<_grpo_trainer_v1_ResumeTrainingRequest__Output, _grpo_trainer_v1_ResumeTrainingResponse>;
  
  /**
   * Add or replace a reward backend. The step in progress keeps the registry it started with; the next
   * step uses the new one. Role: admin.
   */
  SetRewardBackend: grpc.handleUnaryCall<_grpo_trainer_v1_SetRewardBackendRequest__Output, _grpo_trainer_v1_SetRewardBackendResponse>;
  
  /**
   * The state and metrics of one step (the latest by default) and of the run. Role: read.
   */
  StepStatus: grpc.handleUnaryCall<_grpo_trainer_v1_StepStatusRequest__Output, _grpo_trainer_v1_StepStatusResponse>;
  
  /**
   * Queue prompts for training. Role: submit.
   */
  SubmitPrompts: grpc.handleUnaryCall<_grpo_trainer_v1_SubmitPromptsRequest__Output, _grpo_trainer_v1_SubmitPromptsResponse>;
  
  /**
   * Stream step reports: first the finished steps after `after_step`, then each step as it finishes,
   * until the client cancels or the server shuts down. Role: read.
   */
  WatchSteps: grpc.handleServerStreamingCall<_grpo_trainer_v1_WatchStepsRequest__Output, _grpo_trainer_v1_WatchStepsResponse>;
  
}

export interface TrainerServiceDefinition extends grpc.ServiceDefinition {
  CancelPrompts: MethodDefinition<_grpo_trainer_v1_CancelPromptsRequest, _grpo_trainer_v1_CancelPromptsResponse, _grpo_trainer_v1_CancelPromptsRequest__Output, _grpo_trainer_v1_CancelPromptsResponse__Output>
  DeleteRewardBackend: MethodDefinition<_grpo_trainer_v1_DeleteRewardBackendRequest, _grpo_trainer_v1_DeleteRewardBackendResponse, _grpo_trainer_v1_DeleteRewardBackendRequest__Output, _grpo_trainer_v1_DeleteRewardBackendResponse__Output>
  ExportCheckpoint: MethodDefinition<_grpo_trainer_v1_ExportCheckpointRequest, _grpo_trainer_v1_ExportCheckpointResponse, _grpo_trainer_v1_ExportCheckpointRequest__Output, _grpo_trainer_v1_ExportCheckpointResponse__Output>
  GetExport: MethodDefinition<_grpo_trainer_v1_GetExportRequest, _grpo_trainer_v1_GetExportResponse, _grpo_trainer_v1_GetExportRequest__Output, _grpo_trainer_v1_GetExportResponse__Output>
  ListExports: MethodDefinition<_grpo_trainer_v1_ListExportsRequest, _grpo_trainer_v1_ListExportsResponse, _grpo_trainer_v1_ListExportsRequest__Output, _grpo_trainer_v1_ListExportsResponse__Output>
  ListPrompts: MethodDefinition<_grpo_trainer_v1_ListPromptsRequest, _grpo_trainer_v1_ListPromptsResponse, _grpo_trainer_v1_ListPromptsRequest__Output, _grpo_trainer_v1_ListPromptsResponse__Output>
  ListRewardBackends: MethodDefinition<_grpo_trainer_v1_ListRewardBackendsRequest, _grpo_trainer_v1_ListRewardBackendsResponse, _grpo_trainer_v1_ListRewardBackendsRequest__Output, _grpo_trainer_v1_ListRewardBackendsResponse__Output>
  PauseTraining: MethodDefinition<_grpo_trainer_v1_PauseTrainingRequest, _grpo_trainer_v1_PauseTrainingResponse, _grpo_trainer_v1_PauseTrainingRequest__Output, _grpo_trainer_v1_PauseTrainingResponse__Output>
  ResumeTraining: MethodDefinition<_grpo_trainer_v1_ResumeTrainingRequest, _grpo_trainer_v1_ResumeTrainingResponse, _grpo_trainer_v1_ResumeTrainingRequest__Output, _grpo_trainer_v1_ResumeTrainingResponse__Output>
  SetRewardBackend: MethodDefinition<_grpo_trainer_v1_SetRewardBackendRequest, _grpo_trainer_v1_SetRewardBackendResponse, _grpo_trainer_v1_SetRewardBackendRequest__Output, _grpo_trainer_v1_SetRewardBackendResponse__Output>
  StepStatus: MethodDefinition<_grpo_trainer_v1_StepStatusRequest, _grpo_trainer_v1_StepStatusResponse, _grpo_trainer_v1_StepStatusRequest__Output, _grpo_trainer_v1_StepStatusResponse__Output>
  SubmitPrompts: MethodDefinition<_grpo_trainer_v1_SubmitPromptsRequest, _grpo_trainer_v1_SubmitPromptsResponse, _grpo_trainer_v1_SubmitPromptsRequest__Output, _grpo_trainer_v1_SubmitPromptsResponse__Output>
  WatchSteps: MethodDefinition<_grpo_trainer_v1_WatchStepsRequest, _grpo_trainer_v1_WatchStepsResponse, _grpo_trainer_v1_WatchStepsRequest__Output, _grpo_trainer_v1_WatchStepsResponse__Output>
}
