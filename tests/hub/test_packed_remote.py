"""Quantized safetensors (GPTQ, AWQ, bitsandbytes) read over HTTP as they are read locally."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from huggingface_hub.utils import get_session

from heritage.fingerprint import fingerprint
from heritage.formats import open_checkpoint
from heritage.hub.remote import open_remote
from tests.formats.test_packed import LAYER, OTHER, _layer_parts, _weights, _write
from tests.hub.emulator import HubEmulator


@pytest.mark.parametrize("cdn", [True, False])
def test_quantized_repos_fingerprint_as_on_disk(tmp_path: Path, cdn: bool) -> None:
    """Sharded, with parts of one layer in different shards; GPTQ in activation order
    takes a second batch of reads, bitsandbytes reads its quant states when opened. The
    Hub has no quantization config to give here (the crawl does not fetch config.json),
    so the layouts' shapes decide."""
    cases = ("gptq4-act-order", "awq-no-config", "nf4-nested", "int8")
    for case in cases:
        layers = {
            p: _layer_parts(case, _weights(256, 512, s))[0] for s, p in enumerate((LAYER, OTHER))
        }
        _write(tmp_path / "quant" / case, layers, None, shards=3)
    hub = HubEmulator(tmp_path, cdn=cdn).start()
    try:
        for case in cases:
            repo = f"quant/{case}"
            files = hub.files(repo)
            ckpt = open_remote(hub.url, repo, "main", files, session=get_session(), headers={})
            with open_checkpoint(tmp_path / repo) as local:
                assert [(t.name, t.dtype, t.shape) for t in ckpt.tensors] == [
                    (t.name, t.dtype, t.shape) for t in local.tensors
                ]
                remote_fp, local_fp = fingerprint(ckpt), fingerprint(local)
            for name, t in local_fp.tensors.items():
                np.testing.assert_array_equal(remote_fp.tensors[name].values, t.values)
            weights = sum((tmp_path / repo / f).stat().st_size for f in ckpt.sources)
            index = (tmp_path / repo / "model.safetensors.index.json").stat().st_size
            assert ckpt.bytes_read <= weights + index
            ckpt.close()
    finally:
        hub.stop()
