// tests/ort/run.js -- runs an ONNX model with ONNX Runtime (npm
// onnxruntime-node, CPU) for tests/test_export.c:
//   node run.js MODEL.onnx INPUT.bin N C H W OUTPUT.bin [THREADS]
// INPUT.bin: float32 little-endian (N, C, H, W), fed as "input"; writes the
// "logits" output's float32 values to OUTPUT.bin and prints its dims as
// one JSON line on stdout. ORT_MODULE names the onnxruntime-node folder
// (default: the one `require` finds). Exit 1 with ONNX Runtime's message
// when the model does not load or run.
'use strict';
const fs = require('fs');
const ort = require(process.env.ORT_MODULE || 'onnxruntime-node');

async function main() {
  const [model, input, n, c, h, w, output, threads] = process.argv.slice(2);
  const dims = [n, c, h, w].map(Number);
  const buf = fs.readFileSync(input);
  const data = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  const opts = {intraOpNumThreads: Number(threads || 1), interOpNumThreads: 1};
  const session = await ort.InferenceSession.create(model, opts);
  const out = await session.run({input: new ort.Tensor('float32', data, dims)});
  const z = out.logits;
  fs.writeFileSync(output, Buffer.from(z.data.buffer, z.data.byteOffset, z.data.byteLength));
  console.log(JSON.stringify({dims: z.dims}));
}

main().catch((e) => {
  console.error(`ort/run.js: ${e.message || e}`);
  process.exit(1);
});
