// Original file: proto/grpo/trainer/v1/trainer.proto


/**
 * ListRewardBackends takes no arguments.
 */
export interface ListRewardBackendsRequest {
}

/**
 * ListRewardBackends takes no arguments.
 */
export interface ListRewardBackendsRequest__Output {
}
