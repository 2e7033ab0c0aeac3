"""Every catalog config with each top-level, text_config, vision_config and audio_config field replaced by a hostile
value: parsing, counting, the KV cache and weight bytes either work or raise a vramplan error naming the problem --
never another exception (the brief: bad input gets a clear error, never a traceback)."""

from __future__ import annotations

import copy
import json

import pytest

from vramplan.catalog import models as cat
from vramplan.core.memory import kv_cache
from vramplan.core.model import count_params
from vramplan.core.precision import dense_format, weight_bytes
from vramplan.errors import VramplanError
from vramplan.sources.hf_config import parse_config

HOSTILE = (0, -1, "x", 10**30, None, [], {}, 1.5, True, [0, 1], [[1]], ["a"])


@pytest.mark.parametrize("key", [e.key for e in cat.list_models()])
def test_hostile_field_values_give_vramplan_errors_only(key):
    with open(cat.entry_file(cat.find_model(key), "config.json")) as fh:
        cfg = json.load(fh)
    targets = [(None, k) for k in cfg] + [(sub, k) for sub in ("text_config", "vision_config", "audio_config")
                                          if isinstance(cfg.get(sub), dict) for k in cfg[sub]]
    bf16 = dense_format("bf16", 2)
    for sub, field in targets:
        for value in HOSTILE:
            c = copy.deepcopy(cfg)
            (c[sub] if sub else c)[field] = value
            try:
                spec = parse_config(c)
                count_params(spec)
                kv_cache(spec, 4096)
                weight_bytes(spec, bf16)
            except VramplanError:
                pass
            except Exception as exc:  # noqa: BLE001 - the point of the test
                pytest.fail(f"{key}: {sub or ''}.{field} = {value!r} raised {type(exc).__name__}: {exc}")
