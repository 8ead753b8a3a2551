// Original file: proto/grpo/trainer/v1/trainer.proto

import type { Long } from '@grpc/proto-loader';

/**
 * One exported file in the manifest.
 */
export interface ExportedFile {
  /**
   * The path relative to the export directory.
   */
  'path'?: (string);
  /**
   * Size in bytes.
   */
  'sizeBytes'?: (number | string | Long);
  /**
   * Lowercase hex SHA-256 of the file's contents.
   */
  'sha256'?: (string);
}

/**
 * One exported file in the manifest.
 */
export interface ExportedFile__Output {
  /**
   * The path relative to the export directory.
   */
  'path': (string);
  /**
   * Size in bytes.
   */
  'sizeBytes': (number);
  /**
   * Lowercase hex SHA-256 of the file's contents.
   */
  'sha256': (string);
}
