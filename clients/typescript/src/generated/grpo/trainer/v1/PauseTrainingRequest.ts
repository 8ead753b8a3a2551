// Original file: proto/grpo/trainer/v1/trainer.proto


/**
 * PauseTraining takes no arguments.
 */
export interface PauseTrainingRequest {
}

/**
 * PauseTraining takes no arguments.
 */
export interface PauseTrainingRequest__Output {
}
