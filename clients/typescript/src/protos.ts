// Loads the .proto files shipped in ../proto (copied from the repository's protos/ by `npm run gen`).
// The loader options here must match GEN_FLAGS in scripts/gen-types.js, since the generated types in
// src/generated describe exactly what the loader produces with them.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import * as protobuf from 'protobufjs';

import type { ProtoGrpcType } from './generated/trainer';

/** The folder holding grpo/... and google/rpc/... .proto files (dist/src/../../proto or src/../proto). */
export const PROTO_DIR = findProtoDir();

/** Loader options: camelCase fields, int64 as JS numbers (exact below 2^53), enums as their names,
 * unset scalars and repeated fields filled with defaults, oneof names in a virtual field. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

function findProtoDir(): string {
  // Compiled code runs from dist/src, sources (ts-node and the like) from src.
  for (const candidate of [path.resolve(__dirname, '..', '..', 'proto'), path.resolve(__dirname, '..', 'proto')]) {
    try {
      fs.accessSync(path.join(candidate, 'grpo', 'trainer', 'v1', 'trainer.proto'));
      return candidate;
    } catch {
      // try the next layout
    }
  }
  throw new Error(`grpo client: proto/ folder not found next to ${__dirname}; run \`npm run gen\``);
}

let grpcTypes: ProtoGrpcType | undefined;

/** The grpc-js service constructors and message definitions of grpo.trainer.v1 (loaded once). */
export function trainerGrpcTypes(): ProtoGrpcType {
  if (!grpcTypes) {
    const definition = protoLoader.loadSync('grpo/trainer/v1/trainer.proto', LOADER_OPTIONS);
    grpcTypes = grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType;
  }
  return grpcTypes;
}

let rpcRoot: protobuf.Root | undefined;

/** A protobufjs Root with google.rpc.Status and the standard error detail messages (loaded once). */
export function googleRpcRoot(): protobuf.Root {
  if (!rpcRoot) {
    const root = new protobuf.Root();
    root.resolvePath = (_origin: string, target: string) => path.join(PROTO_DIR, target);
    // google/protobuf/{any,duration}.proto are built into protobufjs.
    root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], { keepCase: false });
    rpcRoot = root;
  }
  return rpcRoot;
}
