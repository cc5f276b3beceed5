// tests/reference/ort_bench.js -- ONNX Runtime's side of the inference
// targets (docs/performance.md): times a model exported by `dgseg export`
// in npm's onnxruntime-node (CPU), the way `dgseg bench --mode infer` times
// dgseg: seeded uniform inputs, 2 warm-up runs, then STEPS timed runs.
//   node ort_bench.js MODEL.onnx BATCH CHANNELS SIZE THREADS STEPS
// Prints one JSON line: images_per_s, ms_per_step, peak_rss_mb (VmHWM).
// ORT_MODULE names the onnxruntime-node folder (default: build-ort/'s).
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require(process.env.ORT_MODULE ||
    path.join(__dirname, '../../build-ort/node_modules/onnxruntime-node'));

function peakRssMb() {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

async function main() {
  const [model, b, c, s, threads, steps] = process.argv.slice(2);
  const dims = [Number(b), Number(c), Number(s), Number(s)];
  const n = dims.reduce((x, y) => x * y, 1);
  const x = new Float32Array(n);
  let state = 12345;
  for (let i = 0; i < n; i++) {
    state = (state * 1103515245 + 12345) % 2147483648;
    x[i] = state / 2147483648;
  }
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: Number(threads), interOpNumThreads: 1,
    graphOptimizationLevel: 'all', executionMode: 'sequential'});
  const feed = {input: new ort.Tensor('float32', x, dims)};
  for (let i = 0; i < 2; i++) await session.run(feed);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < Number(steps); i++) await session.run(feed);
  const dt = Number(process.hrtime.bigint() - t0) / 1e9 / Number(steps);
  console.log(JSON.stringify({engine: 'onnxruntime', version: require(
      path.join(process.env.ORT_MODULE || path.join(__dirname,
          '../../build-ort/node_modules/onnxruntime-node'), 'package.json')).version,
      batch: dims[0], size: dims[2], threads: Number(threads), steps: Number(steps),
      images_per_s: dims[0] / dt, ms_per_step: dt * 1e3, peak_rss_mb: peakRssMb()}));
}

main().catch((e) => {
  console.error(`ort_bench.js: ${e.message || e}`);
  process.exit(1);
});
