// Original file: proto/grpo/reward/v1/reward.proto


/**
 * One stdin/stdout case for a program that reads its input and prints its answer.
 */
export interface IOCase {
  /**
   * Bytes fed to the program's standard input, UTF-8.
   */
  'stdin'?: (string);
  /**
   * The expected standard output. Compared after stripping trailing whitespace on every line and
   * trailing blank lines.
   */
  'expectedStdout'?: (string);
}

/**
 * One stdin/stdout case for a program that reads its input and prints its answer.
 */
export interface IOCase__Output {
  /**
   * Bytes fed to the program's standard input, UTF-8.
   */
  'stdin': (string);
  /**
   * The expected standard output. Compared after stripping trailing whitespace on every line and
   * trailing blank lines.
   */
  'expectedStdout': (string);
}
