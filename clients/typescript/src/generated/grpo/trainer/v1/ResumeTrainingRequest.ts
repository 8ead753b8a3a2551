// Original file: proto/grpo/trainer/v1/trainer.proto


/**
 * ResumeTraining takes no arguments.
 */
export interface ResumeTrainingRequest {
}

/**
 * ResumeTraining takes no arguments.
 */
export interface ResumeTrainingRequest__Output {
}
