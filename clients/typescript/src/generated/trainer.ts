import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from './google/protobuf/Timestamp';
import type { Capabilities as _grpo_reward_v1_Capabilities, Capabilities__Output as _grpo_reward_v1_Capabilities__Output } from './grpo/reward/v1/Capabilities';
import type { CodeTests as _grpo_reward_v1_CodeTests, CodeTests__Output as _grpo_reward_v1_CodeTests__Output } from './grpo/reward/v1/CodeTests';
import type { DescribeRequest as _grpo_reward_v1_DescribeRequest, DescribeRequest__Output as _grpo_reward_v1_DescribeRequest__Output } from './grpo/reward/v1/DescribeRequest';
import type { DescribeResponse as _grpo_reward_v1_DescribeResponse, DescribeResponse__Output as _grpo_reward_v1_DescribeResponse__Output } from './grpo/reward/v1/DescribeResponse';
import type { IOCase as _grpo_reward_v1_IOCase, IOCase__Output as _grpo_reward_v1_IOCase__Output } from './grpo/reward/v1/IOCase';
import type { Message as _grpo_reward_v1_Message, Message__Output as _grpo_reward_v1_Message__Output } from './grpo/reward/v1/Message';
import type { RewardServiceClient as _grpo_reward_v1_RewardServiceClient, RewardServiceDefinition as _grpo_reward_v1_RewardServiceDefinition } from './grpo/reward/v1/RewardService';
import type { ScoreItem as _grpo_reward_v1_ScoreItem, ScoreItem__Output as _grpo_reward_v1_ScoreItem__Output } from './grpo/reward/v1/ScoreItem';
import type { ScoreRequest as _grpo_reward_v1_ScoreRequest, ScoreRequest__Output as _grpo_reward_v1_ScoreRequest__Output } from './grpo/reward/v1/ScoreRequest';
import type { ScoreResponse as _grpo_reward_v1_ScoreResponse, ScoreResponse__Output as _grpo_reward_v1_ScoreResponse__Output } from './grpo/reward/v1/ScoreResponse';
import type { ScoreResult as _grpo_reward_v1_ScoreResult, ScoreResult__Output as _grpo_reward_v1_ScoreResult__Output } from './grpo/reward/v1/ScoreResult';
import type { CancelPromptsRequest as _grpo_trainer_v1_CancelPromptsRequest, CancelPromptsRequest__Output as _grpo_trainer_v1_CancelPromptsRequest__Output } from './grpo/trainer/v1/CancelPromptsRequest';
import type { CancelPromptsResponse as _grpo_trainer_v1_CancelPromptsResponse, CancelPromptsResponse__Output as _grpo_trainer_v1_CancelPromptsResponse__Output } from './grpo/trainer/v1/CancelPromptsResponse';
import type { CompletionSample as _grpo_trainer_v1_CompletionSample, CompletionSample__Output as _grpo_trainer_v1_CompletionSample__Output } from './grpo/trainer/v1/CompletionSample';
import type { DeleteRewardBackendRequest as _grpo_trainer_v1_DeleteRewardBackendRequest, DeleteRewardBackendRequest__Output as _grpo_trainer_v1_DeleteRewardBackendRequest__Output } from './grpo/trainer/v1/DeleteRewardBackendRequest';
import type { DeleteRewardBackendResponse as _grpo_trainer_v1_DeleteRewardBackendResponse, DeleteRewardBackendResponse__Output as _grpo_trainer_v1_DeleteRewardBackendResponse__Output } from './grpo/trainer/v1/DeleteRewardBackendResponse';
import type { Export as _grpo_trainer_v1_Export, Export__Output as _grpo_trainer_v1_Export__Output } from './grpo/trainer/v1/Export';
import type { ExportCheckpointRequest as _grpo_trainer_v1_ExportCheckpointRequest, ExportCheckpointRequest__Output as _grpo_trainer_v1_ExportCheckpointRequest__Output } from './grpo/trainer/v1/ExportCheckpointRequest';
import type { ExportCheckpointResponse as _grpo_trainer_v1_ExportCheckpointResponse, ExportCheckpointResponse__Output as _grpo_trainer_v1_ExportCheckpointResponse__Output } from './grpo/trainer/v1/ExportCheckpointResponse';
import type { ExportedFile as _grpo_trainer_v1_ExportedFile, ExportedFile__Output as _grpo_trainer_v1_ExportedFile__Output } from './grpo/trainer/v1/ExportedFile';
import type { GetExportRequest as _grpo_trainer_v1_GetExportRequest, GetExportRequest__Output as _grpo_trainer_v1_GetExportRequest__Output } from './grpo/trainer/v1/GetExportRequest';
import type { GetExportResponse as _grpo_trainer_v1_GetExportResponse, GetExportResponse__Output as _grpo_trainer_v1_GetExportResponse__Output } from './grpo/trainer/v1/GetExportResponse';
import type { ListExportsRequest as _grpo_trainer_v1_ListExportsRequest, ListExportsRequest__Output as _grpo_trainer_v1_ListExportsRequest__Output } from './grpo/trainer/v1/ListExportsRequest';
import type { ListExportsResponse as _grpo_trainer_v1_ListExportsResponse, ListExportsResponse__Output as _grpo_trainer_v1_ListExportsResponse__Output } from './grpo/trainer/v1/ListExportsResponse';
import type { ListPromptsRequest as _grpo_trainer_v1_ListPromptsRequest, ListPromptsRequest__Output as _grpo_trainer_v1_ListPromptsRequest__Output } from './grpo/trainer/v1/ListPromptsRequest';
import type { ListPromptsResponse as _grpo_trainer_v1_ListPromptsResponse, ListPromptsResponse__Output as _grpo_trainer_v1_ListPromptsResponse__Output } from './grpo/trainer/v1/ListPromptsResponse';
import type { ListRewardBackendsRequest as _grpo_trainer_v1_ListRewardBackendsRequest, ListRewardBackendsRequest__Output as _grpo_trainer_v1_ListRewardBackendsRequest__Output } from './grpo/trainer/v1/ListRewardBackendsRequest';
import type { ListRewardBackendsResponse as _grpo_trainer_v1_ListRewardBackendsResponse, ListRewardBackendsResponse__Output as _grpo_trainer_v1_ListRewardBackendsResponse__Output } from './grpo/trainer/v1/ListRewardBackendsResponse';
import type { PauseTrainingRequest as _grpo_trainer_v1_PauseTrainingRequest, PauseTrainingRequest__Output as _grpo_trainer_v1_PauseTrainingRequest__Output } from './grpo/trainer/v1/PauseTrainingRequest';
import type { PauseTrainingResponse as _grpo_trainer_v1_PauseTrainingResponse, PauseTrainingResponse__Output as _grpo_trainer_v1_PauseTrainingResponse__Output } from './grpo/trainer/v1/PauseTrainingResponse';
import type { Prompt as _grpo_trainer_v1_Prompt, Prompt__Output as _grpo_trainer_v1_Prompt__Output } from './grpo/trainer/v1/Prompt';
import type { PromptStatus as _grpo_trainer_v1_PromptStatus, PromptStatus__Output as _grpo_trainer_v1_PromptStatus__Output } from './grpo/trainer/v1/PromptStatus';
import type { ResumeTrainingRequest as _grpo_trainer_v1_ResumeTrainingRequest, ResumeTrainingRequest__Output as _grpo_trainer_v1_ResumeTrainingRequest__Output } from './grpo/trainer/v1/ResumeTrainingRequest';
import type { ResumeTrainingResponse as _grpo_trainer_v1_ResumeTrainingResponse, ResumeTrainingResponse__Output as _grpo_trainer_v1_ResumeTrainingResponse__Output } from './grpo/trainer/v1/ResumeTrainingResponse';
import type { RewardBackend as _grpo_trainer_v1_RewardBackend, RewardBackend__Output as _grpo_trainer_v1_RewardBackend__Output } from './grpo/trainer/v1/RewardBackend';
import type { RewardSpec as _grpo_trainer_v1_RewardSpec, RewardSpec__Output as _grpo_trainer_v1_RewardSpec__Output } from './grpo/trainer/v1/RewardSpec';
import type { RunStatus as _grpo_trainer_v1_RunStatus, RunStatus__Output as _grpo_trainer_v1_RunStatus__Output } from './grpo/trainer/v1/RunStatus';
import type { SampleScore as _grpo_trainer_v1_SampleScore, SampleScore__Output as _grpo_trainer_v1_SampleScore__Output } from './grpo/trainer/v1/SampleScore';
import type { ServerLimits as _grpo_trainer_v1_ServerLimits, ServerLimits__Output as _grpo_trainer_v1_ServerLimits__Output } from './grpo/trainer/v1/ServerLimits';
import type { SetRewardBackendRequest as _grpo_trainer_v1_SetRewardBackendRequest, SetRewardBackendRequest__Output as _grpo_trainer_v1_SetRewardBackendRequest__Output } from './grpo/trainer/v1/SetRewardBackendRequest';
import type { SetRewardBackendResponse as _grpo_trainer_v1_SetRewardBackendResponse, SetRewardBackendResponse__Output as _grpo_trainer_v1_SetRewardBackendResponse__Output } from './grpo/trainer/v1/SetRewardBackendResponse';
import type { StepMetrics as _grpo_trainer_v1_StepMetrics, StepMetrics__Output as _grpo_trainer_v1_StepMetrics__Output } from './grpo/trainer/v1/StepMetrics';
import type { StepReport as _grpo_trainer_v1_StepReport, StepReport__Output as _grpo_trainer_v1_StepReport__Output } from './grpo/trainer/v1/StepReport';
import type { StepStatusRequest as _grpo_trainer_v1_StepStatusRequest, StepStatusRequest__Output as _grpo_trainer_v1_StepStatusRequest__Output } from './grpo/trainer/v1/StepStatusRequest';
import type { StepStatusResponse as _grpo_trainer_v1_StepStatusResponse, StepStatusResponse__Output as _grpo_trainer_v1_StepStatusResponse__Output } from './grpo/trainer/v1/StepStatusResponse';
import type { SubmitPromptsRequest as _grpo_trainer_v1_SubmitPromptsRequest, SubmitPromptsRequest__Output as _grpo_trainer_v1_SubmitPromptsRequest__Output } from './grpo/trainer/v1/SubmitPromptsRequest';
import type { SubmitPromptsResponse as _grpo_trainer_v1_SubmitPromptsResponse, SubmitPromptsResponse__Output as _grpo_trainer_v1_SubmitPromptsResponse__Output } from './grpo/trainer/v1/SubmitPromptsResponse';
import type { TrainerServiceClient as _grpo_trainer_v1_TrainerServiceClient, TrainerServiceDefinition as _grpo_trainer_v1_TrainerServiceDefinition } from './grpo/trainer/v1/TrainerService';
import type { WatchStepsRequest as _grpo_trainer_v1_WatchStepsRequest, WatchStepsRequest__Output as _grpo_trainer_v1_WatchStepsRequest__Output } from './grpo/trainer/v1/WatchStepsRequest';
import type { WatchStepsResponse as _grpo_trainer_v1_WatchStepsResponse, WatchStepsResponse__Output as _grpo_trainer_v1_WatchStepsResponse__Output } from './grpo/trainer/v1/WatchStepsResponse';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  google: {
    protobuf: {
      Timestamp: MessageTypeDefinition<_google_protobuf_Timestamp, _google_protobuf_Timestamp__Output>
    }
  }
  grpo: {
    reward: {
      v1: {
        Capabilities: MessageTypeDefinition<_grpo_reward_v1_Capabilities, _grpo_reward_v1_Capabilities__Output>
        CodeTests: MessageTypeDefinition<_grpo_reward_v1_CodeTests, _grpo_reward_v1_CodeTests__Output>
        DescribeRequest: MessageTypeDefinition<_grpo_reward_v1_DescribeRequest, _grpo_reward_v1_DescribeRequest__Output>
        DescribeResponse: MessageTypeDefinition<_grpo_reward_v1_DescribeResponse, _grpo_reward_v1_DescribeResponse__Output>
        IOCase: MessageTypeDefinition<_grpo_reward_v1_IOCase, _grpo_reward_v1_IOCase__Output>
        Message: MessageTypeDefinition<_grpo_reward_v1_Message, _grpo_reward_v1_Message__Output>
        ReferenceKind: EnumTypeDefinition
        /**
         * RewardService scores batches of completions.
         * 
         * Errors: a malformed request as a whole (no items, too many items, a duplicate or missing id, an
         * oversize field) fails with INVALID_ARGUMENT and a google.rpc.BadRequest detail naming
         * `items[i].field`. A problem with one item that the backend can still report on (unparseable answer,
         * a program that timed out) is NOT an RPC error: it comes back as that item's `status`.
         * RESOURCE_EXHAUSTED means the backend is at its concurrency limit; callers retry with backoff.
         */
        RewardService: SubtypeConstructor<typeof grpc.Client, _grpo_reward_v1_RewardServiceClient> & { service: _grpo_reward_v1_RewardServiceDefinition }
        ScoreItem: MessageTypeDefinition<_grpo_reward_v1_ScoreItem, _grpo_reward_v1_ScoreItem__Output>
        ScoreRequest: MessageTypeDefinition<_grpo_reward_v1_ScoreRequest, _grpo_reward_v1_ScoreRequest__Output>
        ScoreResponse: MessageTypeDefinition<_grpo_reward_v1_ScoreResponse, _grpo_reward_v1_ScoreResponse__Output>
        ScoreResult: MessageTypeDefinition<_grpo_reward_v1_ScoreResult, _grpo_reward_v1_ScoreResult__Output>
        ScoreStatus: EnumTypeDefinition
      }
    }
    trainer: {
      v1: {
        BackendSource: EnumTypeDefinition
        CancelPromptsRequest: MessageTypeDefinition<_grpo_trainer_v1_CancelPromptsRequest, _grpo_trainer_v1_CancelPromptsRequest__Output>
        CancelPromptsResponse: MessageTypeDefinition<_grpo_trainer_v1_CancelPromptsResponse, _grpo_trainer_v1_CancelPromptsResponse__Output>
        CircuitState: EnumTypeDefinition
        CompletionSample: MessageTypeDefinition<_grpo_trainer_v1_CompletionSample, _grpo_trainer_v1_CompletionSample__Output>
        DeleteRewardBackendRequest: MessageTypeDefinition<_grpo_trainer_v1_DeleteRewardBackendRequest, _grpo_trainer_v1_DeleteRewardBackendRequest__Output>
        DeleteRewardBackendResponse: MessageTypeDefinition<_grpo_trainer_v1_DeleteRewardBackendResponse, _grpo_trainer_v1_DeleteRewardBackendResponse__Output>
        Export: MessageTypeDefinition<_grpo_trainer_v1_Export, _grpo_trainer_v1_Export__Output>
        ExportCheckpointRequest: MessageTypeDefinition<_grpo_trainer_v1_ExportCheckpointRequest, _grpo_trainer_v1_ExportCheckpointRequest__Output>
        ExportCheckpointResponse: MessageTypeDefinition<_grpo_trainer_v1_ExportCheckpointResponse, _grpo_trainer_v1_ExportCheckpointResponse__Output>
        ExportState: EnumTypeDefinition
        ExportedFile: MessageTypeDefinition<_grpo_trainer_v1_ExportedFile, _grpo_trainer_v1_ExportedFile__Output>
        GetExportRequest: MessageTypeDefinition<_grpo_trainer_v1_GetExportRequest, _grpo_trainer_v1_GetExportRequest__Output>
        GetExportResponse: MessageTypeDefinition<_grpo_trainer_v1_GetExportResponse, _grpo_trainer_v1_GetExportResponse__Output>
        ListExportsRequest: MessageTypeDefinition<_grpo_trainer_v1_ListExportsRequest, _grpo_trainer_v1_ListExportsRequest__Output>
        ListExportsResponse: MessageTypeDefinition<_grpo_trainer_v1_ListExportsResponse, _grpo_trainer_v1_ListExportsResponse__Output>
        ListPromptsRequest: MessageTypeDefinition<_grpo_trainer_v1_ListPromptsRequest, _grpo_trainer_v1_ListPromptsRequest__Output>
        ListPromptsResponse: MessageTypeDefinition<_grpo_trainer_v1_ListPromptsResponse, _grpo_trainer_v1_ListPromptsResponse__Output>
        ListRewardBackendsRequest: MessageTypeDefinition<_grpo_trainer_v1_ListRewardBackendsRequest, _grpo_trainer_v1_ListRewardBackendsRequest__Output>
        ListRewardBackendsResponse: MessageTypeDefinition<_grpo_trainer_v1_ListRewardBackendsResponse, _grpo_trainer_v1_ListRewardBackendsResponse__Output>
        PauseTrainingRequest: MessageTypeDefinition<_grpo_trainer_v1_PauseTrainingRequest, _grpo_trainer_v1_PauseTrainingRequest__Output>
        PauseTrainingResponse: MessageTypeDefinition<_grpo_trainer_v1_PauseTrainingResponse, _grpo_trainer_v1_PauseTrainingResponse__Output>
        Prompt: MessageTypeDefinition<_grpo_trainer_v1_Prompt, _grpo_trainer_v1_Prompt__Output>
        PromptState: EnumTypeDefinition
        PromptStatus: MessageTypeDefinition<_grpo_trainer_v1_PromptStatus, _grpo_trainer_v1_PromptStatus__Output>
        ResumeTrainingRequest: MessageTypeDefinition<_grpo_trainer_v1_ResumeTrainingRequest, _grpo_trainer_v1_ResumeTrainingRequest__Output>
        ResumeTrainingResponse: MessageTypeDefinition<_grpo_trainer_v1_ResumeTrainingResponse, _grpo_trainer_v1_ResumeTrainingResponse__Output>
        RewardBackend: MessageTypeDefinition<_grpo_trainer_v1_RewardBackend, _grpo_trainer_v1_RewardBackend__Output>
        RewardSpec: MessageTypeDefinition<_grpo_trainer_v1_RewardSpec, _grpo_trainer_v1_RewardSpec__Output>
        RunState: EnumTypeDefinition
        RunStatus: MessageTypeDefinition<_grpo_trainer_v1_RunStatus, _grpo_trainer_v1_RunStatus__Output>
        SampleScore: MessageTypeDefinition<_grpo_trainer_v1_SampleScore, _grpo_trainer_v1_SampleScore__Output>
        ServerLimits: MessageTypeDefinition<_grpo_trainer_v1_ServerLimits, _grpo_trainer_v1_ServerLimits__Output>
        SetRewardBackendRequest: MessageTypeDefinition<_grpo_trainer_v1_SetRewardBackendRequest, _grpo_trainer_v1_SetRewardBackendRequest__Output>
        SetRewardBackendResponse: MessageTypeDefinition<_grpo_trainer_v1_SetRewardBackendResponse, _grpo_trainer_v1_SetRewardBackendResponse__Output>
        StepMetrics: MessageTypeDefinition<_grpo_trainer_v1_StepMetrics, _grpo_trainer_v1_StepMetrics__Output>
        StepReport: MessageTypeDefinition<_grpo_trainer_v1_StepReport, _grpo_trainer_v1_StepReport__Output>
        StepState: EnumTypeDefinition
        StepStatusRequest: MessageTypeDefinition<_grpo_trainer_v1_StepStatusRequest, _grpo_trainer_v1_StepStatusRequest__Output>
        StepStatusResponse: MessageTypeDefinition<_grpo_trainer_v1_StepStatusResponse, _grpo_trainer_v1_StepStatusResponse__Output>
        SubmitPromptsRequest: MessageTypeDefinition<_grpo_trainer_v1_SubmitPromptsRequest, _grpo_trainer_v1_SubmitPromptsRequest__Output>
        SubmitPromptsResponse: MessageTypeDefinition<_grpo_trainer_v1_SubmitPromptsResponse, _grpo_trainer_v1_SubmitPromptsResponse__Output>
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
        TrainerService: SubtypeConstructor<typeof grpc.Client, _grpo_trainer_v1_TrainerServiceClient> & { service: _grpo_trainer_v1_TrainerServiceDefinition }
        WatchStepsRequest: MessageTypeDefinition<_grpo_trainer_v1_WatchStepsRequest, _grpo_trainer_v1_WatchStepsRequest__Output>
        WatchStepsResponse: MessageTypeDefinition<_grpo_trainer_v1_WatchStepsResponse, _grpo_trainer_v1_WatchStepsResponse__Output>
      }
    }
  }
}

