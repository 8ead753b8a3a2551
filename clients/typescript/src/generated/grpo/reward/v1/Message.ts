// Original file: proto/grpo/reward/v1/reward.proto


/**
 * One chat message.
 */
export interface Message {
  /**
   * Who speaks: "system", "user" or "assistant" (other roles are rejected by the trainer).
   */
  'role'?: (string);
  /**
   * The text of the message, UTF-8.
   */
  'content'?: (string);
}

/**
 * One chat message.
 */
export interface Message__Output {
  /**
   * Who speaks: "system", "user" or "assistant" (other roles are rejected by the trainer).
   */
  'role': (string);
  /**
   * The text of the message, UTF-8.
   */
  'content': (string);
}
