"""Whether two dgseg safetensors files hold the same tensors (bytes) and metadata, the metadata
"config" compared with the lines that name folders (split_dir, output dir) left out.
Usage: python3 safetensors_same.py A B   (exit 0 when the same; used by before_after.sh)"""
import json, re, struct, sys

def load(path):
    data = open(path, 'rb').read()
    n = struct.unpack('<Q', data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]

def normalized(header):
    meta = dict(header.get('__metadata__', {}))
    if 'config' in meta:
        meta['config'] = re.sub(r'(?m)^(split_dir|dir) = .*$', r'\1 = X', meta['config'])
    return dict(header, __metadata__=meta)

(ha, da), (hb, db) = load(sys.argv[1]), load(sys.argv[2])
same = normalized(ha) == normalized(hb) and da == db
print(f"{'IDENTICAL' if same else 'DIFFERENT'} {sys.argv[1]}: {len(ha) - 1} tensors, {len(da)} bytes")
sys.exit(0 if same else 1)
