// Original file: proto/grpo/reward/v1/reward.proto


/**
 * Describe takes no arguments.
 */
export interface DescribeRequest {
}

/**
 * Describe takes no arguments.
 */
export interface DescribeRequest__Output {
}
