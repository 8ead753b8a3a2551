// Public surface of the GRPO trainer client.
export { IDS_PER_REQUEST, MAX_RECONNECT_BACKOFF_MS, TrainerClient, idChunks } from './client';
export type { ClientOptions, FollowOptions, TlsOptions, WatchOptions } from './client';
export { GrpoError, decodeStatusDetails } from './errors';
export type { FieldViolation, StatusDetail } from './errors';
export { PROTO_DIR } from './protos';
export {
  MAX_PROMPT_ERRORS, PromptFileError, batchRequestId, formatPromptError, loadPromptFile, marshalPrompt, parsePromptFile,
} from './prompts';
export type { PromptError, PromptFile } from './prompts';
export { SubmitError, formatLocated } from './submit';
export type { LocatedViolation, SubmitOptions, SubmitResult } from './submit';
export { clientCertificateRefusal } from './tlscheck';
export type { TlsCheckOptions } from './tlscheck';

// The message types, under short names: inputs (what you send) and outputs (what comes back).
export type { Prompt } from './generated/grpo/trainer/v1/Prompt';
export type { RewardSpec } from './generated/grpo/trainer/v1/RewardSpec';
export type { Message } from './generated/grpo/reward/v1/Message';
export type { CodeTests } from './generated/grpo/reward/v1/CodeTests';
export type { RewardBackend, RewardBackend__Output as RewardBackendInfo } from './generated/grpo/trainer/v1/RewardBackend';
export type { SubmitPromptsResponse__Output as SubmitPromptsResponse } from './generated/grpo/trainer/v1/SubmitPromptsResponse';
export type { StepStatusResponse__Output as StepStatusResponse } from './generated/grpo/trainer/v1/StepStatusResponse';
export type { WatchStepsResponse__Output as WatchStepsResponse } from './generated/grpo/trainer/v1/WatchStepsResponse';
export type { StepReport__Output as StepReport } from './generated/grpo/trainer/v1/StepReport';
export type { StepMetrics__Output as StepMetrics } from './generated/grpo/trainer/v1/StepMetrics';
export type { RunStatus__Output as RunStatus } from './generated/grpo/trainer/v1/RunStatus';
export type { Export__Output as Export } from './generated/grpo/trainer/v1/Export';
export type { ListExportsRequest } from './generated/grpo/trainer/v1/ListExportsRequest';
export type { ListExportsResponse__Output as ListExportsResponse } from './generated/grpo/trainer/v1/ListExportsResponse';
export type { ListRewardBackendsResponse__Output as ListRewardBackendsResponse } from './generated/grpo/trainer/v1/ListRewardBackendsResponse';
export type { ListPromptsRequest } from './generated/grpo/trainer/v1/ListPromptsRequest';
export type { ListPromptsResponse__Output as ListPromptsResponse } from './generated/grpo/trainer/v1/ListPromptsResponse';
export type { PromptStatus__Output as PromptStatus } from './generated/grpo/trainer/v1/PromptStatus';
export type { CancelPromptsResponse__Output as CancelPromptsResponse } from './generated/grpo/trainer/v1/CancelPromptsResponse';
export type { PromptState } from './generated/grpo/trainer/v1/PromptState';
export type { RunState } from './generated/grpo/trainer/v1/RunState';
export type { StepState } from './generated/grpo/trainer/v1/StepState';
export type { ExportState } from './generated/grpo/trainer/v1/ExportState';
