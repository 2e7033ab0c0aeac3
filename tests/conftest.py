import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def shared_rows(name: str = "public.jsonl"):
    path = SHARED / "groundtruth" / name
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def shared_dir():
    if not SHARED.exists():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in process: returns (exit code, stdout, stderr)."""
    from vramplan.cli import main

    def _run(*argv):
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run


@pytest.fixture
def run_json(run_cli):
    def _run(*argv):
        code, out, err = run_cli(*argv, "--json")
        assert code == 0, err
        return json.loads(out)

    return _run


def write_gguf_header(path, arch: str, *, layers, hidden: int, heads: int, context: int = 4096, kv_heads=None,
                      ff=None, key_length=None, value_length=None, uint32=(), tensors=(), vocab: int = 1000,
                      output: bool = True, token_list: bool = False, file_type=None, setup=None):
    """A small GGUF file written with gguf-py's GGUFWriter (skips the test without gguf): the standard
    ``{arch}.*`` keys, extra uint32 keys (suffix, value), the token embedding (and output) as f16 zeros, and any
    extra tensors (name, numpy array). ``setup(writer)`` adds anything else before the header is written."""
    gguf = pytest.importorskip("gguf")
    np = pytest.importorskip("numpy")
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(layers)
    w.add_embedding_length(hidden)
    w.add_head_count(heads)
    if kv_heads is not None:
        w.add_head_count_kv(kv_heads)
    if key_length is not None:
        w.add_key_length(key_length)
    if value_length is not None:
        w.add_value_length(value_length)
    if ff is not None:
        w.add_feed_forward_length(ff)
    w.add_context_length(context)
    if file_type is not None:
        w.add_file_type(file_type)
    if token_list:
        w.add_token_list([f"t{i}" for i in range(vocab)])
    for key, value in uint32:
        w.add_uint32(f"{arch}.{key}", value)
    if setup is not None:
        setup(w)
    w.add_tensor("token_embd.weight", np.zeros((vocab, hidden), np.float16))
    if output:
        w.add_tensor("output.weight", np.zeros((vocab, hidden), np.float16))
    for name, array in tensors:
        w.add_tensor(name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
