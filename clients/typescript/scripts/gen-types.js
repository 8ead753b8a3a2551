#!/usr/bin/env node
// Regenerates what this package derives from the repository's protos/:
//   proto/      a copy of the .proto files the client loads at run time (so the package is self-contained)
//   src/generated/  TypeScript types from proto-loader-gen-types
// `--check` regenerates into a temporary folder and exits 1 if the committed files differ (CI freshness check).
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const pkgDir = path.resolve(__dirname, '..');
const protosDir = path.resolve(pkgDir, '..', '..', 'protos');
// Every file the client needs, relative to protos/ (third_party files keep their import paths).
const PROTO_FILES = [
  ['grpo/trainer/v1/trainer.proto', 'grpo/trainer/v1/trainer.proto'],
  ['grpo/reward/v1/reward.proto', 'grpo/reward/v1/reward.proto'],
  ['third_party/google/rpc/status.proto', 'google/rpc/status.proto'],
  ['third_party/google/rpc/error_details.proto', 'google/rpc/error_details.proto'],
  ['third_party/google/rpc/code.proto', 'google/rpc/code.proto'],
];
// Must match LOADER_OPTIONS in src/protos.ts: the generated types describe what the loader produces.
const GEN_FLAGS = ['--longs=Number', '--enums=String', '--defaults', '--oneofs', '--includeComments',
  '--grpcLib=@grpc/grpc-js'];

function generate(outRoot) {
  const protoOut = path.join(outRoot, 'proto');
  for (const [from, to] of PROTO_FILES) {
    fs.mkdirSync(path.dirname(path.join(protoOut, to)), { recursive: true });
    fs.copyFileSync(path.join(protosDir, from), path.join(protoOut, to));
  }
  const genOut = path.join(outRoot, 'src', 'generated');
  fs.mkdirSync(genOut, { recursive: true });
  const bin = path.join(pkgDir, 'node_modules', '@grpc', 'proto-loader', 'build', 'bin', 'proto-loader-gen-types.js');
  // Relative paths, run from outRoot: the generator writes the source path into every file's header.
  execFileSync(process.execPath, [bin, ...GEN_FLAGS, '-I', 'proto', '-O', path.join('src', 'generated'),
    'grpo/trainer/v1/trainer.proto', 'google/rpc/status.proto', 'google/rpc/error_details.proto'],
  { cwd: outRoot, stdio: ['ignore', 'ignore', 'inherit'] });
}

function listFiles(dir, base = dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? listFiles(p, base) : [path.relative(base, p)];
  }).sort();
}

function differences(a, b) {
  const fa = listFiles(a);
  const fb = listFiles(b);
  const out = [];
  for (const f of new Set([...fa, ...fb])) {
    const pa = path.join(a, f);
    const pb = path.join(b, f);
    if (!fs.existsSync(pa) || !fs.existsSync(pb) || !fs.readFileSync(pa).equals(fs.readFileSync(pb))) out.push(f);
  }
  return out;
}

if (process.argv.includes('--check')) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'grpo-ts-gen-'));
  try {
    generate(tmp);
    const stale = [
      ...differences(path.join(tmp, 'proto'), path.join(pkgDir, 'proto')).map((f) => `proto/${f}`),
      ...differences(path.join(tmp, 'src', 'generated'), path.join(pkgDir, 'src', 'generated'))
        .map((f) => `src/generated/${f}`),
    ];
    if (stale.length) {
      console.error(`stale generated files (run \`npm run gen\` in clients/typescript):\n  ${stale.join('\n  ')}`);
      process.exit(1);
    }
    console.log('generated files are up to date');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
} else {
  fs.rmSync(path.join(pkgDir, 'proto'), { recursive: true, force: true });
  fs.rmSync(path.join(pkgDir, 'src', 'generated'), { recursive: true, force: true });
  generate(pkgDir);
  console.log('wrote proto/ and src/generated/');
}
